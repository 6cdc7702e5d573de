"""The embedding worker with its decoding in processes (``decode_processes``) instead of threads:
the same vectors and hashes item for item, unreadable images recorded as with threads, and a
decoding process that cannot start stops the run with a clear message and nothing half-written."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import delete

from manuscripts_search.cli import cli
from manuscripts_search.store.db import session_scope
from manuscripts_search.embedding.registry import preparer_source, resolve_image_encoder
from manuscripts_search.models import Canvas, Embedding, PerceptualHash
from manuscripts_search.embedding.worker import WorkerOptions, embed_pending
from tests.helpers.worker_catalogue import assert_each_item_once, build_catalogue, claim_rows, hashes_by_item, \
    migrated_factory, shape_images, vector_rows, vectors_by_item


@pytest.fixture
def factory(db_url):
    factory = migrated_factory(db_url)
    yield factory
    factory.kw["bind"].dispose()


def _forget_everything(factory):
    with session_scope(factory) as session:
        session.execute(delete(Embedding))
        session.execute(delete(PerceptualHash))


def test_processes_give_the_threads_vectors_andhashes_by_item(factory, tmp_path, trained_clip_dir):
    clip = resolve_image_encoder(str(trained_clip_dir), fallback=False).encoder
    catalogue = build_catalogue(factory, tmp_path, shape_images(10), regions_per_canvas=2)
    broken = catalogue.canvas_ids[3]
    with session_scope(factory) as session:
        sha = session.get(Canvas, broken).derivative_sha256
    catalogue.store.path_for(sha).write_bytes(b"\xff\xd8 not a JPEG any more")

    threads = embed_pending(factory, clip, catalogue.store, WorkerOptions(batch_size=4, threads=2))
    by_threads, hashes_by_threads = vectors_by_item(factory, clip.space_id), hashes_by_item(factory)
    _forget_everything(factory)
    with session_scope(factory) as session:  # the broken canvas may be tried again at once
        from manuscripts_search.models import EmbeddingClaim

        session.execute(delete(EmbeddingClaim))

    processes = embed_pending(factory, clip, catalogue.store, WorkerOptions(batch_size=4, decode_processes=2))

    assert (processes.canvases, processes.regions) == (threads.canvases, threads.regions) == (9, 20)
    assert [(kind, item) for kind, item, _ in processes.failed] == [("canvas", broken)]
    assert "cannot read the canvas image" in processes.failed[0][2]
    by_processes = vectors_by_item(factory, clip.space_id)
    assert by_processes.keys() == by_threads.keys() and len(by_processes) == 29
    assert max(float(np.max(np.abs(by_processes[key] - by_threads[key]))) for key in by_threads) < 1e-5
    assert hashes_by_item(factory) == hashes_by_threads
    (claim,) = claim_rows(factory)  # only the broken canvas's failure is left
    assert claim.canvas_id == broken and claim.worker_id is None


def test_the_handcrafted_features_decode_in_processes_too(factory, tmp_path):
    handcrafted = resolve_image_encoder("handcrafted").encoder
    assert preparer_source(handcrafted) == "handcrafted"
    catalogue = build_catalogue(factory, tmp_path, shape_images(6))
    report = embed_pending(factory, handcrafted, catalogue.store, WorkerOptions(batch_size=4, decode_processes=1))
    assert (report.canvases, report.failed) == (6, [])
    assert_each_item_once(factory, catalogue, handcrafted.space_id, handcrafted.dim)


def test_a_decoding_process_that_cannot_start_stops_the_run_cleanly(factory, tmp_path, trained_clip_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained_clip_dir, model)
    clip = resolve_image_encoder(str(model), fallback=False).encoder
    catalogue = build_catalogue(factory, tmp_path, shape_images(4))
    # The processes load the image processor from the model directory: gone since the model loaded.
    for name in model.glob("*processor*"):
        name.unlink()
    with pytest.raises(RuntimeError, match="a decoding process failed .*--decode-processes 0"):
        embed_pending(factory, clip, catalogue.store, WorkerOptions(batch_size=4, decode_processes=1))
    assert vector_rows(factory) == []
    assert all(claim.worker_id is None for claim in claim_rows(factory))  # given back at once


def test_a_custom_loader_needs_threads(factory, tmp_path):
    handcrafted = resolve_image_encoder("handcrafted").encoder
    catalogue = build_catalogue(factory, tmp_path, shape_images(1))
    with pytest.raises(ValueError, match="custom image loader"):
        embed_pending(factory, handcrafted, catalogue.store, WorkerOptions(decode_processes=1),
                      load_image=lambda item: None)
    with pytest.raises(ValueError, match="decode_processes must be 0 or more"):
        WorkerOptions(decode_processes=-1)


def test_embed_takes_decode_processes_on_the_command_line(msearch_env, tmp_path):
    from pathlib import Path

    factory = migrated_factory(msearch_env["MSEARCH_DB"])
    build_catalogue(factory, Path(msearch_env["MSEARCH_DATA_DIR"]), shape_images(5))
    result = CliRunner().invoke(cli, ["embed", "--decode-processes", "2", "--json"],
                                env={**msearch_env, "MSEARCH_MODEL": "handcrafted"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert '"embedded": 5' in result.stdout
    factory.kw["bind"].dispose()
