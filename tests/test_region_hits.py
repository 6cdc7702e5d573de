"""Hits shown as their region, not as a cloud of boxes (issue 13, point 4), on the book of shapes
whose scene also carries nested and overlapping windows around its red circle, as a grid makes
them: the API keeps every region and adds the 1 to 3 it shows; the result card draws those,
labelled; Content Search (2 and 1), the export and the canvas page carry the same boxes; in a
browser, the card shows at most three boxes that do not overlap and opening it zooms the deep-zoom
view to the best one (screenshots under test-artifacts/region-hits/)."""
from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from manuscripts_search.search.region_display import MAX_COVER, MAX_IOU, overlap, parse_box
from tests.helpers.browser import chromium_browser, serve_app, settled_box, watch_problems
from tests.helpers.web_site import SCENE_REGION, add_scene_regions, build_site, site_config

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "region-hits"
BEST = ",".join(map(str, SCENE_REGION))
# Around the red circle (the scene's lower right quarter): bigger, smaller and shifted windows;
# and two windows of the grey page elsewhere.
NESTED = [(450, 700, 550, 800), (600, 900, 300, 450), (250, 375, 750, 1125), (550, 800, 450, 700),
          (500, 0, 500, 750), (0, 750, 500, 750)]
QUERY = "q=a+red+circle&weaker=1"  # weaker: every region above nothing, the whole cloud


@pytest.fixture(scope="module")
def site(tmp_path_factory, trained_clip_dir, trained_clip_encoder, module_db_url):
    built = build_site(site_config(tmp_path_factory.mktemp("region-hits"), trained_clip_dir, module_db_url),
                       trained_clip_encoder)
    add_scene_regions(built, trained_clip_encoder, NESTED)
    return built


def _clear(boxes) -> bool:
    """No two of ``boxes`` (x, y, w, h) overlap as the picking forbids."""
    return all(iou < MAX_IOU and cover < MAX_COVER
               for i, a in enumerate(boxes) for b in boxes[i + 1:] for iou, cover in [overlap(a, b)])


def _scene_hit(client, site, query=QUERY) -> dict:
    hits = client.get(f"/api/search?{query}&k=10").get_json()["hits"]
    return next(hit for hit in hits if hit["canvas_id"] == site.canvas_ids["scene"])


def test_the_api_keeps_every_region_and_adds_the_few_it_shows(client, site):
    scene = _scene_hit(client, site)
    evidence = [region["xywh"] for region in scene["regions"]]
    assert len(evidence) == 8 and evidence[0] == BEST  # the cloud: five boxes on the red circle alone
    assert sum(overlap(parse_box(xywh), SCENE_REGION)[1] > 0.5 for xywh in evidence) == 5
    shown = scene["shown_regions"]
    assert [region["rank"] for region in shown] == [1, 2, 3]
    assert shown[0]["xywh"] == scene["xywh"] == BEST
    assert _clear([parse_box(region["xywh"]) for region in shown])
    assert {region["xywh"] for region in shown} <= set(evidence)
    assert all(region["label"] == "picture" and region["caption"].startswith(f"{region['rank']} · picture · ")
               for region in shown)
    # Above the floor only the red circle's windows are left: one box, not five.
    assert [region["xywh"] for region in _scene_hit(client, site, "q=a+red+circle")["shown_regions"]] == [BEST]
    # A hit found by its words shows its line, labelled with them, and opens on it.
    dragon = next(hit for hit in client.get("/api/search?q=dragons&k=10&signal=fulltext").get_json()["hits"]
                  if hit["canvas_id"] == site.canvas_ids["scene"])
    assert [(r["xywh"], r["label"]) for r in dragon["shown_regions"]] == [("100,100,800,60",
                                                                            "Dragons and birds in the margin")]
    assert parse_qs(urlsplit(dragon["viewer_url"]).query)["xywh"] == ["100,100,800,60"]


def _card(page_html: str, canvas_id: int) -> str:
    cards = page_html.split('<li class="result-card">')[1:]
    return next(card for card in cards if f'href="/canvas/{canvas_id}?' in card.split("</a>")[0])


def test_the_result_card_draws_the_shown_boxes_labelled_and_links_them(client, site):
    scene = _scene_hit(client, site)
    card = _card(client.get(f"/search?{QUERY}").get_data(as_text=True), site.canvas_ids["scene"])
    boxes = re.findall(r'<span class="hit-box ([^"]*)" aria-hidden="true"\s+title="([^"]*)" data-rank="(\d)"', card)
    assert len(boxes) == 3  # of eight regions
    assert boxes[0][0] == "hit-box--visual hit-box--best" and "hit-box--best" not in boxes[1][0] + boxes[2][0]
    assert [html_lib.unescape(title) for _, title, _ in boxes] == [r["caption"] for r in scene["shown_regions"]]
    assert re.findall(r'<span class="hit-box-rank">(\d)</span> <span\s+class="hit-box-text">picture</span>',
                      card) == ["1", "2", "3"]
    assert "Regions shown: 1 · picture · " in card  # for screen readers (the boxes are hidden from them)
    # The crop of the best region goes to the corner no box is in (bottom right would hide the best).
    assert 'class="region-crop region-crop--bottom-left"' in card
    # The link opens on the best region and carries the other two.
    link = html_lib.unescape(re.search(r'<a class="result-link" href="([^"]+)"', card).group(1))
    params = parse_qs(urlsplit(link).query)
    assert params["xywh"] == [BEST]
    assert params["shown"] == [";".join(r["xywh"] for r in scene["shown_regions"][1:])]
    assert link == scene["viewer_url"]


