"""`msearch harvest --regions grid|content|both`: each region records how it was found (and a
proposal's score); a run with another method adds the boxes it wants and removes the others with
their vectors, and the index stays in step (`msearch index verify`). Through the command line,
the IIIF test server and the tiny CLIP."""
from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from harvest.region_proposals import propose_regions
from harvest.regions import RegionGrid, plan_regions
from manuscripts_search.models import Canvas, Manifest
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope
from manuscripts_search.store.derivatives import DerivativeStore
from tests.helpers.cli import run_cli
from tests.helpers.region_rows import region_vector_count, regions_by_canvas
from tests.helpers.shapes_collection import CANVASES
from tests.helpers.synthetic_pages import covers, render_page




def test_a_run_with_another_method_replaces_the_regions_and_vectors(shapes_collection, runner, trained_clip_dir,
                                                                     msearch_env, tmp_path):
    _server, collection_url = shapes_collection
    env = {**msearch_env, "MSEARCH_MODEL": str(trained_clip_dir), "MSEARCH_IMAGE_SIZE": "128"}
    factory = make_sessionmaker(make_engine(env["MSEARCH_DB"]))
    grid = RegionGrid((2,))

    # The grid first.
    report = json.loads(run_cli(runner, env, "harvest", collection_url, "--regions", "grid", "--region-grid", "2",
                                "--json"))
    assert report["regions"]["planned"] == 4 * len(CANVASES) and not report["regions"]["failures"]
    grid_regions = regions_by_canvas(factory)
    assert all(method == "grid" and score is None for regions in grid_regions.values() for _, method, score in regions)
    run_cli(runner, env, "embed", "--json")
    assert region_vector_count(factory) == 4 * len(CANVASES)
    assert "ok" in run_cli(runner, env, "index", "verify")

    # content: the grid windows go with their vectors; each page gets the scored proposals of
    # its image (how good they are is tests/test_region_proposals.py's business; these pages,
    # one shape filling the image, are not what they are for, and some get none).
    report = json.loads(run_cli(runner, env, "harvest", collection_url, "--regions", "content", "--json"))
    content = regions_by_canvas(factory)
    derivatives = DerivativeStore(tmp_path / "data" / "derivatives")
    with session_scope(factory) as session:
        expected = {}
        for canvas in session.scalars(select(Canvas)):
            proposals = propose_regions(derivatives.open_image(canvas.derivative_sha256),
                                        canvas_size=(canvas.width, canvas.height))
            if proposals:
                expected[canvas.id] = sorted((p.box, "content", p.score) for p in proposals)
    assert {c: sorted(r) for c, r in content.items()} == expected
    assert expected, "no canvas got a content region"
    assert all(len(regions) <= 13 for regions in content.values())
    assert report["regions"]["planned"] == sum(len(r) for r in content.values())
    assert report["regions"]["fetched"] == report["regions"]["planned"]
    assert region_vector_count(factory) == 0  # removed with their regions; the new ones are not embedded yet
    embedded = json.loads(run_cli(runner, env, "embed", "--json"))
    assert embedded["regions"] == report["regions"]["planned"]
    assert "ok" in run_cli(runner, env, "index", "verify")

    # both: the grid comes back beside the content boxes, which keep their vectors.
    before = region_vector_count(factory)
    report = json.loads(run_cli(runner, env, "harvest", collection_url, "--regions", "both", "--region-grid", "2",
                                "--json"))
    assert report["regions"]["planned"] == 4 * len(CANVASES)
    both = regions_by_canvas(factory)
    for canvas_id, regions in both.items():
        methods = {box: method for box, method, _ in regions}
        assert sorted(box for box, method in methods.items() if method == "grid") == sorted(
            box for box, _, _ in grid_regions[canvas_id])
        assert sorted(box for box, m in methods.items() if m == "content") == sorted(
            b for b, _, _ in content.get(canvas_id, []))
    assert region_vector_count(factory) == before
    run_cli(runner, env, "embed", "--json")
    assert "ok" in run_cli(runner, env, "index", "verify")

    # Back to the grid alone: the content boxes and their vectors go.
    run_cli(runner, env, "harvest", collection_url, "--regions", "grid", "--region-grid", "2", "--json")
    assert regions_by_canvas(factory) == grid_regions
    assert region_vector_count(factory) == 4 * len(CANVASES)
    run_cli(runner, env, "embed", "--json")
    assert "ok" in run_cli(runner, env, "index", "verify")
    assert sorted(grid.boxes(640, 480)) == sorted(box for box, _, _ in regions_by_canvas(factory)[min(both)])


