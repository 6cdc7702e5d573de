"""Every document of the shared real-world IIIF corpus parses to the expected counts, or is
refused with IIIFParseError - never a crash.

Where EXPECTED comes from (not from this parser): canvas counts were taken with two small jq
programs over the raw JSON - v1/v2: distinct canvas ``@id`` over all ``sequences[].canvases[]``;
v3: distinct ``id`` of ``items[]`` whose type is Canvas. A canvas counts as painting an image when
one of its ``images[]`` (v2) or ``items[].items[]`` painting annotations (v3) has a body that -
after unwrapping Choice (default, then items) and SpecificResource (source/full) - is typed
...Image and has an id or a service. These were cross-checked with the ``canvases:N`` and
``canvas-no-image:N`` notes of SOURCES.tsv; the disagreements, each resolved by reading the JSON:

- v2/mirador__gau.json: SOURCES says 29 = canvas references in its two sequences; 4 canvases
  appear in both, so 25 distinct.
- v3/validator__old_format_label.json: a v3 manifest that still uses v2 ``sequences``; its one
  canvas puts its annotation page under ``content`` (a pre-3.0 draft name), not ``items``, so
  it paints nothing we read: (1, 0), as SOURCES says.
- v2/mirador27__walters-bd183mz0176.json: its two v1 canvases put painting annotations under
  ``resources`` instead of ``images`` (Presentation 1 style); each is a dctypes:Image with an
  Image API 1.1 service, read by the v1 fallback, so (2, 2) where SOURCES notes canvas-no-image:2.
- v3/nulib__image-work-single-canvas-2.json: ``items`` is an object (a nested Manifest), not a
  list of canvases: (0, 0).
- v3/mirador__v3-with_a_provider.json and v2/mirador__2017498721.json have no canvases at all.
- Audio/video/PDF/text manifests (cookbook AV recipes, BL sound recordings whose Sound/Audio
  bodies carry auth services, validator video choice, tudelft textual and video canvases) have
  canvases that paint no image; SOURCES does not note those.
"""

from __future__ import annotations

import csv
import os
import re
import time
from pathlib import Path

import pytest

from manuscripts_search.iiif.model import IIIFParseError, ParsedCollection, ParsedManifest
from manuscripts_search.iiif.presentation import parse_document

CORPUS = Path(
    os.environ.get("MSEARCH_CORPUS")
    or Path(__file__).resolve().parents[2] / "shared" / "corpus" / "iiif"
)

ERROR = "error"

