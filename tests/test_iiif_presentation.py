"""Unit tests for IIIF Presentation parsing: language values, decoding, version and type
detection, manifest fields, canvases and painted images, image services, collections.

Each test builds a small document inline, so the rule it checks is visible next to it.
"""

from __future__ import annotations

import codecs
import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manuscripts_search.iiif.language import first_value, to_language_map
from manuscripts_search.iiif.model import IIIFParseError, ParsedCollection, ParsedManifest
from manuscripts_search.iiif.image_services import image_service_ref
from manuscripts_search.iiif.presentation import (
    parse_collection,
    parse_document,
    parse_manifest,
)

V2 = "http://iiif.io/api/presentation/2/context.json"
V3 = "http://iiif.io/api/presentation/3/context.json"
SHARED_CANVAS = "http://www.shared-canvas.org/ns/context.json"
BASE = "https://example.org/iiif/book1"


# --- document builders -----------------------------------------------------------------------


def v2_image_annotation(name, service=None, on=None, motivation="sc:painting", **resource):
    body = {"@id": f"{BASE}/img/{name}/full/full/0/default.jpg", "@type": "dctypes:Image"}
    body.update(resource)
    if service is not None:
        body["service"] = service
    annotation = {"@type": "oa:Annotation", "resource": body, "on": on or f"{BASE}/canvas/{name}"}
    if motivation is not None:
        annotation["motivation"] = motivation
    return annotation


def v2_service(name, profile="http://iiif.io/api/image/2/level2.json"):
    return {
        "@context": "http://iiif.io/api/image/2/context.json",
        "@id": f"{BASE}/iiif/{name}",
        "profile": profile,
    }


def v2_canvas(name, width=1000, height=1500, images=None):
    canvas = {"@id": f"{BASE}/canvas/{name}", "@type": "sc:Canvas", "label": f"f. {name}"}
    if width is not None:
        canvas["width"] = width
    if height is not None:
        canvas["height"] = height
    canvas["images"] = [v2_image_annotation(name, v2_service(name))] if images is None else images
    return canvas


def v2_manifest(*sequences, **fields):
    doc = {
        "@context": V2,
        "@id": f"{BASE}/manifest",
        "@type": "sc:Manifest",
        "label": "Book 1",
        "sequences": [{"@type": "sc:Sequence", "canvases": list(seq)} for seq in sequences],
    }
    doc.update(fields)
    return doc


def v3_image_body(name, service="default", **fields):
    body = {
        "id": f"{BASE}/img/{name}/full/max/0/default.jpg",
        "type": "Image",
        "format": "image/jpeg",
    }
    if service == "default":
        service = [{"id": f"{BASE}/iiif3/{name}", "type": "ImageService3", "profile": "level1"}]
    if service is not None:
        body["service"] = service
    body.update(fields)
    return body


def v3_canvas(name, body=None, width=1000, height=1500, motivation="painting", target=None):
    canvas_id = f"{BASE}/canvas/{name}"
    annotation = {
        "id": f"{canvas_id}/anno",
        "type": "Annotation",
        "motivation": motivation,
        "body": v3_image_body(name) if body is None else body,
        "target": target or canvas_id,
    }
    canvas = {
        "id": canvas_id,
        "type": "Canvas",
        "label": {"none": [name]},
        "items": [{"id": f"{canvas_id}/page", "type": "AnnotationPage", "items": [annotation]}],
    }
    if width is not None:
        canvas["width"] = width
    if height is not None:
        canvas["height"] = height
    return canvas


def v3_manifest(*canvases, **fields):
    doc = {
        "@context": V3,
        "id": f"{BASE}/manifest",
        "type": "Manifest",
        "label": {"en": ["Book 1"]},
        "items": list(canvases),
    }
    doc.update(fields)
    return doc


# --- language values -------------------------------------------------------------------------


def test_plain_string_has_no_language():
    assert to_language_map("Book of Hours") == {"none": ["Book of Hours"]}


def test_v2_value_objects_and_strings_group_by_language():
    value = [
        {"@value": "Livre d'heures", "@language": "fr"},
        "Book of Hours",
        {"@value": "Stundenbuch", "@language": "de"},
        {"@value": "Hours, again", "@language": "fr"},
    ]
    assert to_language_map(value) == {
        "fr": ["Livre d'heures", "Hours, again"],
        "none": ["Book of Hours"],
        "de": ["Stundenbuch"],
    }


def test_v3_language_map_with_at_none_and_bare_string():
    assert to_language_map({"@none": ["Hogarth"], "de": "Werke", "en": []}) == {
        "none": ["Hogarth"],
        "de": ["Werke"],
    }


def test_html_is_kept_verbatim():
    html = '<span>Ms. <a href="https://example.org">Richardson 7</a><script>x()</script></span>'
    assert to_language_map(html) == {"none": [html]}
    assert to_language_map({"@value": html, "@language": "en"}) == {"en": [html]}


def test_numbers_and_booleans_become_text_none_is_empty():
    assert to_language_map(1795) == {"none": ["1795"]}
    assert to_language_map({"en": [12.5, False]}) == {"en": ["12.5", "false"]}
    assert to_language_map(None) == {}


def test_garbage_is_reported_not_raised():
    warnings = []
    value = [
        {"@id": "https://example.org/x", "@type": "foaf:Agent"},
        [[[[[["deep"]]]]]],
        {"en": [{"x": 1}]},
        "ok",
    ]
    assert to_language_map(value, warnings.append, "label") == {"none": ["ok"]}
    assert len(warnings) == 3
    assert all(w.startswith("label:") for w in warnings)


