"""The embedding worker in-process, on the test database (SQLite or PostgreSQL): canvases and
regions through the real models (tiny trained CLIP, random SigLIP, handcrafted features), spaces
kept apart, stale vectors replaced, failures recorded, claims honoured."""
from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy import select, update

from manuscripts_search.store.claims import ClaimQueue, clear_failures, new_worker_id, worker_is_gone
from manuscripts_search.store.db import write_transaction
from manuscripts_search.store.db import session_scope
from manuscripts_search.embedding.registry import recorded_spaces, resolve_image_encoder
from manuscripts_search.models import Embedding, EmbeddingClaim, HarvestError, PerceptualHash
from manuscripts_search.embedding.image_loading import store_loader
from manuscripts_search.embedding.worker import WorkerOptions, embed_pending, make_claim_queue
from tests.helpers.worker_catalogue import (as_vector, assert_each_item_once, build_catalogue, claim_rows, migrated_factory,
                                    shape_images, vector_rows)

OPTIONS = WorkerOptions(batch_size=4, threads=2, prefetch_batches=2)


@pytest.fixture
def factory(db_url):
    factory = migrated_factory(db_url)
    yield factory
    factory.kw["bind"].dispose()


@pytest.fixture
def clip(trained_clip_dir):
    return resolve_image_encoder(str(trained_clip_dir), fallback=False).encoder


def test_canvases_and_regions_are_embedded_once_with_model_id_and_revision(factory, tmp_path, clip):
    catalogue = build_catalogue(factory, tmp_path, shape_images(12), regions_per_canvas=2)
    ticks = []

    report = embed_pending(factory, clip, catalogue.store, OPTIONS, progress=ticks.append)

    assert (report.canvases, report.regions, report.hashed, report.failed) == (12, 24, 36, [])
    assert sum(ticks) == 36 and max(ticks) <= OPTIONS.batch_size
    assert_each_item_once(factory, catalogue, clip.space_id, clip.dim)
    rows = vector_rows(factory, clip.space_id)
    assert {(row.model_id, row.model_revision) for row in rows} == {(clip.model_id, clip.revision)}
    assert claim_rows(factory) == []
    with session_scope(factory) as session:
        assert session.scalar(select(PerceptualHash.id).limit(1)) is not None
        spaces = [(s.space, s.kind, s.dim, s.supports_text) for s in recorded_spaces(session)]
    assert spaces == [(clip.space_id, "vision-language", clip.dim, True)]

    # The stored vector is what the encoder makes of the derivative (decoded the worker's way).
    load = store_loader(catalogue.store, max(128, clip.input_side))
    canvas_rows = [row for row in rows if row.region_id is None]
    for row in canvas_rows[:4]:
        item = _item(row.canvas_id, catalogue)
        expected = clip.encode_images([load(item)])[0]
        assert float(as_vector(row) @ expected) > 0.9999

    # And it is good for retrieval: the trained model's text query ranks red circles first.
    query = clip.encode_texts(["a red circle"])[0]
    ranked = sorted(canvas_rows, key=lambda row: -float(as_vector(row) @ query))
    assert {catalogue.labels[row.canvas_id] for row in ranked[:1]} == {"red circle"}


def _item(canvas_id, catalogue):
    from manuscripts_search.store.claims import WorkItem
    from manuscripts_search.models import Canvas

    with session_scope(catalogue.factory) as session:
        sha = session.get(Canvas, canvas_id).derivative_sha256
    return WorkItem(0, canvas_id, None, sha, True, False)


def test_a_second_model_gets_its_own_space_and_reruns_do_nothing(factory, tmp_path, clip, random_siglip_dir):
    catalogue = build_catalogue(factory, tmp_path, shape_images(6), regions_per_canvas=2)
    siglip = resolve_image_encoder(str(random_siglip_dir), fallback=False).encoder
    assert siglip.space_id != clip.space_id

    first = embed_pending(factory, clip, catalogue.store, OPTIONS)
    second = embed_pending(factory, siglip, catalogue.store, OPTIONS)
    again = embed_pending(factory, clip, catalogue.store, OPTIONS)

    assert first.embedded == second.embedded == 18
    assert second.hashed == 0  # the images were hashed by the first run
    assert (again.embedded, again.hashed) == (0, 0)
    assert_each_item_once(factory, catalogue, clip.space_id, clip.dim)
    assert_each_item_once(factory, catalogue, siglip.space_id, siglip.dim)
    with session_scope(factory) as session:
        assert {s.space: s.dim for s in recorded_spaces(session)} == {clip.space_id: clip.dim,
                                                                      siglip.space_id: siglip.dim}


