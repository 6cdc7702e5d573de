"""The shared real-world IIIF corpus (``MSEARCH_CORPUS``, else ``shared/corpus/iiif`` beside the
checkout; its sibling ``images/`` holds the corpus images) and what each of its manifest files
holds (:data:`EXPECTED`), used by test_corpus_parsing and test_harvest_corpus.

Where EXPECTED comes from (not from the parser under test): canvas counts were taken with two small jq
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

import os
from pathlib import Path

CORPUS = Path(
    os.environ.get("MSEARCH_CORPUS")
    or Path(__file__).resolve().parents[3] / "shared" / "corpus" / "iiif"
)
CORPUS_IMAGES = CORPUS.parent / "images"

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