def test_first_value_prefers_english_then_none_then_anything():
    assert first_value({"fr": ["Titre"], "none": ["Title?"], "en-GB": ["Title"]}) == "Title"
    assert first_value({"fr": ["Titre"], "none": ["Sans langue"]}) == "Sans langue"
    assert first_value({"fr": ["Titre"], "de": ["Titel"]}) == "Titre"
    assert first_value({"fr": ["Titre"]}, preferred=("de", "fr")) == "Titre"


def test_first_value_skips_blank_strings_and_handles_empty():
    assert first_value({"en": ["  "], "none": ["", "Real"]}) == "Real"
    assert first_value({}) is None
    assert first_value(None) is None
    assert first_value({"en": [""]}) is None
    assert first_value({1: [2], "de": [None, "Titel"]}) == "Titel"


# --- decoding --------------------------------------------------------------------------------


def test_parses_bytes_str_and_dict_alike():
    doc = v2_manifest([v2_canvas("1")])
    for given_doc in (doc, json.dumps(doc), json.dumps(doc).encode("utf-8")):
        manifest = parse_document(given_doc)
        assert manifest.id == f"{BASE}/manifest"
        assert manifest.canvas_count == 1


def test_utf8_bom_is_accepted_in_bytes_and_str():
    text = json.dumps(
        v2_manifest([v2_canvas("1")], label="Psautier à l'usage de Paris"), ensure_ascii=False
    )
    manifest = parse_document(codecs.BOM_UTF8 + text.encode("utf-8"))
    assert manifest.label == {"none": ["Psautier à l'usage de Paris"]}
    assert manifest.warnings == []
    assert parse_document("\ufeff" + text).label == manifest.label


def test_utf16_with_bom_is_accepted():
    text = json.dumps(v2_manifest([v2_canvas("1")], label="Évangéliaire"), ensure_ascii=False)
    assert parse_document(text.encode("utf-16")).label == {"none": ["Évangéliaire"]}


def test_cp1252_bytes_are_decoded_with_a_warning():
    text = json.dumps(
        v2_manifest([v2_canvas("1")], label="Bibliothèque – “Heures”"), ensure_ascii=False
    )
    manifest = parse_document(text.encode("cp1252"))
    assert manifest.label == {"none": ["Bibliothèque – “Heures”"]}
    assert any("Windows-1252" in w for w in manifest.warnings)


def test_utf8_bom_followed_by_cp1252_bytes():
    text = json.dumps(v2_manifest([v2_canvas("1")], label="Chœur"), ensure_ascii=False)
    manifest = parse_document(codecs.BOM_UTF8 + text.encode("cp1252"))
    assert manifest.label == {"none": ["Chœur"]}


def test_bytes_undefined_in_cp1252_fall_back_to_latin1():
    text = json.dumps(v2_manifest([v2_canvas("1")], label="X\x81Y"), ensure_ascii=False)
    manifest = parse_document(text.encode("latin-1"))
    assert manifest.label == {"none": ["X\x81Y"]}
    assert any("ISO-8859-1" in w for w in manifest.warnings)


@pytest.mark.parametrize(
    "doc, message",
    [
        (b'{"@id": "x", ', "invalid JSON"),
        (b"", "invalid JSON"),
        ("not json at all", "invalid JSON"),
        (b"[1, 2]", "array, not an object"),
        ('"just a string"', "string, not an object"),
        ("42", "number, not an object"),
        ("null", "null, not an object"),
        ([{"@type": "sc:Manifest"}], "array, not an object"),
        ({"test": "Broken"}, "no @type/type"),
        ({}, "no @type/type"),
        (
            {"@context": V2, "@id": "https://e.org/c", "@type": "sc:Canvas", "images": []},
            "'sc:Canvas'",
        ),
        ({"@context": V2, "@type": "sc:AnnotationList", "resources": []}, "'sc:AnnotationList'"),
        ({"@context": V3, "type": "AnnotationPage", "items": []}, "'AnnotationPage'"),
        ({"@context": V3, "type": "AnnotationCollection", "label": "x"}, "'AnnotationCollection'"),
    ],
)
def test_documents_that_are_not_manifests_or_collections_raise(doc, message):
    with pytest.raises(IIIFParseError, match=message):
        parse_document(doc)


def test_invalid_json_message_locates_the_error():
    with pytest.raises(IIIFParseError, match=r"line 2, column"):
        parse_document('{"@id": "x",\n  oops}')


def test_deeply_nested_json_is_a_parse_error_not_a_crash():
    with pytest.raises(IIIFParseError):
        parse_document("[" * 100_000 + "]" * 100_000)


def test_wrong_python_type_is_a_type_error():
    with pytest.raises(TypeError):
        parse_document(object())


def test_missing_type_is_inferred_from_sequences_with_a_warning():
    doc = v2_manifest([v2_canvas("1")])
    del doc["@type"]
    manifest = parse_document(doc)
    assert isinstance(manifest, ParsedManifest)
    assert any("no @type" in w for w in manifest.warnings)


# --- version detection -----------------------------------------------------------------------


def test_versions_from_context():
    assert (
        parse_document(v2_manifest([v2_canvas("1")], **{"@context": SHARED_CANVAS})).iiif_version
        == 1
    )
    assert parse_document(v2_manifest([v2_canvas("1")])).iiif_version == 2
    assert parse_document(v3_manifest(v3_canvas("1"))).iiif_version == 3
    with_anno_context = v3_manifest(
        v3_canvas("1"), **{"@context": ["http://www.w3.org/ns/anno.jsonld", V3]}
    )
    assert parse_document(with_anno_context).iiif_version == 3


def test_versions_without_context_come_from_keys():
    v2 = v2_manifest([v2_canvas("1")])
    del v2["@context"]
    v3 = v3_manifest(v3_canvas("1"))
    del v3["@context"]
    assert parse_document(v2).iiif_version == 2
    assert parse_document(v3).iiif_version == 3


