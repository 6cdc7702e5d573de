"""Every document of the shared real-world IIIF corpus parses to the expected counts, or is
refused with IIIFParseError - never a crash.

The expected counts (:data:`EXPECTED`, and how they were taken) are in tests/helpers/corpus.py.
"""

from __future__ import annotations

import csv
import re
import time

import pytest

from manuscripts_search.iiif.model import IIIFParseError, ParsedCollection, ParsedManifest
from manuscripts_search.iiif.presentation import parse_document
from tests.helpers.corpus import CORPUS, ERROR, EXPECTED

# Where SOURCES.tsv's canvases:N note counts something else than distinct canvases (see
# tests/helpers/corpus.py).
SOURCES_NOTE_EXCEPTIONS = {"v2/mirador__gau.json": 29}
# Where its canvas-no-image:N note counts painting annotations under v1 ``resources`` as none.
SOURCES_NO_IMAGE_EXCEPTIONS = {"v2/mirador27__walters-bd183mz0176.json": 2}


def corpus_files(folder: str) -> list[str]:
    return sorted(f"{folder}/{p.name}" for p in (CORPUS / folder).glob("*.json"))


def parse_file(relative: str):
    return parse_document(
        (CORPUS / relative).read_bytes(), source_url=f"https://corpus.test/{relative}"
    )


def test_corpus_is_present_and_every_manifest_file_has_an_expectation():
    assert CORPUS.is_dir(), f"IIIF corpus not found at {CORPUS}; set MSEARCH_CORPUS"
    assert corpus_files("v2") + corpus_files("v3") == sorted(EXPECTED)
    assert sorted(f for f, e in EXPECTED.items() if e == ERROR) == [
        "v2/mirador__broken.json",
        "v2/parser__europeana-canvas.json",
    ]


def test_expected_counts_agree_with_sources_notes():
    with open(CORPUS / "SOURCES.tsv", newline="", encoding="utf-8") as handle:
        notes = {row["file"]: row["notes"] for row in csv.DictReader(handle, delimiter="\t")}
    for relative, expected in EXPECTED.items():
        note = re.search(r"canvases:(\d+)", notes[relative])
        if expected == ERROR or note is None:
            continue
        assert SOURCES_NOTE_EXCEPTIONS.get(relative, expected[0]) == int(note.group(1)), relative
        without_image = re.search(r"canvas-no-image:(\d+)", notes[relative])
        if without_image:
            assert SOURCES_NO_IMAGE_EXCEPTIONS.get(relative, expected[0] - expected[1]) == int(
                without_image.group(1)), relative


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_manifest_counts(relative):
    expected = EXPECTED[relative]
    if expected == ERROR:
        with pytest.raises(IIIFParseError):
            parse_file(relative)
        return
    manifest = parse_file(relative)
    assert isinstance(manifest, ParsedManifest)
    assert (manifest.canvas_count, manifest.image_canvas_count) == expected
    assert len({c.id for c in manifest.canvases}) == manifest.canvas_count
    assert [c.order for c in manifest.canvases] == list(range(manifest.canvas_count))
    for canvas in manifest.canvases:
        for image in canvas.images:
            assert image.url or image.service
            if image.service:
                assert image.service.api_version in (2, 3)
                assert not image.service.id.endswith(("/", "/info.json"))


@pytest.mark.parametrize("relative", corpus_files("collections"))
def test_collections_parse_with_members_or_pages(relative):
    collection = parse_file(relative)
    assert isinstance(collection, ParsedCollection)
    assert collection.members or collection.pages
    ids = [m.id for m in collection.members]
    assert len(ids) == len(set(ids))
    assert {m.kind for m in collection.members} <= {"Manifest", "Collection"}


def test_collection_member_counts_for_notable_cases():
    # Counted with jq over manifests/collections/members/items; duplicates kept once.
    assert len(parse_file("collections/parser__duplicate-member-collection.json").members) == 1
    assert len(parse_file("collections/parser__nlw-collection.json").members) == 65
    assert len(parse_file("collections/parser__collection-scta.json").members) == 205
    assert [m.kind for m in parse_file("collections/mirador27__iiif-universe.json").members] == [
        "Collection"
    ] * 12
    assert [
        m.kind for m in parse_file("collections/parser__biblissima-collection.json").members
    ] == ["Manifest"] * 12
    paged = parse_file("collections/parser__paginated-collection.json")
    assert (paged.members, paged.pages) == (
        [],
        ["https://api.digitale-sammlungen.de/iiif/presentation/v2/collection/top?cursor=initial"],
    )
    page = parse_file("collections/parser__paginated-collection-page.json")
    assert len(page.members) == 250
    assert page.pages == [
        "https://api.digitale-sammlungen.de/iiif/presentation/v2/collection/top?cursor=AoIIP4AAACtic2IxMjAxODY5NA=="
    ]


@pytest.mark.parametrize("relative", corpus_files("annotations"))
def test_annotation_documents_are_refused_cleanly(relative):
    with pytest.raises(IIIFParseError, match="not a IIIF Manifest or Collection"):
        parse_file(relative)


def test_whole_corpus_parses_quickly():
    files = sorted(CORPUS.glob("*/*.json"))
    assert len(files) >= 180
    started = time.perf_counter()
    for path in files:
        try:
            parse_document(path.read_bytes())
        except IIIFParseError:
            pass
    assert time.perf_counter() - started < 5.0
