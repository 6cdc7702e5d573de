"""IIIF endpoints of the web app on a real catalogue: Content Search 2.0 and 1.0 per manifest and
per exported set (transcriptions, metadata, and visual matches of the words), autocomplete,
manifests re-published with both search services, exports as Presentation 3 (validated with
iiif-prezi3), and IIIF Content State links in and out."""
from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from manuscripts_search.iiif.content_state import (canvas_content_state, content_state_parameter,
                                                   parse_content_state)
from tests.helpers.presentation_validator import assert_valid_presentation
from tests.helpers.web_site import SCENE_REGION

CORPUS = Path(os.environ.get("MSEARCH_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))


def _search(client, version, manifest_id, **params):
    response = client.get(f"/iiif/search/{version}/manifest/{manifest_id}", query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.mimetype == "application/ld+json"
    return response.get_json()


def test_search2_finds_transcription_words_with_their_boxes_and_context(client, shapes_site):
    body = _search(client, 2, shapes_site.manifest_ids["book"], q="dragon")
    assert body["@context"] == "http://iiif.io/api/search/2/context.json" and body["type"] == "AnnotationPage"
    text_items = [item for item in body["items"] if item["motivation"] == "supplementing"]
    assert [item["target"] for item in text_items] == [
        f"{shapes_site.canvas_iiif_ids['red_circle']}#xywh=100,100,800,60",
        f"{shapes_site.canvas_iiif_ids['scene']}#xywh=100,100,800,60"]  # "dragon" and "Dragons", page order
    assert text_items[0]["body"] == {"type": "TextualBody", "value": "Here begins the book of the red dragon",
                                     "format": "text/plain"}
    highlights = {h["target"]["source"]: h["target"]["selector"][0] for h in body["annotations"][0]["items"]}
    assert highlights[text_items[0]["id"]] == {"type": "TextQuoteSelector", "prefix": "Here begins the book of the red ",
                                               "exact": "dragon"}
    assert highlights[text_items[1]["id"]]["exact"] == "Dragons"  # the whole word, accents and case ignored
    assert body["partOf"][0]["total"] == len(body["items"]) and body["startIndex"] == 0


def test_search2_adds_visual_matches_of_the_words_as_regions(client, shapes_site):
    body = _search(client, 2, shapes_site.manifest_ids["book"], q="a red circle")
    visual = [item for item in body["items"] if item["motivation"] == "highlighting"]
    assert visual, "no visual match for a query the model understands"
    # The red circle page and the scene's red-circle region are the two best looking matches.
    targets = [item["target"] for item in visual[:2]]
    assert f"{shapes_site.canvas_iiif_ids['red_circle']}#xywh=0,0,1000,1500" in targets
    assert f"{shapes_site.canvas_iiif_ids['scene']}#xywh={','.join(map(str, SCENE_REGION))}" in targets
    assert all(item["body"]["value"].startswith("Looks like “a red circle”") for item in visual)


def test_search2_metadata_matches_target_the_manifest_and_search1_leaves_them_out(client, shapes_site):
    book = shapes_site.manifest_ids["book"]
    two = _search(client, 2, book, q="Bibliothèque")  # the provider's name, from the manifest's metadata
    assert [item["target"] for item in two["items"] if item["motivation"] == "describing"] == [shapes_site.manifest_url]
    one = _search(client, 1, book, q="Bibliothèque")
    # Search 1 leaves the manifest match out: what remains are Search 2's visual matches of the
    # words, the same boxes in the same order, on each canvas of the book (the scene's two
    # regions, which do not overlap, both: the boxes its result card shows).
    visual = [item["target"] for item in two["items"] if item["motivation"] == "highlighting"]
    assert [r["on"] for r in one["resources"]] == visual
    assert [r["motivation"] for r in one["resources"]] == ["oa:highlighting"] * len(visual)
    assert set(target.split("#xywh=")[0] for target in visual) == set(shapes_site.canvas_iiif_ids.values())
    assert len(visual) == len(set(visual)) <= 3 * len(shapes_site.canvas_iiif_ids)
    assert one["within"]["total"] == len(visual)


def test_search1_response_is_what_mirador_reads(client, shapes_site):
    body = _search(client, 1, shapes_site.manifest_ids["book"], q="scribe")
    assert body["@type"] == "sc:AnnotationList" and body["within"]["@type"] == "sc:Layer"
    text = [r for r in body["resources"] if r["motivation"] == "sc:painting"]
    assert text[0]["on"] == f"{shapes_site.canvas_iiif_ids['blue_triangle']}#xywh=100,100,800,60"
    assert text[0]["resource"] == {"@type": "cnt:ContentAsText", "chars": "A blue triangle drawn by the scribe"}
    hit = next(h for h in body["hits"] if h["annotations"] == [text[0]["@id"]])
    assert hit == {"@type": "search:Hit", "annotations": [text[0]["@id"]], "match": "scribe",
                   "before": "A blue triangle drawn by the "}
    assert body["within"]["total"] == len(body["resources"])


def test_search1_hits_on_whole_canvases_target_their_full_extent(client, shapes_site):
    body = _search(client, 1, shapes_site.manifest_ids["book"], q="triangle")  # a canvas label: "f. 2r blue triangle"
    on = [r["on"] for r in body["resources"] if r["motivation"] == "oa:describing"]
    assert on == [f"{shapes_site.canvas_iiif_ids['blue_triangle']}#xywh=0,0,1000,1500"]
    assert all("#xywh=" in r["on"] for r in body["resources"])


def test_content_search_pages_through_results(app, shapes_site):
    app.config["CONTENT_SEARCH_PAGE_SIZE"] = 1
    try:
        client = app.test_client()
        first = _search(client, 2, shapes_site.manifest_ids["book"], q="dragon")
        total = first["partOf"][0]["total"]
        assert total >= 3 and len(first["items"]) == 1 and "prev" not in first
        seen = [first["items"][0]["id"]]
        page = first
        while "next" in page:
            query = parse_qs(urlsplit(page["next"]["id"]).query)
            page = _search(client, 2, shapes_site.manifest_ids["book"], q=query["q"][0], page=query["page"][0])
            assert page["prev"]["id"] and page["startIndex"] == len(seen)
            seen.append(page["items"][0]["id"])
        assert len(seen) == total == len(set(seen))
        assert page["id"] == page["partOf"][0]["last"]["id"]
        one = _search(client, 1, shapes_site.manifest_ids["book"], q="dragon", page=2)
        assert one["startIndex"] == 1 and one["prev"].endswith("page=1")
        bad = client.get(f"/iiif/search/2/manifest/{shapes_site.manifest_ids['book']}?q=dragon&page=99")
        assert bad.status_code == 400 and "page must be between 1 and" in bad.get_json()["error"]["message"]
    finally:
        app.config["CONTENT_SEARCH_PAGE_SIZE"] = 50


def test_unsupported_parameters_are_reported_as_ignored(client, shapes_site):
    body = _search(client, 2, shapes_site.manifest_ids["book"], q="dragon", user="https://u.example/1", motivation="x")
    assert body["ignored"] == ["motivation", "user"]
    assert _search(client, 1, shapes_site.manifest_ids["book"], q="dragon", date="x")["within"]["ignored"] == ["date"]


def test_empty_and_wordless_queries_answer_empty_pages(client, shapes_site):
    empty = _search(client, 2, shapes_site.manifest_ids["book"])
    assert empty["items"] == [] and empty["partOf"][0]["total"] == 0
    # No word to find in the transcriptions or the metadata; the visual matches of the query
    # (on each canvas of the book: the page, or the regions its result card shows) are all
    # that is left.
    wordless = _search(client, 2, shapes_site.manifest_ids["book"], q="!!!")
    motivations = [item["motivation"] for item in wordless["items"]]
    assert set(motivations) == {"highlighting"}
    assert {item["target"].split("#")[0] for item in wordless["items"]} == set(shapes_site.canvas_iiif_ids.values())
    assert wordless["partOf"][0]["total"] == len(motivations)


def test_autocomplete_suggests_words_of_the_transcriptions(client, shapes_site):
    book = shapes_site.manifest_ids["book"]
    two = client.get(f"/iiif/autocomplete/2/manifest/{book}?q=DRAG").get_json()
    assert two["type"] == "TermPage" and two["items"] == [{"value": "dragon", "total": 1},
                                                          {"value": "dragons", "total": 1}]
    one = client.get(f"/iiif/autocomplete/1/manifest/{book}?q=scr").get_json()
    assert one["@type"] == "search:TermList"
    assert one["terms"] == [{"match": "scribe", "count": 1,
                             "url": f"http://msearch.test/iiif/search/1/manifest/{book}?q=scribe"}]
    assert client.get(f"/iiif/autocomplete/2/manifest/{book}").status_code == 400


@pytest.mark.parametrize("path, status", [
    ("/iiif/search/3/manifest/1?q=x", 404), ("/iiif/search/2/manifest/999999?q=x", 404),
    ("/iiif/search/2/manifest/abc?q=x", 404), ("/iiif/search/2/elsewhere/1?q=x", 404),
    ("/iiif/search/2/set/1,x?q=x", 400), ("/iiif/search/2/set/" + ",".join(["1"] * 201) + "?q=x", 400),
    ("/iiif/search/2/manifest/1?q=x&page=0", 400), ("/iiif/manifest/999999", 404),
])
def test_bad_iiif_requests_are_json_errors(client, path, status):
    response = client.get(path)
    assert response.status_code == status and response.get_json()["error"]["status"] == status


def test_republished_manifest_declares_both_search_services(client, shapes_site):
    book = shapes_site.manifest_ids["book"]
    response = client.get(f"/iiif/manifest/{book}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == ('application/ld+json;profile="http://iiif.io/api/presentation/3/'
                                                'context.json"')
    document = response.get_json()
    # Its id is where it is served from (Clover waits forever otherwise); the holder's URL follows.
    assert document["id"] == f"http://msearch.test/iiif/manifest/{book}" and len(document["items"]) == 4
    assert document["seeAlso"][0] == {"id": shapes_site.manifest_url, "type": "Dataset",
                                      "label": {"en": ["The manifest as its holder publishes it"]},
                                      "format": "application/ld+json",
                                      "profile": "http://iiif.io/api/presentation/3/context.json"}
    assert document["items"][0]["id"] == shapes_site.canvas_iiif_ids["red_circle"]  # canvases keep their ids
    # Search 2 first: Clover takes the first search service it finds; Mirador and UV look for
    # Search 1 by its profile.
    search2, search1 = document["service"][:2]
    assert search1["profile"] == "http://iiif.io/api/search/1/search"
    assert search1["@id"] == f"http://msearch.test/iiif/search/1/manifest/{book}"
    assert search2 == {"id": f"http://msearch.test/iiif/search/2/manifest/{book}", "type": "SearchService2",
                       "service": [{"id": f"http://msearch.test/iiif/autocomplete/2/manifest/{book}",
                                    "type": "AutoCompleteService2"}]}
    assert_valid_presentation(document, f"http://msearch.test/iiif/manifest/{book}", 3)
    # The declared services answer.
    assert client.get(urlsplit(search2["id"]).path + "?q=dragon").get_json()["items"]
    hostile = client.get(f"/iiif/manifest/{shapes_site.manifest_ids['hostile']}")
    assert hostile.status_code == 404 and "was not kept" in hostile.get_json()["error"]["message"]


@pytest.fixture(scope="module")
def corpus_manifests(app):
    """Every manifest of the shared corpus (v2 and v3) that the Presentation validator accepts
    as its holder publishes it, stored as harvested: [(database id, file name, version)]."""
    from manuscripts_search.models import Manifest
    from web.database import get_session

    stored = []
    with app.app_context():
        session = get_session()
        for version in (2, 3):
            for path in sorted((CORPUS / "iiif" / f"v{version}").glob("*.json")):
                document = json.loads(path.read_text())
                declared = document.get("@id") or document.get("id")
                if (document.get("@type") or document.get("type")) not in ("sc:Manifest", "Manifest"):
                    continue
                try:
                    assert_valid_presentation(document, declared, version)
                except AssertionError:
                    continue  # invalid as published: re-publishing cannot be asked to mend it
                row = Manifest(url=f"https://corpus.test/{path.name}", iiif_id=declared, iiif_version=version,
                               label={"none": [path.stem]}, raw_json=path.read_text())
                session.add(row)
                session.flush()
                stored.append((row.id, path.name, version))
        session.commit()
    assert len([s for s in stored if s[2] == 2]) >= 30 and len([s for s in stored if s[2] == 3]) >= 50, stored
    return stored


def test_every_republished_manifest_validates_in_its_own_version(client, corpus_manifests):
    for manifest_id, name, version in corpus_manifests:
        url = f"http://msearch.test/iiif/manifest/{manifest_id}"
        document = client.get(url).get_json()
        # The official validator refused our v2 documents ("Services must have an http[s] URI":
        # the Search 2 block had only id/type) and every document whose id was the holder's.
        try:
            assert_valid_presentation(document, url, version)
        except AssertionError as error:
            raise AssertionError(f"{name} (v{version}) re-published: {error}") from None
        services = document["service"]
        if version == 2:
            assert services[0]["@id"] == f"http://msearch.test/iiif/search/2/manifest/{manifest_id}"
            assert services[0]["@type"] == "SearchService2" and "id" not in services[0]
            assert document["seeAlso"][0]["profile"] == "http://iiif.io/api/presentation/2/context.json"
        else:
            assert services[0]["type"] == "SearchService2"
        assert services[1]["profile"] == "http://iiif.io/api/search/1/search"


def test_export_manifest_is_valid_presentation_3_with_a_search_service(client, shapes_site):
    from iiif_prezi3 import Manifest

    response = client.get("/iiif/export/manifest?q=a+red+circle")
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
    document = response.get_json()
    Manifest(**{**document, "@context": "http://iiif.io/api/presentation/3/context.json"})
    assert_valid_presentation(document, "http://msearch.test/iiif/export/manifest?q=a+red+circle", 3)
    assert document["service"][0]["type"] == "SearchService2"
    assert "http://iiif.io/api/presentation/3/context.json" in document["@context"]
    canvases = document["items"]
    # The whole result set, as many canvases as the page and the API count (the red circle and the
    # scene's red circle; the other pages score below the floor).
    assert len(canvases) == client.get("/api/search?q=a+red+circle").get_json()["total"] == 2
    assert canvases[0]["id"] in (shapes_site.canvas_iiif_ids["red_circle"], shapes_site.canvas_iiif_ids["scene"])
    for canvas in canvases:
        assert canvas["partOf"][0]["id"] == shapes_site.manifest_url
        assert canvas["homepage"][0]["id"] == "https://example.org/book"
        assert canvas["rights"] == "http://creativecommons.org/licenses/by/4.0/"
        body = canvas["items"][0]["items"][0]["body"]
        assert body["service"][0]["type"] == "ImageService3" and body["service"][0]["id"].startswith("http://iiif.test/iiif3/")
    scene = next(c for c in canvases if c["id"] == shapes_site.canvas_iiif_ids["scene"])
    assert any(a["target"].endswith("#xywh=" + ",".join(map(str, SCENE_REGION)))
               for a in scene["annotations"][0]["items"])
    search1 = next(s for s in document["service"] if s.get("profile") == "http://iiif.io/api/search/1/search")
    found = client.get(urlsplit(search1["@id"]).path + "?q=dragon").get_json()
    assert found["resources"] and {r["on"].split("#")[0] for r in found["resources"]} <= {c["id"] for c in canvases}
    search2 = next(s for s in document["service"] if s.get("type") == "SearchService2")
    items = client.get(urlsplit(search2["id"]).path + "?q=dragon").get_json()["items"]
    assert items[0]["target"]["partOf"] == [{"id": shapes_site.manifest_url, "type": "Manifest",
                                             "label": {"en": ["Book of shapes"], "fr": ["Livre des formes"]}}]


def test_export_collection_lists_the_source_manifests(client, shapes_site):
    from iiif_prezi3 import Collection

    document = client.get("/iiif/export/collection?q=dragon").get_json()
    Collection(**document)
    assert_valid_presentation(document, "http://msearch.test/iiif/export/collection?q=dragon", 3)
    assert [item["id"] for item in document["items"]] == [shapes_site.manifest_url]
    assert document["items"][0]["label"]["en"] == ["Book of shapes"]


def test_export_of_a_bad_search_is_a_400(client):
    response = client.get("/iiif/export/manifest?q=")
    assert response.status_code == 400 and "query is empty" in response.get_json()["error"]["message"]


# -- Content State -------------------------------------------------------------------------------

def test_every_hit_carries_a_content_state_that_opens_the_region(client, shapes_site):
    hits = client.get("/api/search?q=a+red+circle&k=4").get_json()["hits"]
    scene = next(h for h in hits if h["canvas_id"] == shapes_site.canvas_ids["scene"])
    target = parse_content_state(scene["content_state"])
    assert target.canvas_id == shapes_site.canvas_iiif_ids["scene"]
    assert target.manifest_id == shapes_site.manifest_url and target.xywh == SCENE_REGION
    assert scene["share_url"].startswith("http://msearch.test/view?iiif-content=")
    opened = client.get(urlsplit(scene["share_url"]).path + "?" + urlsplit(scene["share_url"]).query)
    assert opened.status_code == 302
    assert opened.headers["Location"] == f"/canvas/{shapes_site.canvas_ids['scene']}?xywh=500,750,500,750"


def test_viewer_accepts_iiif_content_in_every_form(client, shapes_site):
    red = shapes_site.canvas_iiif_ids["red_circle"]
    state = content_state_parameter(canvas_content_state(red, shapes_site.manifest_url, "1,2,3,4", full_annotation=True))
    for path in (f"/?iiif-content={state}", f"/view?iiif-content={state}"):
        response = client.get(path, follow_redirects=False)
        if response.headers["Location"].startswith("/view"):
            response = client.get(response.headers["Location"])
        assert response.headers["Location"] == f"/canvas/{shapes_site.canvas_ids['red_circle']}?xywh=1,2,3,4"
    plain = client.get(f"/view?iiif-content={shapes_site.manifest_url}")
    assert plain.headers["Location"] == f"/manifests/{shapes_site.manifest_ids['book']}"
    unknown = client.get("/view?iiif-content=" + content_state_parameter(
        canvas_content_state("https://elsewhere.example/c", "https://elsewhere.example/m")))
    assert unknown.status_code == 404 and "has not harvested" in unknown.get_data(as_text=True)
    assert client.get("/view?iiif-content=%%%").status_code == 400


def test_viewer_pages_open_what_they_are_given_and_refuse_anything_else(app, client, shapes_site):
    manifest = f"http://msearch.test/iiif/manifest/{shapes_site.manifest_ids['book']}"
    state = content_state_parameter(canvas_content_state(shapes_site.canvas_iiif_ids["scene"], manifest, "1,2,3,4"))
    uv = client.get(f"/uv?manifest={manifest}")
    assert uv.status_code == 200
    clover = client.get(f"/clover?iiif-content={state}")
    assert clover.status_code == 200 and f'"content": "{state}"' in clover.get_data(as_text=True)
    for path in ("/uv", "/uv?manifest=javascript:alert(1)", "/clover", "/clover?iiif-content=javascript:alert(1)",
                 "/clover?iiif-content=%%%", "/clover?iiif-content=" + "A" * 20_001):
        response = client.get(path)
        assert response.status_code == 400, path
    # Not installed (no `make setup`): the page says how to install it instead of a broken viewer.
    saved = app.config["CLOVER_DIR"], app.config["UV_DIR"]
    app.config["CLOVER_DIR"] = app.config["UV_DIR"] = "/nonexistent"
    try:
        assert "npm run build" in client.get(f"/clover?iiif-content={manifest}").get_data(as_text=True)
        assert "make setup" in client.get(f"/uv?manifest={manifest}").get_data(as_text=True)
    finally:
        app.config["CLOVER_DIR"], app.config["UV_DIR"] = saved


def test_canvas_page_share_link_is_a_content_state_of_the_highlighted_region(client, shapes_site):
    html = client.get(f"/canvas/{shapes_site.canvas_ids['scene']}?xywh=500,750,500,750").get_data(as_text=True)
    value = html.split('id="share-url" class="text-input" type="text" readonly value="')[1].split('"')[0]
    state = parse_qs(urlsplit(value.replace("&amp;", "&")).query)["iiif-content"][0]
    target = parse_content_state(state)
    assert target.xywh == SCENE_REGION and target.canvas_id == shapes_site.canvas_iiif_ids["scene"]
