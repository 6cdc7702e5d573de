"""`msearch embed` as real processes: two workers on one queue (PostgreSQL started by the tests,
and the test database), and a worker killed with SIGKILL at several moments, then resumed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from manuscripts_search.store.claims import WorkItem
from manuscripts_search.store.db import session_scope
from manuscripts_search.store.vector_codec import stored_size
from manuscripts_search.embedding.registry import resolve_image_encoder
from manuscripts_search.models import Canvas, Embedding, Region
from manuscripts_search.embedding.image_loading import store_loader
from tests.helpers.worker_catalogue import (as_vector, assert_each_item_once, build_catalogue, claim_rows, migrated_factory,
                                    shape_images, vector_rows)

# Runs `msearch` once the file named by argv[1] exists. Everything slow to start is done first
# (imports, loading the model once, opening and checking the database), then the file argv[2] is
# made: workers released together then start work within moments of each other.
DRIVER = """
import os, pathlib, sys, time
import torch, transformers  # noqa: F401
from manuscripts_search.cli import main
from manuscripts_search.store.db import make_engine, upgrade_database
from manuscripts_search.embedding.registry import resolve_image_encoder
resolve_image_encoder(os.environ["MSEARCH_MODEL"], fallback=False)
engine = make_engine(os.environ["MSEARCH_DB"])
upgrade_database(engine)
engine.dispose()
go, ready = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[3:]))
"""


def _start(env: dict, go: Path, *args: str, ready: Path = Path("/dev/null")) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(go), str(ready), *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 120) -> dict:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout)


@pytest.fixture
def catalogue_env(tmp_path, trained_clip_dir):
    """(env, factory, catalogue builder) for a data dir and the tiny trained CLIP."""
    made = []

    def make(db_url: str, canvases: int, regions_per_canvas: int):
        factory = migrated_factory(db_url)
        made.append(factory)
        catalogue = build_catalogue(factory, tmp_path / "data", shape_images(canvases, size=64),
                                    regions_per_canvas=regions_per_canvas)
        env = {"MSEARCH_DATA_DIR": str(tmp_path / "data"), "MSEARCH_DB": db_url,
               "MSEARCH_MODEL": str(trained_clip_dir), "HF_HUB_OFFLINE": "1"}
        return env, factory, catalogue

    yield make
    for factory in made:
        factory.kw["bind"].dispose()


@pytest.mark.slow
@pytest.mark.db
@pytest.mark.parametrize("database", ["postgresql", "test database"])
def test_two_workers_on_one_queue_embed_each_item_once(database, request, catalogue_env, tmp_path, trained_clip_dir):
    db_url = request.getfixturevalue("postgres_url" if database == "postgresql" else "db_url")
    env, factory, catalogue = catalogue_env(db_url, canvases=60, regions_per_canvas=4)
    go = tmp_path / "go"
    args = ("embed", "--json", "--batch-size", "2", "--threads", "1", "--no-index")
    ready = [tmp_path / f"ready-{n}" for n in range(2)]
    workers = [_start(env, go, *args, ready=path) for path in ready]
    deadline = time.monotonic() + 60
    while not all(path.exists() for path in ready):  # both imported torch and wait for the signal
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
        time.sleep(0.01)
    go.touch()
    reports = [_finish(worker) for worker in workers]

    assert all(report["embedded"] > 0 for report in reports), reports  # both really worked
    assert sum(report["embedded"] for report in reports) == catalogue.items == 300
    assert sum(report["hashed"] for report in reports) == 300
    assert reports[0]["worker"] != reports[1]["worker"] and reports[0]["space"] == reports[1]["space"]
    encoder = resolve_image_encoder(str(trained_clip_dir), fallback=False).encoder
    assert_each_item_once(factory, catalogue, encoder.space_id, encoder.dim)


def _vector_count(factory) -> int:
    with session_scope(factory) as session:
        return int(session.scalar(select(func.count()).select_from(Embedding)))


def _kill_when(process: subprocess.Popen, condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the worker finished before it could be killed"
        assert time.monotonic() < deadline, "the kill condition never came"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _assert_whole_and_unique(factory, dim: int) -> None:
    rows = vector_rows(factory)
    assert len({(row.canvas_id, row.region_id) for row in rows}) == len(rows)
    for row in rows:
        assert row.dim == dim and len(row.vector) == stored_size(dim)
        assert abs(float(np.linalg.norm(as_vector(row))) - 1) < 1e-4


@pytest.mark.slow
def test_killed_at_any_moment_and_resumed_nothing_is_lost_or_doubled(db_url, catalogue_env, tmp_path,
                                                                     trained_clip_dir):
    env, factory, catalogue = catalogue_env(db_url, canvases=60, regions_per_canvas=4)
    encoder = resolve_image_encoder(str(trained_clip_dir), fallback=False).encoder
    go = tmp_path / "go"
    go.touch()
    args = ("embed", "--json", "--batch-size", "1", "--threads", "2", "--no-index")

    # As soon as it holds claims (nothing written yet), then midway through the queue.
    moments = [lambda: bool(claim_rows(factory)), lambda: _vector_count(factory) >= catalogue.items // 2]
    for moment in moments:
        _kill_when(_start(env, go, *args), moment)
        _assert_whole_and_unique(factory, encoder.dim)
    killed_at = _vector_count(factory)
    assert 0 < killed_at < catalogue.items

    # The re-run takes the dead workers' claims at once (their processes are gone), no waiting
    # for leases, and finishes the queue.
    report = _finish(_start(env, go, *args))
    assert report["embedded"] == catalogue.items - killed_at and report["failed"] == []
    assert_each_item_once(factory, catalogue, encoder.space_id, encoder.dim)

    # Each vector is what the model makes of its image (nothing written half or for another item).
    load = store_loader(catalogue.store, max(128, encoder.input_side))
    with session_scope(factory) as session:
        shas = dict(session.execute(select(Canvas.id, Canvas.derivative_sha256)).all())
        region_shas = dict(session.execute(select(Region.id, Region.derivative_sha256)).all())
    for row in vector_rows(factory)[::7]:
        sha = shas[row.canvas_id] if row.region_id is None else region_shas[row.region_id]
        image = load(WorkItem(0, row.canvas_id, row.region_id, sha, True, False))
        assert float(as_vector(row) @ encoder.encode_images([image])[0]) > 0.9999
