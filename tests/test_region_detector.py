"""The optional region detector (``--regions detector``, MSEARCH_REGION_MODEL): a detection model in
Hugging Face format, loaded through the real ``from_pretrained`` path from a tiny randomly
initialised OWL-ViT or OWLv2 (zero-shot, asked for the prompts), YOLOS or DETR (closed set) built
at test time. A random model's boxes mean nothing: these tests hold the path (boxes valid, inside
the canvas, capped, scored, method recorded, embedded, removed with another method), not the quality.
"""
from __future__ import annotations

import json
import math

import pytest
from PIL import Image
from sqlalchemy import select

from harvest.region_detector import (CLOSED_SET, OVERLAP_MERGED, ZERO_SHOT, DetectorLoadError, _iou,
                                     load_region_detector)
from harvest.regions import RegionGrid, parse_region_methods, plan_regions
from manuscripts_search.config import ConfigError, load_config
from manuscripts_search.models import Canvas, Manifest, Region
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope
from manuscripts_search.store.derivatives import DerivativeStore
from tests.helpers.cli import run_cli
from tests.helpers.region_rows import region_vector_count, regions_by_canvas
from tests.helpers.model_factory import (DETECTOR_GRID, build_random_detr, build_random_owlvit, build_random_yolos,
                                         render_shape)
from tests.helpers.shapes_collection import CANVASES


@pytest.fixture(scope="module")
def owlvit_dir(tmp_path_factory):
    return build_random_owlvit(tmp_path_factory.mktemp("random-owlvit"))


@pytest.fixture(scope="module")
def owlv2_dir(tmp_path_factory):
    return build_random_owlvit(tmp_path_factory.mktemp("random-owlv2"), version=2)


@pytest.fixture(scope="module")
def detr_dir(tmp_path_factory):
    return build_random_detr(tmp_path_factory.mktemp("random-detr"))


@pytest.fixture(scope="module")
def yolos_dir(tmp_path_factory):
    return build_random_yolos(tmp_path_factory.mktemp("random-yolos"))


def _page(width=300, height=420) -> Image.Image:
    page = Image.new("RGB", (width, height), (232, 220, 196))
    page.paste(render_shape("red", "circle", size=120, seed=3), (30, 40))
    page.paste(render_shape("blue", "square", size=90, seed=4), (170, 260))
    return page


def _inside(box, area) -> bool:
    x, y, w, h = box
    ax, ay, aw, ah = area
    return w > 0 and h > 0 and x >= ax and y >= ay and x + w <= ax + aw and y + h <= ay + ah


@pytest.mark.parametrize("which, kind", [("owlvit", ZERO_SHOT), ("yolos", CLOSED_SET), ("detr", CLOSED_SET)])
def test_a_detector_is_loaded_once_and_its_boxes_come_back_in_canvas_coordinates(which, kind, request):
    path = str(request.getfixturevalue(f"{which}_dir"))
    detector = load_region_detector(path, "cpu", threshold=0.0)
    assert detector.kind == kind and path in detector.describe()
    again = load_region_detector(path, "cpu", prompts=("a diagram",), threshold=0.3)
    assert again.loaded is detector.loaded  # once per process: the prompts and floor are per call
    page = _page()

    found = detector.detect(page, canvas_size=(3000, 4200), limit=13)
    assert 1 <= len(found) <= 13
    assert all(_inside(p.box, (0, 0, 3000, 4200)) for p in found)
    assert all(0 <= p.score <= 1 for p in found) and [p.score for p in found] == sorted(
        (p.score for p in found), reverse=True)
    assert len({p.box for p in found}) == len(found)
    boxes = [(p.x, p.y, p.x + p.w, p.y + p.h) for p in found]
    assert all(_iou(a, b) <= OVERLAP_MERGED + 0.01 for i, a in enumerate(boxes) for b in boxes[i + 1:])

    # Capped; none asked, none given; painted on part of the canvas, they stay on that part.
    assert len(detector.detect(page, canvas_size=(3000, 4200), limit=2)) == min(2, len(found))
    assert detector.detect(page, limit=0) == []
    target = (500, 800, 1500, 2100)
    assert all(_inside(p.box, target) for p in detector.detect(page, canvas_size=(3000, 4200), target_xywh=target))
    # No canvas size: image pixels.
    assert all(_inside(p.box, (0, 0, *page.size)) for p in detector.detect(page))
    # Every score is cut by a floor above the best; the floor between keeps the better ones.
    best = found[0].score
    assert load_region_detector(path, "cpu", threshold=min(1.0, best + 0.01)).detect(page) == []
    middle = (found[0].score + found[-1].score) / 2
    if found[-1].score < middle < best:
        assert all(p.score > middle - 1e-4 for p in load_region_detector(path, "cpu", threshold=middle).detect(page))


