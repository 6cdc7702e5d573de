"""The whole shared real-world corpus (manifests, collections, annotation documents) harvested
over HTTP from a local mirror: exact canvas counts, transcription text where the corpus has it,
clear reasons for what cannot be used, and an unchanged re-harvest that costs one 304 each.

The mirror serves every corpus file at /corpus/<folder>/<file>, and - as a mirror would -
rewrites links to documents it holds (annotation pages a manifest references, say) to its own
URLs. Everything else points at the public web, which the harvester is not allowed to reach
here: those links fail fast with a recorded reason.
"""
from __future__ import annotations

import csv
import re

import pytest
from sqlalchemy import func, select

from harvest.http import Fetcher, allow_only_hosts
from harvest.manifests import HarvestOptions, harvest_sources
from harvest.politeness import PolitenessPolicy
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.iiif.json_decoding import load_json_object
from manuscripts_search.models import Canvas, FetchedDocument, Manifest, TextAnnotation
from tests.helpers.scripted_server import ScriptedServer, json_reply
from tests.helpers.corpus import CORPUS, ERROR, EXPECTED

# One harvest for all the checks, in a module database of the suite's flavour (module_db_url).
pytestmark = pytest.mark.db

# Presentation 1 canvases that list their images under `resources`: the harvester reads them
# (the table of tests/helpers/corpus.py predates that and still says 0 images).
V1_RESOURCES_IMAGES = {"v2/mirador27__walters-bd183mz0176.json": 2}
FOLDERS = ("v2", "v3", "collections", "annotations")


def corpus_files() -> list[str]:
    return sorted(f"{folder}/{p.name}" for folder in FOLDERS for p in (CORPUS / folder).glob("*.json"))


def declared_id(data: bytes):
    try:
        doc = load_json_object(data)
    except ValueError:
        return None
    value = doc.get("id", doc.get("@id"))
    return value if isinstance(value, str) and value.startswith(("http://", "https://")) else None


@pytest.fixture(scope="module")
def mirror():
    with ScriptedServer() as server:
        files = corpus_files()
        bodies = {rel: (CORPUS / rel).read_bytes() for rel in files}
        local = {}  # declared id -> mirror URL; the first file (sorted) declaring an id wins
        for rel in files:
            doc_id = declared_id(bodies[rel])
            if doc_id and doc_id not in local:
                local[doc_id] = server.url(f"/corpus/{rel}")
        pattern = re.compile(b'"(' + b"|".join(re.escape(i.encode()) for i in local) + b')"')
        for rel in files:
            body = pattern.sub(lambda m: b'"' + local[m.group(1).decode()].encode() + b'"', bodies[rel])
            server.add(f"/corpus/{rel}", json_reply(body))
        yield server


@pytest.fixture(scope="module")
def harvested(mirror, module_db_url):
    engine = make_engine(module_db_url)
    upgrade_database(engine)
    factory = make_sessionmaker(engine)
    fetcher = Fetcher("manuscripts-search-tests", timeout=5, retries=0,
                      policy=PolicyForTests, url_guard=allow_only_hosts("127.0.0.1"))
    urls = [mirror.url(f"/corpus/{rel}") for rel in corpus_files()]
    report = harvest_sources(urls, factory, fetcher, options=HarvestOptions(workers=8))
    yield factory, report, fetcher, urls
    engine.dispose()


PolicyForTests = PolitenessPolicy(max_per_host=8)


def local(mirror, rel: str) -> str:
    return mirror.url(f"/corpus/{rel}")


def test_every_manifest_has_its_exact_canvas_counts(mirror, harvested):
    factory, _report, _fetcher, _urls = harvested
    with session_scope(factory) as session:
        rows = {m.url: m for m in session.scalars(select(Manifest))}
        canvas_rows = dict(session.execute(select(Canvas.manifest_id, func.count()).group_by(Canvas.manifest_id)).all())
    checked = 0
    for rel, expected in EXPECTED.items():
        row = rows[local(mirror, rel)]
        if expected == ERROR:
            assert row.error and row.error.startswith("not usable IIIF: "), (rel, row.error)
            continue
        canvases, with_images = expected
        with_images = V1_RESOURCES_IMAGES.get(rel, with_images)
        assert row.error is None, (rel, row.error)
        assert (row.canvas_count, row.image_canvas_count) == (canvases, with_images), rel
        assert canvas_rows.get(row.id, 0) == canvases, rel
        checked += 1
    assert checked == len(EXPECTED) - 2


def test_collections_are_crawled_and_unreachable_members_recorded(mirror, harvested):
    factory, report, _fetcher, _urls = harvested
    collections = [rel for rel in corpus_files() if rel.startswith("collections/")]
    with session_scope(factory) as session:
        kinds = dict(session.execute(select(FetchedDocument.url, FetchedDocument.kind)).all())
    for rel in collections:
        assert kinds[local(mirror, rel)] == "collection", rel
    reasons = dict(report.failures)
    # Members on the public web: refused before any connection, each with its reason.
    remote = [url for url, reason in reasons.items() if "is not allowed" in reason]
    assert len(remote) > 100 and all(not url.startswith(mirror.base_url) for url in remote)


