"""The embedding worker: pending canvases and regions → image vectors (and perceptual hashes).

A pipeline of swappable stages, so that the model never waits on disk, decoding or the database:

    claim (ClaimQueue) → load + decode + hash + preprocess (thread pool, bounded prefetch)
        → batched inference (this thread, under torch.inference_mode) → write (writer thread)

- Claims come from the shared queue in ``embedding_claims`` (:mod:`.claims`): several workers,
  on one machine or several sharing PostgreSQL, never embed the same item twice.
- Each batch is written in one transaction that also deletes its claims: killed at any moment, a
  worker leaves whole batches or nothing; a re-run (or another worker) takes over the rest.
- Failures are data: an item that cannot be decoded is recorded (``errors``, stage "embed"),
  reported, and not retried for ``retry_after`` seconds; the run goes on.

The encoder is any object with ``space_id``/``model_id``/``revision``/``dim`` and
``encode_images``; ``prepare_image`` + ``encode_prepared`` (the vision-language and handcrafted
encoders have both) move preprocessing into the decoding threads.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..store.claims import (DEFAULT_LEASE_SECONDS, DEFAULT_RETRY_AFTER_SECONDS, ClaimQueue, LeaseKeeper, WorkItem,
                     write_transaction)
from ..store.derivatives import DerivativeStore
from ..store.vector_codec import decode_vector, encode_vector
from .image_loading import ITEM_ERRORS, ImageLoader, decode_side, store_loader
from .registry import register_space
from ..models import Embedding, PerceptualHash
from ..models.base import utcnow
from .perceptual_hashes import HASH_ALGORITHM, ImageHashes, image_hashes, store_many_hashes

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int = 16  # images per model call and per database transaction
    threads: int = 2  # decoding/preprocessing threads
    prefetch_batches: int = 4  # batches decoded ahead of the model
    regions: bool = True  # embed region crops too
    hashes: bool = True  # compute perceptual hashes (canvases and regions)
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    retry_after: float = DEFAULT_RETRY_AFTER_SECONDS
    limit: Optional[int] = None  # stop after claiming this many items
    decode_processes: int = 0  # >0: decode in that many processes instead of threads (decode_processes.py)

    def __post_init__(self):
        for name in ("batch_size", "threads", "prefetch_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decode_processes < 0:
            raise ValueError(f"decode_processes must be 0 or more, got {self.decode_processes}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")


@dataclass
class EmbedReport:
    space: str
    worker_id: str
    canvases: int = 0  # canvas vectors written
    regions: int = 0  # region vectors written
    hashed: int = 0  # images whose perceptual hashes were written
    skipped: int = 0  # done meanwhile by another worker (its lease had run out)
    failed: list[tuple[str, int, str]] = field(default_factory=list)  # (kind, id, reason)
    seconds: float = 0.0  # from the first claim to the last write
    model_seconds: float = 0.0  # inside the model

    @property
    def embedded(self) -> int:
        return self.canvases + self.regions

    @property
    def items_per_second(self) -> float:
        done = self.embedded + len(self.failed)
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"space": self.space, "worker": self.worker_id, "embedded": self.embedded,
                "canvases": self.canvases, "regions": self.regions, "hashed": self.hashed,
                "skipped": self.skipped, "seconds": round(self.seconds, 3),
                "model_seconds": round(self.model_seconds, 3),
                "items_per_second": round(self.items_per_second, 2),
                "failed": [{"kind": kind, "id": item, "reason": reason} for kind, item, reason in self.failed]}


@dataclass
class _Result:
    item: WorkItem
    prepared: Any = None
    hashes: Optional[ImageHashes] = None
    vector: Optional[np.ndarray] = None
    error: Optional[str] = None


class _Stages:
    """The encoder's two halves: per-image preparation (threads) and per-batch encoding."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.split = hasattr(encoder, "prepare_image") and hasattr(encoder, "encode_prepared")
        self.decode_side = decode_side(encoder)

    def prepare(self, image: Image.Image):
        return self.encoder.prepare_image(image) if self.split else image

    def encode(self, prepared: list, pad_to: int) -> np.ndarray:
        if not self.split:
            return self.encoder.encode_images(prepared, batch_size=len(prepared))
        if getattr(self.encoder, "compiled_image_features", None) is not None:
            return self.encoder.encode_prepared(prepared, pad_to=pad_to)
        return self.encoder.encode_prepared(prepared)