def test_a_stale_vector_is_replaced_under_a_new_row_id(factory, tmp_path, clip):
    catalogue = build_catalogue(factory, tmp_path, shape_images(4))
    embed_pending(factory, clip, catalogue.store, OPTIONS)
    old = {row.canvas_id: row.id for row in vector_rows(factory, clip.space_id)}
    changed = catalogue.canvas_ids[1]
    with session_scope(factory) as session:
        session.execute(update(Embedding).where(Embedding.canvas_id == changed).values(stale=True))

    report = embed_pending(factory, clip, catalogue.store, OPTIONS)

    assert report.canvases == 1
    new = {row.canvas_id: row.id for row in vector_rows(factory, clip.space_id)}
    assert new[changed] > max(old.values())
    assert {cid: rid for cid, rid in new.items() if cid != changed} == \
        {cid: rid for cid, rid in old.items() if cid != changed}
    assert_each_item_once(factory, catalogue, clip.space_id, clip.dim)


def test_an_unreadable_image_is_recorded_and_waits_for_its_retry_time(factory, tmp_path):
    handcrafted = resolve_image_encoder("handcrafted").encoder
    catalogue = build_catalogue(factory, tmp_path, shape_images(5))
    broken = catalogue.canvas_ids[2]
    with session_scope(factory) as session:
        from manuscripts_search.models import Canvas

        sha = session.get(Canvas, broken).derivative_sha256
    catalogue.store.path_for(sha).write_bytes(b"\xff\xd8 this is not a JPEG any more")

    report = embed_pending(factory, handcrafted, catalogue.store, OPTIONS)

    assert report.canvases == 4
    assert [(kind, item) for kind, item, _ in report.failed] == [("canvas", broken)]
    assert "cannot read the canvas image" in report.failed[0][2]
    with session_scope(factory) as session:
        errors = session.scalars(select(HarvestError).where(HarvestError.stage == "embed")).all()
        assert [(e.canvas_id, "cannot read" in e.message) for e in errors] == [(broken, True)]
    (claim,) = claim_rows(factory)
    assert claim.worker_id is None and claim.attempts == 1 and claim.last_error

    assert embed_pending(factory, handcrafted, catalogue.store, OPTIONS).failed == []  # not yet again
    assert clear_failures(factory, handcrafted.space_id) == 1
    assert len(embed_pending(factory, handcrafted, catalogue.store, OPTIONS).failed) == 1


def test_live_claims_of_other_workers_are_left_alone_and_expired_ones_retaken(factory, tmp_path):
    handcrafted = resolve_image_encoder("handcrafted").encoder
    catalogue = build_catalogue(factory, tmp_path, shape_images(4))
    held, expired, orphaned, free = catalogue.canvas_ids
    far_future = time.time() + 3600
    with write_transaction(factory) as session:
        session.add_all([
            EmbeddingClaim(space=handcrafted.space_id, canvas_id=held, worker_id="elsewhere:1:1:a",
                           lease_until=far_future),
            EmbeddingClaim(space=handcrafted.space_id, canvas_id=expired, worker_id="elsewhere:2:1:b",
                           lease_until=time.time() - 1),
            # A process of this host that is gone: its claim is taken at once, lease or not.
            EmbeddingClaim(space=handcrafted.space_id, canvas_id=orphaned, worker_id=_gone_worker_id(),
                           lease_until=far_future)])

    report = embed_pending(factory, handcrafted, catalogue.store, OPTIONS)

    assert report.canvases == 3
    assert {row.canvas_id for row in vector_rows(factory)} == {expired, orphaned, free}
    assert [(c.canvas_id, c.worker_id) for c in claim_rows(factory)] == [(held, "elsewhere:1:1:a")]

    with write_transaction(factory) as session:  # the other worker died; its lease ran out
        session.execute(update(EmbeddingClaim).values(lease_until=time.time() - 1))
    assert embed_pending(factory, handcrafted, catalogue.store, OPTIONS).canvases == 1
    assert_each_item_once(factory, catalogue, handcrafted.space_id, handcrafted.dim)


def _gone_worker_id() -> str:
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "from manuscripts_search.store.claims import new_worker_id; "
                               "print(new_worker_id())"], capture_output=True, text=True, check=True)
    worker_id = finished.stdout.strip()
    assert worker_is_gone(worker_id) and not worker_is_gone(new_worker_id())
    return worker_id


def test_a_worker_whose_lease_ran_out_cannot_write_over_the_one_that_took_over(factory, tmp_path):
    handcrafted = resolve_image_encoder("handcrafted").encoder
    catalogue = build_catalogue(factory, tmp_path, shape_images(3))
    slow = ClaimQueue(factory, handcrafted.space_id, "elsewhere:9:1:slow", lease_seconds=3600)
    claimed = slow.claim(10)
    assert [item.canvas_id for item in claimed] == catalogue.canvas_ids
    assert ClaimQueue(factory, handcrafted.space_id, "elsewhere:8:1:x").claim(10) == []  # all held
    # The lease runs out by writing its end into the past, not by sleeping past a short lease: a
    # loaded machine could take longer than such a lease between the two claims above (it did once).
    with write_transaction(factory) as session:
        session.execute(update(EmbeddingClaim).values(lease_until=time.time() - 1))

    report = embed_pending(factory, handcrafted, catalogue.store, OPTIONS)  # takes the expired claims

    assert report.canvases == 3
    with write_transaction(factory) as session:
        assert slow.take_ownership(session, [item.claim_id for item in claimed]) == set()
    assert_each_item_once(factory, catalogue, handcrafted.space_id, handcrafted.dim)