def test_annotation_documents_yield_text_and_search_responses_are_refused(mirror, harvested):
    factory, report, _fetcher, _urls = harvested
    with open(CORPUS / "SOURCES.tsv", newline="", encoding="utf-8") as handle:
        notes = {row["file"]: row["notes"] for row in csv.DictReader(handle, delimiter="\t")}
    reasons = dict(report.failures)
    with session_scope(factory) as session:
        by_source = dict(session.execute(select(TextAnnotation.source_url, func.count())
                                         .group_by(TextAnnotation.source_url)).all())
        by_origin = dict(session.execute(select(TextAnnotation.origin_url, func.count())
                                         .group_by(TextAnnotation.origin_url)).all())
    for rel, note in notes.items():
        url = local(mirror, rel)
        is_search = "search" in note.lower() and rel.startswith("annotations/")
        if is_search or "TermList" in note:
            assert "Content Search" in reasons[url], (rel, reasons.get(url))
        elif "text-anno" in note:
            assert by_source.get(url, 0) + by_origin.get(url, 0) > 0, rel


def texts(factory, **where) -> list[TextAnnotation]:
    with session_scope(factory) as session:
        query = select(TextAnnotation)
        for column, value in where.items():
            query = query.where(getattr(TextAnnotation, column) == value)
        return list(session.scalars(query.order_by(TextAnnotation.id)))


def test_transcriptions_land_on_their_canvases(mirror, harvested):
    factory, _report, _fetcher, _urls = harvested
    with session_scope(factory) as session:
        manifest_ids = {m.url: m.id for m in session.scalars(select(Manifest))}
    # v3 supplementing OCR, referenced by the manifest, fetched from the mirror.
    newspaper = local(mirror, "v3/cookbook__0068-newspaper__newspaper_issue_1-manifest.json")
    ocr = texts(factory, origin_url=newspaper)
    assert len(ocr) == 304 + 219
    first = next(t for t in ocr if t.text == "I. 54. Jahrgang")
    assert (first.text, first.motivation, first.xywh) == ("I. 54. Jahrgang", "supplementing", "0,376,399,53")
    assert first.manifest_id == manifest_ids[newspaper] and first.canvas_id is not None
    assert all(t.canvas_id is not None for t in ocr)
    # v3 commenting, HTML body reduced to text, embedded in the manifest.
    (html,) = texts(factory, origin_url=local(mirror, "v3/cookbook__0019-html-in-annotations.json"))
    assert html.text == "Göttinger Marktplatz mit Gänseliesel Brunnen Wikipedia logo"
    assert (html.language, html.motivation, html.canvas_id is not None) == ("de", "commenting", True)
    # A referenced page (0269) and a multilingual Choice body with a target box (0346).
    referencing = local(mirror, "v3/cookbook__0269-embedded-or-referenced-annotations.json")
    (referenced,) = texts(factory, origin_url=referencing)
    assert referenced.text.startswith("Göttinger Marktplatz") and referenced.canvas_id is not None
    multilingual = texts(factory, origin_url=local(mirror, "v3/cookbook__0346-multilingual-annotation-body.json"))
    assert [(t.language, t.text, t.xywh) for t in multilingual] == [
        ("en", "Koto with a cover being carried", "1650,1200,925,1250"),
        ("ja", "袋に収められた琴", "1650,1200,925,1250")]
    (layer,) = texts(factory, origin_url=local(mirror, "v3/cookbook__0326-annotating-image-layer.json"))
    assert (layer.text, layer.motivation, layer.xywh) == ("A group of skulls.", "tagging", "810,900,260,370")
    assert layer.canvas_iiif_id.endswith("/canvas/p1") and layer.canvas_id is not None
    transcribed = texts(factory, origin_url=local(mirror, "v3/clover__transcribing-translating.json"))
    assert {t.language for t in transcribed} == {"ar", "en"} and any("الرحمن" in t.text for t in transcribed)
    # v2 cnt:ContentAsText inside a SpecificResource, with its box; a large v2 list on its own.
    (book_one,) = texts(factory, source_url=local(mirror, "annotations/dbmdz__annotationListWithTranscription.json"))
    assert (book_one.text, book_one.motivation) == ("Here starts book one...", "painting")
    assert book_one.xywh == "100,100,300,300"
    # A list harvested on its own lands on the canvas of the (separately harvested) newspaper.
    sas = texts(factory, source_url=local(mirror, "annotations/sas__anno_list.json"))
    assert len(sas) == 735 and sas[0].text == "TO THE PUBLIC."
    assert sas[0].canvas_iiif_id == "http://dams.llgc.org.uk/iiif/3320640/canvas/3320641"
    cambrian = manifest_ids[local(mirror, "v2/sas__Cambrian_1804-01-28.json")]
    assert sas[0].manifest_id == cambrian and sas[0].canvas_id is not None


def test_unchanged_reharvest_costs_one_304_per_document(mirror, harvested):
    factory, first, fetcher, urls = harvested
    before = len(mirror.requests)
    again = harvest_sources(urls, factory, fetcher, options=HarvestOptions(workers=8))
    requests = mirror.requests[before:]
    assert again.new == 0 and again.changed == 0
    assert first.unchanged == 0 and again.unchanged == first.new
    assert len(again.manifests) == len(first.manifests)
    # One conditional request per document and context (a few documents are read both on their
    # own and on behalf of a manifest or collection), every one answered 304.
    assert all(r.status == 304 for r in requests)
    assert len(requests) == again.unchanged + again.unchanged_failures
    assert again.unchanged_failures == 10  # 2 non-manifests, 8 Content Search responses: not parsed again
    assert sorted(again.failures) == sorted(first.failures)
    assert len({r.path for r in requests}) >= len(urls)
