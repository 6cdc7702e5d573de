"""The web app under hostile input: XSS payloads in every IIIF field it renders stay inert, and
fuzzed Content Search / JSON API / page parameters only ever get a 2xx or a clear 4xx/503, never
a 500.

Manifests go through the real parser and store (parse_document → save_manifest → search
documents), so what is rendered is what a harvest of a hostile server would produce. Pages are
parsed with the standard library's HTML parser, and each payload carries a unique marker: the
marker may appear as text or inside a harmless attribute value, never as markup, an event
handler, a ``javascript:`` URL or script content.
"""
from __future__ import annotations

import itertools
import os
import json
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manuscripts_search.config import load_config
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.search.documents import sync_documents
from manuscripts_search.iiif.presentation import parse_document
from manuscripts_search.store.catalogue import save_manifest

FUZZ = settings(max_examples=int(os.environ.get("MSEARCH_FUZZ_EXAMPLES", "40")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Classic payloads; {m} is replaced by a marker unique to the payload.
PAYLOADS = [
    "<script>alert('{m}')</script>",
    "<img src=x onerror=alert('{m}')>",
    "<img src=\"https://example.org/a.png\" onerror=\"alert('{m}')\">",
    "<svg onload=alert('{m}')>",
    "<svg><script>alert('{m}')</script></svg>",
    "<a href=\"javascript:alert('{m}')\">click</a>",
    "<a href=\" JaVaScRiPt:alert('{m}')\">click</a>",
    "<a href=\"&#106;avascript:alert('{m}')\">click</a>",
    "<a href=\"data:text/html,<script>alert('{m}')</script>\">x</a>",
    "<iframe src=\"javascript:alert('{m}')\"></iframe>",
    "<iframe srcdoc=\"<script>alert('{m}')</script>\"></iframe>",
    "<object data=\"javascript:alert('{m}')\"></object>",
    "<embed src=\"javascript:alert('{m}')\">",
    "<body onload=alert('{m}')>",
    "<details open ontoggle=alert('{m}')>",
    "<p style=\"background:url(javascript:alert('{m}'))\">styled</p>",
    "<style>@import 'javascript:alert(\"{m}\")';</style>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('{m}')>",
    "<form action=\"javascript:alert('{m}')\"><button>go</button></form>",
    "<base href=\"javascript:alert('{m}')//\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert('{m}')\">",
    "\"><script>alert('{m}')</script>",
    "'><img src=x onerror=alert('{m}')>",
    "\" onmouseover=\"alert('{m}')\" x=\"",
    "' onfocus='alert(`{m}`)' autofocus '",
    "</script><script>alert('{m}')</script>",
    "</title><script>alert('{m}')</script>",
    "</textarea><script>alert('{m}')</script>",
    "<!--<script>alert('{m}')</script>-->",
    "<p>fine <b>bold</b> <scr<script>ipt>alert('{m}')</script></p>",
    "<span>{{{{7*7}}}} {{% raw %}}{m}</span>",
    "javascript:alert('{m}')",
    "<<script>alert('{m}');//<</script>",
    "<IMG SRC=JaVaScRiPt:alert('{m}')>",
    "<a href=\"https://example.org/\" onclick=\"alert('{m}')\">link</a>",
    "\u003cscript\u003ealert('{m}')\u003c/script\u003e",
    "<p>{m}</p><script src=\"https://evil.example/{m}.js\"></script>",
]

# Tags the site never puts a manifest's or a query's text into: with the marker, they came from a payload.
# (A form field's value="…" holding the query is text, so input/textarea are not listed.)
DANGEROUS_TAGS = {"script", "iframe", "object", "embed", "svg", "math", "base", "meta", "link", "style",
                  "frame", "frameset", "applet", "body", "details"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background", "srcset"}
SAFE_SCRIPT_TYPES = {"application/json", "application/ld+json"}


class InjectionFinder(HTMLParser):
    """Collects every place where ``marker`` shows up as live markup rather than as text."""

    def __init__(self, marker: str):
        super().__init__(convert_charrefs=True)
        self.marker = marker
        self.problems: list[str] = []
        self.text_hits = 0
        self._raw_stack: list[tuple[str, bool]] = []  # (script/style tag, whether its content is code)

    def handle_starttag(self, tag, attrs):
        m = self.marker
        if m in tag:
            self.problems.append(f"tag <{tag}> made from the payload")
        for name, value in attrs:
            value = value or ""
            lowered = "".join(value.split()).lower()
            if m in name:
                self.problems.append(f"attribute {name!r} made from the payload on <{tag}>")
            if m not in value:
                continue
            if name.startswith("on"):
                self.problems.append(f"event handler {name}={value!r} on <{tag}>")
            elif name in URL_ATTRIBUTES and lowered.startswith(("javascript:", "data:", "vbscript:")):
                self.problems.append(f"{name}={value!r} on <{tag}>")
            elif name in ("style", "srcdoc"):
                self.problems.append(f"{name}={value!r} on <{tag}>")
            elif tag in DANGEROUS_TAGS:
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag in ("script", "style"):
            kind = dict(attrs).get("type", "") or ""
            self._raw_stack.append((tag, not (tag == "script" and kind.lower() in SAFE_SCRIPT_TYPES)))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in ("script", "style") and self._raw_stack:
            self._raw_stack.pop()

    def handle_endtag(self, tag):
        if self._raw_stack and self._raw_stack[-1][0] == tag:
            self._raw_stack.pop()

    def handle_data(self, data):
        if self.marker not in data:
            return
        if self._raw_stack and self._raw_stack[-1][1]:
            self.problems.append(f"payload inside <{self._raw_stack[-1][0]}>: {data[:120]!r}")
        else:
            self.text_hits += 1


def inspect_page(html: str, marker: str) -> InjectionFinder:
    finder = InjectionFinder(marker)
    finder.feed(html)
    finder.close()
    return finder


def hostile_manifest(number: int, payload: str) -> dict:
    base = f"https://hostile.example/{number}"
    word = f"zebrafish{number}"  # a plain word, so that full-text search finds this manifest
    language_map = {"en": [f"{word} {payload}"]}
    return {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/manifest.json",
        "type": "Manifest", "label": language_map, "summary": {"en": [payload]},
        "metadata": [{"label": {"en": [payload]}, "value": {"en": [payload]}},
                     {"label": {"en": ["Plain"]}, "value": {"none": [f"{word} {payload}"]}}],
        "requiredStatement": {"label": {"en": [payload]}, "value": {"en": [payload]}},
        "rights": payload if "javascript" in payload else "http://creativecommons.org/licenses/by/4.0/",
        "provider": [{"id": f"{base}/agent", "type": "Agent", "label": {"en": [payload]},
                      "homepage": [{"id": f"{base}/home", "type": "Text", "label": {"en": [payload]}}]}],
        "homepage": [{"id": "javascript:alert(1)", "type": "Text", "label": {"en": [payload]}}],
        "navDate": "1450-01-01T00:00:00Z",
        "items": [{"id": f"{base}/canvas/1", "type": "Canvas", "label": {"none": [payload]}, "width": 100,
                   "height": 100,
                   "items": [{"id": f"{base}/page/1", "type": "AnnotationPage", "items": [{
                       "id": f"{base}/anno/1", "type": "Annotation", "motivation": "painting",
                       "target": f"{base}/canvas/1",
                       "body": {"id": f"{base}/img.jpg", "type": "Image", "format": "image/jpeg",
                                "width": 100, "height": 100}}]}]}],
    }


class HostileSite:
    def __init__(self, app, factory):
        self.app = app
        self.factory = factory
        self.client = app.test_client()
        self._numbers = itertools.count(1)

    def add(self, payload_template: str) -> tuple[str, int, int, str]:
        """Store a manifest with the payload everywhere; returns (marker, manifest id, canvas id, word)."""
        number = next(self._numbers)
        marker = f"XSSMARK{number}Q"
        payload = payload_template.replace("{m}", marker)
        doc = hostile_manifest(number, payload)
        parsed = parse_document(json.dumps(doc), source_url=doc["id"])
        with session_scope(self.factory) as session:
            manifest = save_manifest(session, parsed, url=doc["id"], raw_json=json.dumps(doc))
            session.flush()
            sync_documents(session, [manifest.id])
            from manuscripts_search.models import Canvas
            from sqlalchemy import select

            canvas_id = session.scalar(select(Canvas.id).where(Canvas.manifest_id == manifest.id))
            return marker, manifest.id, canvas_id, f"zebrafish{number}"

    def pages(self, manifest_id: int, canvas_id: int, word: str) -> dict[str, str]:
        urls = {"manifest": f"/manifests/{manifest_id}", "canvas": f"/canvas/{canvas_id}",
                "list": "/manifests?per_page=500", "search": f"/search?q={word}",
                "within": f"/manifests/{manifest_id}?q={word}"}
        pages = {}
        for name, url in urls.items():
            response = self.client.get(url)
            assert response.status_code in (200, 503), (url, response.status_code, response.data[:500])
            pages[name] = response.get_data(as_text=True)
        return pages


@pytest.fixture(scope="module")
def hostile_site(module_db_url, tmp_path_factory):
    from web import create_app
    from web.database import dispose_engine

    config = load_config({"MSEARCH_DATA_DIR": str(tmp_path_factory.mktemp("xss-data")), "MSEARCH_DB": module_db_url})
    engine = make_engine(module_db_url)
    upgrade_database(engine)
    app = create_app(config=config, test_config={"TESTING": True})
    yield HostileSite(app, make_sessionmaker(engine))
    dispose_engine(app)
    engine.dispose()


def assert_inert(site: HostileSite, payload_template: str) -> None:
    marker, manifest_id, canvas_id, word = site.add(payload_template)
    pages = site.pages(manifest_id, canvas_id, word)
    shown_anywhere = 0
    for name, html in pages.items():
        finder = inspect_page(html, marker)
        assert not finder.problems, f"{payload_template!r} is live on the {name} page: {finder.problems}"
        shown_anywhere += finder.text_hits
    # The payload was really rendered (as text) on the manifest and canvas pages, so the test saw it.
    if "{m}" in payload_template:
        assert inspect_page(pages["manifest"], marker).text_hits or marker not in pages["manifest"], payload_template
    assert word in pages["manifest"], "the manifest's label is on its page"
    # Query echo: the payload as the search itself.
    query = payload_template.replace("{m}", marker + "q")
    for url in (f"/search?q={quote(query)}", f"/manifests/{manifest_id}?q={quote(query)}",
                f"/canvas/{canvas_id}?q={quote(query)}", f"/mirador?manifest={quote(query)}",
                f"/uv?manifest={quote(query)}", f"/clover?iiif-content={quote(query)}"):
        response = site.client.get(url)
        assert response.status_code < 500, url
        finder = inspect_page(response.get_data(as_text=True), marker + "q")
        assert not finder.problems, f"query {query!r} is live on {url}: {finder.problems}"
    # JSON answers carry the payload as JSON strings, with a JSON content type.
    for url in (f"/api/manifests/{manifest_id}", f"/iiif/manifest/{manifest_id}",
                f"/iiif/search/2/manifest/{manifest_id}?q={word}", f"/api/canvas/{canvas_id}"):
        response = site.client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert "json" in response.content_type
        response.get_json()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_known_payloads_stay_inert_in_every_rendered_field(hostile_site, payload):
    assert_inert(hostile_site, payload)


def test_label_text_is_really_rendered(hostile_site):
    """Guards the checks above against passing vacuously: a plain marker in every field shows up
    as text on the manifest, canvas, list and search pages."""
    marker, manifest_id, canvas_id, word = hostile_site.add("plain {m} text")
    pages = hostile_site.pages(manifest_id, canvas_id, word)
    for name in ("manifest", "canvas", "search"):
        assert inspect_page(pages[name], marker).text_hits, name
    # And the checker does catch live markup.
    assert inspect_page(f"<img src=x onerror=alert('{marker}')>", marker).problems
    assert inspect_page(f"<script>alert('{marker}')</script>", marker).problems
    assert inspect_page(f"<a href=\"javascript:alert('{marker}')\">x</a>", marker).problems
    assert not inspect_page(f"<p>&lt;script&gt;alert('{marker}')</p>", marker).problems


fragments = st.sampled_from([
    "<script>", "</script>", "<img src=x ", "onerror=", "onload=", "alert('{m}')", "javascript:", "\"", "'",
    ">", "<", "</", "<svg/", "<a href=", "&#x3C;", "&lt;", "\\u003c", "`", "{{", "}}", "{%", "%}", "<!--", "-->",
    "<![CDATA[", "]]>", "\x00", "\u2028", "\ufeff", "<style>", "expression(", "url(", "<p>", "</p>", "<b>",
    "<span title=\"", "{m}", " ", "\n", "<math>", "<template>", "<noscript>", "</noscript>", "<plaintext>"])


@FUZZ
@given(st.lists(fragments, min_size=2, max_size=12).map("".join).map(lambda p: p if "{m}" in p else p + "{m}"))
def test_generated_payloads_stay_inert(hostile_site, payload):
    assert_inert(hostile_site, payload)


# -- parameters ----------------------------------------------------------------------------------------

weird_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["", " ", "*", "%", "_", "\\", "'", "\"", "' OR 1=1 --", "); DROP TABLE manifests; --",
                     "a" * 1001, "NaN", "-1", "0", "1e309", "99999999999999999999", "null", "[]", "{}",
                     "<script>alert(1)</script>", "%00", "..%2f..%2fetc%2fpasswd", "\u202e", "𝔡𝔯𝔞𝔤𝔬𝔫"]),
)
api_parameters = st.dictionaries(
    st.sampled_from(["q", "k", "page", "group", "like", "like_region", "signal", "collection", "manifest",
                     "provider", "institution", "date_from", "date_to", "iiif_version", "has_transcription",
                     "label", "motivation", "date", "user", "min", "per_page", "xywh", "shown", "manifest_url"]),
    weird_text, max_size=6)


@FUZZ
@given(params=api_parameters, version=st.sampled_from([1, 2]),
       target=st.sampled_from(["content", "autocomplete", "api", "page", "similar", "manifests", "canvas"]))
def test_fuzzed_parameters_never_cause_a_server_error(hostile_site, params, version, target):
    site = hostile_site
    if not getattr(site, "fuzz_ids", None):
        _marker, manifest_id, canvas_id, _word = site.add("fuzz target {m}")
        site.fuzz_ids = (manifest_id, canvas_id)
    manifest_id, canvas_id = site.fuzz_ids
    url = {"content": f"/iiif/search/{version}/manifest/{manifest_id}",
           "autocomplete": f"/iiif/autocomplete/{version}/manifest/{manifest_id}",
           "api": "/api/search", "page": "/search", "similar": f"/api/canvas/{canvas_id}/similar",
           "manifests": "/api/manifests", "canvas": f"/canvas/{canvas_id}"}[target]
    response = site.client.get(url, query_string=params)
    assert response.status_code in (200, 302, 400, 404, 413, 503), (url, params, response.status_code,
                                                               response.get_data(as_text=True)[:400])
    if url.startswith(("/api/", "/iiif/")):
        body = response.get_json()
        if response.status_code >= 400:
            assert body["error"]["message"], body


@FUZZ
@given(path=st.lists(st.sampled_from(["iiif", "search", "2", "1", "3", "manifest", "set", "0", "-1", "abc",
                                      "99999999999999999999", "%2e%2e", "..", "api", "canvas", "similar",
                                      "autocomplete", "manifests", "x" * 300, "%00", "%ff"]),
                     min_size=1, max_size=5).map("/".join))
def test_fuzzed_paths_never_cause_a_server_error(hostile_site, path):
    response = hostile_site.client.get("/" + path)
    assert response.status_code < 500, (path, response.status_code)
