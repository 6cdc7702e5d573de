"""``msearch embed --engine ray``: the embedding worker's stages as a Ray Data pipeline.

    claim tickets → ClaimItems (one actor: this run's place in the shared claim queue)
        → PrepareImages (CPU actors: load the derivative, decode, hash, preprocess)
        → EncodeImages (actors holding the encoder: one per GPU, or CPU actors without GPUs)
        → WriteResults (actors: one transaction per batch, through the worker's write path)

The whole run is one worker of the queue in ``embedding_claims`` (:mod:`..claims`), under the
driver process's worker id: the driver keeps the leases alive, and the claim of an item is
deleted in the transaction that writes its vector. So Ray's retries never embed an item twice: a
batch written just before its actor died finds its claims gone when it is retried and is
skipped (``take_ownership`` in :func:`..worker.write_batch`), and a batch that died before its
commit left nothing behind. Local ``msearch embed`` processes may work the same queue meanwhile.

The vectors are the local engine's (stages in :mod:`.embed_stages`): the same encoder code (``prepare_image`` on CPU actors that
load only the image processor, ``encode_prepared`` in the model actors), the same decoding of
derivatives (:func:`..embedding.image_loading.store_loader`), the same write path (:func:`..embedding.worker.write_batch`).
Every model actor checks that its model files make the driver's space, so a node with other
weights stops the run instead of mixing vectors.

Items are claimed in rounds: a round claims at most what was pending when it started, ticket by
ticket; what a retried claim stage left claimed goes back to the queue at the end of the round,
and the next round takes it. The HNSW index is not touched here: its single writer adds the new
vectors afterwards (``msearch index``, or ``msearch embed`` itself unless ``--no-index``).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sqlalchemy.orm import Session, sessionmaker

from ..store.claims import DEFAULT_LEASE_SECONDS, DEFAULT_RETRY_AFTER_SECONDS, ClaimQueue, LeaseKeeper
from ..store.db import connectable_url, write_transaction
from ..embedding.worker import EmbedReport
from .embed_stages import EmbedStages, ImageSource, ModelSpec, SpaceRecord

log = logging.getLogger(__name__)

ACTOR_START_TIMEOUT_S = 600  # model actors load large weights; a cluster may need to scale up first


@dataclass(frozen=True)
class RayEmbedOptions:
    batch_size: int = 16  # images per model call and per database transaction
    claim_chunk: int = 64  # items claimed per claim-queue transaction (one block of the pipeline)
    regions: bool = True
    hashes: bool = True
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    retry_after: float = DEFAULT_RETRY_AFTER_SECONDS
    limit: Optional[int] = None  # stop after this many items
    encoders: Optional[int] = None  # model actors (None: one per GPU of the cluster, else one)
    gpus_per_encoder: Optional[float] = None  # None: 1 on a cluster with GPUs, else 0
    prepare_actors: Optional[int] = None  # CPU preparation actors (None: up to the CPUs the model leaves)
    prepare_cpus: float = 1.0  # CPUs each preparation actor reserves
    writers: int = 1  # database writer actors
    device: Optional[str] = None
    precision: str = "auto"
    compile: bool = False
    torch_threads: int = 0
    num_cpus: Optional[int] = None  # CPUs of a local Ray started for the run (None: all)

    @classmethod
    def from_worker_options(cls, options, **more) -> "RayEmbedOptions":
        """The Ray options matching a local :class:`..worker.WorkerOptions` (batch size, regions,
        hashes, lease, retry time, limit), plus ``more`` (device, precision, encoders ...)."""
        return cls(batch_size=options.batch_size, regions=options.regions, hashes=options.hashes,
                   lease_seconds=options.lease_seconds, retry_after=options.retry_after, limit=options.limit, **more)

    def __post_init__(self):
        for name in ("batch_size", "claim_chunk", "writers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("limit", "encoders", "prepare_actors"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.prepare_cpus <= 0:
            raise ValueError(f"prepare_cpus must be positive, got {self.prepare_cpus}")
        if self.gpus_per_encoder is not None and self.gpus_per_encoder < 0:
            raise ValueError(f"gpus_per_encoder must be >= 0, got {self.gpus_per_encoder}")


# -- the driver ----------------------------------------------------------------------------------

@dataclass
class _Run:
    ray: Any
    db_url: str
    claims: ClaimQueue
    spec: ModelSpec
    space: SpaceRecord
    images: ImageSource
    options: RayEmbedOptions
    stages: EmbedStages
    report: EmbedReport
    progress: Optional[Callable[[int], None]]
    processed: int = 0
    resources: dict = field(default_factory=dict)

    def plan_resources(self) -> None:
        from .runtime import cluster_gpus

        gpus = cluster_gpus(self.ray)
        options = self.options
        per_encoder = options.gpus_per_encoder if options.gpus_per_encoder is not None else (1.0 if gpus else 0.0)
        encoders = options.encoders or (max(1, int(gpus // per_encoder)) if per_encoder else 1)
        encoder_cpus = 1.0  # a CPU model actor computes on it; a GPU one feeds the GPU from it
        cpus = self.ray.cluster_resources().get("CPU", 1)
        spare = max(1, int((cpus - encoders * encoder_cpus) // options.prepare_cpus))
        prepare = {"size": options.prepare_actors} if options.prepare_actors else {"min_size": 1, "max_size": spare}
        self.resources = {"encoders": encoders, "gpus_per_encoder": per_encoder, "encoder_cpus": encoder_cpus,
                          "prepare_actors": prepare}
        log.info("Ray embed: %s", self.resources)

    def round(self, want: int) -> int:
        """Claim and process up to ``want`` items; returns how many came back written or failed."""
        from ray.data import ActorPoolStrategy

        ray, options, stages, res = self.ray, self.options, self.stages, self.resources
        chunk = options.claim_chunk
        tickets = [{"want": min(chunk, want - start)} for start in range(0, want, chunk)]
        dataset = ray.data.from_items(tickets, override_num_blocks=len(tickets))
        dataset = dataset.map_batches(
            stages.claim, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=1), num_cpus=0,
            fn_constructor_args=(self.db_url, self.space.space_id, self.claims.worker_id, options.lease_seconds,
                                 options.regions, options.hashes))
        dataset = dataset.map_batches(
            stages.prepare, batch_size=options.batch_size, batch_format="numpy",
            compute=ActorPoolStrategy(**res["prepare_actors"]), num_cpus=options.prepare_cpus,
            fn_constructor_args=(self.images, self.spec.model))
        dataset = dataset.map_batches(
            stages.encode, batch_size=options.batch_size, batch_format="numpy",
            compute=ActorPoolStrategy(size=res["encoders"]), num_cpus=res["encoder_cpus"],
            num_gpus=res["gpus_per_encoder"], fn_constructor_args=(self.spec,))
        dataset = dataset.map_batches(
            stages.write, batch_size=options.batch_size, batch_format="numpy",
            compute=ActorPoolStrategy(size=options.writers), num_cpus=0,
            fn_constructor_args=(self.db_url, self.space, self.claims.worker_id, options.retry_after))
        done = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for items, canvases, regions, hashed, skipped, failed in zip(
                    batch["items"], batch["canvases"], batch["regions"], batch["hashed"], batch["skipped"],
                    batch["failed"]):
                self.report.canvases += int(canvases)
                self.report.regions += int(regions)
                self.report.hashed += int(hashed)
                self.report.skipped += int(skipped)
                self.report.failed.extend(tuple(entry) for entry in json.loads(failed))
                done += int(items)
                if self.progress:
                    self.progress(int(items))
        return done


def embed_with_ray(session_factory: sessionmaker[Session], resolved, images: ImageSource,
                   options: RayEmbedOptions = RayEmbedOptions(), *, address: Optional[str] = None,
                   progress: Optional[Callable[[int], None]] = None, claims: Optional[ClaimQueue] = None,
                   stages: EmbedStages = EmbedStages()) -> EmbedReport:
    """Embed every pending canvas (and region) of ``resolved``'s space on Ray; returns what was done.

    ``resolved`` is the driver's :class:`..encoder_registry.ResolvedEncoder` (it names the space;
    every model actor loads the same model itself, the handcrafted features when the driver fell
    back to them). ``address``: see :func:`.runtime.ray_connection`. The database behind
    ``session_factory`` must be reachable from every node (PostgreSQL on a cluster).

    Raises RayUnavailableError (Ray missing or unreachable), SpaceMismatchError (the space is
    recorded for another model, or a node's model files differ: raised through Ray's task error),
    and re-raises any error that is not an item's own; this run's claims are then given back.
    """
    from ..embedding.registry import register_space
    from ..embedding.perceptual_hashes import HASH_ALGORITHM
    from .runtime import ray_connection

    encoder = resolved.encoder
    engine = session_factory.kw["bind"]
    db_url = connectable_url(engine)
    if engine.dialect.name == "sqlite" and address not in (None, "", "local"):
        log.warning("a Ray cluster with SQLite works only when every worker runs on this machine; "
                    "use PostgreSQL (MSEARCH_DB=postgresql+psycopg://...) for workers on other machines")
    spec = ModelSpec(model=_model_to_load(resolved), space_id=encoder.space_id, revision=encoder.revision,
                     dim=int(encoder.dim), device=options.device, precision=options.precision,
                     compile=options.compile, torch_threads=options.torch_threads)
    claims = claims or ClaimQueue(session_factory, encoder.space_id, lease_seconds=options.lease_seconds,
                                  regions=options.regions,
                                  hash_algorithm=HASH_ALGORITHM if options.hashes else None)
    with write_transaction(session_factory) as session:
        register_space(session, encoder)
    claims.release_gone_workers()
    report = EmbedReport(space=encoder.space_id, worker_id=claims.worker_id)
    if not any(claims.count_pending().values()):
        return report  # nothing to do: no need to start or join Ray
    started = time.perf_counter()
    try:
        with ray_connection(address, num_cpus=options.num_cpus) as ray, LeaseKeeper(claims):
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            # Every stage starts with its actors up (the work then spreads over all of them), and
            # a cluster that cannot place them (no GPU free, say) fails with a timeout, not a hang.
            context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
            if hasattr(images, "for_cluster"):
                images = images.for_cluster(ray)
            run = _Run(ray, db_url, claims, spec, SpaceRecord(encoder.space_id, encoder.model_id, encoder.revision),
                       images, options, stages, report, progress)
            run.plan_resources()
            while True:
                want = sum(claims.count_pending().values())
                if options.limit is not None:
                    want = min(want, options.limit - run.processed)
                if want <= 0:
                    break
                done = run.round(want)
                run.processed += done
                claims.release_all()  # claimed by a retried claim stage and never processed
                if done == 0:
                    break  # nothing could be claimed: other workers hold the rest
    finally:
        report.seconds = time.perf_counter() - started
        claims.release_all()
    return report


def _model_to_load(resolved) -> str:
    """What the actors load: the handcrafted features when the driver uses them (fallback
    included), a local directory as an absolute path (actors do not run in the driver's working
    directory), a hub id as it is."""
    from pathlib import Path

    from ..embedding.registry import HANDCRAFTED

    if resolved.kind == HANDCRAFTED:
        return "handcrafted"
    local = Path(resolved.requested).expanduser()
    return str(local.resolve()) if local.is_dir() else resolved.requested
