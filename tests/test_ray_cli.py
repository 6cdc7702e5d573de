"""``msearch harvest --engine ray`` and ``msearch embed --engine ray`` as a user runs them: the
whole path on the session's local Ray, the Ray engine's vectors equal to the local engine's, the
index brought up to date by the single writer, and clear refusals of options that need Ray."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import delete

from manuscripts_search.cli import cli
from manuscripts_search.store.db import session_scope
from manuscripts_search.embedding.registry import resolve_image_encoder
from manuscripts_search.models import Embedding, PerceptualHash
from tests.helpers.cli import run_cli
from tests.helpers.shapes_collection import CANVASES
from tests.helpers.worker_catalogue import claim_rows, migrated_factory, vectors_by_item

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


def test_harvest_and_embed_with_the_ray_engine_from_the_command_line(shapes_collection, runner, trained_clip_dir,
                                                                    msearch_env, ray_cluster):
    server, collection_url = shapes_collection
    env = {**msearch_env, "MSEARCH_MODEL": str(trained_clip_dir), "MSEARCH_IMAGE_SIZE": "128"}

    harvested = json.loads(run_cli(runner, env, "harvest", collection_url, "--engine", "ray", "--per-host", "2",
                                "--regions", "grid", "--region-grid", "2", "--json"))
    assert harvested["engine"] == "ray"
    assert (harvested["manifests"], harvested["collections"]) == (2, 1)
    assert [f["url"] for f in harvested["failures"]] == [f"{server.base_url}/missing/manifest.json"]
    assert harvested["images"] == {"fetched": len(CANVASES), "failures": []}
    assert harvested["regions"]["fetched"] == 4 * len(CANVASES)
    assert harvested["hosts"] == {server.base_url: harvested["requests"]}

    embedded = json.loads(run_cli(runner, env, "embed", "--engine", "ray", "--batch-size", "8", "--json"))
    items = 5 * len(CANVASES)
    assert (embedded["engine"], embedded["canvases"], embedded["regions"], embedded["failed"]) == \
        ("ray", len(CANVASES), 4 * len(CANVASES), [])
    assert embedded["index"]["total"] == items  # the driver, the index's single writer, added them
    hits = [json.loads(line) for line in run_cli(runner, env, "search", "red circle", "--k", "2", "--json").splitlines()]
    assert {h["canvas"] for h in hits} == {f"{server.base_url}/canvas/rc1", f"{server.base_url}/canvas/rc2"}
    assert json.loads(run_cli(runner, env, "embed", "--engine", "ray", "--json"))["embedded"] == 0

    # The local engine on the same images gives the same vectors, item for item.
    factory = migrated_factory(msearch_env["MSEARCH_DB"])
    space = resolve_image_encoder(str(trained_clip_dir), fallback=False).encoder.space_id
    on_ray = vectors_by_item(factory, space)
    with session_scope(factory) as session:
        session.execute(delete(Embedding))
        session.execute(delete(PerceptualHash))
    local = json.loads(run_cli(runner, env, "embed", "--no-index", "--json"))
    assert (local["engine"], local["embedded"]) == ("local", items)
    local_vectors = vectors_by_item(factory, space)
    assert local_vectors.keys() == on_ray.keys() and len(on_ray) == items
    assert max(float(np.max(np.abs(local_vectors[key] - on_ray[key]))) for key in on_ray) < 1e-5
    assert claim_rows(factory) == []
    factory.kw["bind"].dispose()


@pytest.mark.parametrize("command, option", [
    (["embed", "--address", "auto"], "--address"),
    (["embed", "--derivatives-url", "http://127.0.0.1:1/d"], "--derivatives-url"),
    (["embed", "--encoders", "2"], "--encoders"),
    (["harvest", "http://127.0.0.1:1/m.json", "--address", "auto"], "--address"),
])
def test_ray_options_without_the_ray_engine_are_refused(command, option, runner, msearch_env):
    result = runner.invoke(cli, command, env={**msearch_env, "MSEARCH_MODEL": "handcrafted"})
    assert result.exit_code == 2
    assert f"{option}" in result.output and "--engine ray" in result.output
