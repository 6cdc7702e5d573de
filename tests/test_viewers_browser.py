"""Three IIIF viewers from npm, each in headless Chromium, opened on what we publish and
searching it through our IIIF Content Search services: Mirador 4 and Universal Viewer 4.4 (both
read Search 1) and Clover 3 (Search 2), each on a re-published manifest (/iiif/manifest/<id>)
and on an exported result set (/iiif/export/manifest), and Clover on a Content State link. Each
must show as many hits as our service answers, on the right canvases.

The query "triangle" matches a canvas label ("f. 2r blue triangle"), a transcription line and,
visually, every page: label matches are the hits on a whole canvas, which Universal Viewer could
not show before they targeted a region.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from manuscripts_search.iiif.content_state import canvas_content_state, content_state_parameter
from tests.helpers.browser import chromium_browser, serve_app, watch_problems
from tests.helpers.iiif_server import IIIFTestServer
from tests.helpers.web_site import SCENE_REGION, build_site, site_config
from web import create_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
QUERY = "triangle"


@pytest.fixture(scope="module")
def live_site(tmp_path_factory, module_db_url, trained_clip_dir, trained_clip_encoder):
    """The book of shapes with its images on a real IIIF server, served by the app on a free port
    (once for the module: the viewers only read it)."""
    server = IIIFTestServer()
    try:
        site = build_site(site_config(tmp_path_factory.mktemp("viewers"), trained_clip_dir, module_db_url),
                          trained_clip_encoder, image_server=server)
        with serve_app(create_app(config=site.config)) as base_url:
            yield base_url, site
    finally:
        server.close()


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as instance:
        yield instance


def _documents(base: str, site) -> dict:
    """What the viewers open: the re-published book and an export of a search (with its weaker
    matches, so that it holds four pages to search within, not only the two red circles)."""
    return {"republished": f"{base}/iiif/manifest/{site.manifest_ids['book']}",
            "export": f"{base}/iiif/export/manifest?q={quote('a red circle')}&k=4&weaker=1"}


def _page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    return page, watch_problems(page)


def _search_service(page, manifest_url: str, kind: str) -> str:
    """The URL of the manifest's search service of ``kind`` (SearchService1 or SearchService2)."""
    manifest = page.request.get(manifest_url).json()
    service = next(s for s in manifest["service"] if (s.get("type") or s.get("@type")) == kind)
    return service.get("id") or service["@id"]


def _fail(page, problems, what: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-failure.png"), full_page=True)
    raise AssertionError(f"{what}; the page showed:\n{page.inner_text('body')[:1500]}\nerrors:\n"
                         + "\n".join(p[:300] for p in problems[-8:]))


def _uncaught(problems) -> list:
    return [p for p in problems if p.startswith("Uncaught") or "is not a function" in p]


@pytest.mark.browser
def test_universal_viewer_shows_our_search_hits(live_site, browser):
    base, site = live_site
    for name, manifest_url in _documents(base, site).items():
        page, problems = _page(browser)
        expected = page.request.get(f"{_search_service(page, manifest_url, 'SearchService1')}?q={QUERY}").json()
        total = expected["within"]["total"]
        assert total >= 3 and any("#xywh=0,0,1000,1500" in r["on"] for r in expected["resources"])
        page.goto(f"{base}/uv?manifest={quote(manifest_url, safe='')}")
        box = page.locator("#searchWithinInput")
        box.wait_for(timeout=20000)
        box.fill(QUERY)
        box.press("Enter")
        try:
            page.locator(".searchResultsInfo .number").wait_for(timeout=15000)
        except Exception:
            _fail(page, problems, f"Universal Viewer showed no search result on the {name} manifest")
        assert page.locator(".searchResultsInfo .number").inner_text() == str(total), name
        assert page.locator(".searchResultPlacemarker").count() >= 1  # hits marked on the page slider
        # Each thumbnail counts the hits on its canvas: together, every hit of the answer.
        per_canvas = [int(t) for t in page.locator(".thumb .searchResults").all_inner_texts() if t.strip()]
        assert sum(per_canvas) == total, (name, per_canvas)
        page.screenshot(path=str(ARTIFACTS / f"12-uv-{name}-search.png"))
        assert not _uncaught(problems), problems
        page.close()


@pytest.mark.browser
def test_clover_opens_our_manifests_and_shows_our_search_hits(live_site, browser):
    base, site = live_site
    for name, manifest_url in _documents(base, site).items():
        page, problems = _page(browser)
        expected = page.request.get(f"{_search_service(page, manifest_url, 'SearchService2')}?q={QUERY}").json()
        items = expected["items"]
        assert len(items) >= 3
        page.goto(f"{base}/clover?iiif-content={quote(manifest_url, safe='')}")
        try:  # Clover waited forever ("Loading") on a document whose id was not its URL
            page.get_by_role("tab", name="Search").wait_for(timeout=20000)
        except Exception:
            _fail(page, problems, f"Clover did not open the {name} manifest")
        page.get_by_role("tab", name="Search").click()
        field = page.locator(".content-search-form input")
        field.fill(QUERY)
        field.press("Enter")
        hits = page.locator(".clover-iiif-annotation-item")
        try:
            hits.first.wait_for(timeout=15000)
            page.wait_for_function(f"document.querySelectorAll('.clover-iiif-annotation-item').length >= {len(items)}",
                                   timeout=10000)
        except Exception:
            _fail(page, problems, f"Clover listed {hits.count()} of our {len(items)} hits on the {name} manifest")
        assert hits.count() == len(items), name
        assert page.get_by_text("A blue triangle drawn by the scribe").count() >= 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"13-clover-{name}-search.png"))
        assert not _uncaught(problems), problems
        page.close()


@pytest.mark.browser
def test_clover_opens_our_content_state_on_its_canvas_and_region(live_site, browser):
    base, site = live_site
    manifest_url = _documents(base, site)["republished"]
    state = content_state_parameter(canvas_content_state(site.canvas_iiif_ids["scene"], manifest_url,
                                                         ",".join(map(str, SCENE_REGION))))
    page, problems = _page(browser)
    tiles: list = []
    page.on("request", lambda request: tiles.append(request.url) if "/iiif3/" in request.url else None)
    page.goto(f"{base}/clover?iiif-content={state}")
    try:  # the target-only form stayed on "Loading"; the contentState annotation opens the region
        page.locator(".clover-iiif-content-state").wait_for(state="attached", timeout=20000)
    except Exception:
        _fail(page, problems, "Clover did not open the content state's region")
    assert any("/iiif3/scene/" in url for url in tiles), tiles  # the scene's canvas, not the first
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "14-clover-content-state.png"))
    assert not _uncaught(problems), problems


@pytest.mark.browser
def test_mirador_searches_a_republished_manifest(live_site, browser):
    base, site = live_site
    manifest_url = _documents(base, site)["republished"]
    page, problems = _page(browser)
    expected = page.request.get(f"{_search_service(page, manifest_url, 'SearchService1')}?q={QUERY}").json()
    page.goto(f"{base}/mirador?manifest={quote(manifest_url, safe='')}&q={QUERY}")
    try:  # Mirador's navigation counts every hit it read
        page.get_by_text(f"1 of {expected['within']['total']}", exact=False).first.wait_for(timeout=30000)
        page.get_by_text("A blue triangle drawn by the", exact=False).first.wait_for(timeout=15000)
    except Exception:
        _fail(page, problems, "Mirador's search panel did not list our hits")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "15-mirador-republished-search.png"))
    assert not [p for p in problems if p.startswith("Uncaught")], problems