@pytest.mark.parametrize("which", ["owlvit", "owlv2"])
def test_boxes_are_scaled_from_what_the_model_saw_to_the_canvas(which, request):
    detector = load_region_detector(str(request.getfixturevalue(f"{which}_dir")), "cpu", threshold=0.0)
    assert detector.kind == ZERO_SHOT
    canvas_w, canvas_h = 3000, 4480
    found = detector.detect(_page(300, 448), canvas_size=(canvas_w, canvas_h), limit=16)
    # The tiny model's boxes are its prior: one the size of a patch on each corner of its 4x4
    # grid, over the page squeezed into the model's square (OWL-ViT) or over the square it is
    # padded to (OWLv2). A portrait page: swapped sides or a missed padding change the sizes.
    side_w, side_h = (canvas_w, canvas_h) if which == "owlvit" else (canvas_h, canvas_h)
    side_w, side_h = side_w / DETECTOR_GRID, side_h / DETECTOR_GRID
    interior = [p for p in found if p.x > 0 and p.y > 0 and p.x + p.w < canvas_w and p.y + p.h < canvas_h]
    assert len(interior) >= 6, found
    for p in interior:
        assert abs(p.w - side_w) < 0.05 * side_w and abs(p.h - side_h) < 0.05 * side_h, (p, side_w, side_h)


def test_a_detector_that_cannot_be_used_is_refused_with_what_to_set(tmp_path, random_clip_dir):
    with pytest.raises(DetectorLoadError, match="MSEARCH_REGION_MODEL"):
        load_region_detector(None)
    with pytest.raises(DetectorLoadError, match="does not exist.*MSEARCH_REGION_MODEL"):
        load_region_detector(str(tmp_path / "no-such-model"))
    with pytest.raises(DetectorLoadError, match="clip model, not an object detector"):
        load_region_detector(str(random_clip_dir), "cpu")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps({"model_type": "yolos"}))
    with pytest.raises(DetectorLoadError, match="not a complete model in Hugging Face format"):
        load_region_detector(str(tmp_path / "half"), "cpu")
    # A hub id this machine has not cached, with the hub out of reach (the tests run offline).
    with pytest.raises(DetectorLoadError, match="cache.*MSEARCH_REGION_MODEL"):
        load_region_detector("no-such-owner/no-such-detector", "cpu")


def test_the_detector_settings_are_read_and_bad_ones_refused(tmp_path):
    config = load_config({"MSEARCH_DATA_DIR": str(tmp_path), "MSEARCH_REGION_MODEL": " owner/detector ",
                          "MSEARCH_REGION_PROMPTS": "a miniature; a diagram ;;a miniature",
                          "MSEARCH_REGION_THRESHOLD": "0.25"})
    assert (config.region_model, config.region_prompts, config.region_threshold) == (
        "owner/detector", ("a miniature", "a diagram"), 0.25)
    unset = load_config({"MSEARCH_DATA_DIR": str(tmp_path)})
    assert unset.region_model is None and "a decorated initial" in unset.region_prompts
    for name, value in (("MSEARCH_REGION_THRESHOLD", "high"), ("MSEARCH_REGION_THRESHOLD", "1.5"),
                        ("MSEARCH_REGION_THRESHOLD", "nan"), ("MSEARCH_REGION_PROMPTS", " ; ;"),
                        ("MSEARCH_REGION_PROMPTS", "x" * 201),
                        ("MSEARCH_REGION_PROMPTS", ";".join(map(str, range(33))))):
        with pytest.raises(ConfigError, match=name):
            load_config({"MSEARCH_DATA_DIR": str(tmp_path), name: value})


def test_region_methods_combine_with_plus():
    assert parse_region_methods("detector") == ("detector",)
    assert parse_region_methods("both") == ("grid", "content")
    assert parse_region_methods("detector+grid") == ("grid", "detector")
    assert parse_region_methods("both+detector") == ("grid", "content", "detector")
    for bad in ("", "detectors", "grid+", "grid,content"):
        with pytest.raises(ValueError, match="content\\+detector"):
            parse_region_methods(bad)


def test_plan_regions_refuses_detector_regions_without_a_detector(session_factory, tmp_path):
    with pytest.raises(ValueError, match="MSEARCH_REGION_MODEL"):
        plan_regions(session_factory, RegionGrid(), method="content+detector",
                     derivatives=DerivativeStore(tmp_path / "derivatives"))




