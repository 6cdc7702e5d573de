"""Hostile input, each refused with a clear message: SSRF in every spelling (after DNS resolution
and on every redirect), oversized and over-deep JSON, gzip and image decompression bombs,
oversized uploads, over-long queries, and search floods (rate limit).

The servers are real (127.0.0.1 and 127.0.0.2); where a refusal is tested, a control with the
address allowed shows that the same request would otherwise have gone through.
"""
from __future__ import annotations

import gzip
import io
import json
import time

import pytest
from click.testing import CliRunner

from harvest.documents import FAILED, NOT_IIIF, process_task
from harvest.http import Fetcher, FetchError
from manuscripts_search.config import ConfigError, load_config
from manuscripts_search.iiif.json_limits import MAX_JSON_DEPTH, check_json_text, nesting_depth
from manuscripts_search.iiif.model import IIIFParseError
from manuscripts_search.iiif.presentation import parse_document
from manuscripts_search.netguard import AddressRefusedError, NetworkPolicy, check_url
from tests.helpers.images import png_claiming
from tests.helpers.scripted_server import Reply, ScriptedServer, json_reply
from tests.helpers.web_site import build_site, site_config

PUBLIC_ONLY = NetworkPolicy()
LOOPBACK_ONE = NetworkPolicy.parse("127.0.0.1")


def manifest_doc(base: str, name: str = "m", image_base: str | None = None) -> dict:
    image_base = image_base or base
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/{name}.json",
            "type": "Manifest", "label": {"en": [name]},
            "items": [{"id": f"{base}/{name}/c1", "type": "Canvas", "width": 10, "height": 10,
                       "items": [{"id": f"{base}/{name}/p1", "type": "AnnotationPage", "items": [{
                           "id": f"{base}/{name}/a1", "type": "Annotation", "motivation": "painting",
                           "target": f"{base}/{name}/c1",
                           "body": {"id": f"{image_base}/img.png", "type": "Image", "format": "image/png"}}]}]}]}


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        yield scripted


def fetcher(policy: NetworkPolicy, **options) -> Fetcher:
    return Fetcher("hostile-tests", timeout=2, retries=2, network_policy=policy, **options)


# -- SSRF -----------------------------------------------------------------------------------------

LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{port}/doc",
    "http://localhost:{port}/doc",  # a name, judged by what it resolves to
    "http://2130706433:{port}/doc",  # decimal
    "http://0x7f000001:{port}/doc",  # hexadecimal
    "http://0177.0.0.1:{port}/doc",  # octal
    "http://127.1:{port}/doc",  # short form
    "http://[::ffff:127.0.0.1]:{port}/doc",  # IPv4-mapped IPv6
    "http://LOCALHOST.:{port}/doc",  # upper case, trailing dot
]


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_refused_before_any_request(server, template):
    server.add_json("/doc", {"ok": True})
    url = template.format(port=server.url("").rsplit(":", 1)[1])
    with pytest.raises(FetchError, match="refused: .*loopback address") as refused:
        fetcher(PUBLIC_ONLY).get(url, expect="json")
    assert "MSEARCH_ALLOW_HOSTS" in refused.value.reason
    assert server.paths() == []  # not a single byte reached the server
    # Control: allowed explicitly, the very same URL is fetched (so the refusal was the policy's).
    allowing = NetworkPolicy.parse("127.0.0.1,localhost")
    if "::ffff" in template:
        allowing = NetworkPolicy.parse("127.0.0.1,::ffff:127.0.0.1")
    assert fetcher(allowing).get(url, expect="json").status == 200


@pytest.mark.parametrize("address, kind", [
    ("169.254.169.254", "link-local"),  # AWS / GCP / Azure metadata
    ("[fd00:ec2::254]", "private network"),  # AWS metadata over IPv6 (ULA)
    ("[fe80::1]", "link-local"),
    ("10.0.0.1", "private network"), ("172.16.5.4", "private network"), ("192.168.1.1", "private network"),
    ("100.64.0.1", "private network"),  # carrier-grade NAT
    ("[fc00::1]", "private network"), ("[::1]", "loopback"), ("0.0.0.0", "unspecified"),
    ("[::]", "unspecified"), ("224.0.0.1", "multicast"),
    ("[::ffff:169.254.169.254]", "link-local"), ("[::ffff:10.1.2.3]", "private network"),
    ("[64:ff9b::a9fe:a9fe]", "link-local"),  # NAT64 of the metadata address
    ("[2002:a9fe:a9fe::1]", "link-local"),  # 6to4 of the metadata address
    ("2852039166", "link-local"),  # 169.254.169.254 in decimal
    ("0xa9.0xfe.0xa9.0xfe", "link-local"),
    ("240.0.0.1", "reserved"),
])
def test_private_metadata_and_reserved_addresses_are_refused(address, kind):
    started = time.monotonic()
    with pytest.raises(FetchError, match=f"refused: .*{kind}"):
        fetcher(PUBLIC_ONLY).get(f"http://{address}/latest/meta-data/", expect="json")
    assert time.monotonic() - started < 1.5, "refused without trying to connect"


