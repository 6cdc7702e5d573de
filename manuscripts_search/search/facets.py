"""Facet counts over a whole result set (every ranked canvas, not the page): category labels,
IIIF version, manuscript, collection, institution (provider), date (century and decade, from
navDate or the metadata's date statement) and whether a transcription exists.

Counts are of canvases, like the result total, so the counts of one facet add up to it where
each canvas has exactly one value (version, century when dated, transcription). Counting runs in
SQL on both databases (blocks of ids in ``IN``); what lives in JSON (providers, metadata dates)
is read per manuscript, once, in Python, as the filters read it.
"""
from __future__ import annotations

from typing import Iterable, Optional

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from ..models import Canvas, CanvasLabel, Category, CollectionMembership, Manifest, TextAnnotation
from .dates import century_key, decade_key, manuscript_years
from .documents import language_map_texts

FACET_NAMES = ("label", "iiif_version", "manifest", "collection", "provider", "century", "decade", "transcription")
TOP = 20  # values listed per facet (the most frequent; dates in time order)
_BLOCK = 5000


def empty_facets() -> dict[str, dict[str, int]]:
    return {name: {} for name in FACET_NAMES}


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


def result_facets(session: Session, canvas_ids: list[int],
                  label_space: Optional[str]) -> tuple[dict[str, dict[str, int]], int]:
    """(facet -> value -> canvases, the number of manuscripts) over ``canvas_ids``."""
    facets = empty_facets()
    per_manifest: dict[int, int] = {}
    for start in range(0, len(canvas_ids), _BLOCK):
        block = canvas_ids[start:start + _BLOCK]
        label_counts = (select(Category.name, func.count()).join(CanvasLabel, CanvasLabel.category_id == Category.id)
                        .where(CanvasLabel.canvas_id.in_(block)).group_by(Category.name))
        if label_space is not None:
            label_counts = label_counts.where(CanvasLabel.space == label_space)
        for name, count in session.execute(label_counts):
            _add(facets["label"], name, count)
        for version, manifest_id, count in session.execute(
                select(Manifest.iiif_version, Manifest.id, func.count()).join(Canvas, Canvas.manifest_id == Manifest.id)
                .where(Canvas.id.in_(block)).group_by(Manifest.iiif_version, Manifest.id)):
            _add(facets["iiif_version"], str(version), count)
            per_manifest[manifest_id] = per_manifest.get(manifest_id, 0) + count
        for collection_id, count in session.execute(
                select(CollectionMembership.collection_id, func.count(func.distinct(Canvas.id)))
                .join(Canvas, Canvas.manifest_id == CollectionMembership.manifest_id)
                .where(Canvas.id.in_(block)).group_by(CollectionMembership.collection_id)):
            _add(facets["collection"], str(collection_id), count)
        transcribed = session.scalar(select(func.count()).select_from(Canvas).where(
            Canvas.id.in_(block), exists(select(TextAnnotation.id).where(TextAnnotation.canvas_id == Canvas.id)))) or 0
        _add(facets["transcription"], "true", transcribed)
    found = sum(per_manifest.values())
    facets["transcription"]["false"] = found - facets["transcription"].get("true", 0)
    facets["transcription"] = {key: n for key, n in facets["transcription"].items() if n}
    _manuscript_facets(session, per_manifest, facets)
    facets["manifest"] = {str(key): n for key, n in per_manifest.items()}
    for name in ("label", "manifest", "collection", "provider"):
        facets[name] = dict(sorted(facets[name].items(), key=lambda kv: (-kv[1], _number_first(kv[0])))[:TOP])
    for name in ("century", "decade"):  # the most frequent, listed in time order
        facets[name] = dict(sorted(sorted(facets[name].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]))
    return facets, len(per_manifest)


def _number_first(key: str):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _manuscript_facets(session: Session, per_manifest: dict[int, int], facets: dict) -> None:
    """Institution and date: read from each manuscript's JSON once, counted for its canvases."""
    ids = list(per_manifest)
    for start in range(0, len(ids), _BLOCK):
        for manifest_id, providers, nav_date, metadata in session.execute(
                select(Manifest.id, Manifest.providers, Manifest.nav_date, Manifest.metadata_entries)
                .where(Manifest.id.in_(ids[start:start + _BLOCK]))):
            count = per_manifest[manifest_id]
            for name in provider_names(providers):
                _add(facets["provider"], name, count)
            years = manuscript_years(nav_date, metadata)
            if years:
                _add(facets["century"], century_key(years), count)
                decade = decade_key(years)
                if decade:
                    _add(facets["decade"], decade, count)


def provider_names(providers: Iterable) -> list[str]:
    """The first label of each provider (the institution's name as the manifest gives it)."""
    names = []
    for provider in providers or []:
        label = provider.get("label") if isinstance(provider, dict) and "label" in provider else provider
        texts = language_map_texts(label)
        if texts and texts[0] not in names:
            names.append(texts[0][:200])
    return names
