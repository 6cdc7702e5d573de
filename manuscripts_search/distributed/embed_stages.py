"""The stages of the Ray embedding pipeline (:mod:`.ray_embed`) and the plain rows between them.

Each stage is a class Ray Data runs in actors (built once per actor, then called per batch):

- :class:`ClaimItems` claims the items of a ticket as the run's worker (:mod:`..claims`);
- :class:`PrepareImages` loads, decodes, hashes and preprocesses images on CPUs, with the
  encoder's own ``prepare_image`` loaded without model weights (:func:`load_image_preparer`);
- :class:`EncodeImages` holds the encoder, on the GPU Ray gave the actor if any;
- :class:`WriteResults` writes a batch per transaction through :func:`..worker.write_batch`.

Rows are columns of plain values: the item (``region_id`` :data:`NO_REGION` for a canvas), then
what each stage adds, with b"" / "" for "nothing". Prepared inputs and hashes travel pickled:
they are whatever the encoder's ``prepare_image`` returns (tensors, feature arrays), and both
ends are this module.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np
from PIL import Image

from ..store.claims import ClaimQueue, WorkItem
from ..store.db import session_factory_for
from ..store.vector_codec import decode_vector, encode_vector
from ..embedding.registry import load_image_preparer
from ..embedding.image_loading import decode_side  # the local worker's rule: the same vectors
from ..embedding.worker import EmbedReport

ImageLoader = Callable[[WorkItem], Image.Image]
NO_REGION = -1  # region_id of a canvas item in the pipeline's rows (columns hold no None)


class ImageSource(Protocol):
    """Where pipeline actors read derivatives from; picklable, opened once per actor. A source
    may also have ``for_cluster(ray) -> ImageSource``, called once the run is connected to Ray
    (to join the job's cluster-wide host limits, say)."""

    def open(self, min_side: int) -> ImageLoader:
        """A function returning an item's derivative as an RGB image; it raises OSError or
        ValueError for an image that cannot be had (the item then fails, the run goes on)."""


@dataclass(frozen=True)
class StoreImages:
    """Derivatives in a derivative store directory: the data dir's ``derivatives/`` on a single
    machine, or a shared file system (NFS, an object store mounted with a FUSE driver) on a
    cluster."""

    derivatives_dir: str

    def open(self, min_side: int) -> ImageLoader:
        from ..store.derivatives import DerivativeStore
        from ..embedding.image_loading import store_loader

        return store_loader(DerivativeStore(Path(self.derivatives_dir)), min_side)


@dataclass(frozen=True)
class ModelSpec:
    """What each model actor loads, and the space its vectors must land in."""

    model: str  # hub id, absolute local directory (the same path on every node) or "handcrafted"
    space_id: str  # the driver's space, which the vectors are written in
    revision: str  # the driver's model revision: an actor whose files differ refuses to run
    dim: int
    device: Optional[str] = None  # None: cuda when the actor was given a GPU, else cpu
    precision: str = "auto"
    compile: bool = False
    torch_threads: int = 0  # CPU threads per model call (0: the worker's own choice)


@dataclass(frozen=True)
class SpaceRecord:
    """What :func:`..worker.write_batch` reads of an encoder."""

    space_id: str
    model_id: str
    revision: str


# -- rows between the stages -------------------------------------------------------------------

ITEM_COLUMNS = ("claim_id", "canvas_id", "region_id", "sha", "needs_vector", "needs_hash")


def _item_columns(items: list[WorkItem]) -> dict[str, np.ndarray]:
    return {"claim_id": np.array([i.claim_id for i in items], dtype=np.int64),
            "canvas_id": np.array([i.canvas_id for i in items], dtype=np.int64),
            "region_id": np.array([NO_REGION if i.region_id is None else i.region_id for i in items], dtype=np.int64),
            "sha": np.array([i.derivative_sha256 for i in items], dtype=object),
            "needs_vector": np.array([i.needs_vector for i in items], dtype=bool),
            "needs_hash": np.array([i.needs_hash for i in items], dtype=bool)}


def _items(batch: dict) -> list[WorkItem]:
    return [WorkItem(claim_id=int(claim_id), canvas_id=int(canvas_id),
                     region_id=None if int(region_id) == NO_REGION else int(region_id),
                     derivative_sha256=str(sha), needs_vector=bool(needs_vector), needs_hash=bool(needs_hash))
            for claim_id, canvas_id, region_id, sha, needs_vector, needs_hash
            in zip(*(batch[name] for name in ITEM_COLUMNS))]


def _objects(values: list) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


# -- the stages ----------------------------------------------------------------------------------

class ClaimItems:
    """Claims the items of each ticket (``want`` of them) as the run's worker."""

    def __init__(self, db_url: str, space: str, worker_id: str, lease_seconds: float, regions: bool,
                 hashes: bool):
        from ..embedding.perceptual_hashes import HASH_ALGORITHM

        self.claims = ClaimQueue(session_factory_for(db_url), space, worker_id, lease_seconds=lease_seconds,
                                 regions=regions, hash_algorithm=HASH_ALGORITHM if hashes else None)

    def __call__(self, batch: dict) -> dict:
        want = int(np.sum(batch["want"]))
        return _item_columns(self.claims.claim(want) if want > 0 else [])


class PrepareImages:
    """Loads, decodes, hashes and preprocesses each item's image (CPU work, no model weights)."""

    def __init__(self, images: ImageSource, model: str):
        import torch

        torch.set_num_threads(1)  # one core per actor: the actors themselves are the parallelism
        self.preparer = load_image_preparer(model)
        self.load = images.open(decode_side(self.preparer))

    def __call__(self, batch: dict) -> dict:
        from ..embedding.perceptual_hashes import image_hashes
        from ..embedding.image_loading import ITEM_ERRORS

        prepared, hashes, errors = [], [], []
        for item in _items(batch):
            try:
                image = self.load(item)
                item_hashes = image_hashes(image) if item.needs_hash else None
                item_prepared = self.preparer.prepare_image(image) if item.needs_vector else None
            except ITEM_ERRORS as error:
                prepared.append(b"")
                hashes.append(b"")
                errors.append(f"cannot read the {item.kind} image {item.derivative_sha256[:12]}: {error}")
                continue
            prepared.append(b"" if item_prepared is None else pickle.dumps(item_prepared, protocol=5))
            hashes.append(b"" if item_hashes is None else pickle.dumps(item_hashes, protocol=5))
            errors.append("")
        return {**{name: batch[name] for name in ITEM_COLUMNS}, "prepared": _objects(prepared),
                "hashes": _objects(hashes), "error": _objects(errors)}


class EncodeImages:
    """Holds the encoder (on the GPU Ray gave this actor, if any) and encodes batches."""

    def __init__(self, spec: ModelSpec):
        from ..embedding.registry import SpaceMismatchError, choose_torch_threads, resolve_image_encoder

        resolved = resolve_image_encoder(spec.model, spec.device, fallback=False, precision=spec.precision,
                                         compile=spec.compile)
        self.encoder = resolved.encoder
        if (self.encoder.revision, int(self.encoder.dim)) != (spec.revision, spec.dim):
            import socket

            raise SpaceMismatchError(
                f"on node {socket.gethostname()}, {spec.model!r} is revision {self.encoder.revision} "
                f"({self.encoder.dim}-d), not the run's {spec.revision} ({spec.dim}-d, space {spec.space_id!r}): "
                "its model files differ from the driver's; give every node the same model files")
        threads = choose_torch_threads(self.encoder, spec.torch_threads)
        if threads is None and str(getattr(self.encoder, "device", "cpu")).startswith("cpu"):
            # Ray starts actors with OMP_NUM_THREADS=1; a large model on a CPU node wants the node's
            # cores, as the local worker's model has them (preparation is light next to it).
            import os

            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.pad_to = None

    def __call__(self, batch: dict) -> dict:
        rows = [index for index, (error, prepared) in enumerate(zip(batch["error"], batch["prepared"]))
                if not error and len(prepared)]
        vectors = [b""] * len(batch["error"])
        if rows:
            prepared = [pickle.loads(batch["prepared"][index]) for index in rows]
            for index, vector in zip(rows, self._encode(prepared)):
                vectors[index] = encode_vector(vector)  # as stored: float16, half the bytes to move
        return {**{name: batch[name] for name in ITEM_COLUMNS}, "hashes": batch["hashes"],
                "error": batch["error"], "vector": _objects(vectors)}

    def _encode(self, prepared: list) -> np.ndarray:
        if getattr(self.encoder, "compiled_image_features", None) is not None:
            # A compiled model sees one batch shape: pad to the largest batch seen.
            self.pad_to = max(self.pad_to or 0, len(prepared))
            return self.encoder.encode_prepared(prepared, pad_to=self.pad_to)
        return self.encoder.encode_prepared(prepared)


@dataclass
class _ItemResult:
    """One item as :func:`..worker.write_batch` reads it."""

    item: WorkItem
    hashes: Any = None
    vector: Optional[np.ndarray] = None
    error: Optional[str] = None


class WriteResults:
    """Writes each batch in one transaction through the local worker's write path."""

    def __init__(self, db_url: str, space: SpaceRecord, worker_id: str, retry_after: float):
        self.factory = session_factory_for(db_url)
        self.space = space
        self.retry_after = retry_after
        # Only take_ownership and mark_failed are used: they need the worker id, not a claim cursor.
        self.claims = ClaimQueue(self.factory, space.space_id, worker_id)

    def __call__(self, batch: dict) -> dict:
        from ..embedding.worker import write_batch

        results = []
        for item, hashes, error, vector in zip(_items(batch), batch["hashes"], batch["error"], batch["vector"]):
            results.append(_ItemResult(item, hashes=pickle.loads(hashes) if len(hashes) else None,
                                       vector=decode_vector(vector) if len(vector) else None,
                                       error=str(error) or None))
        report = EmbedReport(space=self.space.space_id, worker_id=self.claims.worker_id)
        write_batch(self.factory, self.claims, self.space, results, self.retry_after, report)
        return {"items": np.array([len(results)]), "canvases": np.array([report.canvases]),
                "regions": np.array([report.regions]), "hashed": np.array([report.hashed]),
                "skipped": np.array([report.skipped]), "failed": _objects([json.dumps(report.failed)])}


@dataclass(frozen=True)
class EmbedStages:
    """The stage classes; a subclass of one can be put in (tests make one crash on purpose)."""

    claim: type = ClaimItems
    prepare: type = PrepareImages
    encode: type = EncodeImages
    write: type = WriteResults
