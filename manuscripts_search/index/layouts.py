"""Which index layout a space gets: chosen by a memory budget, like autofaiss.

Each layout declares what one vector costs in memory that must stay resident for fast queries,
and where it stands in recall; ``auto`` takes the best-recall layout whose estimate for the
space's size fits ``MSEARCH_INDEX_MEMORY``, and says which and why. The figures are measured by
``bench/scale.py`` on the project's clustered 768-d data (docs/scale-out.md).

- ``hnsw``: float32 graph in each process: 4·dim + 8·M + 64 bytes per vector (3.4 KB at 768-d);
- ``hnsw-f16``: float16 graph, memory-mapped and shared: 2·dim + 8·M + 32 (1.8 KB);
- ``ivf-rabitq``: IVF + RaBitQ codes of dim/8 + 8 bytes, ids and list overhead, about
  dim/8 + 32 bytes (~130 B) that must stay resident; the 8-bit re-rank file (dim bytes per
  vector) is memory-mapped and read a few hundred rows per query, so under steady load most of
  it sits in the page cache too (858 MiB at 1M in bench/scale.py) — memory the kernel can
  reclaim, which the budget does not count;
- ``ivfpq``: the same with PQ codes of dim/8 bytes (dim/8 + 24 resident): 8 bytes less per
  vector than ``ivf-rabitq`` at the same recall, but its scan takes twice as long;
- ``hnsw-i8``: 8-bit graph: dim + 8·M + 32 (1.1 KB), lowest recall (~0.93), for budgets that
  nothing else fits and a space too small for the IVF layouts to train.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .hnsw import HnswIndex
from .ivf import IvfPqIndex, IvfRaBitQIndex
from .usearch_graph import UsearchF16Index, UsearchI8Index
from .vector_index import IndexParams, IndexReadError, VectorIndex, read_metadata

# Below this many vectors IVF cannot train well (the lists and the PQ codebooks need data).
IVF_MIN_VECTORS = 20_000
IVF_LAYOUTS = ("ivf-rabitq", "ivfpq")
# Room left for growth and the process itself: a layout fits when its estimate is within this
# share of the budget.
HEADROOM = 0.8


@dataclass(frozen=True)
class Layout:
    name: str
    recall_rank: int  # 0 = best recall@10 on bench/scale.py's data
    resident_bytes: Callable[[int, int, int], int]  # (vectors, dim, M) -> bytes
    summary: str


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("hnsw", 0, lambda n, d, m: n * (4 * d + 8 * m + 64),
           "hnswlib float32 graph, exact-quality recall, loaded into each process"),
    Layout("hnsw-f16", 1, lambda n, d, m: n * (2 * d + 8 * m + 32),
           "usearch float16 graph, memory-mapped and shared by all web workers"),
    Layout("ivf-rabitq", 2, lambda n, d, m: n * (-(-d // 8) + 32) + 4096 * d * 4,
           "faiss IVF with RaBitQ codes, exact re-ranking from a memory-mapped 8-bit file"),
    Layout("ivfpq", 3, lambda n, d, m: n * (d // 8 + 24) + 4096 * d * 4,
           "faiss IVF with PQ codes, exact re-ranking from a memory-mapped 8-bit file"),
    Layout("hnsw-i8", 4, lambda n, d, m: n * (d + 8 * m + 32),
           "usearch 8-bit graph, memory-mapped; lowest recall"),
)}


def layout_class(name: str) -> type[VectorIndex]:
    """The class implementing layout ``name``. Raises ValueError for an unknown name."""
    classes = {"hnsw": HnswIndex, "hnsw-f16": UsearchF16Index, "hnsw-i8": UsearchI8Index, "ivfpq": IvfPqIndex,
               "ivf-rabitq": IvfRaBitQIndex}
    if name not in classes:
        raise ValueError(f"unknown index layout {name!r}; choose from {', '.join(LAYOUTS)} or auto")
    return classes[name]


def new_index(space: str, dim: int, params: Optional[IndexParams] = None, capacity: int = 1024,
              layout: str = "hnsw") -> VectorIndex:
    """A new, empty index of ``layout``. Raises ValueError for an unknown layout."""
    return layout_class(layout)(space, dim, params or IndexParams(), capacity=capacity)


def open_index(directory: Path, space: str, ef_search: Optional[int] = None,
               writable: bool = False) -> Optional[VectorIndex]:
    """Open the saved index of ``space`` from ``directory``, whatever its layout; None when there
    is none. ``writable`` opens it for adds and removals (memory-mapped layouts then read it whole).

    Raises IndexReadError when a file exists but cannot be read (truncated, foreign, wrong
    dimension, unknown layout); the message says to run ``msearch index rebuild``.
    """
    meta = read_metadata(directory, space)
    if meta is None:
        return None
    try:
        kind = layout_class(meta.get("layout", "hnsw"))
        params = IndexParams(int(meta.get("M", 32)), int(meta.get("ef_construction", 200)),
                             int(ef_search or meta.get("ef_search", 128)))
    except (ValueError, TypeError) as error:
        raise IndexReadError(f"the index of {space} cannot be opened ({error}); "
                             "run `msearch index rebuild`") from error
    return kind.open(Path(directory), space, meta, params, writable=writable)


@dataclass(frozen=True)
class LayoutChoice:
    layout: str
    reason: str
    estimate_bytes: int
    budget_bytes: int

    def as_dict(self) -> dict:
        return {"layout": self.layout, "reason": self.reason, "estimate_bytes": self.estimate_bytes,
                "budget_bytes": self.budget_bytes}


def estimate_bytes(layout: str, vectors: int, dim: int, M: int = 32) -> int:
    return int(LAYOUTS[layout].resident_bytes(int(vectors), int(dim), int(M)))


def choose_layout(vectors: int, dim: int, budget_bytes: int, M: int = 32) -> LayoutChoice:
    """The best-recall layout whose resident estimate for ``vectors`` fits ``budget_bytes``
    (with headroom); when none fits, the smallest, with a reason that says it does not fit."""
    candidates = sorted(LAYOUTS.values(), key=lambda layout: layout.recall_rank)
    usable = [layout for layout in candidates if layout.name not in IVF_LAYOUTS or vectors >= IVF_MIN_VECTORS]
    for layout in usable:
        estimate = estimate_bytes(layout.name, vectors, dim, M)
        if estimate <= HEADROOM * budget_bytes:
            better = [c.name for c in usable if c.recall_rank < layout.recall_rank]
            why = (f"{vectors:,} vectors of {dim} dimensions need about {format_bytes(estimate)} as {layout.name} "
                   f"({layout.summary}), within the {format_bytes(budget_bytes)} budget")
            if better:
                why += f"; {', '.join(better)} would need more than {int(HEADROOM * 100)}% of it"
            return LayoutChoice(layout.name, why, estimate, budget_bytes)
    smallest = min(usable, key=lambda layout: estimate_bytes(layout.name, vectors, dim, M))
    estimate = estimate_bytes(smallest.name, vectors, dim, M)
    return LayoutChoice(smallest.name, f"no layout fits the {format_bytes(budget_bytes)} budget for {vectors:,} "
                        f"vectors; {smallest.name} is the smallest (about {format_bytes(estimate)}): "
                        "raise MSEARCH_INDEX_MEMORY or split the space", estimate, budget_bytes)


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000 ** 2, "mb": 1000 ** 2,
          "mib": 1024 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3, "gib": 1024 ** 3, "t": 1000 ** 4,
          "tb": 1000 ** 4, "tib": 1024 ** 4, "ki": 1024, "mi": 1024 ** 2, "gi": 1024 ** 3, "ti": 1024 ** 4}


def parse_memory(text: str) -> int:
    """``8GiB``, ``512 MB``, ``2g``, ``1000000`` → bytes. Raises ValueError for anything else."""
    match = _SIZE.match(str(text))
    unit = (match.group(2) or "").lower() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"not a memory size: {text!r} (write e.g. 8GiB, 512MB or a number of bytes)")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ValueError(f"a memory size must be positive, got {text!r}")
    return value


def machine_memory() -> int:
    """This machine's physical memory in bytes (4 GiB when the system will not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 * 1024 ** 3


def default_budget() -> int:
    """Half of this machine's memory: the rest is for the database, the page cache and the model."""
    return machine_memory() // 2


def format_bytes(value: int) -> str:
    for unit, size in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"
