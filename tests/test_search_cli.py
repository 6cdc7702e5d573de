"""`msearch index`, `msearch search` and `msearch classify` through the command line, on a real
database and the tiny trained CLIP (the catalogue of tests/helpers/search_library.py, also
test_search_engine's)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from manuscripts_search.cli import cli
from manuscripts_search.config import load_config
from manuscripts_search.store.db import make_engine, make_sessionmaker, upgrade_database
from manuscripts_search.index.vector_index import index_paths
from tests.helpers.model_factory import render_shape
from tests.helpers.search_library import build_library

pytestmark = pytest.mark.db  # every test here runs against the test database (SQLite or PostgreSQL)


@pytest.fixture(scope="module")
def cli_site(tmp_path_factory, trained_clip_dir, trained_clip_encoder, text_encoder, request):
    from tests.helpers.database import TEST_DB_FLAVOUR

    data_dir = tmp_path_factory.mktemp("cli-data")
    env = {"MSEARCH_DATA_DIR": str(data_dir), "MSEARCH_MODEL": str(trained_clip_dir), "MSEARCH_DEVICE": "cpu",
           "MSEARCH_DB": request.getfixturevalue("module_db_url") if TEST_DB_FLAVOUR == "postgresql" else ""}
    config = load_config(env)
    engine = make_engine(config.db_url)
    upgrade_database(engine)
    library = build_library(make_sessionmaker(engine), config.index_dir, trained_clip_encoder, text_encoder,
                            make_indexes=False)
    yield env, library, config
    engine.dispose()


def run(env, *args, expect: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == expect, result.output
    # Successful runs: what went to stdout; failures: the error message too.
    return result.stdout if expect == 0 else result.output


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_index_then_search_filter_group_and_page(cli_site):
    env, library, config = cli_site
    report = json.loads(run(env, "index", "--json"))
    assert report["text"]["documents"]["added"] >= 5 and report["text"]["encoded"] >= 5
    assert {r["space"] for r in report["indexes"]} == {library.encoder.space_id, library.text_encoder.space_id}
    assert json.loads(run(env, "index", "--json"))["text"]["encoded"] == 0  # incremental: nothing new

    hits = json_lines(run(env, "search", "a red circle", "--signal", "visual", "-k", "3", "--json"))
    assert {h["canvas_id"] for h in hits} == {library.canvases[k] for k in ("red1", "red2", "grid")}
    grid = next(h for h in hits if h["canvas_id"] == library.canvases["grid"])
    assert grid["xywh"] == library.regions["red circle"][1] and grid["regions"][0]["signal"] == "visual"
    assert grid["shown_regions"][0]["xywh"] == grid["xywh"] and grid["shown_regions"][0]["label"] == "picture"

    hits = json_lines(run(env, "search", "a red circle", "--filter", "provider=bodleian", "--json"))
    assert {h["canvas_id"] for h in hits} <= {library.canvases[k] for k in ("red2", "green", "yellow")}
    assert hits[0]["canvas_id"] == library.canvases["red2"]

    groups = json_lines(run(env, "search", "Lyon", "--group", "manifest", "--json"))
    assert groups[0]["manifest_id"] == library.manifests["hours"] and groups[0]["canvases"]

    page = json.loads(run(env, "search", "a green square", "--per-page", "5", "--page", "2", "--weaker", "--page-json"))
    assert page["offset"] == 5 and [h["rank"] for h in page["hits"]] == [6, 7, 8, 9, 10] and page["has_more"]
    assert "label" in page["facets"] and page["score"] == "rrf"

    text = run(env, "search", "Pâques", "--explain")
    assert "fulltext: rank 1" in text and "region 10,20,30,8 #1 " in text and "Pâques" in text

    # Nonsense finds nothing, and says how to see what scored no better; the total is printed.
    assert run(env, "search", "zzqxv").strip() == ("no results; --weaker shows the hits that score no better "
                                                   "than nonsense")
    assert json_lines(run(env, "search", "zzqxv", "--weaker", "--json"))
    assert "-- 3 canvases in 2 manuscript(s);" in run(env, "search", "a red circle", "--signal", "visual")
    floors_off = {**env, "MSEARCH_SCORE_FLOORS": "off"}
    assert json_lines(run(floors_off, "search", "zzqxv", "--json"))


def test_image_queries_from_a_file_a_url_and_an_existing_canvas(cli_site, tmp_path, iiif_server):
    env, library, _ = cli_site
    run(env, "index", "--no-text")
    path = tmp_path / "query.png"
    render_shape("red", "circle", size=120, seed=31).save(path)
    hits = json_lines(run(env, "search", "--image", str(path), "-k", "2", "--json"))
    assert {h["canvas_id"] for h in hits} <= {library.canvases[k] for k in ("red1", "red2", "grid")}
    iiif_server.add_image("query", render_shape("red", "circle", size=120, seed=32))
    hits = json_lines(run(env, "search", "--image", f"{iiif_server.base_url}/raw/query.jpg", "-k", "2", "--json"))
    assert {h["canvas_id"] for h in hits} <= {library.canvases[k] for k in ("red1", "red2", "grid")}
    hits = json_lines(run(env, "search", "--like", str(library.canvases["red1"]), "-k", "2", "--json"))
    assert library.canvases["red1"] not in {h["canvas_id"] for h in hits}


def test_bad_search_input_gets_a_clear_message(cli_site, tmp_path):
    env, _, _ = cli_site
    assert "unknown filter 'colour'" in run(env, "search", "red", "--filter", "colour=red", expect=2)
    assert "give a QUERY" in run(env, "search", expect=2)
    assert "cannot read the query image" in run(env, "search", "--image", str(tmp_path / "none.png"), expect=1)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image")
    assert "cannot be decoded" in run(env, "search", "--image", str(garbage), expect=1)
    assert "has no vector" in run(env, "search", "--like", "987654", expect=1)


def test_classify_then_filter_by_label(cli_site, tmp_path):
    env, library, _ = cli_site
    run(env, "index", "--no-text")
    example = tmp_path / "blue.png"
    render_shape("blue", "triangle", size=96, seed=808).save(example)
    run(env, "classify", "add", "red things", "--prompt", "a red circle", "--threshold", "0.6")
    run(env, "classify", "add", "blue things", "--image", str(example))
    report = json.loads(run(env, "classify", "run", "--json"))
    assert report["per_category"]["red things"] >= 2 and report["unlabelled"] > 0
    listed = {c["name"]: c for c in json.loads(run(env, "classify", "list", "--json"))}
    assert listed["red things"]["prototypes"][0] == {"kind": "text", "value": "a red circle",
                                                     "space": library.encoder.space_id}
    hits = json_lines(run(env, "search", "a red circle", "--filter", "label=red things", "-k", "50", "--json"))
    assert hits and all("red things" in h["labels"] for h in hits)
    assert "no category called 'nothing'" in run(env, "classify", "remove", "nothing", expect=1)
    run(env, "classify", "remove", "blue things")


def test_verify_and_rebuild_with_new_parameters(cli_site):
    env, library, config = cli_site
    run(env, "index", "--no-text")
    results = json.loads(run(env, "index", "verify", "--deep", "--json"))
    assert results and all(r["ok"] for r in results)
    assert all(r["vectors_checked"] > 0 for r in results)
    run(env, "index", "rebuild", "--M", "8", "--ef-construction", "50")
    meta = json.loads(index_paths(config.index_dir, library.encoder.space_id)[1].read_text())
    assert (meta["M"], meta["ef_construction"]) == (8, 50)
    assert all(r["ok"] for r in json.loads(run(env, "index", "verify", "--json")))
    # A broken index file is reported, and rebuilt.
    graph, _ = index_paths(config.index_dir, library.encoder.space_id)
    graph.write_bytes(b"broken")
    assert "MISMATCH" in run(env, "index", "verify", expect=1)
    run(env, "index", "--no-text")
    assert all(r["ok"] for r in json.loads(run(env, "index", "verify", "--json")))


def test_text_search_keeps_working_without_the_image_model(cli_site, tmp_path):
    env, library, _ = cli_site
    run(env, "index")
    broken = {**env, "MSEARCH_MODEL": str(tmp_path / "no-such-model")}
    result = CliRunner().invoke(cli, ["search", "Pâques", "--json"], env=broken, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "warning: cannot use the configured model" in result.stderr
    assert "text queries use metadata and transcriptions only" in result.stderr
    hits = json_lines(result.stdout)
    assert hits[0]["canvas_id"] == library.canvases["blue"] and "visual" not in hits[0]["signals"]
    # An image query does need the model: a clear error, not a traceback.
    path = tmp_path / "q.png"
    render_shape("red", "circle", size=64, seed=1).save(path)
    assert "cannot load model" in run(broken, "search", "--image", str(path), expect=1)


def test_index_layouts_from_the_command_line(cli_site):
    from manuscripts_search.index.layouts import choose_layout, format_bytes

    env, library, config = cli_site
    space = library.encoder.space_id
    run(env, "index", "--no-text")
    assert f"{space}: rebuilt as hnsw-f16" in run(env, "index", "rebuild", "--space", space, "--layout", "hnsw-f16")
    stats = json.loads(run(env, "stats", "--json"))["indexes"]
    entry = next(e for e in stats["spaces"] if e["space"] == space)
    assert entry["layout"] == "hnsw-f16" and entry["vectors"] > 30 and entry["bytes_on_disk"] > 0
    assert stats["budget_bytes"] > 0 and "[hnsw-f16]" in run(env, "stats")
    hits = json_lines(run(env, "search", "a red circle", "--signal", "visual", "-k", "3", "--json"))
    assert {h["canvas_id"] for h in hits} == {library.canvases[k] for k in ("red1", "red2", "grid")}
    # A tight budget: auto converts to the layout that fits, and says why.
    budget = next(b for b in range(256 * 1024, 1024, -1024)
                  if choose_layout(entry["vectors"], library.encoder.dim, b).layout == "hnsw-i8")
    expected = choose_layout(entry["vectors"], library.encoder.dim, budget)
    report = json.loads(run({**env, "MSEARCH_INDEX_MEMORY": str(budget)}, "index", "--no-text", "--layout", "auto",
                            "--json"))
    image = next(r for r in report["indexes"] if r["space"] == space)
    assert image["layout"] == "hnsw-i8" and image["rebuilt"] and image["reason"] == expected.reason
    assert format_bytes(budget) in image["reason"] and "hnsw, hnsw-f16 would need more" in image["reason"]
    assert all(r["ok"] for r in json.loads(run(env, "index", "verify", "--deep", "--json")))
    bad = {**env, "MSEARCH_INDEX_MEMORY": "a lot"}
    assert "MSEARCH_INDEX_MEMORY" in run(bad, "index", expect=1)
    assert "Invalid value for '--layout'" in run(env, "index", "--layout", "btree", expect=2)
    run(env, "index", "rebuild", "--layout", "hnsw")  # as the other tests expect it