def test_presentation_1_manifest_with_image_api_1_services():
    service = {
        "@id": "http://images.example.org/iiif/abc/",
        "dcterms:conformsTo": "http://library.stanford.edu/iiif/image-api/1.1/conformance.html#level1",
    }
    canvas = v2_canvas("1", images=[v2_image_annotation("1", service, height="7374", width="5593")])
    manifest = parse_document(v2_manifest([canvas], **{"@context": SHARED_CANVAS}))
    image = manifest.canvases[0].image
    assert manifest.iiif_version == 1
    assert image.service.id == "http://images.example.org/iiif/abc"
    assert image.service.api_version == 2
    assert image.service.level == 1
    assert image.service.profile.endswith("conformance.html#level1")
    assert (image.width, image.height) == (5593, 7374)


# --- manifest fields -------------------------------------------------------------------------


def test_v2_descriptive_fields():
    doc = v2_manifest(
        [v2_canvas("1")],
        label=[{"@value": "Heures", "@language": "fr"}, {"@value": "Hours", "@language": "en"}],
        description="<p>A <b>fine</b> book</p>",
        metadata=[
            {"label": "Date", "value": "1450"},
            "garbage",
            {"label": "Shelfmark", "value": [{"@value": "Ms 1", "@language": "en"}]},
        ],
        attribution="Held by the Library",
        license="https://creativecommons.org/publicdomain/mark/1.0/",
        navDate="1450-01-01T00:00:00Z",
        logo="https://example.org/logo.png",
        related={"@id": "https://example.org/items/1", "format": "text/html"},
        seeAlso=["https://example.org/1.xml", {"@id": "https://example.org/1.json"}],
        thumbnail={"@id": "https://example.org/thumb.jpg", "service": v2_service("t")},
    )
    manifest = parse_document(doc)
    assert manifest.label == {"fr": ["Heures"], "en": ["Hours"]}
    assert manifest.summary == {"none": ["<p>A <b>fine</b> book</p>"]}
    assert [(m.label, m.value) for m in manifest.metadata] == [
        ({"none": ["Date"]}, {"none": ["1450"]}),
        ({"none": ["Shelfmark"]}, {"en": ["Ms 1"]}),
    ]
    assert manifest.required_statement.value == {"none": ["Held by the Library"]}
    assert manifest.rights == "https://creativecommons.org/publicdomain/mark/1.0/"
    assert manifest.nav_date == "1450-01-01T00:00:00Z"
    assert manifest.providers == []  # attribution + logo does not name a provider
    assert manifest.homepage == ["https://example.org/items/1"]
    assert manifest.see_also == ["https://example.org/1.xml", "https://example.org/1.json"]
    assert manifest.thumbnail == "https://example.org/thumb.jpg"
    assert any("metadata[1]" in w for w in manifest.warnings)


def test_v3_descriptive_fields():
    doc = v3_manifest(
        v3_canvas("1"),
        summary={"en": ["A book"]},
        requiredStatement={"label": {"en": ["Attribution"]}, "value": {"en": ["Provided by X"]}},
        rights="http://rightsstatements.org/vocab/NoC-NC/1.0/",
        provider=[{"id": "https://x.org", "type": "Agent", "label": {"en": ["X Library"]}}, "junk"],
        homepage=[{"id": "https://x.org/item", "type": "Text"}],
        thumbnail=[{"id": "https://x.org/t1.jpg", "type": "Image"}, {"id": "https://x.org/t2.jpg"}],
        navDate=1450,
    )
    manifest = parse_document(doc)
    assert manifest.summary == {"en": ["A book"]}
    assert manifest.required_statement.label == {"en": ["Attribution"]}
    assert manifest.required_statement.value == {"en": ["Provided by X"]}
    assert manifest.rights == "http://rightsstatements.org/vocab/NoC-NC/1.0/"
    assert manifest.providers == [{"en": ["X Library"]}]
    assert manifest.homepage == ["https://x.org/item"]
    assert manifest.thumbnail == "https://x.org/t1.jpg"
    assert manifest.nav_date is None
    assert any("navDate" in w for w in manifest.warnings)
    assert any("provider[1]" in w for w in manifest.warnings)


def test_empty_license_string_means_no_rights():
    assert parse_document(v2_manifest([v2_canvas("1")], license="")).rights is None


def test_relative_id_resolves_against_source_url():
    doc = v2_manifest([v2_canvas("1")], **{"@id": "manifest.json"})
    manifest = parse_document(doc, source_url="https://example.org/iiif/b1/manifest.json?x=1")
    assert manifest.id == "https://example.org/iiif/b1/manifest.json"
    assert any("relative" in w for w in manifest.warnings)


def test_relative_id_without_source_url_is_kept_with_a_warning():
    manifest = parse_document(v2_manifest([v2_canvas("1")], **{"@id": "manifest.json"}))
    assert manifest.id == "manifest.json"
    assert any("no source URL" in w for w in manifest.warnings)


def test_non_http_uri_ids_are_absolute():
    assert (
        parse_document(v2_manifest([v2_canvas("1")], **{"@id": "info:iiifauth"})).id
        == "info:iiifauth"
    )


def test_missing_id_uses_source_url_or_raises():
    doc = v3_manifest(v3_canvas("1"))
    del doc["id"]
    manifest = parse_document(doc, source_url="https://example.org/m.json")
    assert manifest.id == "https://example.org/m.json"
    assert any("no id" in w for w in manifest.warnings)
    with pytest.raises(IIIFParseError, match="no id"):
        parse_document(doc)
    with pytest.raises(IIIFParseError, match="no id"):
        parse_document({**doc, "id": 42})


