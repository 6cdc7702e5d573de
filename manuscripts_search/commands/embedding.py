"""`msearch embed`: encode pending canvases and regions (and hash their images), then update
the index. Several `msearch embed` processes may run at once on one database."""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

import click

from .common import CLIState, emit, pass_state, ray_engine_options, refuse_without_ray


def _default_threads() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))


@click.command()
@click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="Images per model call and per database transaction.")
@click.option("--threads", type=click.IntRange(1, 256), default=_default_threads, show_default="CPU cores, at most 8",
              help="Threads that read, decode, hash and preprocess images ahead of the model.")
@click.option("--prefetch", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Batches prepared ahead of the model.")
@click.option("--decode-processes", type=click.IntRange(0, 256), default=None,
              help="Decode, hash and preprocess in this many processes instead of --threads threads "
                   "(threads share one interpreter lock: ~1 core of decoding) [default: on CUDA, one per "
                   "CPU core but one, at most 16; on the CPU, 0: the model needs the cores].")
@click.option("--regions/--no-regions", default=True, show_default=True, help="Also embed region crops.")
@click.option("--hashes/--no-hashes", default=True, show_default=True,
              help="Compute perceptual hashes for near-duplicate search.")
@click.option("--fallback/--no-fallback", default=True, show_default=True,
              help="When the model cannot be loaded, use the handcrafted features instead of stopping.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="Model arithmetic (auto: fp16 on CUDA, fp32 on CPU); vectors are stored as float16.")
@click.option("--compile", "compile_model", is_flag=True, help="Run the image tower through torch.compile.")
@click.option("--torch-threads", type=click.IntRange(0, 256), default=0, show_default=True,
              help="CPU threads per model call (0: one for small models, one per core for large ones).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Stop after this many items.")
@click.option("--lease", "lease_seconds", type=click.FloatRange(1, 86_400), default=120, show_default=True,
              help="Seconds a claim lasts unless renewed; a dead worker's items are retaken after it.")
@click.option("--retry-after", type=click.FloatRange(0, None), default=3600, show_default=True,
              help="Seconds before a failed item is tried again.")
@click.option("--retry-failed", is_flag=True, help="Try failed items again now.")
@click.option("--index/--no-index", "update_index", default=True, show_default=True,
              help="Bring the space's index up to date afterwards (skip when many workers run; "
                   "then run `msearch index` once).")
@ray_engine_options("local: this process (threads + batched model). ray: a Ray Data pipeline over a cluster "
                    "(needs the [ray] extra; docs/scale-out.md).")
@click.option("--derivatives-url", default=None, metavar="URL",
              help="With --engine ray: fetch derivatives by content hash from this HTTP copy of the "
                   "derivatives folder instead of reading a shared MSEARCH_DATA_DIR.")
@click.option("--encoders", type=click.IntRange(1), default=None,
              help="With --engine ray: model actors [default: one per GPU of the cluster, else one].")
@click.option("--prepare-actors", type=click.IntRange(1), default=None,
              help="With --engine ray: image decoding actors [default: the CPUs the model leaves].")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def embed(state: CLIState, batch_size, threads, prefetch, decode_processes, regions, hashes, fallback, precision,
          compile_model, torch_threads, limit, lease_seconds, retry_after, retry_failed, update_index, engine, address,
          derivatives_url, encoders, prepare_actors, ray_cpus, progress, as_json):
    """Encode canvases and regions that have an image but no vector in the model's space yet.

    The model is MSEARCH_MODEL / --model (a hub id, a local directory, or "handcrafted"). If it
    cannot be loaded, the handcrafted colour/texture features are used and the reason is printed;
    text and metadata search keep working either way.
    """
    from sqlalchemy.exc import SQLAlchemyError
    from tqdm import tqdm

    from ..store.claims import ClaimError, clear_failures
    from ..store.db import UnsupportedDatabaseError
    from ..store.derivatives import DerivativeStore
    from ..embedding.registry import SpaceMismatchError, choose_torch_threads, resolve_image_encoder
    from ..embedding.encoders import EncoderLoadError
    from ..embedding.worker import WorkerOptions, embed_pending, make_claim_queue

    refuse_without_ray(engine, address=address, derivatives_url=derivatives_url, encoders=encoders,
                       prepare_actors=prepare_actors, ray_cpus=ray_cpus)
    factory = state.session_factory()
    try:
        resolved = resolve_image_encoder(state.config.model, state.config.device, fallback=fallback,
                                         precision=precision, compile=compile_model)
    except EncoderLoadError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--precision") from None
    if resolved.is_fallback:
        click.echo(f"warning: {resolved.describe()}", err=True)
    encoder = resolved.encoder
    model_threads = choose_torch_threads(encoder, torch_threads)
    if model_threads is not None and engine == "local":
        import torch

        torch.set_num_threads(model_threads)
    if engine == "ray":
        decode_processes = 0  # Ray's preparation actors are its decoding processes
    elif decode_processes is None:
        decode_processes = _default_decode_processes(encoder)
    options = WorkerOptions(batch_size=batch_size, threads=threads, prefetch_batches=prefetch, regions=regions,
                            hashes=hashes, lease_seconds=lease_seconds, retry_after=retry_after, limit=limit,
                            decode_processes=decode_processes)
    try:
        if retry_failed:
            clear_failures(factory, encoder.space_id)
        claims = make_claim_queue(factory, encoder, options)
        pending = sum(claims.count_pending().values())
        total = min(pending, limit) if limit else pending
        show = (sys.stderr.isatty() if progress is None else progress) and total > 0
        with tqdm(total=total, unit="item", disable=not show, file=sys.stderr, desc="embed") as bar, \
                _stop_cleanly_on_sigterm():
            if engine == "ray":
                report = _embed_on_ray(state, factory, resolved, options, claims, bar.update, address=address,
                                       derivatives_url=derivatives_url, encoders=encoders,
                                       prepare_actors=prepare_actors, num_cpus=ray_cpus, precision=precision,
                                       compile_model=compile_model, torch_threads=torch_threads)
            else:
                report = embed_pending(factory, encoder, DerivativeStore(state.config.derivatives_dir), options,
                                       progress=bar.update, claims=claims)
    except (ClaimError, SpaceMismatchError, UnsupportedDatabaseError) as error:
        raise click.ClickException(str(error)) from None
    except SQLAlchemyError as error:
        raise click.ClickException(f"the database failed during embedding ({error.__class__.__name__}: "
                                   f"{str(error).splitlines()[0]}); finished batches are kept, re-run to "
                                   "go on") from None
    except (RuntimeError, MemoryError) as error:  # the model itself failed (out of memory, device lost...)
        raise click.ClickException(f"the model failed during embedding ({error.__class__.__name__}: {error}); "
                                   "finished batches are kept, re-run (perhaps with a smaller --batch-size) "
                                   "to go on") from None
    result = {**report.as_dict(), "model_id": encoder.model_id, "revision": encoder.revision,
              "encoder": resolved.kind, "fallback_reason": resolved.fallback_reason, "engine": engine}
    if update_index:
        result["index"] = _sync_index(state, factory, encoder.space_id)
    _emit_report(result, as_json, resolved)


def _default_decode_processes(encoder) -> int:
    """With a GPU the model outruns one core of decoding: give decoding every core but one."""
    if not str(getattr(encoder, "device", "cpu")).startswith("cuda"):
        return 0
    return max(1, min(16, (os.cpu_count() or 2) - 1))


def _embed_on_ray(state: CLIState, factory, resolved, options, claims, progress, *, address, derivatives_url,
                  encoders, prepare_actors, num_cpus, precision, compile_model, torch_threads):
    """The same work on Ray: one worker of the shared claim queue whose stages run as actors."""
    from ..distributed.embed_stages import StoreImages
    from ..distributed.ray_embed import RayEmbedOptions, embed_with_ray
    from ..distributed.runtime import RayUnavailableError

    if derivatives_url:
        from harvest.cluster_fetch import FetcherSettings
        from harvest.remote_derivatives import HttpDerivatives

        images = HttpDerivatives(derivatives_url, str(state.config.derivatives_dir),
                                 FetcherSettings.from_config(state.config))
    else:
        images = StoreImages(str(state.config.derivatives_dir.resolve()))
    ray_options = RayEmbedOptions.from_worker_options(
        options, encoders=encoders, prepare_actors=prepare_actors, num_cpus=num_cpus, device=state.config.device,
        precision=precision, compile=compile_model, torch_threads=torch_threads)
    try:
        return embed_with_ray(factory, resolved, images, ray_options, address=address, progress=progress,
                              claims=claims)
    except RayUnavailableError as error:
        raise click.ClickException(str(error)) from None


@contextmanager
def _stop_cleanly_on_sigterm():
    """SIGTERM (a service manager stopping us) ends the run like Ctrl-C: the claims still held are
    given back at once instead of waiting for their leases to run out."""
    def stop(_signum, _frame):
        raise SystemExit(143)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sync_index(state: CLIState, factory, space: str):
    """Sync the space's index (each of its shards, when sharded), one process at a time (several
    workers may finish together)."""
    from ..store.db import session_scope
    from ..index.shard_sync import sync_space
    from ..index.sync import dim_of
    from .searching import index_writer_lock

    index_dir = state.config.index_dir
    with index_writer_lock(index_dir):
        with session_scope(factory) as session:
            if dim_of(session, space) is None:
                return None  # no vectors in this space at all yet
            return sync_space(session, index_dir, space, budget_bytes=state.config.index_memory).as_dict()


def _emit_report(result: dict, as_json: bool, resolved) -> None:
    failed = result["failed"]
    lines = [f"embedded {result['embedded']} item(s) ({result['canvases']} canvases, {result['regions']} regions) "
             f"with {result['model_id']} [{result['space']}] at {result['items_per_second']:.1f} items/s; "
             f"{result['hashed']} hashed; {len(failed)} failed"]
    lines += [f"  {f['kind']} {f['id']}: {f['reason']}" for f in failed[:20]]
    if result.get("index"):
        lines.append(f"index holds {result['index']['total']} vector(s)")
    if resolved.is_fallback:
        lines.append("(handcrafted fallback in use: see the warning above)")
    emit(result, as_json, "\n".join(lines))
