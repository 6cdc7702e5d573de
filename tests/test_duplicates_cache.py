"""Near-duplicate search keeps the stored hashes in memory between queries: read once, re-read
when this process writes hashes (at once) or another one does (within the check interval)."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import delete, update

from manuscripts_search.embedding import perceptual_hashes
from manuscripts_search.store.db import session_scope
from manuscripts_search.models import PerceptualHash
from manuscripts_search.embedding.perceptual_hashes import find_near_duplicates, image_hashes, store_hashes
from tests.helpers.model_factory import render_shape
from tests.helpers.worker_catalogue import build_catalogue, migrated_factory


@pytest.fixture
def factory(db_url):
    factory = migrated_factory(db_url)
    yield factory
    factory.kw["bind"].dispose()


def _duplicates(factory, canvas_id):
    with session_scope(factory) as session:
        return [hit.canvas_id for hit in find_near_duplicates(session, canvas_id=canvas_id)]


def test_hashes_are_read_once_and_again_after_any_change(factory, tmp_path, monkeypatch):
    page = render_shape("red", "circle", size=200, seed=1)
    images = [("page", page), ("rescan", page.resize((150, 150))),
              ("other", render_shape("blue", "square", size=200, seed=2)),
              ("another", render_shape("green", "triangle", size=200, seed=3))]
    catalogue = build_catalogue(factory, tmp_path, images)
    page_id, rescan_id, other_id, another_id = catalogue.canvas_ids
    with session_scope(factory) as session:
        for canvas_id, (_, image) in zip(catalogue.canvas_ids, images):
            store_hashes(session, canvas_id, None, f"{canvas_id:064x}", image_hashes(image))

    reads = perceptual_hashes.loads
    assert _duplicates(factory, page_id) == [rescan_id]
    assert _duplicates(factory, rescan_id) == [page_id]
    assert _duplicates(factory, other_id) == []
    assert perceptual_hashes.loads == reads + 1  # three queries, one read

    # A write of this process is seen at once: the blue square's hashes become the page's.
    with session_scope(factory) as session:
        store_hashes(session, other_id, None, "f" * 64, image_hashes(page))
    assert _duplicates(factory, page_id) == [other_id, rescan_id]  # closest first: an exact copy
    assert perceptual_hashes.loads == reads + 2

    # Another process's write (here: SQL behind the cache's back) is seen once the check is due.
    words = perceptual_hashes.pack_hashes(image_hashes(page).crop_hashes)
    with session_scope(factory) as session:
        session.execute(update(PerceptualHash).where(PerceptualHash.canvas_id == another_id)
                        .values(crop_hashes=words, created_at=perceptual_hashes.utcnow()))
    assert _duplicates(factory, page_id) == [other_id, rescan_id]  # not yet: checked a moment ago
    monkeypatch.setattr(perceptual_hashes, "CHECK_INTERVAL_S", 0.0)
    assert sorted(_duplicates(factory, page_id)) == sorted([rescan_id, other_id, another_id])
    # Deleted rows go too (a canvas removed by the admin takes its hashes with it).
    with session_scope(factory) as session:
        session.execute(delete(PerceptualHash).where(PerceptualHash.canvas_id == rescan_id))
    assert sorted(_duplicates(factory, page_id)) == sorted([other_id, another_id])
    assert perceptual_hashes.loads == reads + 4


def test_chunked_distances_match_the_pairwise_definition():
    rng = np.random.default_rng(7)
    hashes = [tuple(int(v) for v in rng.integers(0, 2**63, size=perceptual_hashes.CROP_VARIANTS)) for _ in range(50)]
    stored = perceptual_hashes.hashes_as_words([perceptual_hashes.pack_hashes(h) for h in hashes])
    query = stored[3]
    distances = perceptual_hashes.crop_distances(query, stored, chunk=7)
    assert distances[3] == 0
    assert list(distances) == [perceptual_hashes.crop_distance(hashes[3], other) for other in hashes]