def test_a_claim_made_from_an_older_view_writes_neither_vector_nor_hashes_again(factory, tmp_path):
    """On PostgreSQL a worker can read an item as pending just before another worker's write of it
    commits, and claim it once that claim is gone: its batch must then add nothing."""
    from manuscripts_search.store.claims import WorkItem
    from manuscripts_search.models import EmbeddingClaim
    from manuscripts_search.embedding.perceptual_hashes import image_hashes
    from manuscripts_search.embedding.worker import EmbedReport, _Result, write_batch

    handcrafted = resolve_image_encoder("handcrafted").encoder
    catalogue = build_catalogue(factory, tmp_path, shape_images(2))
    first = embed_pending(factory, handcrafted, catalogue.store, OPTIONS)
    assert (first.canvases, first.hashed) == (2, 2)

    late = ClaimQueue(factory, handcrafted.space_id, "elsewhere:7:1:late")
    canvas_id = catalogue.canvas_ids[0]
    with write_transaction(factory) as session:  # the claim it inserted from its older view
        claim = EmbeddingClaim(space=handcrafted.space_id, canvas_id=canvas_id, worker_id=late.worker_id,
                               lease_until=time.time() + 60, attempts=0)
        session.add(claim)
        session.flush()
        item = WorkItem(claim.id, canvas_id, None, _item(canvas_id, catalogue).derivative_sha256, True, True)
    image = store_loader(catalogue.store, 128)(item)
    late_result = _Result(item, hashes=image_hashes(image), vector=handcrafted.encode_images([image])[0])
    report = EmbedReport(space=handcrafted.space_id, worker_id=late.worker_id)

    write_batch(factory, late, handcrafted, [late_result], 3600, report)

    assert (report.embedded, report.hashed, report.skipped, report.failed) == (0, 0, 0, [])
    assert_each_item_once(factory, catalogue, handcrafted.space_id, handcrafted.dim)
    assert claim_rows(factory) == []


def test_limit_and_the_pending_count(factory, tmp_path):
    handcrafted = resolve_image_encoder("handcrafted").encoder
    catalogue = build_catalogue(factory, tmp_path, shape_images(5), regions_per_canvas=2)
    options = WorkerOptions(batch_size=2, threads=1, limit=4)
    queue = make_claim_queue(factory, handcrafted, options)
    assert queue.count_pending() == {"canvas": 5, "region": 10}

    report = embed_pending(factory, handcrafted, catalogue.store, options, claims=queue)

    assert report.embedded == 4 and claim_rows(factory) == []
    assert make_claim_queue(factory, handcrafted, options).count_pending() == {"canvas": 1, "region": 10}
    no_regions = WorkerOptions(regions=False, hashes=False)
    assert embed_pending(factory, handcrafted, catalogue.store, no_regions).embedded == 1
    assert make_claim_queue(factory, handcrafted, no_regions).count_pending() == {"canvas": 0}
    # With hashes on, that canvas still needs its perceptual hash, and gets only that.
    assert make_claim_queue(factory, handcrafted, OPTIONS).count_pending() == {"canvas": 1, "region": 10}
    only_hash = embed_pending(factory, handcrafted, catalogue.store, WorkerOptions(regions=False))
    assert (only_hash.embedded, only_hash.hashed) == (0, 1)


def test_worker_options_are_checked():
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        WorkerOptions(batch_size=0)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        WorkerOptions(limit=0)


def test_fp16_is_refused_on_cpu_and_bf16_stays_close(trained_clip_dir):
    encoder = resolve_image_encoder(str(trained_clip_dir), device="cpu", fallback=False).encoder
    from tests.helpers.model_factory import render_shape

    images = [render_shape("blue", "square", size=64, seed=seed) for seed in range(3)]
    exact = encoder.encode_prepared([encoder.prepare_image(image) for image in images])
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        encoder.configure_inference("fp16")
    encoder.configure_inference("bf16")
    approximate = encoder.encode_prepared([encoder.prepare_image(image) for image in images])
    assert approximate.dtype == np.float32
    assert np.min(np.sum(exact * approximate, axis=1)) > 0.99
    assert np.allclose(exact, encoder.encode_images(images), atol=1e-5)  # fp32 path = encode_images