def test_relative_canvas_and_image_ids_resolve_against_the_manifest():
    canvas = v3_canvas(
        "1", body=v3_image_body("1", service=[{"id": "../svc/1/", "type": "ImageService2"}])
    )
    canvas["id"] = "canvas/1"
    manifest = parse_document(v3_manifest(canvas))
    assert manifest.canvases[0].id == f"{BASE}/canvas/1"
    assert manifest.canvases[0].image.service.id == "https://example.org/iiif/svc/1"


# --- canvases --------------------------------------------------------------------------------


def test_v2_canvases_from_all_sequences_deduplicated_in_first_appearance_order():
    first = [v2_canvas("a"), v2_canvas("b")]
    second = [v2_canvas("c"), v2_canvas("a"), v2_canvas("d", images=[])]
    manifest = parse_document(v2_manifest(first, second))
    assert [c.id.rsplit("/", 1)[1] for c in manifest.canvases] == ["a", "b", "c", "d"]
    assert [c.order for c in manifest.canvases] == [0, 1, 2, 3]
    assert (manifest.canvas_count, manifest.image_canvas_count) == (4, 3)
    assert manifest.canvases[0].label == {"none": ["f. a"]}


def test_v3_items_keep_only_canvases():
    doc = v3_manifest(
        v3_canvas("1"), {"id": "https://x.org/r", "type": "Range"}, "junk", v3_canvas("2")
    )
    manifest = parse_document(doc)
    assert [c.id for c in manifest.canvases] == [f"{BASE}/canvas/1", f"{BASE}/canvas/2"]
    assert sum("not a Canvas" in w for w in manifest.warnings) == 2


def test_v3_manifest_written_with_v2_sequences_still_yields_its_canvases():
    doc = v3_manifest()
    del doc["items"]
    doc["sequences"] = [{"type": "Sequence", "canvases": [v3_canvas("1")]}]
    manifest = parse_document(doc)
    assert manifest.canvas_count == 1
    assert manifest.image_canvas_count == 1


def test_zero_width_canvas_has_unknown_size_and_still_paints():
    manifest = parse_document(v2_manifest([v2_canvas("1", width=0, height=0)]))
    canvas = manifest.canvases[0]
    assert (canvas.width, canvas.height) == (None, None)
    assert canvas.paints_image
    assert any("width is 0" in w for w in manifest.warnings)


@pytest.mark.parametrize(
    "width, expected",
    [
        (640, 640),
        (640.0, 640),
        ("640", 640),
        (" 640 ", 640),
        (-5, None),
        (12.5, None),
        ("wide", None),
        (True, None),
        (None, None),
        ([640], None),
        (float("nan"), None),
    ],
)
def test_canvas_width_values(width, expected):
    manifest = parse_document(v3_manifest(v3_canvas("1", width=width)))
    assert manifest.canvases[0].width == expected


def test_canvases_without_ids_or_of_wrong_type_are_skipped_with_warnings():
    no_id = v2_canvas("x")
    del no_id["@id"]
    manifest = parse_document(v2_manifest([no_id, 17, None, v2_canvas("1")]))
    assert manifest.canvas_count == 1
    assert len([w for w in manifest.warnings if "has no id" in w]) == 3


def test_manifest_without_canvases_parses_with_a_warning():
    doc = v2_manifest()
    del doc["sequences"]
    manifest = parse_document(doc)
    assert manifest.canvas_count == 0
    assert "manifest lists no canvases" in manifest.warnings


# --- painted images --------------------------------------------------------------------------


def test_v2_image_with_service():
    manifest = parse_document(v2_manifest([v2_canvas("1")]))
    image = manifest.canvases[0].image
    assert image.url == f"{BASE}/img/1/full/full/0/default.jpg"
    assert image.service.id == f"{BASE}/iiif/1"
    assert (image.service.api_version, image.service.level) == (2, 2)
    assert image.target_xywh is None


def test_v2_missing_or_empty_motivation_still_paints_but_commenting_does_not():
    missing = v2_canvas("1", images=[v2_image_annotation("1", v2_service("1"), motivation=None)])
    empty = v2_canvas("2", images=[v2_image_annotation("2", v2_service("2"), motivation="")])
    comment = v2_canvas(
        "3", images=[v2_image_annotation("3", v2_service("3"), motivation="oa:commenting")]
    )
    manifest = parse_document(v2_manifest([missing, empty, comment]))
    assert [c.paints_image for c in manifest.canvases] == [True, True, False]


def test_v2_choice_takes_default_then_first_item():
    def choice(**kw):
        return {
            "@type": "oa:Annotation",
            "motivation": "sc:painting",
            "resource": {"@type": "oa:Choice", **kw},
            "on": f"{BASE}/canvas/c",
        }

    visible = {"@id": f"{BASE}/vis.jpg", "@type": "dctypes:Image", "service": v2_service("vis")}
    infrared = {"@id": f"{BASE}/ir.jpg", "@type": "dctypes:Image", "service": v2_service("ir")}
    with_default = v2_canvas("c", images=[choice(default=visible, item=[infrared])])
    without_default = v2_canvas("d", images=[choice(item=[infrared, visible])])
    nil_default = v2_canvas("e", images=[choice(default="rdf:nil", item=infrared)])
    manifest = parse_document(v2_manifest([with_default, without_default, nil_default]))
    assert [c.image.service.id.rsplit("/", 1)[1] for c in manifest.canvases] == ["vis", "ir", "ir"]


def test_v3_choice_takes_first_image_item():
    body = {"type": "Choice", "items": [v3_image_body("natural"), v3_image_body("xray")]}
    canvas = parse_document(v3_manifest(v3_canvas("1", body=body))).canvases[0]
    assert canvas.image.url == f"{BASE}/img/natural/full/max/0/default.jpg"
    assert len(canvas.images) == 1