def _search(client, version: int, site, query: str = "a red circle") -> dict:
    return client.get(f"/iiif/search/{version}/manifest/{site.manifest_ids['book']}?q={quote(query)}").get_json()


def test_content_search_highlights_the_boxes_the_card_shows(client, site):
    shown = [f"{site.canvas_iiif_ids['scene']}#xywh={r['xywh']}" for r in _scene_hit(client, site)["shown_regions"]]
    two = _search(client, 2, site)
    visual = [item for item in two["items"] if item["motivation"] == "highlighting"
              and item["target"].startswith(site.canvas_iiif_ids["scene"] + "#")]
    assert [item["target"] for item in visual] == shown
    assert [item["body"]["value"].split(" (")[1].split(",")[0] for item in visual] == [
        "region 1 of the page", "region 2 of the page", "region 3 of the page"]
    one = _search(client, 1, site)
    assert [r["on"] for r in one["resources"] if r["on"].startswith(site.canvas_iiif_ids["scene"] + "#")] == shown
    # The page that matched as a whole is still one match on the whole page.
    assert f"{site.canvas_iiif_ids['red_circle']}#xywh=0,0,1000,1500" in [item["target"] for item in two["items"]]


def test_the_export_highlights_the_boxes_the_card_shows(client, site):
    scene = _scene_hit(client, site)
    document = client.get(f"/iiif/export/manifest?{QUERY}&k=10").get_json()
    canvas = next(c for c in document["items"] if c["id"] == site.canvas_iiif_ids["scene"])
    highlights = canvas["annotations"][0]["items"]
    assert [a["target"] for a in highlights] == [f"{canvas['id']}#xywh={r['xywh']}" for r in scene["shown_regions"]]
    assert [a["body"]["value"][:16] for a in highlights] == ["1. Looks like “a", "2. Looks like “a", "3. Looks like “a"]
    assert all(a["motivation"] == "highlighting" for a in highlights)


