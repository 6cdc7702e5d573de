"""IIIF output builders checked against the specifications' own examples: Content State encoding
(the spec's worked examples), Content Search 1.0/2.0 response and service shapes (the real
responses in the shared corpus: spec examples via dbmdz, Wellcome, BSB, Clover), and Presentation 3
exports read back through the iiif-prezi3 models."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from manuscripts_search.iiif.content_search import (ResultPage, SearchMatch, SearchServiceURLs,
                                                    autocomplete1_response, autocomplete2_response, search1_response,
                                                    search2_response, with_search_services)
from manuscripts_search.iiif.content_state import (ContentStateError, canvas_content_state, content_state_parameter,
                                                   decode_content_state, encode_content_state, parse_content_state)
from manuscripts_search.iiif.export import (ExportCanvas, ExportImage, ExportRegion, result_collection,
                                            result_manifest)

CORPUS = Path(os.environ.get("MSEARCH_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))
ANNOTATIONS = CORPUS / "iiif" / "annotations"

# Content State 1.0, section 6.3: this condensed target and its encoded form.
SPEC_STATE = ('{"id":"https://example.org/object1/canvas7#xywh=1000,2000,1000,2000","type":"Canvas",'
              '"partOf":[{"id":"https://example.org/object1/manifest","type":"Manifest"}]}')
SPEC_ENCODED = ("JTdCJTIyaWQlMjIlM0ElMjJodHRwcyUzQSUyRiUyRmV4YW1wbGUub3JnJTJGb2JqZWN0MSUyRmNhbnZhczclMjN4eXdoJTNE"
                "MTAwMCUyQzIwMDAlMkMxMDAwJTJDMjAwMCUyMiUyQyUyMnR5cGUlMjIlM0ElMjJDYW52YXMlMjIlMkMlMjJwYXJ0T2YlMjIl"
                "M0ElNUIlN0IlMjJpZCUyMiUzQSUyMmh0dHBzJTNBJTJGJTJGZXhhbXBsZS5vcmclMkZvYmplY3QxJTJGbWFuaWZlc3QlMjIl"
                "MkMlMjJ0eXBlJTIyJTNBJTIyTWFuaWZlc3QlMjIlN0QlNUQlN0Q")
# Section 5.4: the "Alice" search-result link.
ALICE_ENCODED = ("JTdCJTIyaWQlMjIlM0ElMjJodHRwcyUzQSUyRiUyRmV4YW1wbGUub3JnJTJGYWxpY2UlMkZjYW52YXM3NyUyM3h5d2glM0Qx"
                 "MDAwJTJDMjAwMCUyQzEwMDAlMkMyMDAwJTIyJTJDJTIydHlwZSUyMiUzQSUyMkNhbnZhcyUyMiUyQyUyMnBhcnRPZiUyMiUz"
                 "QSU1QiU3QiUyMmlkJTIyJTNBJTIyaHR0cHMlM0ElMkYlMkZleGFtcGxlLm9yZyUyRmFsaWNlJTJGbWFuaWZlc3QlMjIlMkMl"
                 "MjJ0eXBlJTIyJTNBJTIyTWFuaWZlc3QlMjIlN0QlNUQlN0Q")


def _corpus(name: str) -> dict:
    path = ANNOTATIONS / name
    assert path.is_file(), f"the shared corpus is missing {path} (set MSEARCH_CORPUS)"
    return json.loads(path.read_text())


# -- Content State -------------------------------------------------------------------------------

def test_content_state_encoding_matches_the_spec_example():
    assert encode_content_state(SPEC_STATE) == SPEC_ENCODED
    assert decode_content_state(SPEC_ENCODED) == SPEC_STATE


def test_our_canvas_content_state_encodes_like_the_spec():
    state = canvas_content_state("https://example.org/alice/canvas77", "https://example.org/alice/manifest",
                                 "1000,2000,1000,2000", full_annotation=False)
    assert content_state_parameter(state) == ALICE_ENCODED


def test_content_state_round_trip_with_unicode_and_javascript_safe_characters():
    state = canvas_content_state("https://example.org/é/canvas(1)!*'~", "https://example.org/m", "1,2,3,4")
    target = parse_content_state(content_state_parameter(state))
    assert target.resource_id == "https://example.org/é/canvas(1)!*'~"
    assert target.manifest_id == "https://example.org/m" and target.xywh == (1, 2, 3, 4)


def test_full_annotation_and_specific_resource_forms_are_read():
    # The full annotation is what we write by default: Clover opens only that form.
    full = canvas_content_state("https://ex.org/c1", "https://ex.org/m", "5,6,7,8")
    # With an id (Clover opens no annotation without one), the same for the same state.
    assert full["id"].startswith("urn:uuid:") and full["id"] == canvas_content_state(
        "https://ex.org/c1", "https://ex.org/m", "5,6,7,8")["id"] != canvas_content_state(
        "https://ex.org/c1", "https://ex.org/m", "5,6,7,9")["id"]
    assert full == {"@context": "http://iiif.io/api/presentation/3/context.json", "id": full["id"],
                    "type": "Annotation", "motivation": ["contentState"],
                    "target": {"id": "https://ex.org/c1#xywh=5,6,7,8", "type": "Canvas",
                               "partOf": [{"id": "https://ex.org/m", "type": "Manifest"}]}}
    target = parse_content_state(encode_content_state(json.dumps(full)))
    assert (target.resource_type, target.canvas_id, target.xywh) == ("Canvas", "https://ex.org/c1", (5, 6, 7, 8))
    specific = {"type": "SpecificResource", "source": {"id": "https://ex.org/c2", "type": "Canvas",
                                                        "partOf": [{"id": "https://ex.org/m", "type": "Manifest"}]},
                "selector": {"type": "FragmentSelector", "value": "xywh=1,2,3,4"}}
    target = parse_content_state(encode_content_state(json.dumps(specific)))
    assert (target.canvas_id, target.manifest_id, target.xywh) == ("https://ex.org/c2", "https://ex.org/m", (1, 2, 3, 4))
    compact = parse_content_state(ALICE_ENCODED)  # the target-only form is still read
    assert (compact.canvas_id, compact.xywh) == ("https://example.org/alice/canvas77", (1000, 2000, 1000, 2000))
    manifest = parse_content_state("https://ex.org/m")  # a plain URI is never encoded
    assert manifest.resource_id == "https://ex.org/m" and manifest.resource_type == "Unknown"


@pytest.mark.parametrize("value, reason", [
    ("", "empty"), ("!!!", "not base64url"), ("a", "not base64url"),
    (encode_content_state("not json"), "not JSON"), (encode_content_state("[1, 2]"), "JSON object"),
    (encode_content_state('{"id": "javascript:alert(1)", "type": "Canvas"}'), r"http\(s\) id"),
    (encode_content_state('{"id": "https://ex.org/c", "type": "Canvas"}'), "partOf"),
    ("JTdC" * 6000, "longer than"), (base64.urlsafe_b64encode(b"%E0%A4").decode().rstrip("="), "percent-encoded"),
])
def test_bad_content_states_are_refused_with_the_reason(value, reason):
    with pytest.raises(ContentStateError, match=reason):
        parse_content_state(value)


# -- Content Search ------------------------------------------------------------------------------

def _page(total: int, page: int = 1, size: int = 2) -> ResultPage:
    base = "https://s.example/search?q=bird"
    last = max(1, -(-total // size))
    return ResultPage(f"{base}&page={page}", base, total, (page - 1) * size, f"{base}&page=1", f"{base}&page={last}",
                      f"{base}&page={page + 1}" if page < last else None,
                      f"{base}&page={page - 1}" if page > 1 else None, ("user",))


MATCHES = [
    SearchMatch("https://s.example/anno/1", "https://ex.org/canvas/1", "There are two birds in the bush",
                xywh="200,100,200,20", exact="birds", prefix="There are two ", suffix=" in the bush",
                label={"none": ["p. 1"]}),
    SearchMatch("https://s.example/anno/2", "https://ex.org/canvas/2", "Looks like “bird” (similarity 0.31)",
                motivation="highlighting", xywh="5,6,7,8"),
]


def test_search2_response_has_the_shape_of_the_spec_and_of_a_real_service():
    response = search2_response(MATCHES, _page(3))
    real = _corpus("clover__search2-berliner.json")
    assert response["@context"] == real["@context"] == "http://iiif.io/api/search/2/context.json"
    assert response["type"] == real["type"] == "AnnotationPage"
    for ours, theirs in zip(response["items"], real["items"]):
        assert set(theirs) - {"label"} <= set(ours) and ours["type"] == theirs["type"] == "Annotation"
        assert set(ours["body"]) == set(theirs["body"]) and ours["body"]["type"] == "TextualBody"
        assert ours["target"].split("#xywh=")[1].count(",") == 3
    # Paging (spec 4.2.2): partOf is the embedded collection with first/last/total; next; startIndex.
    # partOf is an array, as Presentation 3 requires of it (the spec's example writes one object,
    # which Clover's parser cannot read: "t.partOf.map is not a function").
    assert response["partOf"] == [{"id": "https://s.example/search?q=bird", "type": "AnnotationCollection",
                                   "total": 3, "first": {"id": "https://s.example/search?q=bird&page=1",
                                                         "type": "AnnotationPage"},
                                   "last": {"id": "https://s.example/search?q=bird&page=2",
                                            "type": "AnnotationPage"}}]
    assert response["next"] == {"id": "https://s.example/search?q=bird&page=2", "type": "AnnotationPage"}
    assert "prev" not in response and response["startIndex"] == 0 and response["ignored"] == ["user"]
    # Match highlighting (spec 4.3.2): a highlighting annotation with a TextQuoteSelector on the match.
    highlight = response["annotations"][0]["items"][0]
    assert response["annotations"][0]["type"] == "AnnotationPage"
    assert highlight["motivation"] == "highlighting"
    assert highlight["target"] == {"type": "SpecificResource", "source": "https://s.example/anno/1", "selector": [
        {"type": "TextQuoteSelector", "prefix": "There are two ", "exact": "birds", "suffix": " in the bush"}]}
    second = search2_response(MATCHES[1:], _page(3, page=2))
    assert second["prev"]["id"].endswith("page=1") and "next" not in second and second["startIndex"] == 2


def test_search2_targets_name_their_manifest_when_the_scope_spans_manifests():
    match = SearchMatch("https://s/a", "https://ex.org/c", "text", part_of={
        "id": "https://ex.org/m", "type": "Manifest", "label": {"en": ["M"]}})
    target = search2_response([match], _page(1))["items"][0]["target"]
    assert target == {"id": "https://ex.org/c", "type": "Canvas", "partOf": [
        {"id": "https://ex.org/m", "type": "Manifest", "label": {"en": ["M"]}}]}


def test_search1_hits_always_target_a_region():
    # Universal Viewer 4.4 reads each hit's box from "#xywh=" and fails on a bare canvas URI
    # ("Cannot read properties of null (reading '1')"), showing no hit at all.
    whole = SearchMatch("https://s/a", "https://ex.org/c", "f. 1r", motivation="describing", extent=(1000, 1500))
    unknown = SearchMatch("https://s/b", "https://ex.org/d", "f. 2r", motivation="describing")
    response = search1_response([whole, unknown, MATCHES[0]], _page(3))
    assert [r["on"] for r in response["resources"]] == [
        "https://ex.org/c#xywh=0,0,1000,1500", "https://ex.org/d#xywh=0,0,1,1",
        "https://ex.org/canvas/1#xywh=200,100,200,20"]
    assert search2_response([whole], _page(1))["items"][0]["target"] == "https://ex.org/c"  # Search 2 may say "all"


@pytest.mark.parametrize("example", ["dbmdz__highlighting.json", "helpers__search1-bsb.json",
                                     "mirador27__searchManifest.results.json"])
def test_search1_response_has_the_shape_of_real_search1_responses(example):
    response = search1_response(MATCHES, _page(3))
    real = _corpus(example)
    assert response["@type"] == real["@type"] == "sc:AnnotationList"
    assert "http://iiif.io/api/search/1/context.json" in response["@context"]
    ours, theirs = response["resources"][0], real["resources"][0]
    assert {"@id", "@type", "motivation", "resource", "on"} <= set(ours) and set(theirs) <= set(ours) | {"label"}
    assert ours["resource"]["@type"] == theirs["resource"]["@type"] == "cnt:ContentAsText"
    assert ours["on"] == "https://ex.org/canvas/1#xywh=200,100,200,20"
    if "within" in real:
        assert real["within"]["@type"] == response["within"]["@type"] == "sc:Layer"
        assert isinstance(response["within"]["total"], int) and response["within"]["total"] == 3
    if "hits" in real:
        assert response["hits"][0]["@type"] == real["hits"][0]["@type"] == "search:Hit"
        assert response["hits"][0]["annotations"] == ["https://s.example/anno/1"]
    assert response["hits"][0]["match"] == "birds" and response["hits"][0]["before"] == "There are two "
    assert response["hits"][0]["after"] == " in the bush"
    assert response["next"] == "https://s.example/search?q=bird&page=2" and response["startIndex"] == 0
    assert response["within"]["ignored"] == ["user"]


def test_autocomplete_responses_have_the_shapes_of_the_spec_examples():
    one = autocomplete1_response("https://s/ac?q=bi", [("bird", 15), ("biro", 3)], lambda t: f"https://s/search?q={t}")
    real = _corpus("dbmdz__fullResponseWithLabels.json")
    assert one["@type"] == real["@type"] == "search:TermList" and one["@context"] == real["@context"]
    assert set(one["terms"][0]) == set(real["terms"][0]) - {"label"}
    assert one["terms"][0] == {"match": "bird", "url": "https://s/search?q=bird", "count": 15}
    wellcome = _corpus("helpers__search1-autocomplete-wellcome.json")
    assert wellcome["@type"] == one["@type"]
    two = autocomplete2_response("https://s/ac2?q=bi", [("bird", 15)], ("user",))
    assert two == {"@context": "http://iiif.io/api/search/2/context.json", "id": "https://s/ac2?q=bi",
                   "type": "TermPage", "ignored": ["user"], "items": [{"value": "bird", "total": 15}]}


URLS = SearchServiceURLs("https://s/search/1", "https://s/ac/1", "https://s/search/2", "https://s/ac/2")


def test_republished_v3_manifest_declares_search2_first_and_search1_by_profile():
    original = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": "https://ex.org/m",
                "type": "Manifest", "service": [{"id": "https://other/s", "type": "SearchService2"}]}
    result = with_search_services(original, URLS, 3)
    assert original["service"] == [{"id": "https://other/s", "type": "SearchService2"}]  # input untouched
    assert result["@context"] == ["http://iiif.io/api/search/2/context.json",
                                  "http://iiif.io/api/presentation/3/context.json"]
    search2, search1, theirs = result["service"]  # Clover takes the first search service
    assert search1 == {"@id": "https://s/search/1", "@type": "SearchService1",
                       "profile": "http://iiif.io/api/search/1/search",
                       "service": [{"@id": "https://s/ac/1", "@type": "AutoCompleteService1",
                                    "profile": "http://iiif.io/api/search/1/autocomplete"}]}
    assert search2 == {"id": "https://s/search/2", "type": "SearchService2",
                       "service": [{"id": "https://s/ac/2", "type": "AutoCompleteService2"}]}
    assert theirs["id"] == "https://other/s"


def test_republished_v2_manifest_declares_search1_like_the_wellcome_manifest():
    original = _json_v2 = {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": "https://ex.org/m",
                           "@type": "sc:Manifest", "service": {"@id": "https://other/x", "profile": "p"}}
    result = with_search_services(original, URLS, 2)
    assert result["@context"] == _json_v2["@context"]
    # Search 2 in Presentation 2 syntax: a service there is identified by @id (the validator
    # refused the id/type form: "Services must have an http[s] URI").
    assert result["service"][0] == {"@context": "http://iiif.io/api/search/2/context.json",
                                    "@id": "https://s/search/2", "@type": "SearchService2",
                                    "service": {"@id": "https://s/ac/2", "@type": "AutoCompleteService2"}}
    assert result["service"][1] == {"@context": "http://iiif.io/api/search/1/context.json",
                                    "@id": "https://s/search/1", "profile": "http://iiif.io/api/search/1/search",
                                    "service": {"@id": "https://s/ac/1",
                                                "profile": "http://iiif.io/api/search/1/autocomplete"}}
    assert result["service"][2] == {"@id": "https://other/x", "profile": "p"}
    corpus_manifest = json.loads((CORPUS / "iiif" / "v2" / "mirador27__searchManifest.json").read_text())
    declared = corpus_manifest["service"] if isinstance(corpus_manifest["service"], list) else [corpus_manifest["service"]]
    real = next(s for s in declared if "search" in str(s.get("profile", "")))
    assert set(real) <= set(result["service"][1]) | {"label"}


# -- Presentation 3 export -------------------------------------------------------------------------

def _canvas(n: int, **changes) -> ExportCanvas:
    values = dict(canvas_id=f"https://ex.org/c{n}", label={"none": [f"f. {n}"]}, width=1000, height=1500,
                  image=ExportImage(f"https://img.example/iiif/{n}", 3, 2, None, "image/jpeg", 500, 750),
                  manifest_id="https://ex.org/m", manifest_label={"en": ["Source"]},
                  homepage=("https://ex.org/book",),
                  required_statement={"label": {"en": ["Attribution"]}, "value": {"en": ["The Library"]}},
                  rights="http://creativecommons.org/licenses/by/4.0/",
                  regions=(ExportRegion("10,20,30,40", "a dragon"),), score=0.5)
    values.update(changes)
    return ExportCanvas(**values)


def test_result_manifest_is_valid_presentation_3_pointing_at_the_sources():
    from iiif_prezi3 import Manifest

    exported = result_manifest("https://ms.example/iiif/export/manifest?q=dragon", {"en": ["Results"]}, [
        _canvas(1), _canvas(2, image=ExportImage("https://img.example/iiif2/2", 2, 1, None)), _canvas(1),
        _canvas(3, width=None, height=None, image=ExportImage(None, None, None, None)),
        _canvas(4, image=ExportImage(None, None, None, "https://img.example/raw/4.jpg", "image/png", 10, 20),
                rights="not a url", homepage=("javascript:alert(1)",))],
        homepage_url="https://ms.example/search?q=dragon")
    document = exported.json
    Manifest(**document)  # reads back as valid
    assert document["@context"] == "http://iiif.io/api/presentation/3/context.json"
    assert [c["id"] for c in document["items"]] == ["https://ex.org/c1", "https://ex.org/c2", "https://ex.org/c4"]
    assert exported.skipped == ["https://ex.org/c3: no size"]
    first = document["items"][0]
    body = first["items"][0]["items"][0]["body"]
    assert body["service"] == [{"id": "https://img.example/iiif/1", "type": "ImageService3", "profile": "level2"}]
    assert body["id"] == "https://img.example/iiif/1/full/max/0/default.jpg"
    assert first["partOf"] == [{"id": "https://ex.org/m", "type": "Manifest", "label": {"en": ["Source"]}}]
    assert first["homepage"][0]["id"] == "https://ex.org/book"
    assert first["rights"] == "http://creativecommons.org/licenses/by/4.0/"
    assert first["requiredStatement"]["value"] == {"en": ["The Library"]}
    highlight = first["annotations"][0]["items"][0]
    assert highlight["motivation"] == "highlighting" and highlight["target"] == "https://ex.org/c1#xywh=10,20,30,40"
    v2_service = document["items"][1]["items"][0]["items"][0]["body"]["service"][0]
    assert v2_service == {"@id": "https://img.example/iiif2/2", "@type": "ImageService2",
                          "profile": "http://iiif.io/api/image/2/level1.json"}
    raw = document["items"][2]
    assert "rights" not in raw and "homepage" not in raw and "service" not in raw["items"][0]["items"][0]["body"]
    assert document["homepage"][0]["id"] == "https://ms.example/search?q=dragon"


def test_result_collection_is_valid_and_lists_each_manifest_once():
    from iiif_prezi3 import Collection

    document = result_collection("https://ms.example/iiif/export/collection?q=x", {"en": ["Results"]}, [
        ("https://ex.org/m1", {"en": ["One"]}), ("https://ex.org/m2", {}), ("https://ex.org/m1", {"en": ["One"]}),
        ("javascript:alert(1)", {"en": ["Bad"]})])
    Collection(**document)
    assert [(i["id"], i["type"]) for i in document["items"]] == [("https://ex.org/m1", "Manifest"),
                                                                ("https://ex.org/m2", "Manifest")]
    assert document["items"][1]["label"] == {"none": ["https://ex.org/m2"]}