def test_v3_specific_resource_paints_its_source():
    body = {
        "id": f"{BASE}/sr",
        "type": "SpecificResource",
        "source": v3_image_body("1"),
        "selector": {"type": "ImageApiSelector", "region": "0,0,10,10"},
    }
    assert (
        parse_document(v3_manifest(v3_canvas("1", body=body)))
        .canvases[0]
        .image.url.endswith("/img/1/full/max/0/default.jpg")
    )


def test_v3_body_list_and_multiple_painting_annotations():
    canvas = v3_canvas("1", body=[{"type": "TextualBody", "value": "caption"}, v3_image_body("1")])
    second = copy.deepcopy(canvas["items"][0]["items"][0])
    second["body"] = v3_image_body("2")
    canvas["items"][0]["items"].append(second)
    parsed = parse_document(v3_manifest(canvas)).canvases[0]
    assert [i.url.split("/img/")[1][0] for i in parsed.images] == ["1", "2"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "https://x.org/v.mp4", "type": "Video", "format": "video/mp4"},
        {"id": "https://x.org/a.mp4", "type": "Sound", "format": "audio/mp4"},
        {
            "id": "https://x.org/a.m3u8",
            "type": "Audio",
            "service": [{"@type": "AuthCookieService1", "@id": "https://x.org/login"}],
        },
        {"id": "https://x.org/doc.pdf", "type": "Text", "format": "application/pdf"},
        {"id": "https://x.org/doc.pdf", "format": "application/pdf"},
        {"type": "TextualBody", "value": "<p>Hello</p>"},
        {
            "type": "Choice",
            "items": [
                {"id": "https://x.org/v1.mp4", "type": "Video"},
                {"id": "https://x.org/v2.webm", "type": "Video"},
            ],
        },
        {"type": "Image", "format": "image/jpeg"},  # an image with nothing to fetch it by
    ],
)
def test_bodies_that_paint_no_image(body):
    manifest = parse_document(v3_manifest(v3_canvas("1", body=body)))
    assert manifest.canvas_count == 1
    assert manifest.image_canvas_count == 0


def test_untyped_bodies_paint_images_when_format_or_service_says_so():
    by_format = {"id": "https://x.org/1.jpg", "format": "image/jpeg"}
    by_service = {
        "service": {
            "@id": "https://x.org/iiif/2",
            "profile": "http://iiif.io/api/image/2/level1.json",
        }
    }
    manifest = parse_document(
        v3_manifest(v3_canvas("1", body=by_format), v3_canvas("2", body=by_service))
    )
    assert manifest.image_canvas_count == 2
    assert manifest.canvases[1].image.url is None
    assert manifest.canvases[1].image.service.id == "https://x.org/iiif/2"


def test_v3_supplementing_annotation_does_not_paint():
    manifest = parse_document(v3_manifest(v3_canvas("1", motivation="supplementing")))
    assert manifest.image_canvas_count == 0


def test_v3_referenced_annotation_page_is_reported():
    canvas = v3_canvas("1")
    canvas["items"] = [{"id": "https://x.org/page1.json", "type": "AnnotationPage"}]
    manifest = parse_document(v3_manifest(canvas))
    assert manifest.image_canvas_count == 0
    assert any("only referenced" in w for w in manifest.warnings)


@pytest.mark.parametrize(
    "target, expected",
    [
        (f"{BASE}/canvas/1#xywh=100,200,300,400", (100, 200, 300, 400)),
        (f"{BASE}/canvas/1#xywh=pixel:10,20,30,40", (10, 20, 30, 40)),
        (f"{BASE}/canvas/1#xywh=percent:10,10,50,50", (100, 150, 500, 750)),
        (f"{BASE}/canvas/1#xywh=0,0,1000,1500", None),  # the whole canvas
        (f"{BASE}/canvas/1#xywh=1,2,zero,4", None),
        (f"{BASE}/canvas/1#xywh=1,2,0,4", None),
        (f"{BASE}/canvas/1", None),
        (
            {
                "type": "SpecificResource",
                "source": f"{BASE}/canvas/1",
                "selector": {"type": "FragmentSelector", "value": "xywh=5,6,7,8"},
            },
            (5, 6, 7, 8),
        ),
        ({"id": f"{BASE}/canvas/1#xywh=1,1,2,2", "type": "Canvas"}, (1, 1, 2, 2)),
    ],
)
def test_target_xywh(target, expected):
    canvas = parse_document(v3_manifest(v3_canvas("1", target=target))).canvases[0]
    assert canvas.image.target_xywh == expected


def test_percent_xywh_on_canvas_of_unknown_size_is_ignored_with_a_warning():
    doc = v3_manifest(
        v3_canvas("1", width=None, height=None, target=f"{BASE}/canvas/1#xywh=percent:0,0,50,50")
    )
    manifest = parse_document(doc)
    assert manifest.canvases[0].image.target_xywh is None
    assert any("percent" in w for w in manifest.warnings)


def test_v2_on_with_xywh_fragment():
    annotation = v2_image_annotation(
        "1", v2_service("1"), on=f"{BASE}/canvas/1#xywh=552,1584,3360,2368"
    )
    canvas = parse_document(
        v2_manifest([v2_canvas("1", width=3912, height=4648, images=[annotation])])
    ).canvases[0]
    assert canvas.image.target_xywh == (552, 1584, 3360, 2368)


def test_garbage_inside_a_canvas_becomes_warnings():
    canvas = v2_canvas(
        "1",
        images=[None, "x", {"@type": "oa:Annotation"}, v2_image_annotation("1", v2_service("1"))],
    )
    canvas["label"] = {"@id": "https://x.org"}
    canvas["height"] = {"value": 3}
    manifest = parse_document(v2_manifest([canvas]))
    assert manifest.image_canvas_count == 1
    assert len(manifest.warnings) >= 4