def _viewer_config(client, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return json.loads(re.search(r'id="viewer-config">(.*?)</script>', response.get_data(as_text=True), re.S).group(1))


def test_the_canvas_page_draws_the_boxes_the_hit_link_carries(client, site):
    scene = _scene_hit(client, site)
    config = _viewer_config(client, scene["viewer_url"])
    drawn = [h for h in config["highlights"] if h["rank"]]
    assert [(h["rank"], h["xywh"]) for h in drawn] == [(r["rank"], r["xywh"]) for r in scene["shown_regions"]]
    assert drawn[0]["kind"] == "hit" and config["overlay"]["x"] == 0.5 and config["overlay"]["y"] == 0.75
    assert [h["caption"] for h in drawn] == ["1 · picture", "2 · picture", "3 · picture"]
    # The query's other matches on the page are listed (and navigable), not drawn.
    assert len(config["highlights"]) > 3 and all(h["caption"] is None for h in config["highlights"][3:])
    # A page that looked most like the query as a whole opens whole, its card's boxes drawn.
    red = next(hit for hit in client.get(f"/api/search?{QUERY}&k=10").get_json()["hits"]
               if hit["canvas_id"] == site.canvas_ids["red_circle"])
    assert red["xywh"] is None and "xywh" not in parse_qs(urlsplit(red["viewer_url"]).query)
    config = _viewer_config(client, red["viewer_url"])
    assert config["overlay"] is None
    assert [(h["rank"], h["xywh"], h["kind"]) for h in config["highlights"] if h["rank"]] == [
        (r["rank"], r["xywh"], "text") for r in red["shown_regions"]] == [(1, "100,100,800,60", "text")]
    # Opened with the query alone, the page picks its own matches as a card does.
    config = _viewer_config(client, f"/canvas/{site.canvas_ids['scene']}?q=a+red+circle")
    assert config["overlay"] is None
    drawn = [h for h in config["highlights"] if h["rank"]]
    assert 1 <= len(drawn) <= 3 and _clear([parse_box(h["xywh"]) for h in drawn])


@pytest.mark.parametrize("shown, message", [
    ("0,0,10,10;20,20,10,10;40,40,10,10", "at most 3 regions together, got 4"),
    ("0,0,10,10;nonsense", "shown must be four whole numbers"),
    ("0,0,0,10", "shown must have a width and height above 0"),
])
def test_a_bad_shown_region_is_a_clear_400(client, site, shown, message):
    response = client.get(f"/canvas/{site.canvas_ids['scene']}?xywh={BEST}&shown={quote(shown)}")
    assert response.status_code == 400 and message in response.get_data(as_text=True)


# -- in a browser ---------------------------------------------------------------------------------

@pytest.fixture()
def live_site(tmp_path, db_url, trained_clip_dir, trained_clip_encoder, iiif_server):
    from web import create_app

    built = build_site(site_config(tmp_path / "data", trained_clip_dir, db_url), trained_clip_encoder,
                       image_server=iiif_server)
    add_scene_regions(built, trained_clip_encoder, NESTED)
    with serve_app(create_app(config=built.config)) as base_url:
        yield base_url, built


def _pixels(box: dict) -> tuple[int, int, int, int]:
    return round(box["x"]), round(box["y"]), round(box["width"]), round(box["height"])


def _settled_attribute(page, selector: str, name: str, timeout_ms: int = 15000) -> str:
    """The attribute once it has kept its value for half a second (the viewer animates)."""
    previous = None
    for _ in range(timeout_ms // 250):
        page.wait_for_timeout(250)
        value = page.get_attribute(selector, name)
        if value and value == previous:
            return value
        previous = value
    raise AssertionError(f"{selector} {name} did not settle: {previous!r}")


@pytest.mark.browser
def test_a_hit_shows_its_region_and_opens_zoomed_on_it(live_site):
    base, site = live_site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    scene_id = site.canvas_ids["scene"]
    with chromium_browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = watch_problems(page)
        page.goto(f"{base}/")
        page.fill("#q", "a red circle")
        page.keyboard.press("Enter")
        page.wait_for_selector(".results-grid .result-card")
        page.get_by_role("link", name="Show weaker matches").click()  # the whole cloud of regions
        page.wait_for_selector(".results-grid .result-card")
        page.wait_for_load_state("networkidle")
        assert "weaker=1" in page.url
        card = page.locator(f'.result-card:has(.result-link[href^="/canvas/{scene_id}?"])')
        card.scroll_into_view_if_needed()
        boxes = card.locator(".hit-box")
        assert boxes.count() == 3
        rects = [_pixels(boxes.nth(i).bounding_box()) for i in range(3)]
        assert all(w > 4 and h > 4 for _, _, w, h in rects)
        assert _clear(rects), rects
        labels = [boxes.nth(i).locator(".hit-box-label").inner_text() for i in range(3)]
        assert [label.split()[0] for label in labels] == ["1", "2", "3"] and all("picture" in l for l in labels)
        assert all(boxes.nth(i).locator(".hit-box-label").is_visible() for i in range(3))
        # The best box is the red circle's quarter of the thumbnail.
        frame = _pixels(card.locator(".thumb-frame").bounding_box())
        best = rects[0]
        assert abs((best[0] - frame[0]) / frame[2] - 0.5) < 0.02 and abs((best[1] - frame[1]) / frame[3] - 0.5) < 0.02
        crop = _pixels(card.locator("img.region-crop").bounding_box())
        assert all(overlap(crop, rect)[1] < 0.05 for rect in rects), (crop, rects)  # it hides none of them
        card.screenshot(path=str(ARTIFACTS / "01-result-card.png"))
        page.screenshot(path=str(ARTIFACTS / "02-results.png"), full_page=True)

        card.locator(".result-link").click()
        overlay = page.wait_for_selector(".region-overlay", state="visible", timeout=15000)
        page.wait_for_load_state("networkidle")
        assert f"xywh={BEST}" in page.url and "shown=" in page.url
        settled_box(page, overlay)
        # OpenSeadragon's view (canvas coordinates) holds the best region, centred, zoomed in
        # from the whole page it opens on.
        bounds = [int(v) for v in _settled_attribute(page, "#viewer", "data-viewport-bounds").split(",")]
        x, y, w, h = SCENE_REGION
        assert bounds[0] <= x and bounds[1] <= y and bounds[0] + bounds[2] >= x + w and bounds[1] + bounds[3] >= y + h, bounds
        assert abs(bounds[0] + bounds[2] / 2 - (x + w / 2)) < 0.1 * bounds[2], bounds
        assert abs(bounds[1] + bounds[3] / 2 - (y + h / 2)) < 0.1 * bounds[3], bounds
        assert bounds[3] < 0.9 * 1500, bounds  # not the whole page's height any more
        assert page.locator(".region-overlay .overlay-label").inner_text().startswith("1 · picture")
        others = page.locator(".match-overlay--shown .overlay-label")
        assert others.count() == 2 and [others.nth(i).inner_text() for i in range(2)] == ["2 · picture", "3 · picture"]
        assert page.locator(".match-overlay").count() == 2  # the rest of the matches are listed, not drawn
        page.screenshot(path=str(ARTIFACTS / "03-canvas-zoomed.png"), full_page=True)
        # Stepping to a match that is not drawn outlines it, alone.
        page.locator("#viewer").focus()
        for _ in range(4):
            page.keyboard.press("n")
        page.wait_for_selector(".match-overlay--current", state="attached")
        assert page.locator(".match-overlay--current").count() == 1
        page.screenshot(path=str(ARTIFACTS / "04-canvas-next-match.png"), full_page=True)
        assert not problems, problems
