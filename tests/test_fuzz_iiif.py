"""Property-based fuzzing of the IIIF readers: whatever a server sends, the parser returns a
result or raises its one documented error (IIIFParseError, a ValueError for info.json), with a
message; it never crashes with anything else.

Four kinds of input: arbitrary JSON; IIIF-shaped documents whose every field may be of the
wrong type; real corpus manifests with random parts replaced; and raw bytes in odd encodings.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manuscripts_search.iiif.annotations import parse_annotation_document
from manuscripts_search.iiif.info_json import parse_info_json
from manuscripts_search.iiif.model import IIIFParseError, ParsedCollection, ParsedManifest
from manuscripts_search.iiif.presentation import parse_document, parse_document_with_text

CORPUS = Path(os.environ.get("MSEARCH_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus") / "iiif"
FUZZ = settings(max_examples=int(os.environ.get("MSEARCH_FUZZ_EXAMPLES", "150")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                    st.sampled_from(["", " ", "0", "-1", "1e400", "<b>x</b>", "http://", "urn:x", "#xywh=1,2,3,4",
                                     "level2", "sc:Canvas", "Manifest", "http://iiif.io/api/image/2/level1.json"]))
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)), max_leaves=25)

IIIF_KEYS = ["@context", "@id", "id", "@type", "type", "label", "summary", "description", "metadata",
             "requiredStatement", "attribution", "rights", "license", "provider", "logo", "homepage",
             "seeAlso", "thumbnail", "navDate", "items", "sequences", "canvases", "images", "resource", "body",
             "target", "on", "motivation", "service", "services", "profile", "width", "height", "format",
             "structures", "manifests", "collections", "members", "first", "next", "partOf", "annotations",
             "otherContent", "resources", "selector", "source", "default", "item", "value", "language", "@value"]
TYPES = ["Manifest", "sc:Manifest", "Collection", "sc:Collection", "Canvas", "sc:Canvas", "AnnotationPage",
         "Annotation", "oa:Annotation", "Image", "dctypes:Image", "ImageService2", "ImageService3", "Choice",
         "oa:Choice", "SpecificResource", "OrderedCollection", "OrderedCollectionPage", "sc:AnnotationList",
         "TextualBody", "cnt:ContentAsText", "Range"]
CONTEXTS = ["http://iiif.io/api/presentation/3/context.json", "http://iiif.io/api/presentation/2/context.json",
            "http://www.shared-canvas.org/ns/context.json", "http://iiif.io/api/image/2/context.json"]


def iiif_object(depth: int = 0):
    """A dict with IIIF keys whose values are IIIF-ish or of any JSON type."""
    leaf_values = st.one_of(json_values, st.sampled_from(TYPES), st.sampled_from(CONTEXTS),
                            st.builds(lambda n: f"https://example.org/iiif/{n}", st.integers(0, 5)))
    if depth < 3:
        child = st.deferred(lambda: iiif_object(depth + 1))
        leaf_values = st.one_of(leaf_values, child, st.lists(st.one_of(child, leaf_values), max_size=3))
    return st.dictionaries(st.sampled_from(IIIF_KEYS), leaf_values, max_size=8)


def assert_parse_outcome(doc, source_url="https://example.org/iiif/doc.json") -> None:
    for parse in (parse_document, parse_document_with_text):
        try:
            parsed = parse(doc, source_url)
        except IIIFParseError as error:
            assert str(error), "a refusal says why"
            continue
        parsed = parsed[0] if isinstance(parsed, tuple) else parsed
        assert isinstance(parsed, (ParsedManifest, ParsedCollection))
        assert isinstance(parsed.id, str) and parsed.id
        json.dumps(parsed.warnings)  # warnings are plain strings, storable as JSON
        if isinstance(parsed, ParsedManifest):
            for canvas in parsed.canvases:
                assert isinstance(canvas.id, str)
                assert canvas.width is None or (isinstance(canvas.width, int) and canvas.width > 0)


@FUZZ
@given(json_values)
def test_any_json_value(value):
    assert_parse_outcome(value)
    assert_parse_outcome(json.dumps(value))


@FUZZ
@given(iiif_object(), st.sampled_from(TYPES), st.sampled_from(CONTEXTS + [None]))
def test_iiif_shaped_documents_with_fields_of_any_type(doc, top_type, context):
    doc.setdefault("type", top_type)
    if context:
        doc.setdefault("@context", context)
    assert_parse_outcome(doc)
    assert_parse_outcome(json.dumps(doc).encode("utf-8"), source_url=None)


def _corpus_documents() -> list[dict]:
    chosen = []
    for path in sorted(CORPUS.glob("v[23]/*.json")):
        if path.stat().st_size < 40_000:
            try:
                chosen.append(json.loads(path.read_bytes().decode("utf-8-sig")))
            except ValueError:
                continue
    return chosen[:60]


CORPUS_DOCS = _corpus_documents()


def _mutate(doc, data) -> object:
    """``doc`` with up to five values somewhere in it replaced by arbitrary JSON (or removed)."""
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 5))):
        node, path = doc, []
        while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = data.draw(json_values)
    return doc


@pytest.mark.skipif(not CORPUS_DOCS, reason="needs the shared IIIF corpus (MSEARCH_CORPUS)")
@FUZZ
@given(st.data())
def test_real_manifests_with_random_parts_replaced(data):
    original = data.draw(st.sampled_from(CORPUS_DOCS))
    assert_parse_outcome(_mutate(original, data))


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["utf-8", "utf-16", "utf-32", "cp1252", "latin-1"]))
def test_raw_bytes_in_any_encoding(noise, encoding):
    assert_parse_outcome(noise)
    text = '{"type": "Manifest", "id": "https://example.org/m", "label": "' + noise.decode("latin-1") + '"}'
    try:
        encoded = text.encode(encoding)
    except UnicodeEncodeError:
        return
    assert_parse_outcome(encoded)
    assert_parse_outcome(b"\xef\xbb\xbf" + encoded)


@FUZZ
@given(st.one_of(iiif_object(), json_values))
def test_annotation_documents(doc):
    try:
        parsed = parse_annotation_document(doc, "https://example.org/annos.json")
    except IIIFParseError as error:
        assert str(error)
        return
    for annotation in getattr(parsed, "annotations", []):
        assert isinstance(getattr(annotation, "text", ""), str)


info_keys = st.sampled_from(["@context", "@id", "id", "type", "@type", "protocol", "profile", "width", "height",
                             "sizes", "tiles", "maxWidth", "maxHeight", "maxArea", "extraFormats",
                             "extraQualities", "scaleFactors", "formats", "qualities"])


@FUZZ
@given(st.dictionaries(info_keys, st.one_of(json_values, st.lists(st.dictionaries(
    st.sampled_from(["width", "height", "scaleFactors"]), json_values, max_size=3), max_size=3)), max_size=10))
def test_image_info_json(doc):
    try:
        info = parse_info_json(doc)
    except ValueError as error:  # IIIFParseError is a ValueError too
        assert str(error)
        return
    assert info.width > 0 and info.height > 0
