"""Search filters: which canvases a query may return.

Filters become one SQL statement selecting canvas ids, used as a sub-query by every signal (the
vector index's allowed labels, full-text and semantic text search), so that each signal searches
only inside the filter and returns ``k`` results when they exist, instead of filtering a top-k.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from ..models import Canvas, CanvasLabel, Category, Collection, CollectionMembership, Manifest, TextAnnotation
from .text_folding import fold

_DATE_BOUND = re.compile(r"^-?\d{4}(-\d{2}(-\d{2})?)?$")


class FilterError(ValueError):
    """A filter value cannot be used; the message names the filter and the expected form."""


@dataclass(frozen=True)
class SearchFilters:
    """Every field narrows the result; empty tuples and None mean "no restriction".

    ``collections`` and ``manifests`` take database ids or IIIF ids/URLs; ``providers`` are matched
    as case- and accent-insensitive substrings of the provider (institution) labels; dates are
    ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` bounds on navDate, both inclusive (a manifest without
    navDate is matched by the years of its metadata's date statement, :mod:`.dates`, and excluded
    when it has none); ``labels`` are category names from classification.
    """

    collections: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    date_from: Optional[str] = None
    date_to: Optional[str] = None
    iiif_versions: tuple[int, ...] = ()
    has_transcription: Optional[bool] = None
    labels: tuple[str, ...] = ()
    label_space: Optional[str] = field(default=None, compare=False)

    def __post_init__(self):
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None and not _DATE_BOUND.match(value):
                raise FilterError(f"{name.replace('_', '-')} must be YYYY, YYYY-MM or YYYY-MM-DD, got {value!r}")
        if self.date_from and self.date_to and _pad(self.date_from, "0") > _pad(self.date_to, "9"):
            raise FilterError(f"date-from {self.date_from} is after date-to {self.date_to}")
        for version in self.iiif_versions:
            if version not in (1, 2, 3):
                raise FilterError(f"iiif-version must be 1, 2 or 3, got {version!r}")

    @property
    def active(self) -> bool:
        return bool(self.collections or self.manifests or self.providers or self.date_from or self.date_to
                    or self.iiif_versions or self.has_transcription is not None or self.labels)

    def as_dict(self) -> dict:
        return {name: value for name, value in (
            ("collection", list(self.collections)), ("manifest", list(self.manifests)),
            ("provider", list(self.providers)), ("date_from", self.date_from), ("date_to", self.date_to),
            ("iiif_version", list(self.iiif_versions)), ("has_transcription", self.has_transcription),
            ("label", list(self.labels))) if value not in (None, [])}


def parse_filter_options(pairs: list[str]) -> SearchFilters:
    """Build filters from ``name=value`` strings (the CLI's ``--filter`` and the web's query).

    Names: collection, manifest, provider, date-from, date-to, iiif-version, has-transcription,
    label; repeat a name for "any of". Raises FilterError for an unknown name or a bad value.
    """
    values: dict[str, list[str]] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        name = name.strip().lower().replace("_", "-")
        if not separator or not value.strip():
            raise FilterError(f"a filter is written name=value, got {pair!r}")
        values.setdefault(name, []).append(value.strip())
    known = {"collection", "manifest", "provider", "date-from", "date-to", "iiif-version",
             "has-transcription", "label"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise FilterError(f"unknown filter {unknown[0]!r}; known: {', '.join(sorted(known))}")
    for single in ("date-from", "date-to", "has-transcription"):
        if len(values.get(single, [])) > 1:
            raise FilterError(f"{single} can be given once")
    try:
        versions = tuple(int(v) for v in values.get("iiif-version", []))
    except ValueError:
        raise FilterError("iiif-version must be 1, 2 or 3") from None
    transcription = values.get("has-transcription", [None])[0]
    if transcription is not None:
        lowered = transcription.lower()
        if lowered not in ("true", "false", "yes", "no", "1", "0"):
            raise FilterError(f"has-transcription must be true or false, got {transcription!r}")
        transcription = lowered in ("true", "yes", "1")
    return SearchFilters(
        collections=tuple(values.get("collection", [])), manifests=tuple(values.get("manifest", [])),
        providers=tuple(values.get("provider", [])), date_from=values.get("date-from", [None])[0],
        date_to=values.get("date-to", [None])[0], iiif_versions=versions,
        has_transcription=transcription, labels=tuple(values.get("label", [])))


def _pad(bound: str, digit: str) -> str:
    return bound + {4: f"-{digit}{digit}-{digit}{digit}", 7: f"-{digit}{digit}", 10: ""}[len(bound.lstrip("-"))]


def _ids_or_iiif(column_id, column_iiif, extra_column, values: tuple[str, ...]):
    ids = [int(v) for v in values if v.isdigit()]
    texts = [v for v in values if not v.isdigit()]
    conditions = []
    if ids:
        conditions.append(column_id.in_(ids))
    if texts:
        conditions.append(column_iiif.in_(texts))
        if extra_column is not None:
            conditions.append(extra_column.in_(texts))
    return or_(*conditions)


def _provider_manifest_ids(session: Session, needles: tuple[str, ...]) -> list[int]:
    # Provider labels are JSON language maps; matching in Python keeps SQLite and PostgreSQL
    # alike (JSON text is stored with escaped non-ASCII characters, so SQL LIKE would miss "è").
    from .documents import language_map_texts

    folded_needles = [fold(needle) for needle in needles]
    matching = []
    for manifest_id, providers in session.execute(select(Manifest.id, Manifest.providers)):
        labels = []
        for provider in providers or []:
            labels += language_map_texts(provider.get("label") if isinstance(provider, dict)
                                         and "label" in provider else provider)
        haystack = fold(" | ".join(labels))
        if any(needle in haystack for needle in folded_needles):
            matching.append(manifest_id)
    return matching


def _metadata_dated_manifest_ids(session: Session, date_from: Optional[str], date_to: Optional[str]) -> list[int]:
    # Manuscripts without navDate, dated by their metadata ("c. 1450", "15th century"): the
    # years it names overlap the bounds (read in Python, as the date facet reads them).
    from .dates import metadata_years

    low = int(date_from[:5 if date_from.startswith("-") else 4]) if date_from else -10_000
    high = int(date_to[:5 if date_to.startswith("-") else 4]) if date_to else 10_000
    matching = []
    for manifest_id, metadata in session.execute(
            select(Manifest.id, Manifest.metadata_entries).where(Manifest.nav_date.is_(None))):
        years = metadata_years(metadata)
        if years and years[0] <= high and years[1] >= low:
            matching.append(manifest_id)
    return matching


def canvas_filter_statement(session: Session, filters: SearchFilters) -> Select:
    """``SELECT canvases.id`` of the canvases the filters allow."""
    statement = select(Canvas.id).join(Manifest, Manifest.id == Canvas.manifest_id)
    conditions = []
    if filters.manifests:
        conditions.append(_ids_or_iiif(Manifest.id, Manifest.iiif_id, Manifest.url, filters.manifests))
    if filters.collections:
        collection_ids = select(Collection.id).where(
            _ids_or_iiif(Collection.id, Collection.iiif_id, None, filters.collections))
        conditions.append(Canvas.manifest_id.in_(
            select(CollectionMembership.manifest_id).where(CollectionMembership.collection_id.in_(collection_ids))))
    if filters.providers:
        conditions.append(Canvas.manifest_id.in_(_provider_manifest_ids(session, filters.providers)))
    if filters.date_from or filters.date_to:
        by_nav_date = [Manifest.nav_date.is_not(None)]
        if filters.date_from:
            bound = filters.date_from
            by_nav_date.append(func.substr(Manifest.nav_date, 1, len(bound)) >= bound)
        if filters.date_to:
            bound = filters.date_to
            by_nav_date.append(func.substr(Manifest.nav_date, 1, len(bound)) <= bound)
        conditions.append(or_(and_(*by_nav_date), Canvas.manifest_id.in_(
            _metadata_dated_manifest_ids(session, filters.date_from, filters.date_to))))
    if filters.iiif_versions:
        conditions.append(Manifest.iiif_version.in_(filters.iiif_versions))
    if filters.has_transcription is not None:
        has_text = exists(select(TextAnnotation.id).where(TextAnnotation.canvas_id == Canvas.id))
        conditions.append(has_text if filters.has_transcription else ~has_text)
    if filters.labels:
        labelled = select(CanvasLabel.canvas_id).join(Category, Category.id == CanvasLabel.category_id).where(
            Category.name.in_(filters.labels))
        if filters.label_space:
            labelled = labelled.where(CanvasLabel.space == filters.label_space)
        conditions.append(Canvas.id.in_(labelled))
    return statement.where(*conditions) if conditions else statement
