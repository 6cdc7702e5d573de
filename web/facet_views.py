"""Facets as the page and the API name them: the manifest and collection facets count by database
id, which a reader cannot read, so their names come from here; date keys ("1400-1499") get the
words a reader expects ("15th century", "1450s")."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from manuscripts_search.iiif.language import first_value
from manuscripts_search.models import Collection, Manifest


def facet_labels(session: Session, facets: dict) -> dict[str, dict[str, str]]:
    labels: dict[str, dict[str, str]] = {"manifest": {}, "collection": {}}
    for name, model in (("manifest", Manifest), ("collection", Collection)):
        ids = [int(key) for key in facets.get(name, {}) if key.isdigit()]
        if ids:
            for row_id, label, iiif_id in session.execute(
                    select(model.id, model.label, model.iiif_id).where(model.id.in_(ids))):
                labels[name][str(row_id)] = first_value(label) or iiif_id
    return labels


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def century_name(key: str) -> str:
    """"1400-1499" -> "15th century"."""
    start = int(key.split("-")[0])
    return f"{_ordinal(start // 100 + 1)} century"


def decade_name(key: str) -> str:
    """"1450-1459" -> "1450s"."""
    return f"{int(key.split('-')[0])}s"


def date_bounds(key: str) -> tuple[str, str]:
    """The date_from and date_to of a century or decade key."""
    start, end = key.split("-")
    return start, end
