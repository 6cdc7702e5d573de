"""The vector index of one embedding space: one interface, several layouts, and a reload-on-change
handle for readers.

Labels are ``embeddings.id`` (or another table's row id for text spaces), so the index can always
be checked against the database, which stays the truth: the index is a rebuildable cache.

Canvases and regions of one model share one index. A text or image query should find whichever is
closer, whole page or detail, in a single k-NN pass with one score scale; separate indexes would
need two queries and a merge of two approximate top-k lists, and every filter, page and "more like
this" would have to run twice. The database says which a label is.

Vectors are L2-normalised and every layout reports cosine similarity as the score, so results
keep their meaning whichever layout a space uses. The layouts (:mod:`.layouts` chooses one for a
memory budget):

- ``hnsw`` (:mod:`.hnsw`): hnswlib, float32 graph, loaded whole into each process; exact-quality
  recall, the default for small spaces;
- ``hnsw-f16`` / ``hnsw-i8`` (:mod:`.usearch_graph`): a usearch graph with float16 or 8-bit
  vectors, opened by readers as a read-only memory-mapped view that all web workers share;
- ``ivf-rabitq`` / ``ivfpq`` (:mod:`.ivf`): faiss IVF with RaBitQ or product-quantisation codes,
  inverted lists memory-mapped, candidates re-ranked exactly from an 8-bit vector file (also
  memory-mapped): a tenth of the memory per vector, for spaces of millions.

Files, per space, in the index directory: ``<base>.json``, the metadata (space, layout, dimension,
parameters, deleted labels), and the layout's data files. ``hnsw`` keeps its one ``<base>.hnsw``
(see :mod:`.hnsw` for its crash safety). The other layouts write their data files under a new
generation name (``<base>.g<N>.<suffix>``) and then replace the metadata atomically, which names
the generation: the metadata is the commit point, so a crash leaves the previous index or the new
one, never files of two saves mixed; older generations are deleted after the commit (a reader
that mapped them keeps its pages until it lets go).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Optional

import numpy as np

log = logging.getLogger(__name__)

INDEX_FORMAT = 3  # 1: first release (no "elements"/"format"); 2: + "elements"; 3: + "layout"; all load


class IndexReadError(RuntimeError):
    """An index file exists but cannot be read; the message says which and what to run."""


@dataclass(frozen=True)
class IndexParams:
    """Search parameters. ``M``: links per node of a graph layout (memory and recall grow with it);
    ``ef_construction``: beam width while building a graph (build time and quality);
    ``ef_search``: the effort of a query — a graph's beam width, or for the IVF layouts four times
    the inverted lists probed (latency against recall). Defaults reach recall@10 ≥ 0.97 on 768-d
    vectors (bench/search.py, bench/scale.py).

    Raises ValueError for values the libraries would reject or that make no sense.
    """

    M: int = 32
    ef_construction: int = 200
    ef_search: int = 128

    def __post_init__(self):
        if not 2 <= self.M <= 256:
            raise ValueError(f"M must be between 2 and 256, got {self.M}")
        if not 1 <= self.ef_construction <= 100_000:
            raise ValueError(f"ef_construction must be between 1 and 100000, got {self.ef_construction}")
        if not 1 <= self.ef_search <= 100_000:
            raise ValueError(f"ef_search must be between 1 and 100000, got {self.ef_search}")

    def replace(self, **changes) -> "IndexParams":
        values = asdict(self)
        values.update({name: value for name, value in changes.items() if value is not None})
        return IndexParams(**values)


def index_basename(space: str) -> str:
    """A file-system-safe, stable name for a space such as ``org/model@abc123``."""
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in space)[:80]
    return f"{readable}-{hashlib.sha256(space.encode()).hexdigest()[:12]}"


def index_paths(directory: Path, space: str) -> tuple[Path, Path]:
    """(``hnsw`` graph file, metadata file) of ``space`` in ``directory``."""
    base = Path(directory) / index_basename(space)
    return base.with_suffix(".hnsw"), base.with_suffix(".json")


def generation_path(directory: Path, space: str, generation: int, suffix: str) -> Path:
    """A data file of one save of a generation-named layout."""
    return Path(directory) / f"{index_basename(space)}.g{int(generation)}.{suffix}"


def index_signature(directory: Path, space: str) -> Optional[tuple]:
    """What changes whenever the saved index of ``space`` changes (mtime, size and inode of the
    metadata, and of the ``hnsw`` graph when there is one); None when there is no saved index.
    Cheap: two ``stat`` calls."""
    graph, meta = index_paths(directory, space)
    try:
        signature = [meta.stat()]
    except FileNotFoundError:
        return None
    try:
        signature.insert(0, graph.stat())
    except FileNotFoundError:
        pass  # a generation-named layout: its metadata names the files
    return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in signature)


def read_metadata(directory: Path, space: str) -> Optional[dict]:
    """The saved metadata of ``space``; None when there is no saved index. Raises IndexReadError
    for a file that cannot be read or belongs to another space."""
    _graph, meta_path = index_paths(directory, space)
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("it is not a JSON object")
        if meta.get("space", space) != space:
            raise ValueError(f"it belongs to space {meta.get('space')!r}")
        int(meta["dim"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IndexReadError(f"the index metadata {meta_path} cannot be read ({error}); "
                             "run `msearch index rebuild`") from error
    return meta


class VectorIndex:
    """The index of one space whose labels are database row ids; each layout is a subclass.

    Not safe for concurrent writes; concurrent queries are fine. One process writes (``msearch
    index`` / ``msearch embed``) on an index opened ``writable``; readers open their own (see
    :class:`LiveIndex`), memory-mapped where the layout allows.
    """

    layout: ClassVar[str] = ""
    # A stored vector and the index's copy agree when their cosine is at least this (the
    # layout's quantisation error; ``msearch index verify --deep`` checks it).
    verify_cosine: ClassVar[float] = 0.9999
    space: str
    dim: int
    params: IndexParams

    @classmethod
    def open(cls, directory: Path, space: str, meta: dict, params: IndexParams,
             writable: bool) -> "VectorIndex":
        """Open the saved index whose metadata is ``meta`` (see :func:`.layouts.open_index`)."""
        raise NotImplementedError

    # -- contents ------------------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def __contains__(self, label: int) -> bool:
        array = self.live_label_array()
        position = int(np.searchsorted(array, int(label)))
        return position < len(array) and int(array[position]) == int(label)

    @property
    def element_count(self) -> int:
        """Vectors stored, deleted ones included (they occupy space until a rebuild)."""
        raise NotImplementedError

    @property
    def deleted_count(self) -> int:
        raise NotImplementedError

    def labels(self) -> set[int]:
        """Labels that queries can return."""
        return set(self.live_label_array().tolist())

    def live_label_array(self) -> np.ndarray:
        """Labels that queries can return, sorted."""
        raise NotImplementedError

    def add(self, labels: Iterable[int], vectors: np.ndarray) -> None:
        """Add (or replace) vectors. A label that was removed comes back with the new vector.
        Raises ValueError on a shape mismatch, non-finite values or repeated labels."""
        raise NotImplementedError

    def remove(self, labels: Iterable[int]) -> int:
        """Make ``labels`` unreachable by queries; unknown labels are ignored. Returns how many
        were removed."""
        raise NotImplementedError

    def query(self, vector: np.ndarray, k: int, ef: Optional[int] = None,
              allowed: Optional[np.ndarray] = None) -> list[tuple[int, float]]:
        """Nearest ``k`` labels to ``vector`` as (label, cosine similarity), best first.

        With ``allowed`` (sorted, unique labels) only those are returned; fewer than ``k`` come back
        when the search cannot reach ``k`` of them at this effort (:mod:`..search.knn` widens it,
        and falls back to exact scoring, so that ``k`` are guaranteed).
        """
        raise NotImplementedError

    def stored_vectors(self, labels: np.ndarray) -> np.ndarray:
        """The vectors the index holds for ``labels`` as float32 rows (decoded from its storage);
        a row of NaN for a label it does not hold. For verification against the database."""
        raise NotImplementedError

    def set_query_threads(self, threads: int) -> None:
        """Threads one query may use (benchmarks measure single-thread latency)."""

    def train(self, sample: np.ndarray) -> None:
        """Learn what the layout needs from a sample of the space's vectors before the first add
        (quantisers); graph layouts need nothing."""

    @property
    def is_trained(self) -> bool:
        return True

    # -- persistence ---------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {"format": INDEX_FORMAT, "layout": self.layout, "space": self.space, "dim": self.dim,
                "M": self.params.M, "ef_construction": self.params.ef_construction,
                "ef_search": self.params.ef_search, "count": len(self), "elements": self.element_count,
                "saved_at": time.time()}

    def save(self, directory: Path) -> Path:
        """Write the index atomically into ``directory``; returns its metadata file's path."""
        raise NotImplementedError

    def file_paths(self, directory: Path) -> list[Path]:
        """The files of the saved index (metadata included), for sizes and clean-up."""
        raise NotImplementedError

    def bytes_on_disk(self, directory: Path) -> int:
        return sum(path.stat().st_size for path in self.file_paths(directory) if path.exists())

    # -- shared by the generation-named layouts ---------------------------------------------------
    def _commit_generation(self, directory: Path, meta: dict, suffixes: Iterable[str]) -> Path:
        """Replace the metadata (the commit point) and delete older generations' files."""
        _graph, meta_path = index_paths(directory, self.space)
        text = json.dumps(meta)
        atomic_write(meta_path, lambda path: Path(path).write_text(text))
        fsync_directory(directory)
        keep = {generation_path(directory, self.space, meta["generation"], s).name for s in suffixes}
        for path in Path(directory).glob(f"{index_basename(self.space)}.g*.*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        _graph.unlink(missing_ok=True)  # an ``hnsw`` graph this layout replaced
        return meta_path


def next_generation(directory: Path, space: str) -> int:
    """One more than the generation the saved metadata names (1 for a first save)."""
    try:
        meta = read_metadata(directory, space)
    except IndexReadError:
        meta = None
    return int((meta or {}).get("generation", 0)) + 1


def check_batch(labels: Iterable[int], vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` as int64 and ``vectors`` as C-contiguous float32 after the checks every layout's
    ``add`` makes. Raises ValueError on a shape mismatch, non-finite values, repeated labels."""
    labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels, dtype=np.int64)
    if len(labels) == 0:
        return labels, np.zeros((0, dim), dtype=np.float32)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(labels), dim):
        raise ValueError(f"expected vectors of shape ({len(labels)}, {dim}), got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinite values")
    if len(np.unique(labels)) != len(labels):
        raise ValueError("labels must be unique within one add")
    return labels, vectors


def in_sorted(values: np.ndarray, sorted_pool: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``sorted_pool`` (sorted, unique labels): a boolean mask."""
    values = np.asarray(values, dtype=np.int64)
    if len(sorted_pool) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    positions = np.minimum(np.searchsorted(sorted_pool, values), len(sorted_pool) - 1)
    return np.asarray(sorted_pool[positions] == values)


def keep_allowed(hits: list[tuple[int, float]], allowed: np.ndarray) -> list[tuple[int, float]]:
    """The (label, score) ``hits`` whose label is in ``allowed`` (sorted, unique), in order."""
    if not hits:
        return []
    labels = np.fromiter((label for label, _ in hits), dtype=np.int64, count=len(hits))
    return [hit for hit, kept in zip(hits, in_sorted(labels, allowed)) if kept]


def check_query(vector: np.ndarray, dim: int) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    if vector.shape[1] != dim:
        raise ValueError(f"query vector has {vector.shape[1]} dimensions, the index {dim}")
    return vector


def atomic_write(final: Path, write: Callable[[str], object]) -> None:
    """Write ``final`` through a temporary file in its folder: fsync, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.tmp-")
    os.close(fd)
    try:
        write(str(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_directory(directory: Path) -> None:
    # Makes the renames themselves durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: Path, older_than_s: float = 3600.0) -> int:
    """Delete temporary files left by saves that were killed; returns how many were removed."""
    removed = 0
    cutoff = time.time() - older_than_s
    for path in Path(directory).glob(".*.tmp-*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