def test_regions_alone_means_content_everywhere(shapes_collection, runner, msearch_env):
    """bench/regions.py chose the default: `--regions` alone is content, in harvest, publish and
    the Ray harvest's options."""
    from harvest.ray_harvest import RayHarvestOptions
    from harvest.regions import DEFAULT_METHOD
    from manuscripts_search.cli import cli

    _server, collection_url = shapes_collection
    env = {**msearch_env, "MSEARCH_IMAGE_SIZE": "128"}
    report = json.loads(run_cli(runner, env, "harvest", collection_url, "--regions", "--json", "--no-progress"))
    regions = regions_by_canvas(make_sessionmaker(make_engine(env["MSEARCH_DB"])))
    assert regions and {method for rs in regions.values() for _, method, _ in rs} == {"content"}
    assert report["regions"]["planned"] == sum(len(rs) for rs in regions.values())
    for command in ("harvest", "publish"):
        option = next(p for p in cli.commands[command].params if p.name == "regions")
        assert option.flag_value == DEFAULT_METHOD == "content"
        assert "what --regions alone means" in option.help.split("content (")[1].split("), grid")[0]
    assert RayHarvestOptions().region_method == DEFAULT_METHOD


def test_contradicting_and_unknown_region_options_are_refused(runner, msearch_env):
    from manuscripts_search.cli import cli

    result = runner.invoke(cli, ["harvest", "x.json", "--regions", "grid", "--no-regions"], env=msearch_env)
    assert result.exit_code == 2 and "contradict" in result.output
    result = runner.invoke(cli, ["harvest", "x.json", "--regions", "lines"], env=msearch_env)
    assert result.exit_code == 2 and "lines" in result.output


def test_plan_regions_refuses_an_unknown_method_and_content_without_images(session_factory, tmp_path):
    with pytest.raises(ValueError, match="one of grid, content, detector, both"):
        plan_regions(session_factory, RegionGrid(), method="lines")
    with pytest.raises(ValueError, match="derivative store"):
        plan_regions(session_factory, RegionGrid(), method="content")


def test_a_canvas_without_its_image_keeps_its_regions_until_one_is_fetched(session_factory, tmp_path):
    derivatives = DerivativeStore(tmp_path / "derivatives")
    grid = RegionGrid((2,))
    with session_scope(session_factory) as session:
        manifest = Manifest(url="https://example.org/m.json", iiif_id="https://example.org/m.json", iiif_version=3)
        session.add(manifest)
        session.flush()
        session.add(Canvas(manifest_id=manifest.id, iiif_id="https://example.org/c1", position=0, width=1000,
                           height=1400, image_url="https://example.org/c1.jpg"))
    assert plan_regions(session_factory, grid) == 4
    # No image yet: content cannot see the page; the grid stays (and is what "both" gives).
    assert plan_regions(session_factory, grid, method="content", derivatives=derivatives) == 0
    assert plan_regions(session_factory, grid, method="both", derivatives=derivatives) == 0
    assert [m for regions in regions_by_canvas(session_factory).values() for _, m, _ in regions] == ["grid"] * 4
    # The image arrives: its proposals replace the grid.
    page, shapes = render_page(4, 1000, 1400, shapes=2)
    page.thumbnail((448, 448))
    buffer = io.BytesIO()
    page.save(buffer, "JPEG", quality=90)
    with session_scope(session_factory) as session:
        session.scalars(select(Canvas)).one().derivative_sha256 = derivatives.put(buffer.getvalue())
    added = plan_regions(session_factory, grid, method="content", derivatives=derivatives)
    regions = [r for rs in regions_by_canvas(session_factory).values() for r in rs]
    assert added == len(regions) >= 2 and {m for _, m, _ in regions} == {"content"}
    for shape in shapes:
        assert any(covers(box, shape.box) for box, _, _ in regions), (shape, regions)
    # A derivative that cannot be read: logged, the regions stay.
    with session_scope(session_factory) as session:
        session.scalars(select(Canvas)).one().derivative_sha256 = derivatives.put(b"not an image")
    assert plan_regions(session_factory, grid, method="content", derivatives=derivatives) == 0
    assert [r for rs in regions_by_canvas(session_factory).values() for r in rs] == regions