def test_harvest_with_detector_regions_embeds_them_and_another_method_removes_them(
        shapes_collection, runner, random_clip_dir, owlvit_dir, msearch_env, tmp_path):
    _server, collection_url = shapes_collection
    env = {**msearch_env, "MSEARCH_MODEL": str(random_clip_dir), "MSEARCH_IMAGE_SIZE": "128",
           "MSEARCH_REGION_MODEL": str(owlvit_dir), "MSEARCH_REGION_THRESHOLD": "0"}
    factory = make_sessionmaker(make_engine(env["MSEARCH_DB"]))

    report = json.loads(run_cli(runner, env, "harvest", collection_url, "--regions", "detector",
                                "--region-limit", "5", "--json"))
    assert str(owlvit_dir) in report["regions"]["detector"] and "zero-shot" in report["regions"]["detector"]
    found = regions_by_canvas(factory)
    # The boxes are those the detector finds on each canvas's derivative, mapped to the canvas.
    detector = load_region_detector(str(owlvit_dir), "cpu", threshold=0.0)
    derivatives = DerivativeStore(tmp_path / "data" / "derivatives")
    with session_scope(factory) as session:
        canvases = {c.id: c for c in session.scalars(select(Canvas))}
        expected = {c.id: sorted((p.box, "detector", p.score) for p in detector.detect(
            derivatives.open_image(c.derivative_sha256), canvas_size=(c.width, c.height), limit=5))
            for c in canvases.values()}
    assert {c: sorted(r) for c, r in found.items()} == expected
    assert len(found) == len(CANVASES)
    for canvas_id, regions in found.items():
        canvas = canvases[canvas_id]
        assert 1 <= len(regions) <= 5
        assert all(_inside(box, (0, 0, canvas.width, canvas.height)) for box, _, _ in regions)
        assert all(method == "detector" and 0 <= score <= 1 for _, method, score in regions)
    planned = sum(len(r) for r in found.values())
    assert report["regions"]["planned"] == report["regions"]["fetched"] == planned
    assert not report["regions"]["failures"]
    embedded = json.loads(run_cli(runner, env, "embed", "--json"))
    assert embedded["regions"] == planned and region_vector_count(factory) == planned
    assert "ok" in run_cli(runner, env, "index", "verify")

    # Besides the content proposals: the detector's boxes stay, with their vectors.
    run_cli(runner, env, "harvest", collection_url, "--regions", "content+detector", "--region-limit", "5", "--json")
    both = regions_by_canvas(factory)
    for canvas_id, regions in found.items():
        assert {(box, m) for box, m, _ in regions} <= {(box, m) for box, m, _ in both[canvas_id]}
        assert {m for _, m, _ in both[canvas_id]} <= {"content", "detector"}
    assert region_vector_count(factory) == planned

    # Back to the grid: the detector's boxes go with their vectors; the index follows.
    run_cli(runner, env, "harvest", collection_url, "--regions", "grid", "--region-grid", "2", "--json")
    grid = regions_by_canvas(factory)
    assert {m for regions in grid.values() for _, m, _ in regions} == {"grid"}
    assert sum(len(r) for r in grid.values()) == 4 * len(CANVASES)
    assert region_vector_count(factory) == 0
    run_cli(runner, env, "embed", "--json")
    assert region_vector_count(factory) == 4 * len(CANVASES)
    assert "ok" in run_cli(runner, env, "index", "verify")


def test_detector_regions_without_a_usable_model_stop_before_any_work(shapes_collection, runner, msearch_env,
                                                                     random_clip_dir, tmp_path):
    from manuscripts_search.cli import cli

    server, collection_url = shapes_collection
    result = runner.invoke(cli, ["harvest", collection_url, "--regions", "detector"], env=msearch_env)
    assert result.exit_code == 2 and "MSEARCH_REGION_MODEL" in result.output, result.output
    env = {**msearch_env, "MSEARCH_REGION_MODEL": str(random_clip_dir)}
    result = runner.invoke(cli, ["harvest", collection_url, "--regions", "grid+detector"], env=env)
    assert result.exit_code == 1 and "not an object detector" in result.output
    assert "MSEARCH_REGION_MODEL" in result.output
    assert server.requests == []  # nothing fetched, nothing to lose
    folder = tmp_path / "images"
    folder.mkdir()
    _page().save(folder / "page1.png")
    result = runner.invoke(cli, ["publish", str(folder), "--regions", "detector"], env=msearch_env)
    assert result.exit_code == 2 and "MSEARCH_REGION_MODEL" in result.output
    assert not (tmp_path / "data" / "published").exists()
    result = runner.invoke(cli, ["harvest", collection_url, "--regions", "detectr"], env=msearch_env)
    assert result.exit_code == 2 and "content+detector" in result.output


