"""Searchable text documents derived from the catalogue: one per manifest (label, summary,
metadata, providers, date, required statement), one per canvas with a label, one per text
annotation (transcription, OCR, comment), with the annotation's box when it targets a region.

Documents are derived data: :func:`sync_documents` makes the table match the catalogue, adding,
updating (by content hash) and deleting rows, so it can run after every harvest.
"""
from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..models import Canvas, Manifest, SearchDocument, TextAnnotation, TextVector

MAX_DOCUMENT_CHARS = 100_000
_WHITESPACE = re.compile(r"\s+")


@dataclass
class DocumentReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    total: int = 0

    def as_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "removed": self.removed, "total": self.total}


@dataclass(frozen=True)
class _Wanted:
    source_key: str
    kind: str
    manifest_id: int
    canvas_id: Optional[int]
    annotation_id: Optional[int]
    language: Optional[str]
    text: str
    box: tuple[Optional[int], Optional[int], Optional[int], Optional[int]]

    @property
    def sha(self) -> str:
        payload = "\x1f".join([self.text, self.language or "", ",".join(str(v) for v in self.box),
                               str(self.canvas_id)])
        return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def plain_text(value: Any) -> str:
    """Visible text of a string that may hold HTML (IIIF allows some in labels and values)."""
    if not isinstance(value, str) or not value:
        return ""
    if "<" in value:
        import nh3

        value = nh3.clean(value, tags=set())
    return _WHITESPACE.sub(" ", html.unescape(value)).strip()


def language_map_texts(value: Any) -> list[str]:
    """Every string of a language map ({"en": ["..."]}), all languages, HTML removed."""
    if isinstance(value, str):
        return [plain_text(value)] if plain_text(value) else []
    if not isinstance(value, dict):
        return []
    texts = []
    for strings in value.values():
        for item in strings if isinstance(strings, list) else [strings]:
            text = plain_text(item)
            if text and text not in texts:
                texts.append(text)
    return texts


def manifest_text(manifest: Manifest) -> str:
    lines = language_map_texts(manifest.label) + language_map_texts(manifest.summary)
    for entry in manifest.metadata_entries or []:
        if isinstance(entry, dict):
            label = "; ".join(language_map_texts(entry.get("label")))
            value = "; ".join(language_map_texts(entry.get("value")))
            if value:
                lines.append(f"{label}: {value}" if label else value)
    for provider in manifest.providers or []:
        lines += language_map_texts(provider.get("label") if isinstance(provider, dict)
                                    and "label" in provider else provider)
    statement = manifest.required_statement
    if isinstance(statement, dict):
        lines += language_map_texts(statement.get("value"))
    if manifest.nav_date:
        lines.append(str(manifest.nav_date))
    return "\n".join(lines)[:MAX_DOCUMENT_CHARS]


def _wanted_documents(session: Session, manifest_ids: list[int]) -> Iterator[_Wanted]:
    for manifest in session.scalars(select(Manifest).where(Manifest.id.in_(manifest_ids))):
        text = manifest_text(manifest)
        if text:
            yield _Wanted(f"manifest:{manifest.id}", "manifest", manifest.id, None, None, None, text,
                          (None, None, None, None))
    for canvas_id, manifest_id, label in session.execute(
            select(Canvas.id, Canvas.manifest_id, Canvas.label).where(Canvas.manifest_id.in_(manifest_ids))):
        text = " ".join(language_map_texts(label))[:MAX_DOCUMENT_CHARS]
        if text:
            yield _Wanted(f"canvas:{canvas_id}", "canvas", manifest_id, canvas_id, None, None, text,
                          (None, None, None, None))
    for annotation in session.scalars(select(TextAnnotation).where(TextAnnotation.manifest_id.in_(manifest_ids))):
        text = plain_text(annotation.text)[:MAX_DOCUMENT_CHARS]
        if text:
            yield _Wanted(f"annotation:{annotation.id}", "annotation", annotation.manifest_id,
                          annotation.canvas_id, annotation.id, annotation.language, text,
                          (annotation.x, annotation.y, annotation.w, annotation.h))


def sync_documents(session: Session, manifest_ids: Optional[Iterable[int]] = None,
                   chunk: int = 200) -> DocumentReport:
    """Make ``search_documents`` match the catalogue (for ``manifest_ids``, default all).

    A document whose text changed is updated in place and its sentence vectors are deleted, so
    that :func:`manuscripts_search.search.text_vectors.sync_text_vectors` encodes it again (under a new
    label: the index never serves the old vector).
    """
    report = DocumentReport()
    if manifest_ids is None:
        ids = list(session.scalars(select(Manifest.id).order_by(Manifest.id)))
        # Documents of manifests that are gone are removed by the foreign key's cascade.
    else:
        ids = sorted(set(int(i) for i in manifest_ids))
    for start in range(0, len(ids), chunk):
        block = ids[start:start + chunk]
        wanted_documents = list(_wanted_documents(session, block))
        keys = [wanted.source_key for wanted in wanted_documents]
        # By key too: an annotation may have moved here from another manifest.
        existing = {doc.source_key: doc for doc in session.scalars(
            select(SearchDocument).where(SearchDocument.manifest_id.in_(block)))}
        for start_key in range(0, len(keys), 500):
            for doc in session.scalars(select(SearchDocument).where(
                    SearchDocument.source_key.in_(keys[start_key:start_key + 500]))):
                existing[doc.source_key] = doc
        seen, changed = set(), []
        for wanted in wanted_documents:
            seen.add(wanted.source_key)
            doc = existing.get(wanted.source_key)
            sha = wanted.sha
            if doc is None:
                session.add(SearchDocument(
                    source_key=wanted.source_key, kind=wanted.kind, manifest_id=wanted.manifest_id,
                    canvas_id=wanted.canvas_id, annotation_id=wanted.annotation_id,
                    language=wanted.language, text=wanted.text, x=wanted.box[0], y=wanted.box[1],
                    w=wanted.box[2], h=wanted.box[3], content_sha256=sha))
                report.added += 1
            elif doc.content_sha256 != sha or doc.manifest_id != wanted.manifest_id:
                doc.text, doc.language, doc.canvas_id, doc.manifest_id, doc.content_sha256 = (
                    wanted.text, wanted.language, wanted.canvas_id, wanted.manifest_id, sha)
                doc.x, doc.y, doc.w, doc.h = wanted.box
                changed.append(doc.id)
                report.updated += 1
        if changed:
            session.execute(delete(TextVector).where(TextVector.document_id.in_(changed)))
        gone = [doc.id for key, doc in existing.items() if key not in seen and doc.manifest_id in block]
        if gone:
            session.execute(delete(SearchDocument).where(SearchDocument.id.in_(gone)))
            report.removed += len(gone)
        session.flush()
    from sqlalchemy import func

    report.total = session.scalar(select(func.count()).select_from(SearchDocument)) or 0
    return report
