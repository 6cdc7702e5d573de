"""A real `msearch harvest` process killed with SIGKILL in the middle of a crawl, then run again:
it resumes, stores every manifest exactly once and does not fetch again what was complete."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.models import Canvas, CollectionMembership, CrawlItem, Manifest
from tests.helpers.scripted_server import ScriptedServer

MANIFESTS = 80
REPO = Path(__file__).resolve().parents[1]


def manifest(base: str, index: int) -> dict:
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/m/{index}.json",
            "type": "Manifest", "label": {"en": [f"volume {index}"]},
            "items": [{"id": f"{base}/m/{index}/c{c}", "type": "Canvas", "width": 100, "height": 100}
                      for c in range(2)]}


def msearch(env: dict, *args: str) -> subprocess.Popen:
    entry = "import sys; from manuscripts_search.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", entry, *args], cwd=REPO,
                            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored_urls(factory) -> set[str]:
    with session_scope(factory) as session:
        return set(session.scalars(select(Manifest.url).where(Manifest.error.is_(None))))


def test_sigkill_mid_crawl_then_resume(msearch_env):
    with ScriptedServer(latency=0.12) as server:
        base = server.base_url
        for index in range(MANIFESTS):
            server.add_json(f"/m/{index}.json", manifest(base, index))
        collection = server.add_json("/collection.json", {
            "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/collection.json",
            "type": "Collection", "label": {"en": ["a long shelf"]},
            "items": [{"id": f"{base}/m/{i}.json", "type": "Manifest"} for i in range(MANIFESTS)]})
        engine = make_engine(msearch_env["MSEARCH_DB"])
        upgrade_database(engine)  # so that the test can watch while the harvester writes
        factory = make_sessionmaker(engine)
        args = ("harvest", collection, "--no-images", "--json", "--workers", "4", "--no-progress")

        process = msearch(msearch_env, *args)
        deadline = time.monotonic() + 60
        while len(stored_urls(factory)) < 15:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "harvest made no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL
        complete = stored_urls(factory)
        assert 15 <= len(complete) < MANIFESTS, "killed too late to test anything"
        seen = len(server.requests)

        process = msearch(msearch_env, *args)
        output, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors
        report = json.loads(output)
        assert report["resumed"] is True and not report["failures"]

        after_kill = server.paths()[seen:]
        assert "/collection.json" not in after_kill  # done before the kill: not fetched again
        refetched = {f"{base}{path}" for path in after_kill} & complete
        assert not refetched, f"complete manifests fetched again: {sorted(refetched)[:5]}"
        assert len(after_kill) == MANIFESTS - len(complete)  # the rest, each once
        for index in range(MANIFESTS):
            assert 1 <= server.count(f"/m/{index}.json") <= 2  # twice only if in flight at the kill

    with session_scope(factory) as session:
        assert session.scalar(select(func.count()).select_from(Manifest)) == MANIFESTS
        assert session.scalar(select(func.count(func.distinct(Manifest.iiif_id)))) == MANIFESTS
        assert session.scalar(select(func.count()).select_from(Canvas)) == 2 * MANIFESTS
        assert session.scalar(select(func.count()).select_from(CollectionMembership)) == MANIFESTS
        items = session.execute(select(CrawlItem.url, CrawlItem.status)).all()
        assert len(items) == MANIFESTS + 1 and {status for _url, status in items} == {"done"}
    engine.dispose()
