"""Fusing ranked lists from different signals into one ranking, with an explanation per item.

Weighted reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): an item's score is
``sum(weight_s / (k + rank_s))`` over the signals that ranked it. Why ranks and not scores: the
signals' scores are not comparable — a CLIP/SigLIP text→image cosine lives around 0.1–0.35, a
MiniLM cosine around 0.2–0.8, and BM25 is unbounded and depends on document length — so a score
sum would need per-collection calibration that we cannot do for every library's data. RRF needs
none, is robust when a signal is missing for most items (most canvases have no transcription:
absent simply adds nothing), and in the original study beat CombSUM/CombMNZ and learned rank
aggregation. ``k = 60`` is that paper's constant; it keeps one signal's top rank from swamping
agreement between the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Optional

RRF_K = 60


@dataclass
class RankedSignal:
    """One signal's ranking: items best first, each with the signal's own score."""

    name: str
    items: list[tuple[Hashable, float]]
    weight: float = 1.0


@dataclass
class Contribution:
    rank: int  # 1-based rank in that signal
    score: float  # the signal's own score (cosine, BM25...)
    contribution: float  # weight / (k + rank)

    def as_dict(self) -> dict:
        return {"rank": self.rank, "score": round(self.score, 6), "contribution": round(self.contribution, 6)}


@dataclass
class FusedItem:
    key: Hashable
    score: float
    contributions: dict[str, Contribution] = field(default_factory=dict)

    @property
    def best_rank(self) -> int:
        return min(c.rank for c in self.contributions.values())


def reciprocal_rank_fusion(signals: list[RankedSignal], k: int = RRF_K,
                           tie_key: Optional[callable] = None) -> list[FusedItem]:
    """Fuse ``signals`` into one list, best first.

    Ties (same fused score) are broken by the best single-signal rank, then by ``tie_key(key)``
    (default: the key itself), so equal inputs always give the same order. Items listed twice by
    one signal count once, at their best rank. Raises ValueError for a negative weight or k.
    """
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    fused: dict[Hashable, FusedItem] = {}
    for signal in signals:
        if signal.weight < 0:
            raise ValueError(f"signal {signal.name!r} has a negative weight")
        if signal.weight == 0:
            continue
        seen = set()
        for rank, (key, score) in enumerate(signal.items, start=1):
            if key in seen:
                continue
            seen.add(key)
            item = fused.setdefault(key, FusedItem(key, 0.0))
            contribution = signal.weight / (k + rank)
            item.score += contribution
            item.contributions[signal.name] = Contribution(rank, float(score), contribution)
    tie = tie_key or (lambda key: key)
    return sorted(fused.values(), key=lambda item: (-round(item.score, 12), item.best_rank, tie(item.key)))