def test_repeated_string_sizes_are_reported_once():
    canvases = [v2_canvas(str(i), width=str(100 + i), height="200") for i in range(50)]
    manifest = parse_document(v2_manifest(canvases))
    assert manifest.canvases[49].width == 149
    assert manifest.warnings == ["pixel sizes given as strings of digits (100x)"]


def test_warnings_are_capped():
    canvases = [v2_canvas(str(i), width=-1, height=-1) for i in range(300)]
    manifest = parse_document(v2_manifest(canvases))
    assert len(manifest.warnings) == 201
    assert manifest.warnings[-1] == "... and 400 more warnings"


# --- image services --------------------------------------------------------------------------


def test_service_list_with_auth_first_picks_the_image_service():
    services = [
        {
            "@context": "http://iiif.io/api/auth/1/context.json",
            "@id": "https://x.org/login",
            "profile": "http://iiif.io/api/auth/1/login",
        },
        {
            "@context": "http://iiif.io/api/search/0/context.json",
            "@id": "https://x.org/search",
            "profile": "http://iiif.io/api/search/0/search",
        },
        {
            "@context": "http://iiif.io/api/image/2/context.json",
            "@id": "https://x.org/iiif/img1/info.json",
            "profile": "http://iiif.io/api/image/2/level1.json",
        },
    ]
    image = (
        parse_document(v2_manifest([v2_canvas("1", images=[v2_image_annotation("1", services)])]))
        .canvases[0]
        .image
    )
    assert image.service.id == "https://x.org/iiif/img1"
    assert (image.service.api_version, image.service.level) == (2, 1)


def test_image_with_only_auth_service_keeps_url_but_no_service():
    auth = {
        "@id": "https://x.org/login",
        "@type": "AuthCookieService1",
        "profile": "http://iiif.io/api/auth/1/login",
    }
    image = (
        parse_document(v2_manifest([v2_canvas("1", images=[v2_image_annotation("1", auth)])]))
        .canvases[0]
        .image
    )
    assert image.url is not None
    assert image.service is None


@pytest.mark.parametrize(
    "service, api_version, level, profile",
    [
        ({"id": "https://x.org/3/a", "type": "ImageService3", "profile": "level0"}, 3, 0, "level0"),
        (
            {
                "@id": "https://x.org/2/a",
                "@type": "ImageService2",
                "profile": "http://iiif.io/api/image/2/level1.json",
            },
            2,
            1,
            "http://iiif.io/api/image/2/level1.json",
        ),
        (
            {
                "@context": "http://iiif.io/api/image/3/context.json",
                "id": "https://x.org/3/b",
                "profile": "level2",
            },
            3,
            2,
            "level2",
        ),
        (
            {
                "@context": "http://iiif.io/api/image/2/context.json",
                "@id": "https://x.org/2/b",
                "profile": ["http://iiif.io/api/image/2/level0.json", {"formats": ["jpg"]}],
            },
            2,
            0,
            "http://iiif.io/api/image/2/level0.json",
        ),
        (
            {
                "@context": "http://iiif.io/api/image/2/context.json",
                "@id": "https://x.org/2/c",
                "profile": "http://iiif.io/api/image/1/level2.json",
            },
            2,
            2,
            "http://iiif.io/api/image/1/level2.json",
        ),
        (
            {
                "@context": "http://iiif.io/api/image/1/context.json",
                "@id": "https://x.org/1/a",
                "profile": "http://library.stanford.edu/iiif/image-api/1.1/compliance.html#level2",
            },
            2,
            2,
            "http://library.stanford.edu/iiif/image-api/1.1/compliance.html#level2",
        ),
        (
            {
                "@id": "https://x.org/2/d",
                "protocol": "http://iiif.io/api/image",
                "profile": "http://iiif.io/api/image/2/profiles/level2.json",
            },
            2,
            2,
            "http://iiif.io/api/image/2/profiles/level2.json",
        ),
        (
            {"id": "https://x.org/3/c", "type": "ImageService3", "profile": "level3"},
            3,
            None,
            "level3",
        ),
        (
            {"@id": "https://x.org/2/e", "@context": "http://iiif.io/api/image/2/context.json"},
            2,
            None,
            None,
        ),
    ],
)
def test_image_service_version_level_and_profile(service, api_version, level, profile):
    ref = image_service_ref(service)
    assert (ref.api_version, ref.level, ref.profile) == (api_version, level, profile)


@pytest.mark.parametrize(
    "service",
    [
        {
            "@id": "https://x.org/login",
            "@type": "AuthCookieService1",
            "profile": "http://iiif.io/api/auth/1/login",
        },
        {
            "@id": "https://x.org/physdim",
            "@context": "http://iiif.io/api/annex/services/physdim/1/context.json",
        },
        {
            "@context": "http://iiif.io/api/image/2/context.json",
            "profile": "http://iiif.io/api/image/2/level2.json",
        },
        "https://x.org/iiif/a",
        None,
    ],
)
def test_non_image_services_are_not_image_service_refs(service):
    assert image_service_ref(service) is None


def test_image_service_size_and_id_cleanup():
    ref = image_service_ref(
        {
            "id": "https://x.org/iiif/a/",
            "type": "ImageService3",
            "profile": "level2",
            "width": 4000,
            "height": "bad",
        }
    )
    assert (ref.id, ref.width, ref.height) == ("https://x.org/iiif/a", 4000, None)


def test_v2_service_list_with_image_services_2_and_3_keeps_the_first():
    services = [
        {
            "@id": "https://x.org/iiif2/a",
            "@type": "ImageService2",
            "profile": "http://iiif.io/api/image/2/level1.json",
        },
        {"id": "https://x.org/iiif3/a", "type": "ImageService3", "profile": "level1"},
    ]
    canvas = parse_document(
        v3_manifest(v3_canvas("1", body=v3_image_body("1", service=services)))
    ).canvases[0]
    assert canvas.image.service.id == "https://x.org/iiif2/a"