def test_private_networks_setting_opens_private_but_never_metadata():
    intranet = NetworkPolicy.parse(None, "1")
    intranet.check_address("iiif.intranet", "10.1.2.3")
    intranet.check_address("localhost", "127.0.0.1")
    for address in ("169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0"):
        with pytest.raises(AddressRefusedError):
            intranet.check_address("metadata", address)
    with pytest.raises(AddressRefusedError, match="private network"):
        PUBLIC_ONLY.check_address("iiif.intranet", "10.1.2.3")
    PUBLIC_ONLY.check_address("iiif.example.org", "93.184.215.14")  # a public address passes
    NetworkPolicy.parse("10.1.0.0/16").check_address("iiif.intranet", "10.1.2.3")
    with pytest.raises(AddressRefusedError):
        NetworkPolicy.parse("10.1.0.0/16").check_address("other.intranet", "10.2.0.1")


def test_check_url_for_image_urls_resolves_names():
    with pytest.raises(AddressRefusedError, match="localhost \\(127.0.0.1\\) is a loopback"):
        check_url("http://localhost/x.jpg", PUBLIC_ONLY)
    with pytest.raises(ValueError, match="not an http"):
        check_url("file:///etc/passwd", PUBLIC_ONLY)
    with pytest.raises(ValueError, match="not an http"):
        check_url("gopher://127.0.0.1:6379/_INFO", PUBLIC_ONLY)


def test_every_redirect_hop_is_checked():
    """127.0.0.1 is allowed, 127.0.0.2 is not: a redirect from one to the other is refused, and
    the second server never sees a request; a redirect to the metadata address likewise."""
    with ScriptedServer() as front, ScriptedServer(host="127.0.0.2") as inner:
        inner.add_json("/secret", {"secret": True})
        front.add("/to-inner", lambda _r: Reply(302, b"", {"Location": inner.url("/secret")}))
        front.add("/to-metadata", lambda _r: Reply(301, b"", {"Location": "http://169.254.169.254/latest/"}))
        front.add("/to-decimal", lambda _r: Reply(307, b"", {"Location": "http://2130706434:%s/secret"
                                                                      % inner.url("").rsplit(":", 1)[1]}))
        for path in ("/to-inner", "/to-decimal"):
            with pytest.raises(FetchError, match="refused: .*127.0.0.2.* loopback"):
                fetcher(LOOPBACK_ONE).get(front.url(path), expect="json")
        with pytest.raises(FetchError, match="refused: 169.254.169.254 is a link-local"):
            fetcher(LOOPBACK_ONE).get(front.url("/to-metadata"), expect="json")
        assert inner.paths() == []
        assert front.count("/to-inner") == 1, "a refusal is final, not retried"
        # Control: with 127.0.0.2 allowed too, the redirect is followed to the document.
        both = NetworkPolicy.parse("127.0.0.1,127.0.0.2")
        assert json.loads(fetcher(both).get(front.url("/to-inner"), expect="json").body) == {"secret": True}


def test_default_configuration_is_safe_and_settings_are_validated(monkeypatch):
    assert load_config({}).network_policy == NetworkPolicy()
    with pytest.raises(ConfigError, match="MSEARCH_ALLOW_PRIVATE_NETWORKS must be 0 or 1"):
        load_config({"MSEARCH_ALLOW_PRIVATE_NETWORKS": "perhaps"})
    with pytest.raises(ConfigError, match="MSEARCH_ALLOW_HOSTS: 'bad host!'"):
        load_config({"MSEARCH_ALLOW_HOSTS": "iiif.example.org, bad host!"})
    # A Fetcher made without a policy reads the environment, which is public-only when unset.
    monkeypatch.delenv("MSEARCH_ALLOW_HOSTS", raising=False)
    monkeypatch.delenv("MSEARCH_ALLOW_PRIVATE_NETWORKS", raising=False)
    assert Fetcher("t").network_policy == NetworkPolicy()


