"""Score floors: the score below which a signal's hit is no better than what nonsense finds.

A k-NN signal always ranks *something* first: the nearest vector of any query, "zzqxv" included,
is some canvas at some cosine. What a cosine means depends on the model and the collection (a
CLIP text→image cosine of 0.25 is a good match, a MiniLM cosine of 0.40 may be noise), so no fixed
number works for every space. The floor is learned from the space itself: :data:`NONSENSE_QUERIES`
(strings of random letters, seeded, one to four "words") are encoded by the space's own text
encoder and searched in its index; the 90th percentile of their best scores is the floor. A hit
must score above it to be shown: a query that finds nothing better than nonsense finds nothing.

Per signal: ``visual`` (text queries through the vision-language text tower; image and "more like
this" queries ask for the nearest pictures and have no floor) and ``semantic`` (MiniLM sentence
vectors). ``fulltext`` needs none: BM25 only returns documents that contain a query word.

Floors are computed on the first query against a loaded index (a few dozen encodings and k-NN
lookups, well under a second) and kept with that index object, so a reloaded or grown index is
calibrated again. ``MSEARCH_SCORE_FLOORS`` overrides them per signal (a number, ``off`` or
``auto``); a request can ask for the weaker matches too (``weaker``).
"""
from __future__ import annotations

import random
import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..index.vector_index import VectorIndex

CALIBRATED_SIGNALS = ("visual", "semantic")
# A few random strings look like a word by chance (MiniLM: "medicine" scores 0.35 against "Herbal
# with medicinal plants" in the test library, where 1 nonsense string in 20 scores above 0.35 and
# 1 in 10 above 0.32): the 90th percentile keeps such matches and still drops what nonsense finds.
PERCENTILE = 90.0
# Used by the semantic signal when its index is empty (nothing to calibrate against).
SEMANTIC_FALLBACK_FLOOR = 0.25


def _nonsense_queries(count: int = 48, seed: int = 16) -> tuple[str, ...]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    queries = []
    for _ in range(count):
        words = [("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
                 for _ in range(rng.randint(1, 4))]
        queries.append(" ".join(words))
    return tuple(queries)


NONSENSE_QUERIES = _nonsense_queries()


@dataclass(frozen=True)
class ScoreFloor:
    signal: str
    value: Optional[float]  # None: no floor (switched off, or nothing to calibrate against)
    source: str  # "calibrated" | "setting" | "fallback" | "off"
    queries: int = 0  # nonsense queries it was learned from

    def as_dict(self) -> dict:
        return {"value": None if self.value is None else round(self.value, 6), "source": self.source,
                "queries": self.queries}


def parse_score_floors(raw: Optional[str]) -> dict[str, Optional[float] | str]:
    """``MSEARCH_SCORE_FLOORS``: ``auto`` (every signal calibrated), ``off``, or comma-separated
    ``signal=value`` with value ``auto``, ``off`` or a number from -1 to 1 (a cosine).

    Returns {signal: "auto" | None (off) | float}. Raises ValueError naming what is wrong.
    """
    text = (raw or "auto").strip().lower()
    if text in ("auto", "off"):
        return {signal: ("auto" if text == "auto" else None) for signal in CALIBRATED_SIGNALS}
    floors: dict[str, Optional[float] | str] = {signal: "auto" for signal in CALIBRATED_SIGNALS}
    for part in text.split(","):
        name, separator, value = (piece.strip() for piece in part.partition("="))
        if not separator or name not in CALIBRATED_SIGNALS:
            raise ValueError(f"write auto, off or signal=value with a signal of {', '.join(CALIBRATED_SIGNALS)}, "
                             f"got {part.strip()!r}")
        if value in ("auto", "off"):
            floors[name] = "auto" if value == "auto" else None
            continue
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not -1.0 <= number <= 1.0:
            raise ValueError(f"{name}'s floor must be auto, off or a number from -1 to 1, got {value!r}")
        floors[name] = number
    return floors


_CACHE: "weakref.WeakKeyDictionary[VectorIndex, dict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def calibrated_floor(signal: str, index: VectorIndex, encoder_key: str,
                     encode: Callable[[list[str]], np.ndarray]) -> ScoreFloor:
    """The floor of ``signal`` in ``index``, learned with ``encode`` (the space's text encoder,
    named by ``encoder_key``); computed once per index object, contents and encoder."""
    key = (signal, encoder_key, len(index), index.element_count)
    with _LOCK:
        known = _CACHE.get(index, {}).get(key)
    if known is not None:
        return known
    floor = _calibrate(signal, index, encode)
    with _LOCK:
        per_index = _CACHE.setdefault(index, {})
        per_index.clear()  # an index that grew since: its older floors are of no use
        per_index[key] = floor
    return floor


def _calibrate(signal: str, index: VectorIndex, encode) -> ScoreFloor:
    if len(index) == 0:
        fallback = SEMANTIC_FALLBACK_FLOOR if signal == "semantic" else None
        return ScoreFloor(signal, fallback, "fallback")
    vectors = np.asarray(encode(list(NONSENSE_QUERIES)), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != index.dim:
        return ScoreFloor(signal, SEMANTIC_FALLBACK_FLOOR if signal == "semantic" else None, "fallback")
    best = []
    for vector in vectors:
        norm = float(np.linalg.norm(vector))
        if norm == 0 or not np.isfinite(norm):
            continue
        hits = index.query(vector / norm, 1)
        if hits:
            best.append(float(hits[0][1]))
    if not best:
        return ScoreFloor(signal, None, "fallback")
    return ScoreFloor(signal, float(np.percentile(best, PERCENTILE)), "calibrated", len(best))


def resolve_floor(signal: str, setting, index: Optional[VectorIndex], encoder_key: Optional[str],
                  encode: Optional[Callable[[list[str]], np.ndarray]]) -> ScoreFloor:
    """The floor a query uses: the setting's number, none when it says off, else the calibrated
    one (none when there is no index or text encoder to learn it with)."""
    if setting is None:
        return ScoreFloor(signal, None, "off")
    if isinstance(setting, (int, float)):
        return ScoreFloor(signal, float(setting), "setting")
    if index is None or encode is None or encoder_key is None:
        return ScoreFloor(signal, SEMANTIC_FALLBACK_FLOOR if signal == "semantic" else None, "fallback")
    return calibrated_floor(signal, index, encoder_key, encode)