# --- collections -----------------------------------------------------------------------------


def test_v2_collection_members_from_all_lists_without_duplicates():
    doc = {
        "@context": V2,
        "@id": "https://x.org/top",
        "@type": "sc:Collection",
        "label": "Top",
        "members": [
            {"@id": "https://x.org/m/1", "@type": "sc:Manifest", "label": "One"},
            {"@id": "https://x.org/c/1", "@type": "sc:Collection"},
        ],
        "manifests": [
            {"@id": "https://x.org/m/1", "@type": "sc:Manifest"},
            {"@id": "https://x.org/m/2"},
            "https://x.org/m/3",
        ],
        "collections": [
            {"@id": "https://x.org/c/1", "@type": "sc:Collection"},
            {"@id": "https://x.org/c/2", "@type": "sc:Collection"},
        ],
    }
    collection = parse_document(doc)
    assert isinstance(collection, ParsedCollection)
    assert [(m.id.split("x.org/")[1], m.kind) for m in collection.members] == [
        ("m/1", "Manifest"),
        ("c/1", "Collection"),
        ("m/2", "Manifest"),
        ("m/3", "Manifest"),
        ("c/2", "Collection"),
    ]
    assert collection.members[0].label == {"none": ["One"]}
    assert collection.iiif_version == 2


def test_v3_collection_items():
    doc = {
        "@context": V3,
        "id": "https://x.org/top",
        "type": "Collection",
        "label": {"en": ["Top"]},
        "items": [
            {"id": "https://x.org/m/1", "type": "Manifest", "label": {"en": ["One"]}},
            {"id": "https://x.org/c/1", "type": "Collection"},
            {"id": "https://x.org/canvas/1", "type": "Canvas"},
            {"id": "https://x.org/m/1", "type": "Manifest"},
            "https://x.org/untyped",
        ],
    }
    collection = parse_collection(doc)
    assert [(m.id, m.kind) for m in collection.members] == [
        ("https://x.org/m/1", "Manifest"),
        ("https://x.org/c/1", "Collection"),
    ]
    assert len(collection.warnings) == 2


def test_paged_v2_collection_points_to_its_first_page():
    for first in (
        "https://x.org/top?page=1",
        {"@id": "https://x.org/top?page=1", "@type": "sc:Collection"},
    ):
        doc = {
            "@context": V2,
            "@id": "https://x.org/top",
            "@type": "sc:Collection",
            "total": 3074231,
            "first": first,
        }
        collection = parse_document(doc)
        assert collection.members == []
        assert collection.pages == ["https://x.org/top?page=1"]
        assert collection.warnings == []


def test_collection_page_has_members_and_next():
    doc = {
        "@context": V2,
        "@id": "https://x.org/top?page=1",
        "@type": "sc:Collection",
        "manifests": [{"@id": f"https://x.org/m/{i}", "@type": "sc:Manifest"} for i in range(3)],
        "next": {"@id": "page2"},
    }
    collection = parse_document(doc, source_url="https://x.org/top?page=1")
    assert len(collection.members) == 3
    assert collection.pages == ["https://x.org/page2"]


def test_discovery_ordered_collection_and_page():
    top = {
        "@context": "http://iiif.io/api/discovery/1/context.json",
        "id": "https://x.org/activity/all-changes",
        "type": "OrderedCollection",
        "first": {"id": "https://x.org/activity/page-0", "type": "OrderedCollectionPage"},
    }
    assert parse_document(top).pages == ["https://x.org/activity/page-0"]
    page = {
        "@context": "http://iiif.io/api/discovery/1/context.json",
        "id": "https://x.org/activity/page-0",
        "type": "OrderedCollectionPage",
        "next": {"id": "https://x.org/activity/page-1", "type": "OrderedCollectionPage"},
        "orderedItems": [
            {"type": "Create", "object": {"id": "https://x.org/m/1", "type": "Manifest"}},
            {"type": "Delete", "object": {"id": "https://x.org/m/2", "type": "Manifest"}},
            {"type": "Update", "object": {"id": "https://x.org/m/1", "type": "Manifest"}},
            {"type": "Update", "object": {"id": "https://x.org/c/1", "type": "Collection"}},
        ],
    }
    collection = parse_document(page)
    assert [m.id for m in collection.members] == ["https://x.org/m/1", "https://x.org/c/1"]
    assert collection.pages == ["https://x.org/activity/page-1"]


def test_collection_never_lists_itself_as_member_or_page():
    doc = {
        "@context": V2,
        "@id": "https://x.org/top?page=1",
        "@type": "sc:Collection",
        "first": "https://x.org/top?page=1",
        "next": "https://x.org/top?page=2",
        "collections": [{"@id": "https://x.org/top?page=1", "@type": "sc:Collection"}],
        "manifests": [{"@id": "https://x.org/m/1", "@type": "sc:Manifest"}],
    }
    collection = parse_document(doc)
    assert [m.id for m in collection.members] == ["https://x.org/m/1"]
    assert collection.pages == ["https://x.org/top?page=2"]


def test_empty_collection_is_reported():
    collection = parse_document(
        {"@context": V3, "id": "https://x.org/c", "type": "Collection", "items": []}
    )
    assert collection.members == [] and collection.pages == []
    assert collection.warnings == ["collection lists no members and no pages"]


