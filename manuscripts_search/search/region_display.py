"""Which of a hit's regions to show: the best one and at most two others that are not the same
place again.

A hit's ``regions`` are all its evidence: every region vector the k-NN met and every annotation
box whose words matched. Drawn as they are, they are a cloud of boxes, mostly grid windows
nested in each other around the one detail that matched. :func:`pick_regions` keeps the best
region, then walks down the others and keeps one only if it overlaps no kept box (IoU below
``max_iou``) and neither mostly contains a kept box nor lies mostly inside one (the overlap
covers less than ``max_cover`` of the smaller box): greedy non-maximum suppression, with
containment counted too because a small window inside a big one has a small IoU.

The thumbnails, the JSON API (``shown_regions``), Content Search's visual matches, the exports
and the canvas page all show what this returns, so every view of a hit draws the same boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Protocol

MAX_SHOWN = 3
# Neighbouring grid windows share a quarter of their side (IoU 0.14): one is enough. A window
# half inside a bigger one is the same detail again, however small its IoU.
MAX_IOU = 0.1
MAX_COVER = 0.5
LABEL_CHARS = 60


class RegionEvidence(Protocol):
    """What a region needs to be shown (search.signals.RegionMatch has it)."""

    xywh: str
    score: float
    signal: str  # visual | fulltext | semantic
    snippet: Optional[str]


@dataclass(frozen=True)
class ShownRegion:
    xywh: str  # canvas coordinates
    rank: int  # 1: the best
    signal: str
    score: float
    label: str  # what matched there: "picture", or the words of the annotation

    @property
    def caption(self) -> str:
        """The label as drawn on the box: rank, what matched, score."""
        return f"{self.rank} · {self.label} · {self.score:.3f}"

    def as_dict(self) -> dict:
        return {"xywh": self.xywh, "rank": self.rank, "signal": self.signal, "score": round(self.score, 6),
                "label": self.label, "caption": self.caption}


def parse_box(xywh: str) -> Optional[tuple[int, int, int, int]]:
    """(x, y, w, h) of an ``x,y,w,h`` string with a positive width and height, else None."""
    parts = xywh.split(",") if isinstance(xywh, str) else []
    if len(parts) != 4:
        return None
    try:
        x, y, w, h = (int(part) for part in parts)
    except ValueError:
        return None
    return (x, y, w, h) if w > 0 and h > 0 else None


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[float, float]:
    """(IoU, intersection over the smaller box's area) of two boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0, 0.0
    inter = width * height
    area_a, area_b = a[2] * a[3], b[2] * b[3]
    return inter / (area_a + area_b - inter), inter / min(area_a, area_b)


def region_label(region: RegionEvidence) -> str:
    """"picture" for a region that looked like the query, else the matched words, shortened."""
    if region.signal == "visual" or not (region.snippet or "").strip():
        return "picture"
    text = " ".join(region.snippet.split())
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1].rstrip() + "…"


def pick_regions(regions: Iterable[RegionEvidence], best_xywh: Optional[str] = None, limit: int = MAX_SHOWN,
                 max_iou: float = MAX_IOU, max_cover: float = MAX_COVER) -> list[ShownRegion]:
    """The regions to show, best first: at most ``limit``, none overlapping another (see the
    module's docstring). ``regions`` come best first (the engine sorts them by score); the one
    at ``best_xywh`` (the hit's best visual region, when a region beat the page) goes first
    wherever it stands. Boxes that cannot be read (not four integers, empty) are passed over."""
    candidates = [region for region in regions if parse_box(region.xywh) is not None]
    if best_xywh is not None:
        at = next((i for i, region in enumerate(candidates) if region.xywh == best_xywh), None)
        if at is not None:
            candidates.insert(0, candidates.pop(at))
    kept: list[tuple[RegionEvidence, tuple[int, int, int, int]]] = []
    for region in candidates:
        if len(kept) >= limit:
            break
        box = parse_box(region.xywh)
        if all(iou < max_iou and cover < max_cover for iou, cover in (overlap(box, other) for _, other in kept)):
            kept.append((region, box))
    return [ShownRegion(region.xywh, rank, region.signal, float(region.score), region_label(region))
            for rank, (region, _) in enumerate(kept, 1)]