def test_harvest_cli_refuses_private_manifest_and_image_urls(server, msearch_env, monkeypatch):
    """Through the whole CLI with the default (safe) settings: the manifest on 127.0.0.1 is
    recorded as refused; allow-listed, its canvas image on the metadata address is refused."""
    from manuscripts_search.cli import cli

    server.add_json("/m.json", manifest_doc(server.base_url, image_base="http://169.254.169.254"))
    safe_env = {**msearch_env, "MSEARCH_ALLOW_HOSTS": ""}
    monkeypatch.delenv("MSEARCH_ALLOW_HOSTS", raising=False)
    result = CliRunner().invoke(cli, ["harvest", "--json", "--no-progress", server.url("/m.json")], env=safe_env)
    assert result.exit_code in (0, 1), result.output
    assert "loopback address" in result.output and "refused" in result.output
    assert server.paths() == []
    allowed_env = {**msearch_env, "MSEARCH_ALLOW_HOSTS": "127.0.0.1"}
    result = CliRunner().invoke(cli, ["harvest", "--json", "--no-progress", server.url("/m.json")], env=allowed_env)
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    [failure] = report["images"]["failures"]
    assert failure["reason"].startswith("image URL: refused: 169.254.169.254 is a link-local address")
    assert server.count("/m.json") == 1


# -- JSON size and depth --------------------------------------------------------------------------

def test_deep_and_huge_json_documents_are_refused_clearly():
    for deep in ("[" * 100_000 + "]" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000,
                 json.dumps({"type": "Manifest", "label": _nested(MAX_JSON_DEPTH + 5)})):
        with pytest.raises(IIIFParseError, match="levels deep; at most 100"):
            parse_document(deep)
    with pytest.raises(IIIFParseError, match="more than 100 levels"):
        parse_document({"type": "Manifest", "id": "https://x/m", "label": _nested(150)})
    with pytest.raises(IIIFParseError, match="exceeds the limit of 1000"):
        check_json_text("[" + "1," * 600 + "1]", max_chars=1000)
    # Brackets inside strings are text, not nesting; a real manifest's depth is far below the limit.
    assert nesting_depth('{"label": "' + "[" * 500 + '", "x": "\\"]]]"}') == 1
    ok = manifest_doc("https://example.org")
    ok["metadata"] = [{"label": {"en": ["deep but fine"]}, "value": {"en": [json.dumps(_nested(60))]}}]
    assert parse_document(json.dumps(ok)).canvases


def _nested(depth: int):
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def test_harvester_records_oversized_and_deep_documents_and_goes_on(server):
    from harvest.crawl_queue import DOCUMENT, CrawlTask

    server.add("/deep.json", json_reply(("[" * 50_000 + "]" * 50_000).encode()))
    server.add("/huge.json", json_reply(json.dumps({"type": "Manifest", "pad": "x" * 300_000}).encode()))
    server.add_json("/good.json", manifest_doc(server.base_url, "good"))
    client = fetcher(LOOPBACK_ONE, max_bytes=200_000)
    outcomes = {}
    for number, name in enumerate(("deep", "huge", "good")):
        url = server.url(f"/{name}.json")
        task = CrawlTask(item_id=number, url=url, kind=DOCUMENT, root_url=url, parent_url=None,
                         canvas_iiif_id=None, depth=0)
        outcomes[name] = process_task(task, client)
    assert outcomes["deep"].status == NOT_IIIF and "levels deep" in outcomes["deep"].error
    assert outcomes["huge"].status == FAILED and "exceeds the 200000-byte limit" in outcomes["huge"].error
    assert outcomes["good"].ok and outcomes["good"].parsed.canvases


def test_gzip_bomb_is_cut_off_at_the_size_limit(server):
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024), compresslevel=9)  # ~50 KB that inflates to 50 MB
    assert len(bomb) < 100_000
    server.add("/bomb.json", lambda _r: Reply(200, bomb, {"Content-Type": "application/json",
                                                         "Content-Encoding": "gzip"}))
    started = time.monotonic()
    with pytest.raises(FetchError, match="exceeds the 1000000-byte limit"):
        fetcher(LOOPBACK_ONE, max_bytes=1_000_000).get(server.url("/bomb.json"), expect="json")
    assert time.monotonic() - started < 5


# -- the web app: uploads, image URLs, query length, rate limit ---------------------------------------