def test_parse_manifest_and_parse_collection_refuse_the_other_kind():
    collection = {"@context": V3, "id": "https://x.org/c", "type": "Collection", "items": []}
    with pytest.raises(IIIFParseError, match="expected a Manifest"):
        parse_manifest(collection)
    with pytest.raises(IIIFParseError, match="expected a Collection"):
        parse_collection(v3_manifest(v3_canvas("1")))
    assert isinstance(parse_manifest(v3_manifest(v3_canvas("1"))), ParsedManifest)


# --- robustness ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "@id",
                    "type",
                    "@type",
                    "items",
                    "body",
                    "resource",
                    "service",
                    "profile",
                    "width",
                    "height",
                    "on",
                    "target",
                    "selector",
                    "value",
                    "@value",
                    "@language",
                    "en",
                    "none",
                    "default",
                    "item",
                    "source",
                    "motivation",
                    "label",
                    "canvases",
                    "images",
                    "format",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
MANIFEST_KEYS = [
    "label",
    "summary",
    "description",
    "metadata",
    "requiredStatement",
    "attribution",
    "license",
    "rights",
    "navDate",
    "provider",
    "homepage",
    "related",
    "seeAlso",
    "thumbnail",
]


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    field=st.sampled_from(MANIFEST_KEYS),
    field_value=json_values,
    canvas_key=st.sampled_from(["width", "height", "label", "items", "images", "id"]),
    canvas_value=json_values,
    body=json_values,
)
def test_garbage_inside_valid_manifests_never_crashes(
    field, field_value, canvas_key, canvas_value, body
):
    for doc in (
        v2_manifest([v2_canvas("1"), v2_canvas("2")]),
        v3_manifest(v3_canvas("1"), v3_canvas("2")),
    ):
        doc[field] = field_value
        first_canvas = doc["sequences"][0]["canvases"][0] if "sequences" in doc else doc["items"][0]
        first_canvas[canvas_key] = canvas_value
        second = doc["sequences"][0]["canvases"][1] if "sequences" in doc else doc["items"][1]
        if "images" in second:
            second["images"][0]["resource"] = body
        else:
            second["items"][0]["items"][0]["body"] = body
        try:
            manifest = parse_document(json.dumps(doc))
        except IIIFParseError:
            continue  # e.g. the garbage replaced the only id: a clear refusal is fine
        assert 0 <= manifest.image_canvas_count <= manifest.canvas_count <= 2
        assert all(isinstance(w, str) for w in manifest.warnings)


# --- canvases that are not pictures ------------------------------------------------------------


@pytest.mark.parametrize("body, paints", [
    ({"id": f"{BASE}/av/v.mp4", "type": "dctypes:MovingImage", "format": "video/mp4"}, False),
    ({"id": f"{BASE}/av/v.mp4", "type": "Video", "format": "video/mp4"}, False),
    ({"id": f"{BASE}/av/v.mp4", "type": "Image", "format": "video/mp4"}, False),  # mistyped, the format says
    ({"id": f"{BASE}/av/a.mp3", "type": "Sound", "format": "audio/mpeg"}, False),
    ({"id": f"{BASE}/img/p.jpg", "type": "StillImage", "format": "image/jpeg"}, True),
    ({"id": f"{BASE}/img/p.jpg", "type": "dcterms:Image"}, True),
    ({"id": f"{BASE}/img/p.jpg", "format": "image/jpeg"}, True),
])
def test_only_pictures_count_as_painted_images(body, paints):
    manifest = parse_manifest(v3_manifest(v3_canvas("c1", body=body)))
    assert [image.url for image in manifest.canvases[0].images] == ([body["id"]] if paints else [])


def test_placeholder_sequences_and_canvases_are_not_indexed():
    """Wellcome-style audio/video manifests: a v2 sequence of poster images marked
    displayIfContentUnsupported stands in for the real content; its poster is not what the item shows."""
    poster = v2_canvas("poster")
    placeholder = {"@type": "sc:Sequence", "compatibilityHint": "displayIfContentUnsupported",
                   "canvases": [poster]}
    doc = v2_manifest([v2_canvas("f1")])
    doc["sequences"].insert(0, placeholder)
    manifest = parse_manifest(doc)
    assert [canvas.id for canvas in manifest.canvases] == [f"{BASE}/canvas/f1"]
    assert any("placeholder" in warning and "sequences[0]" in warning for warning in manifest.warnings)
    marked = v2_canvas("stand-in")
    marked["compatibilityHint"] = ["http://iiif.io/api/presentation/2#displayIfContentUnsupported"]
    manifest = parse_manifest(v2_manifest([marked, v2_canvas("f2")]))
    assert [canvas.id for canvas in manifest.canvases] == [f"{BASE}/canvas/f2"]
    assert any("placeholder canvases" in warning for warning in manifest.warnings)


def test_a_painting_page_holding_non_objects_is_read_with_a_warning_not_a_crash():
    """Found by the fuzz test: ``false`` among a canvas's painting annotations crashed the reader
    of the text painted on canvases (AttributeError) instead of being left out with a warning."""
    from manuscripts_search.iiif.presentation import parse_document_with_text

    canvas = "https://example.org/m/odd/c1"
    manifest = {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": "https://example.org/m/odd",
        "type": "Manifest", "label": {"en": ["Odd page"]},
        "items": [{"id": canvas, "type": "Canvas", "width": 100, "height": 150, "items": [{
            "id": f"{canvas}/page", "type": "AnnotationPage", "items": [
                False, 7, "text",
                {"id": f"{canvas}/text", "type": "Annotation", "motivation": "painting",
                 "body": {"type": "TextualBody", "value": "Incipit liber", "format": "text/plain"},
                 "target": canvas}]}]}]}
    parsed, text = parse_document_with_text(manifest)
    assert [c.id for c in parsed.canvases] == [canvas]
    assert any("not an object" in warning for warning in parsed.warnings)
    assert [a.text for a in text.annotations] == ["Incipit liber"]