class _Pipeline:
    def __init__(self, factory, encoder, claims: ClaimQueue, load_image: ImageLoader, options: WorkerOptions,
                 report: EmbedReport, progress: Optional[Callable[[int], None]], decode_spec=None):
        self.factory, self.claims, self.load_image = factory, claims, load_image
        self.decode_spec = decode_spec  # a DecodeSpec: decode in processes
        self.options, self.report, self.progress = options, report, progress
        self.stages = _Stages(encoder)
        self.prefetch_items = options.batch_size * options.prefetch_batches
        self.ready: queue.Queue = queue.Queue()  # results of the decoding threads, and the end mark
        self.slots = threading.Semaphore(self.prefetch_items)  # bounds images in flight
        self.writes: queue.Queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.failure: Optional[BaseException] = None  # first error of a background thread

    # -- stage 1: claim and decode (producer thread + pool) -------------------------------------
    def produce(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        claimed = 0
        try:
            if self.decode_spec is not None:
                from .decode_processes import start_pool

                pool = start_pool(self.decode_spec, self.options.decode_processes)
            else:
                pool = ThreadPoolExecutor(max_workers=self.options.threads, thread_name_prefix="decode")
            with pool:
                while not self.stop.is_set():
                    want = min(self.prefetch_items, self.options.batch_size * 2)
                    if self.options.limit is not None:
                        want = min(want, self.options.limit - claimed)
                    items = self.claims.claim(want) if want > 0 else []
                    if not items:
                        break
                    claimed += len(items)
                    for item in items:
                        while not self.slots.acquire(timeout=0.2):
                            if self.stop.is_set():
                                return
                        self._submit(pool, item)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            self._fail(error)
        finally:
            self.ready.put(None)

    def _submit(self, pool, item: WorkItem) -> None:
        if self.decode_spec is None:
            pool.submit(self._decode, item)
            return
        from functools import partial

        from .decode_processes import decode_item

        pool.submit(decode_item, item).add_done_callback(partial(self._collect, item))

    def _collect(self, item: WorkItem, future) -> None:
        """A decoding process's answer for ``item`` (called in the pool's result thread)."""
        from .decode_processes import as_model_input

        result = _Result(item)
        try:
            decoded = future.result()
            result.hashes, result.error = decoded.hashes, decoded.error
            if decoded.prepared is not None:
                result.prepared = as_model_input(decoded.prepared)
        except BaseException as error:  # noqa: BLE001 - a child died or could not start
            self._fail(RuntimeError(f"a decoding process failed ({error.__class__.__name__}: {error}); "
                                    "finished batches are kept; re-run, or decode in threads with "
                                    "--decode-processes 0"))
        self.ready.put(result)

    def _decode(self, item: WorkItem) -> None:
        result = _Result(item)
        try:
            image = self.load_image(item)
            if item.needs_hash:
                result.hashes = image_hashes(image)
            if item.needs_vector:
                result.prepared = self.stages.prepare(image)
        except ITEM_ERRORS as error:
            result.error = f"cannot read the {item.kind} image {item.derivative_sha256[:12]}: {error}"
        except BaseException as error:  # noqa: BLE001 - a bug: stop the run, raise in the main thread
            self._fail(error)
        self.ready.put(result)

    # -- stage 3: write (writer thread) ----------------------------------------------------------
    def write(self) -> None:
        while True:
            batch = self.writes.get()
            if batch is None:
                return
            if self.failure is not None:
                continue  # drain: the run is stopping
            try:
                write_batch(self.factory, self.claims, self.stages.encoder, batch, self.options.retry_after,
                            self.report)
                if self.progress:
                    self.progress(len(batch))
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
        self.stop.set()

    # -- stage 2: inference (calling thread) -----------------------------------------------------
    def run(self) -> None:
        producer = threading.Thread(target=self.produce, name="claim", daemon=True)
        writer = threading.Thread(target=self.write, name="write", daemon=True)
        producer.start()
        writer.start()
        to_encode: list[_Result] = []
        to_write: list[_Result] = []
        try:
            while True:
                result = self.ready.get()
                if result is None:
                    break
                self.slots.release()
                if self.failure is not None:
                    continue
                (to_encode if result.error is None and result.item.needs_vector else to_write).append(result)
                if len(to_encode) >= self.options.batch_size:
                    self._encode_and_queue(to_encode, to_write)
                    to_encode, to_write = [], []
                elif len(to_write) >= self.options.batch_size:
                    self._queue_write(to_write)
                    to_write = []
            if self.failure is None and (to_encode or to_write):
                self._encode_and_queue(to_encode, to_write)
        finally:
            self.stop.set()
            producer.join()
            self.writes.put(None)
            writer.join()
        if self.failure is not None:
            raise self.failure

    def _encode_and_queue(self, to_encode: list[_Result], to_write: list[_Result]) -> None:
        if to_encode:
            started = time.perf_counter()
            vectors = self.stages.encode([result.prepared for result in to_encode], self.options.batch_size)
            self.report.model_seconds += time.perf_counter() - started
            for result, vector in zip(to_encode, vectors):
                result.vector, result.prepared = vector, None
        self._queue_write(to_encode + to_write)

    def _queue_write(self, batch: list[_Result]) -> None:
        while self.failure is None:  # a failed writer no longer takes batches
            try:
                self.writes.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue


def write_batch(factory: sessionmaker[Session], claims: ClaimQueue, encoder, batch: list[_Result],
                retry_after: float, report: EmbedReport) -> None:
    """One transaction: the batch's vectors and hashes, its failures, and its claims gone."""
    from ..store.catalogue import record_error, resolve_errors

    with write_transaction(factory) as session:
        owned = claims.take_ownership(session, [r.item.claim_id for r in batch if r.error is None])
        failures = {r.item.claim_id: r.error for r in batch if r.error is not None}
        claims.mark_failed(session, failures, retry_after)
        for result in batch:
            if result.error is not None:
                item = result.item
                # This attempt's error replaces the item's earlier ones (one open error per item).
                resolve_errors(session, ("embed",), canvas_id=item.canvas_id, subject=f"{item.kind} {item.item_id}: ")
                record_error(session, "embed", None, f"{item.kind} {item.item_id}: {result.error}",
                             canvas_id=item.canvas_id)
                report.failed.append((item.kind, item.item_id, result.error))
        # A canvas embedded now has no embedding problem left (its regions' errors are their own).
        resolve_errors(session, ("embed",), canvas_id={r.item.canvas_id for r in batch
                                                       if r.error is None and r.item.region_id is None},
                       subject="canvas ")
        done = [r for r in batch if r.error is None and r.item.claim_id in owned]
        unhashed = _unhashed(session, [r.item for r in done if r.hashes is not None])
        hashed = [r for r in done if r.hashes is not None and r.item.claim_id in unhashed]
        store_many_hashes(session, [(r.item.canvas_id, r.item.region_id, r.item.derivative_sha256, r.hashes)
                                    for r in hashed])
        free = _free_vector_slots(session, encoder.space_id, [r.item for r in done if r.vector is not None])
        vectors = [r for r in done if r.vector is not None and r.item.claim_id in free]
        if vectors:
            session.execute(Embedding.__table__.insert(), [
                {"space": encoder.space_id, "model_id": encoder.model_id, "model_revision": encoder.revision,
                 "canvas_id": r.item.canvas_id, "region_id": r.item.region_id, "dim": int(r.vector.shape[0]),
                 "vector": encode_vector(r.vector), "stale": False,
                 "created_at": utcnow()} for r in vectors])
    report.canvases += sum(1 for r in vectors if r.item.region_id is None)
    report.regions += sum(1 for r in vectors if r.item.region_id is not None)
    report.hashed += len(hashed)
    report.skipped += sum(1 for r in batch if r.error is None) - len(done)


def _unhashed(session: Session, items: list[WorkItem]) -> set[int]:
    """Claim ids of ``items`` whose image has no hashes of the current recipe yet. On PostgreSQL a
    worker may read an item as pending just before another worker's write of it commits, and
    claim it afterwards: like its vector (:func:`_free_vector_slots`), its hashes are then there."""
    if not items:
        return set()
    stored = set(session.execute(select(PerceptualHash.canvas_id, PerceptualHash.region_id,
                                        PerceptualHash.derivative_sha256).where(
        PerceptualHash.algorithm == HASH_ALGORITHM,
        PerceptualHash.canvas_id.in_({item.canvas_id for item in items}))).all())
    return {item.claim_id for item in items
            if (item.canvas_id, item.region_id, item.derivative_sha256) not in stored}


def _free_vector_slots(session: Session, space: str, items: list[WorkItem]) -> set[int]:
    """Claim ids of ``items`` whose new vector may be written: not those that have a live vector
    already (written by a worker that took the item over). Stale vectors are deleted, so that the
    new row gets a new id and the index never serves the old vector under it."""
    if not items:
        return set()
    canvas_items = {item.canvas_id: item for item in items if item.region_id is None}
    region_items = {item.region_id: item for item in items if item.region_id is not None}
    rows = []
    if canvas_items:
        rows += session.execute(select(Embedding.id, Embedding.stale, Embedding.canvas_id, Embedding.region_id).where(
            Embedding.space == space, Embedding.region_id.is_(None), Embedding.canvas_id.in_(canvas_items))).all()
    if region_items:
        rows += session.execute(select(Embedding.id, Embedding.stale, Embedding.canvas_id, Embedding.region_id).where(
            Embedding.space == space, Embedding.region_id.in_(region_items))).all()
    taken = {(canvas_items[canvas_id] if region_id is None else region_items[region_id]).claim_id
             for _id, stale, canvas_id, region_id in rows if not stale}
    stale_ids = [row_id for row_id, stale, _canvas, _region in rows if stale]
    if stale_ids:
        session.execute(delete(Embedding).where(Embedding.id.in_(stale_ids)))
    return {item.claim_id for item in items} - taken


def embed_pending(session_factory: sessionmaker[Session], encoder, derivatives: DerivativeStore,
                  options: WorkerOptions = WorkerOptions(), progress: Optional[Callable[[int], None]] = None,
                  load_image: Optional[ImageLoader] = None, claims: Optional[ClaimQueue] = None) -> EmbedReport:
    """Embed every pending canvas (and region) in ``encoder``'s space; returns what was done.

    ``load_image`` replaces reading derivatives from ``derivatives`` (e.g. fetching over HTTP);
    ``claims`` a queue made by the caller (to count pending items first, or set the worker id).
    Raises SpaceMismatchError when the space is recorded for another model, and re-raises any
    error that is not an item's own (the database going away, the model failing): the claims of
    this worker are then given back at once.
    """
    claims = claims or make_claim_queue(session_factory, encoder, options)
    with write_transaction(session_factory) as session:
        register_space(session, encoder)
    claims.release_gone_workers()
    report = EmbedReport(space=encoder.space_id, worker_id=claims.worker_id)
    side = decode_side(encoder)
    loader = load_image or store_loader(derivatives, side)
    decode_spec = None
    if options.decode_processes:
        if load_image is not None:
            raise ValueError("decoding processes read derivatives from the store; a custom image loader "
                             "runs in threads (decode_processes=0)")
        from .decode_processes import DecodeSpec
        from .registry import preparer_source

        decode_spec = DecodeSpec(preparer_source(encoder), str(derivatives.root.resolve()), side)
    pipeline = _Pipeline(session_factory, encoder, claims, loader, options, report, progress, decode_spec)
    started = time.perf_counter()
    try:
        with LeaseKeeper(claims):
            pipeline.run()
    finally:
        report.seconds = time.perf_counter() - started
        try:
            claims.release_all()
        except SQLAlchemyError as error:  # the database went away: the leases will run out instead
            log.warning("could not give back this worker's claims: %s", error)
    return report


def make_claim_queue(session_factory: sessionmaker[Session], encoder, options: WorkerOptions = WorkerOptions(),
                     worker_id: Optional[str] = None) -> ClaimQueue:
    return ClaimQueue(session_factory, encoder.space_id, worker_id, lease_seconds=options.lease_seconds,
                      regions=options.regions, hash_algorithm=HASH_ALGORITHM if options.hashes else None)


def pending_canvas_ids(session: Session, space: str, limit: Optional[int] = None) -> list[int]:
    """Canvases with a derivative and no live vector in ``space``, in id order (claims ignored)."""
    from sqlalchemy import exists

    from ..models import Canvas

    live = exists().where(Embedding.space == space, Embedding.canvas_id == Canvas.id,
                          Embedding.region_id.is_(None), Embedding.stale.is_(False))
    query = select(Canvas.id).where(Canvas.derivative_sha256.is_not(None), ~live).order_by(Canvas.id)
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def vector_from_row(row: Embedding) -> np.ndarray:
    return decode_vector(row.vector, row.dim)