# file -> (distinct canvases, canvases that paint an image), or ERROR when it is no manifest.
EXPECTED = {
    "v2/clover__princeton-figgy-renderings.json": (2, 2),
    "v2/cookbook__0057-publishing-v2-and-v3__manifest-v2.json": (1, 1),
    "v2/dbmdz__biblissima_ark_12148_btv1b9007608v.json": (502, 502),
    "v2/dbmdz__biblissima_reconstructed.json": (22, 22),
    "v2/dbmdz__gallica_propvals_without_language.json": (849, 849),
    "v2/dbmdz__manifestWithSimpleLogo.json": (916, 916),
    "v2/dbmdz__textgridlab.org-textgrid_3b09k.0-manifest.json": (315, 315),
    "v2/dbmdz__wellcomelibrary-b15404535-empty-license-string-manifest.json": (1, 1),
    "v2/dbmdz__yaleV1Manifest.json": (7, 7),
    "v2/dbmdz__yale_decretum.json": (787, 787),
    "v2/helpers__wellcome-range.json": (318, 318),
    "v2/mirador27__BNF-condorcet-florus-dispersus-manifest.json": (322, 238),
    "v2/mirador27__Richardson7manifest.json": (480, 480),
    "v2/mirador27__searchManifest.json": (328, 328),
    "v2/mirador27__walters-bd183mz0176.json": (2, 2),
    "v2/mirador__001.json": (1, 1),
    "v2/mirador__002.json": (1, 1),
    "v2/mirador__019.json": (3, 3),
    "v2/mirador__2017498721.json": (0, 0),
    "v2/mirador__299843.json": (6, 6),
    "v2/mirador__BibliographicResource_3000126341277.json": (2, 2),
    "v2/mirador__Osbornfa1.json": (1, 1),
    "v2/mirador__broken.json": ERROR,
    "v2/mirador__canvasService.json": (1, 1),
    "v2/mirador__fg165hz3589.json": (5, 5),
    "v2/mirador__gau.json": (25, 25),
    "v2/mirador__hamilton.json": (1, 1),
    "v2/mirador__iiifauth.json": (13, 13),
    "v2/mirador__multipleSequences.json": (2, 2),
    "v2/mirador__sn904cj3429.json": (1, 1),
    "v2/mirador__zeroWidthCanvas.json": (1, 1),
    "v2/parser__artic-manifest.json": (2, 2),
    "v2/parser__biblissima-manifest.json": (22, 22),
    "v2/parser__bl-manifest.json": (20, 20),
    "v2/parser__bodleian-manifest.json": (149, 149),
    "v2/parser__body-choice.json": (19, 19),
    "v2/parser__codex.json": (729, 729),
    "v2/parser__europeana-canvas.json": ERROR,
    "v2/parser__folger-manifest.json": (117, 117),
    "v2/parser__ghent-omeka.json": (33, 33),
    "v2/parser__ghent.json": (1, 1),
    "v2/parser__loc.json": (55, 55),
    "v2/parser__malformed-image-annotation.json": (1, 1),
    "v2/parser__manifest-l0.json": (24, 24),
    "v2/parser__nested-ranges.json": (920, 920),
    "v2/parser__nga-manifest.json": (26, 26),
    "v2/parser__nls-manifest-2.json": (152, 152),
    "v2/parser__nls-manifest.json": (40, 40),
    "v2/parser__nlw-manifest.json": (12, 12),
    "v2/parser__quatar-manifest.json": (498, 498),
    "v2/parser__sbb-test.json": (17, 17),
    "v2/parser__scroll.json": (41, 41),
    "v2/parser__stanford-manifest.json": (2, 2),
    "v2/parser__thumbnails.json": (7, 7),
    "v2/parser__uni-goettingen.json": (69, 69),
    "v2/parser__villanova-manifest.json": (2, 2),
    "v2/parser__wikimedia-proxy.json": (1, 1),
    "v2/sas__Cambrian_1804-01-28.json": (4, 4),
    "v2/sas__stats_manifest.json": (2, 2),
    "v2/ubleipzig__manifest-0000000720.json": (38, 38),
    "v2/ubleipzig__manifest-0000006761.json": (100, 100),
    "v3/clover__nu-paged-notebook.json": (138, 138),
    "v3/clover__nu-pdf.json": (3, 2),
    "v3/clover__nu-streaming-audio.json": (2, 1),
    "v3/clover__paged-rtl-ryukoku.json": (165, 165),
    "v3/clover__stereo-winterton.json": (3, 3),
    "v3/clover__transcribing-translating.json": (2, 2),
    "v3/cookbook__0001-mvm-image.json": (1, 1),
    "v3/cookbook__0002-mvm-audio.json": (1, 0),
    "v3/cookbook__0003-mvm-video.json": (1, 0),
    "v3/cookbook__0005-image-service.json": (1, 1),
    "v3/cookbook__0006-text-language.json": (1, 1),
    "v3/cookbook__0007-string-formats.json": (1, 1),
    "v3/cookbook__0009-book-1.json": (5, 5),
    "v3/cookbook__0010-book-2-viewing-direction__manifest-rtl.json": (5, 5),
    "v3/cookbook__0011-book-3-behavior__manifest-continuous.json": (4, 4),
    "v3/cookbook__0013-placeholderCanvas.json": (1, 0),
    "v3/cookbook__0014-accompanyingcanvas.json": (1, 0),
    "v3/cookbook__0015-start.json": (1, 0),
    "v3/cookbook__0019-html-in-annotations.json": (1, 1),
    "v3/cookbook__0024-book-4-toc.json": (6, 6),
    "v3/cookbook__0025-newspaper-article-index.json": (5, 5),
    "v3/cookbook__0031-bound-multivolume.json": (6, 6),
    "v3/cookbook__0033-choice.json": (1, 1),
    "v3/cookbook__0035-foldouts.json": (9, 9),
    "v3/cookbook__0045-css.json": (1, 1),
    "v3/cookbook__0046-rendering.json": (5, 5),
    "v3/cookbook__0057-publishing-v2-and-v3__manifest-v3.json": (1, 1),
    "v3/cookbook__0068-newspaper__newspaper_issue_1-manifest.json": (2, 2),
    "v3/cookbook__0074-multiple-language-captions.json": (1, 0),
    "v3/cookbook__0117-add-image-thumbnail.json": (1, 1),
    "v3/cookbook__0118-multivalue.json": (1, 1),
    "v3/cookbook__0154-geo-extension.json": (1, 1),
    "v3/cookbook__0219-using-caption-file.json": (1, 0),
    "v3/cookbook__0229-behavior-ranges.json": (1, 0),
    "v3/cookbook__0230-navdate__navdate_map_1-manifest.json": (1, 1),
    "v3/cookbook__0232-image-thumbnail-canvas__manifest-image.json": (2, 2),
    "v3/cookbook__0234-provider.json": (1, 1),
    "v3/cookbook__0240-navPlace-on-canvases.json": (2, 2),
    "v3/cookbook__0269-embedded-or-referenced-annotations.json": (1, 1),
    "v3/cookbook__0283-missing-image.json": (4, 3),
    "v3/cookbook__0309-annotation-collection.json": (2, 2),
    "v3/cookbook__0326-annotating-image-layer.json": (1, 1),
    "v3/cookbook__0346-multilingual-annotation-body.json": (1, 1),
    "v3/cookbook__0434-choice-av.json": (1, 0),
    "v3/helpers__bl-av-manifest.json": (2, 0),
    "v3/helpers__tudelft-exhibit-2.json": (21, 15),
    "v3/helpers__tudelft-novieten.json": (17, 9),
    "v3/mirador__v3-001.json": (1, 1),
    "v3/mirador__v3-fallback-image.json": (1, 1),
    "v3/mirador__v3-hamilton.json": (1, 1),
    "v3/mirador__v3-text-pdf.json": (1, 0),
    "v3/mirador__v3-video_with_annotation_captions.json": (1, 0),
    "v3/mirador__v3-with_a_provider.json": (0, 0),
    "v3/nulib__image-work-multi-canvas-1.json": (3, 3),
    "v3/nulib__image-work-multi-canvas-2.json": (3, 3),
    "v3/nulib__image-work-single-canvas-2.json": (0, 0),
    "v3/parser__accompanying-canvas.json": (1, 0),
    "v3/parser__bl-ranges.json": (6, 0),
    "v3/parser__bodleian.json": (1, 1),
    "v3/parser__css.json": (1, 1),
    "v3/parser__exhibition-1.json": (1, 1),
    "v3/parser__ghent-choices.json": (1, 1),
    "v3/parser__has-part.json": (1, 1),
    "v3/parser__ldmax.json": (6, 6),
    "v3/parser__ocean-liners.json": (1, 1),
    "v3/parser__specific-resource-infer.json": (1, 1),
    "v3/parser__start-canvas.json": (5, 5),
    "v3/parser__wellcome-p3-2.json": (36, 36),
    "v3/parser__wellcome-p3.json": (10, 10),
    "v3/ubleipzig__manifest-00000004119.json": (186, 186),
    "v3/validator__choice.json": (1, 0),
    "v3/validator__full_example.json": (2, 2),
    "v3/validator__navPlace.json": (1, 1),
    "v3/validator__old_format_label.json": (1, 0),
    "v3/validator__rights_lang_issues.json": (1, 1),
    "v3/validator__simple_video.json": (1, 0),
}

# Where SOURCES.tsv's canvases:N note counts something else than distinct canvases (see above).
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