def test_a_canvas_keeps_its_regions_until_its_image_is_fetched(session_factory, tmp_path, yolos_dir):
    import io

    derivatives = DerivativeStore(tmp_path / "derivatives")
    detector = load_region_detector(str(yolos_dir), "cpu", threshold=0.0)
    with session_scope(session_factory) as session:
        manifest = Manifest(url="https://example.org/m.json", iiif_id="https://example.org/m.json", iiif_version=3)
        session.add(manifest)
        session.flush()
        session.add(Canvas(manifest_id=manifest.id, iiif_id="https://example.org/c1", position=0, width=1000,
                           height=1400, image_url="https://example.org/c1.jpg", target_xywh="100,200,800,1000"))
    grid = RegionGrid((2,))
    assert plan_regions(session_factory, grid) == 4
    assert plan_regions(session_factory, grid, method="detector", derivatives=derivatives, detector=detector) == 0
    assert plan_regions(session_factory, grid, method="grid+detector", derivatives=derivatives,
                        detector=detector) == 0
    assert [m for rs in regions_by_canvas(session_factory).values() for _, m, _ in rs] == ["grid"] * 4
    buffer = io.BytesIO()
    _page(240, 300).save(buffer, "JPEG", quality=90)
    with session_scope(session_factory) as session:
        session.scalars(select(Canvas)).one().derivative_sha256 = derivatives.put(buffer.getvalue())
    added = plan_regions(session_factory, grid, method="detector", derivatives=derivatives, detector=detector,
                         limit=4)
    regions = [r for rs in regions_by_canvas(session_factory).values() for r in rs]
    assert added == len(regions) and 1 <= len(regions) <= 4 and {m for _, m, _ in regions} == {"detector"}
    # The image is painted at 100,200 (800x1000) on the canvas: the boxes lie there.
    assert all(_inside(box, (100, 200, 800, 1000)) for box, _, _ in regions)
    assert all(not math.isnan(score) for _, _, score in regions)


def test_a_canvas_the_detector_fails_on_keeps_its_regions_and_the_others_go_on(session_factory, tmp_path, yolos_dir,
                                                                                caplog):
    import io

    derivatives = DerivativeStore(tmp_path / "derivatives")
    detector = load_region_detector(str(yolos_dir), "cpu", threshold=0.0)
    # A sliver one pixel wide: YOLOS's processor cannot resize it (ValueError), while it ran on
    # the test image at load; the canvas keeps what it has, the next canvas is planned.
    sliver, page = Image.new("RGB", (1, 300), (200, 190, 170)), _page(240, 300)
    with pytest.raises(ValueError):
        detector.detect(sliver)
    with session_scope(session_factory) as session:
        manifest = Manifest(url="https://example.org/m.json", iiif_id="https://example.org/m.json", iiif_version=3)
        session.add(manifest)
        session.flush()
        for position, (image, size) in enumerate(((sliver, (10, 3000)), (page, (800, 1000)))):
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            session.add(Canvas(manifest_id=manifest.id, iiif_id=f"https://example.org/c{position}", position=position,
                               width=size[0], height=size[1], image_url=f"https://example.org/c{position}.png",
                               derivative_sha256=derivatives.put(buffer.getvalue())))
    grid = RegionGrid((2,))
    plan_regions(session_factory, grid)
    with session_scope(session_factory) as session:  # a box an earlier run's detector found on the sliver
        sliver_id = min(session.scalars(select(Canvas.id)))
        session.add(Region(canvas_id=sliver_id, x=0, y=100, w=10, h=400, method="detector", score=0.5))
    before = regions_by_canvas(session_factory)
    with caplog.at_level("WARNING", logger="harvest.regions"):
        added = plan_regions(session_factory, grid, method="grid+detector", derivatives=derivatives,
                             detector=detector)
    assert "the region detector failed on its image" in caplog.text
    after = regions_by_canvas(session_factory)
    page_id = max(after)
    assert after[sliver_id] == before[sliver_id] and len(after[sliver_id]) == 5
    assert {m for _, m, _ in after[page_id]} == {"grid", "detector"} and added == len(after[page_id]) - 4
