"""The IVF layouts: faiss inverted lists of compact codes, candidates re-ranked exactly.

For spaces of millions of vectors. Two kinds of code in the lists, the rest shared:

- ``ivf-rabitq``: RaBitQ codes (one bit per dimension plus two factors: 104 bytes at 768-d),
  scored with bit operations; half the scan time of ``ivfpq`` at the same recall (1M vectors,
  40 lists probed: 0.8 against 1.5 ms, recall@10 0.9805 for both; docs/scale-out.md);
- ``ivfpq``: product quantisation, ``dim/8``-byte codes (96 bytes at 768-d) scored by table
  look-ups.

A query probes ``ef_search/4`` of the lists, takes the best ``RERANK`` candidates by their codes'
estimate, and re-scores them exactly from an 8-bit copy of the vectors (per-dimension min/max
scalar quantisation), so the scores are cosine similarities like every other layout's, and recall
does not depend on the codes' coarse distances. The faiss ids are row numbers of the 8-bit file,
so a candidate's row needs no search of the label lookup (a binary search of millions of labels
per candidate was a seventh of a query at 1M). faiss's own refine indexes cannot be
memory-mapped; these files can: readers open the lists with ``IO_FLAG_MMAP`` and the 8-bit rows
and the label lookup as ``numpy`` memory maps, so web workers share them and only the
candidates' rows are ever read from disk.

Files per save (generation-named, committed by the metadata, see :mod:`.vector_index`):
``.faiss`` (quantisers and inverted lists), ``.sq8.npy`` (rows × dim, uint8), ``.rows.npy``
(row → label), ``.lookup.npy`` (2 × live: sorted live labels and their rows), ``.quant.npy``
(per-dimension offset and scale). A removed or replaced vector's row stays in ``.sq8.npy`` until a
rebuild; it is unreachable because the lists and the lookup no longer hold it. Indexes saved
before the ids were rows (metadata without ``"ids": "rows"``) hold labels in their lists; they
are read and written as they are until a rebuild.

Training needs data: :meth:`IvfIndex.train` takes a sample (``rebuild_index`` draws one from the
database); an index first given vectors by ``add`` trains on that batch.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .vector_index import (IndexParams, IndexReadError, VectorIndex, check_batch, check_query, generation_path,
                           index_paths, next_generation)

DEFAULT_EF = 160  # a query's effort: ef/4 inverted lists probed
RERANK = 256  # candidates re-scored exactly; beyond ~200 recall@10 stops improving (bench/scale.py)
TRAINING_SAMPLE = 100_000  # vectors the quantisers learn from; more costs time, not recall
SUFFIXES = ("faiss", "sq8.npy", "rows.npy", "lookup.npy", "quant.npy")


def default_lists(vectors: int) -> int:
    """Inverted lists for ``vectors``: about 4·√n, so a list holds ~√n/4 codes."""
    return int(min(65536, max(8, 4 * math.sqrt(max(int(vectors), 1)))))


def _pq_subquantizers(dim: int) -> int:
    """The largest divisor of ``dim`` not above dim/8: one byte of code per 8 dimensions."""
    target = max(1, dim // 8)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def _pq_bits(training: int) -> int:
    # k-means wants ~40 points per centroid; a small space gets fewer centroids per sub-vector.
    for bits in (8, 7, 6, 5, 4):
        if training >= 39 * 2 ** bits:
            return bits
    # A handful of vectors: k-means cannot have more centroids than points.
    return max(1, min(4, int(math.log2(max(training, 2)))))


class IvfIndex(VectorIndex):
    """What the IVF layouts share; a subclass says which codes its lists hold (:meth:`_new_faiss`)."""
    verify_cosine = 0.995

    def __init__(self, space: str, dim: int, params: IndexParams = IndexParams(), capacity: int = 1024,
                 lists: Optional[int] = None):
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if params.ef_search == IndexParams().ef_search:
            # The graphs' default effort probes too few lists here: 160 (40 lists) reaches recall@10
            # 0.98 at 1M vectors; 128 (32 lists) only 0.973 (bench/results/scale-1m-ivf*.json).
            params = params.replace(ef_search=DEFAULT_EF)
        self.space, self.dim, self.params = space, int(dim), params
        self._lists_wanted = lists or default_lists(capacity)
        self._faiss = None  # built at training
        self._quant: Optional[np.ndarray] = None  # (2, dim): offset, scale
        self._old_codes = np.zeros((0, self.dim), dtype=np.uint8)  # rows of the saved file
        self._old_rows = np.zeros(0, dtype=np.int64)
        self._new_codes: list[np.ndarray] = []  # rows added since, in order
        self._new_rows: list[np.ndarray] = []
        self._lookup = np.zeros((2, 0), dtype=np.int64)  # sorted live labels, their rows
        self._ids_are_rows = True  # False for an index saved before (its lists hold labels)
        self._writable = True
        self._threads = 0
        self._generation: Optional[int] = None

    # -- training --------------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self._faiss is not None

    def train(self, sample: np.ndarray) -> None:
        """Learn the coarse lists, what the codes need (PQ's codebooks) and the 8-bit ranges from
        ``sample`` (L2-normalised rows; :data:`TRAINING_SAMPLE` of them is plenty)."""
        import faiss

        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if sample.ndim != 2 or sample.shape[1] != self.dim or len(sample) < 1:
            raise ValueError(f"training needs vectors of {self.dim} dimensions, got {sample.shape}")
        if len(sample) < 64:
            # A tiny space (an IVF layout asked for by name): jittered copies give k-means enough points;
            # the exact re-ranking makes the coarse codes' quality irrelevant at this size.
            copies = np.repeat(sample, -(-64 // len(sample)), axis=0)[:64]
            copies = copies + 1e-3 * np.random.default_rng(0).standard_normal(copies.shape).astype(np.float32)
            sample = np.concatenate([sample, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
        if len(sample) > TRAINING_SAMPLE:
            sample = sample[np.random.default_rng(0).choice(len(sample), TRAINING_SAMPLE, replace=False)]
        lists = int(max(1, min(self._lists_wanted, len(sample) // 39)))
        index = self._new_faiss(lists, len(sample))
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.niter = 10
        ivf.cp.verbose = False
        index.train(sample)
        # The sample's whole range, widened by 2 % each side for vectors beyond it. Clipping at
        # the 0.05 % quantiles instead clipped about one dimension of every 768-d vector, and cost
        # 0.015 of recall@10 at 1M (0.9685 against 0.9835 at 48 lists probed).
        low, high = sample.min(axis=0), sample.max(axis=0)
        margin = 0.02 * (high - low)
        low, high = (low - margin).astype(np.float32), (high + margin).astype(np.float32)
        self._quant = np.stack([low, np.maximum(high - low, 1e-6) / 255.0])
        self._faiss = index

    def _new_faiss(self, lists: int, training: int):
        """An untrained faiss index of ``lists`` inverted lists for a sample of ``training``."""
        raise NotImplementedError

    def _code_metadata(self, ivf) -> dict:
        """What the metadata records about the lists' codes."""
        raise NotImplementedError

    # -- contents ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._lookup.shape[1]

    @property
    def element_count(self) -> int:
        return len(self._old_rows) + sum(len(rows) for rows in self._new_rows)

    @property
    def deleted_count(self) -> int:
        return self.element_count - len(self)

    def live_label_array(self) -> np.ndarray:
        return np.asarray(self._lookup[0])

    def _require_writable(self) -> None:
        if not self._writable:
            raise RuntimeError(f"the index of {self.space} is opened read-only (memory-mapped); "
                               "open it with writable=True to change it")

    def _encode(self, vectors: np.ndarray) -> np.ndarray:
        offset, scale = self._quant
        return np.clip(np.rint((vectors - offset) / scale), 0, 255).astype(np.uint8)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        offset, scale = self._quant
        return codes.astype(np.float32) * scale + offset

    def _scores(self, codes: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """``_decode(codes) @ vector`` without decoding: (c·s + o)·q = c·(s∘q) + o·q."""
        offset, scale = self._quant
        return codes.astype(np.float32) @ (scale * vector) + float(offset @ vector)

    def _faiss_ids(self, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The ids the faiss lists hold for these labels (at these rows)."""
        return rows if self._ids_are_rows else labels

    def _at_rows(self, saved: np.ndarray, added: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Entries ``rows`` of the saved file ``saved`` followed by the blocks ``added`` since (the
        8-bit rows, or the labels, of each row)."""
        old = len(saved)
        out = np.empty((len(rows), *saved.shape[1:]), dtype=saved.dtype)
        in_old = rows < old
        if in_old.any():
            # Sorted reads keep a memory-mapped file's access sequential.
            wanted = rows[in_old]
            order = np.argsort(wanted)
            block = np.empty((len(wanted), *saved.shape[1:]), dtype=saved.dtype)
            block[order] = saved[wanted[order]]
            out[in_old] = block
        if (~in_old).any():
            recent = np.concatenate(added) if len(added) != 1 else added[0]
            out[~in_old] = recent[rows[~in_old] - old]
        return out

    def _labels_at(self, rows: np.ndarray) -> np.ndarray:
        return self._at_rows(self._old_rows, self._new_rows, rows)

    def _codes_of(self, rows: np.ndarray) -> np.ndarray:
        return self._at_rows(self._old_codes, self._new_codes, rows)

    def add(self, labels: Iterable[int], vectors: np.ndarray) -> None:
        labels, vectors = check_batch(labels, vectors, self.dim)
        if len(labels) == 0:
            return
        self._require_writable()
        if not self.is_trained:
            self.train(vectors)
        import faiss

        present, replaced_rows = self._held(labels)
        if present.any():
            self._faiss.remove_ids(faiss.IDSelectorBatch(self._faiss_ids(labels[present], replaced_rows)))
        first = self.element_count
        rows = np.arange(first, first + len(labels), dtype=np.int64)
        self._faiss.add_with_ids(vectors, self._faiss_ids(labels, rows))
        self._new_codes.append(self._encode(vectors))
        self._new_rows.append(labels.copy())
        order = np.argsort(labels, kind="stable")
        labels, rows = labels[order], rows[order]
        live = self._lookup[0]
        if not present.any() and (len(live) == 0 or labels[0] > live[-1]):
            # New database ids only grow: a build appends, no re-sort of millions of labels.
            self._lookup = np.concatenate([self._lookup, np.stack([labels, rows])], axis=1)
            return
        kept = ~np.isin(live, labels)
        merged_labels = np.concatenate([live[kept], labels])
        merged_rows = np.concatenate([self._lookup[1][kept], rows])
        order = np.argsort(merged_labels, kind="stable")
        self._lookup = np.stack([merged_labels[order], merged_rows[order]])

    def remove(self, labels: Iterable[int]) -> int:
        labels = np.unique(np.asarray([int(label) for label in labels], dtype=np.int64))
        held, rows = self._held(labels)
        present = labels[held]
        if len(present) == 0:
            return 0
        self._require_writable()
        import faiss

        self._faiss.remove_ids(faiss.IDSelectorBatch(self._faiss_ids(present, rows)))
        self._lookup = self._lookup[:, ~np.isin(self._lookup[0], present)]
        return len(present)

    def _held(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``labels`` the index holds (a boolean mask), and the rows of those it holds:
        one search of the lookup."""
        live = self._lookup[0]
        if len(live) == 0 or len(labels) == 0:
            return np.zeros(len(labels), dtype=bool), np.zeros(0, dtype=np.int64)
        positions = np.minimum(np.searchsorted(live, labels), len(live) - 1)
        held = np.asarray(live[positions] == labels)
        return held, np.asarray(self._lookup[1][positions[held]])

    def _rows_of(self, labels: np.ndarray) -> np.ndarray:
        held, rows = self._held(labels)
        if not held.all():
            raise KeyError("a label is not in the index")
        return rows

    def query(self, vector: np.ndarray, k: int, ef: Optional[int] = None,
              allowed: Optional[np.ndarray] = None) -> list[tuple[int, float]]:
        import faiss

        live = len(self)
        if live == 0 or k <= 0 or not self.is_trained:
            return []
        vector = check_query(vector, self.dim)
        k = min(int(k), live)
        ivf = faiss.extract_index_ivf(self._faiss)
        probes = int(min(ivf.nlist, max(1, int(ef or self.params.ef_search) // 4)))
        candidates = min(live, max(RERANK, 2 * k))
        selector = None
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            held, rows = self._held(allowed)
            allowed = allowed[held]
            if len(allowed) == 0:
                return []
            selector = faiss.IDSelectorBatch(self._faiss_ids(allowed, rows))
        wanted = k if allowed is None else min(k, len(allowed))
        while True:
            parameters = faiss.SearchParametersIVF()
            parameters.nprobe = probes
            if selector is not None:
                parameters.sel = selector
            _scores, found = self._faiss.search(vector, candidates, params=parameters)
            found = found[0][found[0] >= 0]
            if len(found) >= wanted or probes >= ivf.nlist:
                break
            probes = ivf.nlist  # too few allowed vectors in the probed lists: probe them all
        if len(found) == 0:
            return []
        if self._ids_are_rows:
            rows, labels = found, self._labels_at(found)
        else:
            rows, labels = self._rows_of(found), found
        exact = self._scores(self._codes_of(rows), vector[0])
        order = np.argsort(-exact, kind="stable")[:k]
        return [(int(labels[i]), float(exact[i])) for i in order]

    def stored_vectors(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        rows = np.full((len(labels), self.dim), np.nan, dtype=np.float32)
        present, held_rows = self._held(labels)
        if present.any():
            decoded = self._decode(self._codes_of(held_rows))
            rows[present] = decoded / np.maximum(np.linalg.norm(decoded, axis=1, keepdims=True), 1e-12)
        return rows

    def set_query_threads(self, threads: int) -> None:
        import faiss

        faiss.omp_set_num_threads(max(1, int(threads)) if threads else os.cpu_count() or 1)

    # -- persistence ---------------------------------------------------------------------------
    def metadata(self) -> dict:
        meta = super().metadata()
        if self.is_trained:
            import faiss

            ivf = faiss.downcast_index(faiss.extract_index_ivf(self._faiss))
            meta.update(lists=int(ivf.nlist), rerank=RERANK, ids="rows" if self._ids_are_rows else "labels",
                        **self._code_metadata(ivf))
        return meta

    def file_paths(self, directory: Path) -> list[Path]:
        paths = [index_paths(directory, self.space)[1]]
        if self._generation is not None:
            paths += [generation_path(directory, self.space, self._generation, s) for s in SUFFIXES]
        return paths

    def save(self, directory: Path) -> Path:
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._require_writable()
        if not self.is_trained:
            raise ValueError(f"the {self.layout} index of {self.space} holds no vectors yet; nothing to save")
        generation = next_generation(directory, self.space)
        paths = {s: generation_path(directory, self.space, generation, s) for s in SUFFIXES}
        faiss.write_index(self._faiss, str(paths["faiss"]))
        rows = np.concatenate([self._old_rows, *self._new_rows])
        codes = np.lib.format.open_memmap(paths["sq8.npy"], mode="w+", dtype=np.uint8, shape=(len(rows), self.dim))
        for start in range(0, len(self._old_rows), 262_144):  # the saved rows, copied in chunks
            end = min(start + 262_144, len(self._old_rows))
            codes[start:end] = self._old_codes[start:end]
        position = len(self._old_rows)
        for block in self._new_codes:
            codes[position:position + len(block)] = block
            position += len(block)
        codes.flush()
        del codes
        np.save(paths["rows.npy"], rows)
        np.save(paths["lookup.npy"], np.ascontiguousarray(self._lookup))
        np.save(paths["quant.npy"], self._quant)
        for path in paths.values():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
        meta_path = self._commit_generation(directory, {**self.metadata(), "generation": generation}, SUFFIXES)
        self._generation = generation
        # From here on the saved file holds every row: map it instead of keeping them in memory.
        self._old_codes = np.load(paths["sq8.npy"], mmap_mode="r")
        self._old_rows = np.load(paths["rows.npy"], mmap_mode="r")
        self._new_codes, self._new_rows = [], []
        return meta_path

    @classmethod
    def open(cls, directory: Path, space: str, meta: dict, params: IndexParams, writable: bool) -> "IvfIndex":
        import faiss

        dim = int(meta["dim"])
        try:
            generation = int(meta["generation"])
        except (KeyError, TypeError, ValueError) as error:
            raise IndexReadError(f"the index metadata of {space} names no data files ({error}); "
                                 "run `msearch index rebuild`") from error
        paths = {s: generation_path(directory, space, generation, s) for s in SUFFIXES}
        try:
            index = faiss.read_index(str(paths["faiss"]), 0 if writable else faiss.IO_FLAG_MMAP)
            codes = np.load(paths["sq8.npy"], mmap_mode="r")
            rows = np.load(paths["rows.npy"], mmap_mode="r")
            lookup = np.load(paths["lookup.npy"], mmap_mode=None if writable else "r")
            quant = np.load(paths["quant.npy"])
            if not writable:
                # Memory-mapped lists come with 32 prefetch threads started on every query: for
                # one vector at a time they cost more than the search (p50 4.6 → 2.1 ms at 1M).
                lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
                if hasattr(lists, "prefetch_nthread"):
                    lists.prefetch_nthread = 0
        except (RuntimeError, OSError, ValueError) as error:
            raise IndexReadError(f"the index files of {space} (generation {generation}) cannot be read "
                                 f"({error}); run `msearch index rebuild`") from error
        if index.d != dim or codes.shape[1:] != (dim,) or len(rows) != len(codes) or lookup.shape[0] != 2 \
                or quant.shape != (2, dim) or index.ntotal != lookup.shape[1]:
            raise IndexReadError(f"the index files of {space} (generation {generation}) do not agree with "
                                 "each other or with the metadata; run `msearch index rebuild`")
        self = cls.__new__(cls)
        self.space, self.dim, self.params = space, dim, params
        self._lists_wanted = int(meta.get("lists", 1))
        self._faiss, self._quant = index, quant
        self._old_codes, self._old_rows = codes, rows
        self._new_codes, self._new_rows = [], []
        self._lookup = lookup
        self._ids_are_rows = meta.get("ids") == "rows"
        self._writable = writable
        self._threads = 0
        self._generation = generation
        return self


class IvfPqIndex(IvfIndex):
    layout = "ivfpq"

    def _new_faiss(self, lists: int, training: int):
        import faiss

        m, bits = _pq_subquantizers(self.dim), _pq_bits(training)
        index = faiss.index_factory(self.dim, f"IVF{lists},PQ{m}x{bits}", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.pq.cp.niter = 10  # with exact re-ranking, coarse PQ distances only need to shortlist
        ivf.pq.cp.verbose = False
        # index_factory turns on polysemous training (a Hamming-space reordering of the codes that
        # nothing here uses): most of the training time (195 s of 200 s at 20k, bench/scale.py).
        ivf.do_polysemous_training = False
        return index

    def _code_metadata(self, ivf) -> dict:
        return {"codes": "pq", "pq_m": int(ivf.pq.M), "pq_bits": int(ivf.pq.nbits)}


class IvfRaBitQIndex(IvfIndex):
    layout = "ivf-rabitq"

    def _new_faiss(self, lists: int, training: int):
        import faiss

        # RaBitQ learns nothing beyond the lists' centroids; a query is quantised to faiss's
        # default 4 bits (2 and 8 bits measured no better at 1M: 0.98 and 0.9805 recall@10).
        return faiss.index_factory(self.dim, f"IVF{lists},RaBitQ", faiss.METRIC_INNER_PRODUCT)

    def _code_metadata(self, ivf) -> dict:
        return {"codes": "rabitq", "rabitq_qb": int(ivf.qb)}
