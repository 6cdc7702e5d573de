"""The harvester against a server that misbehaves in every way real ones do: each failure is
recorded against its URL with a readable reason, the good documents of the same run are stored,
and nothing loops or hangs."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from harvest.http import Fetcher, FetchError
from harvest.manifests import HarvestOptions, harvest_sources
from harvest.politeness import PolitenessPolicy, backoff_delay, parse_retry_after
from manuscripts_search.store.db import session_scope
from manuscripts_search.models import Canvas, Collection, CollectionMembership, HarvestError, Manifest
from tests.helpers.scripted_server import Reply, ScriptedServer, json_reply, json_response


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        yield scripted


def manifest(base: str, name: str, canvases: int = 2) -> dict:
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/{name}",
            "type": "Manifest", "label": {"en": [name]},
            "items": [{"id": f"{base}/{name}/canvas/{i}", "type": "Canvas", "width": 100, "height": 150,
                       "items": [{"id": f"{base}/{name}/page/{i}", "type": "AnnotationPage", "items": [{
                           "id": f"{base}/{name}/anno/{i}", "type": "Annotation", "motivation": "painting",
                           "target": f"{base}/{name}/canvas/{i}",
                           "body": {"id": f"{base}/img/{name}-{i}.jpg", "type": "Image",
                                    "format": "image/jpeg"}}]}]}
                      for i in range(canvases)]}


def fetcher(**overrides) -> Fetcher:
    options = {"timeout": 0.5, "retries": 1, "max_bytes": 200_000, "total_timeout": 2.0,
               "policy": PolitenessPolicy(max_per_host=4, backoff_base=0.05, backoff_max=0.2, max_retry_after=1.5)}
    options.update(overrides)
    return Fetcher("manuscripts-search-tests/1.0", **options)


def sequence(*replies: Reply):
    """A route answering with ``replies`` in turn, repeating the last one."""
    state = {"n": 0}

    def route(_request):
        reply = replies[min(state["n"], len(replies) - 1)]
        state["n"] += 1
        return reply

    return route


def test_every_fault_is_recorded_and_the_run_goes_on(server, session_factory):
    base = server.base_url
    good = server.add_json("/good.json", manifest(base, "good.json"))
    flaky = server.add("/flaky.json", sequence(Reply(500, b"oops"), json_response(manifest(base, "flaky.json"))))
    broken = server.add("/broken.json", lambda _r: Reply(500, b"down for maintenance"))
    polite = server.add("/polite.json", sequence(Reply(429, b"slow down", {"Retry-After": "1"}),
                                                 json_response(manifest(base, "polite.json"))))
    go_away = server.add("/go-away.json", lambda _r: Reply(503, b"", {"Retry-After": "3600"}))
    slow = server.add("/slow.json", lambda _r: Reply(200, b"{}", {"Content-Type": "application/json"}, delay=3))
    drip = server.add("/drip.json", lambda _r: Reply(200, b'{"id": "x", "type": "Manifest", "items": []}' * 4,
                                                   {"Content-Type": "application/json"}, drip=0.05))
    body = json_response(manifest(base, "cut.json")).body
    cut = server.add("/cut.json", lambda _r: Reply(200, body, {"Content-Type": "application/json"},
                                                   truncate_to=len(body) // 2))
    cut_unannounced = server.add("/cut2.json", lambda _r: Reply(200, body[: len(body) // 2],
                                                                {"Content-Type": "application/json"},
                                                                omit_length=True))
    server.add("/loop-a.json", lambda _r: Reply(302, b"", {"Location": f"{base}/loop-b.json"}))
    server.add("/loop-b.json", lambda _r: Reply(301, b"", {"Location": "/loop-a.json"}))
    loop = base + "/loop-a.json"
    for hop in range(8):
        server.add(f"/hop{hop}.json", lambda _r, hop=hop: Reply(302, b"", {"Location": f"/hop{hop + 1}.json"}))
    hops = base + "/hop0.json"
    huge = server.add("/huge.json", lambda _r: Reply(200, b" " * 300_000, {"Content-Type": "application/json"}))
    huge_unannounced = server.add("/huge2.json", lambda _r: Reply(200, b"[" + b"0," * 150_000 + b"0]",
                                                                  {"Content-Type": "application/json"},
                                                                  omit_length=True))
    html = server.add("/html.json", lambda _r: Reply(200, b"<html><body>Sign in</body></html>",
                                                     {"Content-Type": "text/html; charset=utf-8"}))
    missing = base + "/missing.json"
    not_iiif = server.add_json("/not-iiif.json", {"hello": "world"})
    collection = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/collection.json",
                  "type": "Collection", "label": {"en": ["everything"]},
                  "items": [{"id": url, "type": "Manifest"} for url in (
                      good, flaky, broken, polite, go_away, slow, drip, cut, cut_unannounced, loop, hops, huge,
                      huge_unannounced, html, missing, not_iiif)]
                  + [{"id": f"{base}/collection.json", "type": "Collection"},  # itself
                     {"id": f"{base}/other.json", "type": "Collection"}]}
    other = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/other.json",
             "type": "Collection", "label": {"en": ["points back"]},
             "items": [{"id": f"{base}/collection.json", "type": "Collection"},
                       {"id": good, "type": "Manifest"}]}
    server.add_json("/collection.json", collection)
    server.add_json("/other.json", other)

    started = time.monotonic()
    report = harvest_sources([f"{base}/collection.json"], session_factory, fetcher(),
                             options=HarvestOptions(workers=8))
    elapsed = time.monotonic() - started
    reasons = dict(report.failures)

    assert sorted(report.manifests) == sorted([good, flaky, polite])
    assert reasons[broken] == "HTTP 500 (gave up after 2 attempts)"
    assert "retry after 3600 s" in reasons[go_away]
    assert reasons[slow].startswith("read timed out")
    assert reasons[drip] == "response took longer than 2 s"
    assert reasons[cut].startswith("connection failed while reading: connection closed before the whole body")
    assert reasons[cut_unannounced].startswith("invalid JSON")
    assert reasons[loop].startswith("redirect loop: ") and reasons[loop].count("loop-a.json") == 2
    assert reasons[hops].startswith("more than 5 redirects")
    assert reasons[huge] == "response of 300000 bytes exceeds the 200000-byte limit"
    assert reasons[huge_unannounced] == "response exceeds the 200000-byte limit"
    assert reasons[html] == "wrong content type text/html (expected JSON)"
    assert reasons[missing] == "HTTP 404 (not found)"
    assert reasons[not_iiif].startswith("not a IIIF Manifest or Collection")
    assert len(report.failures) == 13  # nothing else failed, nothing twice

    # Each document was asked for once (retries aside), the self-references cost nothing.
    assert server.count("/collection.json") == 1 and server.count("/other.json") == 1
    assert server.count("/good.json") == 1
    assert server.count("/flaky.json") == 2 and server.count("/broken.json") == 2
    assert server.count("/go-away.json") == 1  # an hour's wait is not waited for
    waits = [r.at for r in server.requests if r.path == "/polite.json"]
    assert len(waits) == 2 and waits[1] - waits[0] >= 0.95  # Retry-After honoured
    assert elapsed < 20  # nothing waited for the slow, dripping or far-off Retry-After responses

    with session_scope(session_factory) as session:
        rows = {m.url: m for m in session.scalars(select(Manifest))}
        assert rows[good].error is None and rows[good].canvas_count == 2
        assert rows[html].error == "fetch failed: wrong content type text/html (expected JSON)"
        assert rows[not_iiif].error.startswith("not usable IIIF: not a IIIF Manifest or Collection")
        assert rows[missing].error == "fetch failed: HTTP 404 (not found)" and rows[missing].http_status == 404
        assert session.scalar(select(func.count()).select_from(Canvas)) == 6
        errors = {e.url for e in session.scalars(select(HarvestError))}
        assert set(reasons) <= errors
        both = session.scalars(select(Collection.iiif_id)).all()
        assert sorted(both) == [f"{base}/collection.json", f"{base}/other.json"]
        memberships = session.execute(select(Collection.iiif_id, Manifest.url)
                                      .join(CollectionMembership, CollectionMembership.collection_id == Collection.id)
                                      .join(Manifest, Manifest.id == CollectionMembership.manifest_id)).all()
        assert (f"{base}/other.json", good) in memberships and (f"{base}/collection.json", good) in memberships


def test_fetcher_refuses_urls_the_guard_rejects_including_redirect_targets(server):
    server.add("/out.json", lambda _r: Reply(302, b"", {"Location": "http://example.invalid/manifest.json"}))
    server.add_json("/in.json", {"ok": True})

    def guard(url):
        if "127.0.0.1" not in url:
            raise ValueError("only the test server may be contacted")

    client = fetcher(url_guard=guard)
    assert client.get(server.url("/in.json"), expect="json").status == 200
    with pytest.raises(FetchError, match="refused: only the test server may be contacted"):
        client.get(server.url("/out.json"))
    with pytest.raises(FetchError, match="unsupported URL scheme 'ftp'"):
        client.get("ftp://127.0.0.1/x.json")


def test_user_agent_and_conditional_headers_are_sent(server):
    server.add("/m.json", json_reply({"id": "x"}))
    client = fetcher()
    first = client.get(server.url("/m.json"), expect="json")
    again = client.get(server.url("/m.json"), expect="json", etag=first.etag,
                       last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
    assert again.not_modified and again.body == b""
    sent = server.requests[-1].headers
    assert sent["user-agent"] == "manuscripts-search-tests/1.0"
    assert sent["if-none-match"] == first.etag and sent["if-modified-since"].startswith("Wed, 21 Oct 2015")
    assert "gzip" in sent["accept-encoding"] and "application/ld+json" in sent["accept"]


def test_per_host_concurrency_is_capped(server):
    in_flight, peak = [0], [0]
    import threading

    lock = threading.Lock()

    def slow_route(_request):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.15)
        with lock:
            in_flight[0] -= 1
        return Reply(200, b"{}", {"Content-Type": "application/json"})

    for i in range(12):
        server.add(f"/p{i}.json", slow_route)
    client = fetcher(policy=PolitenessPolicy(max_per_host=3))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda i: client.get(server.url(f"/p{i}.json")), range(12)))
    assert peak[0] == 3


def test_rate_limit_spaces_request_starts(server):
    server.add_json("/r.json", {"ok": 1})
    client = fetcher(policy=PolitenessPolicy(max_per_host=8, requests_per_second=10))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _i: client.get(server.url("/r.json")), range(6)))
    starts = sorted(r.at for r in server.requests)
    # 10 per second: six starts span at least 0.5 s (measured on arrival, so allow for jitter);
    # without the limit all six arrive within a few milliseconds.
    assert starts[-1] - starts[0] >= 0.4


def test_backoff_and_retry_after_parsing():
    import random

    rng = random.Random(7)
    delays = [backoff_delay(attempt, 0.5, 4.0, rng) for attempt in range(6)]
    for attempt, delay in enumerate(delays):
        ceiling = min(4.0, 0.5 * 2 ** attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == pytest.approx(60)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    with pytest.raises(ValueError, match="max_per_host"):
        PolitenessPolicy(max_per_host=0)