@pytest.fixture
def indexed_site(tmp_path, db_url, trained_clip_dir, trained_clip_encoder):
    """The book of shapes (helpers/web_site.py) for one test: catalogue, model and index, so a
    search that gets past the checks is really answered."""
    return build_site(site_config(tmp_path / "data", trained_clip_dir, db_url), trained_clip_encoder)


@pytest.fixture
def web_app(indexed_site, make_app):
    """``web_app(**settings)``: an app on ``indexed_site`` with those Flask settings."""
    return lambda **settings: make_app(indexed_site.config, **settings)


def _error_message(response) -> str:
    return response.get_json()["error"]["message"]


def test_image_url_to_private_or_metadata_address_is_a_400(web_app):
    client = web_app().test_client()
    for url in ("http://169.254.169.254/latest/meta-data/iam.jpg", "http://127.0.0.1:9/x.jpg",
                "http://[::ffff:127.0.0.1]/x.jpg", "http://2130706433/x.jpg", "file:///etc/passwd",
                "gopher://127.0.0.1:6379/_x"):
        response = client.post("/api/search", data={"image_url": url})
        assert response.status_code == 400, (url, response.data[:300])
        assert "image" in _error_message(response).lower()


def test_upload_size_pixels_and_garbage_are_refused(web_app):
    client = web_app(MAX_CONTENT_LENGTH=1024 * 1024).test_client()
    # The body is built here: the test client would spool a large upload to a temporary file it never closes.
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + b"\xff" * (2 * 1024 * 1024) + b"\r\n--b0undary--\r\n")
    too_big = client.post("/api/search", data=body, content_type="multipart/form-data; boundary=b0undary")
    assert too_big.status_code == 413 and "too large" in _error_message(too_big)
    bomb = client.post("/api/search", data={"image": (io.BytesIO(png_claiming(30_000, 30_000)), "bomb.png")},
                       content_type="multipart/form-data")
    assert bomb.status_code == 400 and "pixels" in _error_message(bomb)
    garbage = client.post("/api/search", data={"image": (io.BytesIO(b"GIF89a" + b"\0" * 100), "x.gif")},
                          content_type="multipart/form-data")
    assert garbage.status_code == 400


def test_over_long_queries_are_400_not_500(web_app):
    client = web_app().test_client()
    response = client.get("/api/search", query_string={"q": "dragon " * 300})
    assert response.status_code == 400 and "too long" in _error_message(response)
    page = client.get("/search", query_string={"q": "x" * 5000})
    assert page.status_code == 400 and b"too long" in page.data
    for params, message in (({"q": "a", "k": "10" * 50}, "k must be a whole number from 1 to 100"),
                            ({"q": "a", "page": "-1"}, "page must be a whole number from 1"),
                            ({"q": "a", "k": "NaN"}, "k must be a whole number from 1 to 100"),
                            ({"like": "99999999999999999999999"}, "like must be a canvas id")):
        response = client.get("/api/search", query_string=params)
        assert response.status_code == 400 and message in _error_message(response), params
    # A NUL is a character like any other: the query is answered.
    assert client.get("/api/search", query_string={"q": "\x00"}).status_code == 200
    # Bytes that are not UTF-8 (a lone surrogate, an overlong NUL) in the raw query string: answered,
    # and what is echoed is text that encodes (no lone surrogate in the JSON).
    for raw in ("q=%ED%A0%80", "q=%C0%80", "q=%FF%FE"):
        response = client.get("/api/search?" + raw)
        assert response.status_code == 200, raw
        response.get_json()["query"].encode("utf-8")
    empty = client.get("/api/search?k=%00")  # no q at all
    assert empty.status_code == 400 and "The query is empty" in _error_message(empty)


