"""Other digitisations of a page: near-duplicates by perceptual hash.

The hashes are computed by the embedding worker in ``manuscripts_search.perceptual_hashes``
(``find_near_duplicates(session, canvas_id=… | image=…)``; older installations offered only
``load_canvas_hashes`` and ``perceptual_hash``). Without that module the page says the feature is
not available instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from manuscripts_search.models import Canvas
from manuscripts_search.near_duplicates import NearDuplicateError, hamming_search, hash_to_uint64, near_duplicates

UNAVAILABLE = ("Near-duplicate search is not available in this installation yet: perceptual hashes "
               "are computed by `msearch embed` once the hashing module is installed.")


@dataclass
class DuplicateResult:
    canvases: list[tuple[Canvas, Any]] = field(default_factory=list)  # (canvas, hit with distance, similarity)
    message: Optional[str] = None  # why there are none, when that is not simply "no duplicates"


def _hash_module():
    try:
        from manuscripts_search import perceptual_hashes
    except ImportError:
        return None
    return perceptual_hashes


def find_duplicates(session: Session, canvas: Canvas, region_image=None, limit: int = 12) -> DuplicateResult:
    """Near-duplicates of ``canvas`` (or of ``region_image``, a drawn region's pixels), closest
    first. Uses the crop-tolerant search of ``perceptual_hashes.find_near_duplicates`` when the
    module offers it, else the 64-bit Hamming search of :mod:`manuscripts_search.near_duplicates`."""
    module = _hash_module()
    if module is None or not (hasattr(module, "find_near_duplicates") or hasattr(module, "load_canvas_hashes")):
        return DuplicateResult(message=UNAVAILABLE)
    try:
        if hasattr(module, "find_near_duplicates"):
            if region_image is None:
                hits = module.find_near_duplicates(session, canvas_id=canvas.id, limit=limit)
            else:
                hits = module.find_near_duplicates(session, image=region_image, limit=limit)
        elif region_image is None:
            hits = near_duplicates(session, canvas.id, module.load_canvas_hashes, 10, limit)
        else:
            import numpy as np

            pairs = [(int(c), hash_to_uint64(h)) for c, h in module.load_canvas_hashes(session) if h is not None]
            ids = np.fromiter((c for c, _ in pairs), dtype=np.int64, count=len(pairs))
            values = np.fromiter((h for _, h in pairs), dtype=np.uint64, count=len(pairs))
            hits = hamming_search(module.perceptual_hash(region_image), ids, values, 10, limit)
    except (NearDuplicateError, ValueError) as error:  # HashLookupError is a ValueError
        return DuplicateResult(message=str(error)[0].upper() + str(error)[1:] + ".")
    canvases = {c.id: c for c in session.scalars(select(Canvas).where(Canvas.id.in_([h.canvas_id for h in hits])))}
    return DuplicateResult([(canvases[h.canvas_id], h) for h in hits if h.canvas_id in canvases])
