"""The crash test of bench/crash_test.py, short: three trials that SIGKILL real `msearch` processes
(harvest, embed, index rebuild) mid-run, restart them and check that every manifest and canvas is
present once, every canvas embedded exactly once per model, and `msearch index verify` clean —
on the suite's database (SQLite, and PostgreSQL in the second pass). The full run is 50 trials
(see docs/production.md for its figures)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.crash_test import CrashTest
from manuscripts_search.store.db import make_engine
from manuscripts_search.models import Embedding


@pytest.mark.slow
def test_three_crash_trials_lose_and_duplicate_nothing(tmp_path, db_url, random_clip_dir, random_siglip_dir):
    crash = CrashTest(tmp_path, db_url, Path(random_clip_dir), Path(random_siglip_dir), seed=3, verbose=False)
    summary = crash.run(trials=int(os.environ.get("MSEARCH_CRASH_TRIALS", "3")))
    assert summary["failed_trials"] == 0, [o for o in summary["outcomes"] if o["problems"]]
    assert summary["killed"] >= 2, summary["outcomes"]  # most victims really died mid-run

    # The checks can fail: remove one vector and tear one index file, and both are reported.
    assert crash.check(crash.expected) == []
    engine = make_engine(db_url)
    with engine.begin() as connection:
        victim = connection.execute(sa.select(Embedding.id).limit(1)).scalar()
        connection.execute(sa.delete(Embedding).where(Embedding.id == victim))
    engine.dispose()
    assert any("embedded" in problem for problem in crash.check(crash.expected))
    graph = next(crash.index_dir.glob("*.hnsw"))
    graph.write_bytes(graph.read_bytes()[:100])
    assert crash.torn_indexes()