def test_search_flood_gets_429_with_retry_after_per_client(web_app):
    from web import ratelimit

    app = web_app(RATELIMIT_SEARCH="6/minute", RATELIMIT_BURST=3)  # a token every 10 s: no refill mid-test
    ratelimit.init_app(app)  # a no-op when create_app already wired it
    client = app.test_client()
    codes = [client.get("/api/search", query_string={"q": "dragon"}).status_code for _ in range(4)]
    assert codes[:3] != [429] * 3 and codes[3] == 429, codes
    limited = client.get("/api/search", query_string={"q": "dragon"})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert "Too many searches" in _error_message(limited)
    page = client.get("/search", query_string={"q": "dragon"})
    assert page.status_code == 429 and b"Too many searches" in page.data
    # Another client is not affected, and neither are pages that are not searches.
    other = client.get("/api/search", query_string={"q": "dragon"}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert other.status_code != 429
    assert client.get("/api/stats").status_code == 200


def test_token_bucket_refills_at_the_rate():
    from web.ratelimit import TokenBuckets, parse_rate

    now = [0.0]
    buckets = TokenBuckets(rate=parse_rate("2/second"), burst=2, max_keys=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] = 0.5
    assert buckets.take("a") == 0.0
    for key in ("b", "c"):  # only the two most recent clients are remembered
        buckets.take(key)
    assert len(buckets._buckets) == 2
    assert parse_rate("off") is None and parse_rate("120/hour") == pytest.approx(1 / 30)
    for bad in ("fast", "10/fortnight", "-1/second", "nan/second"):
        with pytest.raises(ValueError, match="60/minute"):
            parse_rate(bad)


def test_forwarded_for_is_only_believed_from_trusted_proxies(web_app):
    from web import ratelimit

    # One token an hour: no refill between the first and third request, however slow the first search.
    app = web_app(RATELIMIT_SEARCH="1/hour", RATELIMIT_BURST=1, RATELIMIT_TRUSTED_PROXIES=1)
    ratelimit.init_app(app)
    client = app.test_client()
    first = client.get("/api/search", query_string={"q": "a"}, headers={"X-Forwarded-For": "198.51.100.1"})
    second = client.get("/api/search", query_string={"q": "a"}, headers={"X-Forwarded-For": "198.51.100.2"})
    again = client.get("/api/search", query_string={"q": "a"},
                       headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.1"})  # forged left part ignored
    assert first.status_code != 429 and second.status_code != 429 and again.status_code == 429


def test_health_endpoint_reports_database_and_indexes(web_app, indexed_site, trained_clip_encoder):
    from web import health

    app = web_app()
    if "health" not in app.blueprints:
        app.register_blueprint(health.bp)
    body = app.test_client().get("/healthz").get_json()
    assert body["status"] == "ok" and body["database"]["reachable"] and body["database"]["schema_current"]
    # The saved index is listed; the probe loads neither it nor the model.
    vectors = len(indexed_site.canvas_ids) + len(indexed_site.region_ids)
    assert [(i["space"], i["vectors"], i["loaded"]) for i in body["indexes"]] == [
        (trained_clip_encoder.space_id, vectors, False)]
    assert body["model_loaded"] is False


def test_request_ids_are_echoed_and_sanitised(web_app, caplog):
    from web import logging_setup

    app = web_app()
    logging_setup.init_app(app)
    client = app.test_client()
    with caplog.at_level("INFO", logger="msearch.access"):
        given = client.get("/api/stats", headers={"X-Request-ID": "trace-123"})
        forged = client.get("/api/stats", headers={"X-Request-ID": "<script>alert(1)</script> " + "y" * 100})
    assert given.headers["X-Request-ID"] == "trace-123"
    assert len(forged.headers["X-Request-ID"]) == 32 and "<" not in forged.headers["X-Request-ID"]
    records = [r for r in caplog.records if r.name == "msearch.access"]
    assert [r.request_id for r in records][-2:] == ["trace-123", forged.headers["X-Request-ID"]]
    assert records[-1].status == 200 and records[-1].path == "/api/stats"


def test_nul_characters_are_removed_so_postgresql_can_store_the_text(db_url):
    """Found by the fuzzer on PostgreSQL: a \\u0000 in a label made the search document of the
    manifest impossible to write (PostgreSQL text cannot hold NUL)."""
    from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
    from manuscripts_search.search.documents import sync_documents
    from manuscripts_search.models import SearchDocument
    from manuscripts_search.store.catalogue import save_manifest
    from sqlalchemy import select

    doc = manifest_doc("https://example.org", "nul")
    doc["label"] = {"en": ["dragon\u0000 book"]}
    doc["metadata"] = [{"label": {"en": ["a\u0000"]}, "value": {"en": ["<b>b\u0000</b>"]}}]
    parsed = parse_document(json.dumps(doc), source_url=doc["id"])
    assert parsed.label == {"en": ["dragon book"]}
    assert any("NUL" in warning for warning in parsed.warnings)
    assert parse_document(doc).label == {"en": ["dragon book"]}  # decoded documents too
    engine = make_engine(db_url)
    upgrade_database(engine)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            save_manifest(session, parsed, url=doc["id"], raw_json=json.dumps(doc))
            sync_documents(session)
            texts = list(session.scalars(select(SearchDocument.text)))
        assert any("dragon book" in text for text in texts)
    finally:
        engine.dispose()
