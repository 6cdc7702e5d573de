"""`msearch harvest` (IIIF manifests, collections, annotations, Change Discovery streams, canvas
images and region crops) and `msearch publish` (a folder of images → level-0 IIIF)."""
from __future__ import annotations

import sys
from typing import Optional

import click

from .common import CLIState, emit, pass_state, ray_engine_options, refuse_without_ray, shorten


def _grid_levels(ctx, param, value):
    from harvest.regions import RegionGrid

    try:
        return RegionGrid.parse(value).levels
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _region_methods(ctx, param, value):
    from harvest.regions import parse_region_methods

    if value is None:
        return None
    try:
        return "+".join(parse_region_methods(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _fetcher_options(command):
    options = [
        click.option("--workers", type=click.IntRange(1, 256), default=16, show_default=True,
                     help="Requests in flight at once, over all hosts."),
        click.option("--per-host", type=click.IntRange(1, 64), default=8, show_default=True,
                     help="Requests in flight at once to one host."),
        click.option("--rate", type=click.FloatRange(0, None), default=0.0, show_default=True,
                     help="Requests per second started per host (0: no limit)."),
        click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True,
                     help="Retries after timeouts, connection errors, 429 and 5xx."),
        click.option("--timeout", type=click.FloatRange(0.1, None), default=None,
                     help="Connect/read timeout in seconds [default: MSEARCH_HTTP_TIMEOUT]."),
        # flag_value: harvest.regions.DEFAULT_METHOD (not imported here: the CLI loads harvest lazily).
        click.option("--regions", is_flag=False, flag_value="content", default=None, callback=_region_methods,
                     metavar="[grid|content|detector|both|A+B]",
                     help="Also fetch region crops per canvas: content (boxes around what the canvas image "
                     "shows besides text: miniatures, initials, drawings, diagrams, music; what --regions alone "
                     "means), grid (a multi-scale grid of windows), detector (the boxes of the detection model "
                     "MSEARCH_REGION_MODEL), both (grid+content), or methods joined by + (content+detector). "
                     "A run with another method replaces the regions (and vectors) of the one before."),
        click.option("--no-regions", is_flag=True, help="No region crops (the default)."),
        click.option("--region-limit", type=click.IntRange(1, 64), default=13, show_default=True,
                     help="At most this many content (and detector) regions per canvas (13: as many as the "
                     "2,3 grid)."),
        click.option("--region-grid", default="2,3", show_default=True, callback=_grid_levels,
                     help="Windows per side at each scale, comma-separated (2,3: 2x2 and 3x3)."),
        click.option("--region-overlap", type=click.FloatRange(0, 0.9), default=0.25, show_default=True,
                     help="Share of a window that overlaps its neighbour."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bars on stderr [default: when stderr is a terminal]."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _check_data_dir(state: CLIState) -> None:
    """Refuse to start when the data directory cannot be written (read-only, full, permissions)
    rather than failing on every image."""
    from ..faults import StorageError, check_writable_directory

    try:
        check_writable_directory(state.config.data_dir)
    except StorageError as error:
        raise click.ClickException(str(error)) from None


def _make_fetcher(state: CLIState, workers, per_host, rate, retries, timeout, host_down_after=5, local_mirrors=None):
    from harvest.http import Fetcher
    from harvest.politeness import PolitenessPolicy

    from ..host_health import HealthPolicy

    cfg = state.config
    policy = PolitenessPolicy(max_per_host=min(per_host, workers), requests_per_second=rate,
                              health=HealthPolicy(down_after=host_down_after))
    return Fetcher(cfg.user_agent, timeout=timeout or cfg.http_timeout, max_bytes=cfg.max_response_bytes,
                   retries=retries, policy=policy, local_mirrors=local_mirrors,
                   network_policy=cfg.network_policy)


def _region_method(regions: Optional[str], no_regions: bool) -> Optional[str]:
    if regions and no_regions:
        raise click.UsageError("--regions and --no-regions contradict each other: give one")
    return None if no_regions else regions


def _region_detector(state: CLIState, regions: Optional[str]):
    """The detection model when the region method asks for it, loaded now (once per process) so
    that a missing or unusable model stops the command before any harvesting work."""
    if not regions or "detector" not in regions.split("+"):
        return None
    if not state.config.region_model:
        raise click.UsageError(f"--regions {regions} needs a detection model: set MSEARCH_REGION_MODEL to a "
                               "Hugging Face hub id or a local directory holding an object detector (DETR, "
                               "YOLOS...) or a zero-shot one (OWL-ViT, OWLv2)")
    from harvest.region_detector import DetectorLoadError, region_detector_from_config

    try:
        return region_detector_from_config(state.config)
    except DetectorLoadError as error:
        raise click.ClickException(str(error)) from None


def _image_phases(state: CLIState, fetcher, result: dict, images: bool, regions: Optional[str], grid_levels,
                  overlap: float, workers: int, progress: bool, manifest_ids=None, region_limit: int = 13,
                  detector=None) -> None:
    """Fetch canvas images and plan and fetch region crops (``regions``: the method, None for
    none; ``detector``: the detection model it asks for): for every canvas that lacks them, or
    for ``manifest_ids``' canvases only (publishing touches only what it publishes)."""
    from harvest.images import InfoCache, fetch_canvas_derivatives
    from harvest.regions import RegionGrid, fetch_region_derivatives, plan_regions

    from ..store.derivatives import DerivativeStore

    cfg = state.config
    factory = state.session_factory()
    derivatives = DerivativeStore(cfg.derivatives_dir)
    infos = InfoCache(fetcher, factory)
    if images:
        result["images"] = fetch_canvas_derivatives(
            factory, fetcher, derivatives, long_edge=cfg.image_size, threads=workers,
            show_progress=progress, infos=infos, manifest_ids=manifest_ids).as_dict()
    if regions:
        planned = plan_regions(factory, RegionGrid(tuple(grid_levels), overlap), manifest_ids=manifest_ids,
                               method=regions, derivatives=derivatives, limit=region_limit, detector=detector)
        report = fetch_region_derivatives(factory, fetcher, derivatives, long_edge=cfg.image_size,
                                          threads=workers, show_progress=progress, infos=infos,
                                          manifest_ids=manifest_ids)
        report.planned = planned
        result["regions"] = report.as_dict()
        if detector is not None:
            result["regions"]["detector"] = detector.describe()


def _release(factory) -> None:
    # The command's engine: closed here so that a PostgreSQL connection never outlives the run.
    engine = factory.kw.get("bind") if factory is not None else None
    if engine is not None:
        engine.dispose()


def deferred_by_host(result: dict) -> dict[str, int]:
    """Requests (documents, canvas images, regions) a harvest report deferred, per host down."""
    total: dict[str, int] = {}
    streams = [stream.get("harvest") or {} for stream in result.get("changes", [])]
    for part in (result, *streams, result.get("images") or {}, result.get("regions") or {}):
        for host, count in (part.get("deferred") or {}).items():
            total[host] = total.get(host, 0) + count
    return total


def host_down_line(deferred: dict[str, int]) -> str:
    """'host down: N requests deferred (host, or host: n, ...)', as the report and `msearch
    manifests` say it."""
    hosts = ", ".join(host if len(deferred) == 1 else f"{host}: {count}" for host, count in sorted(deferred.items()))
    return f"host down: {sum(deferred.values())} requests deferred ({hosts})"


def _summary(result: dict) -> str:
    lines = []
    for p in result.get("published", []):
        lines.append(f"published folder {p['folder']} as {p['manifest']} ({p['images']} image(s))")
        lines += _publication_notes(p)
    if "manifests" in result:
        lines.append(
            f"harvested {result['manifests']} manifest(s) ({result['new']} new, {result['changed']} changed, "
            f"{result['unchanged']} unchanged), {result['collections']} collection(s), "
            f"{result['annotation_documents']} annotation document(s), {result['text_annotations']} "
            f"text annotation(s); {len(result['gone'])} gone; {len(result['failures'])} failure(s)"
            + ("; resumed an interrupted run" if result.get("resumed") else ""))
    for stream in result.get("changes", []):
        lines.append(f"change stream {stream['stream']}: {stream['pages_read']} page(s), "
                     f"{stream['harvested']} harvested, {stream['removed']} removed ({stream['stopped_at']})")
    if "images" in result:
        lines.append(f"images fetched {result['images']['fetched']}, failed {len(result['images']['failures'])}")
    if "regions" in result:
        lines.append(f"regions planned {result['regions']['planned']}, fetched {result['regions']['fetched']}, "
                     f"failed {len(result['regions']['failures'])}")
    deferred = deferred_by_host(result)
    if deferred:
        lines.append(host_down_line(deferred) + "; the next run retries them")
    lines += _failure_lines(result)
    return "\n".join(lines)


FAILURE_GROUPS_SHOWN = 5


def _failure_lines(result: dict) -> list[str]:
    """The run's failures grouped by kind and host (as `msearch stats` groups them), the largest
    few with a count and an example each, and the commands that list them all."""
    from ..store.error_summary import summarise_failures

    failures = [("fetch", f["url"], f["reason"]) for f in result.get("failures", [])]
    for stream in result.get("changes", []):
        failures += [("fetch", f["url"], f["reason"]) for f in stream["failures"]]
    for stage, phase in (("image", "images"), ("region", "regions")):
        failures += [(stage, f.get("canvas"), f["reason"]) for f in result.get(phase, {}).get("failures", [])]
    if not failures:
        return []
    groups = summarise_failures(failures, limit=FAILURE_GROUPS_SHOWN)
    lines = [f"{len(failures)} failure(s) in this run, by kind:"]
    for group in groups:
        host = f" on {group['host']}" if group["host"] else ""
        example = group["example"]
        where = f"{example['url']}: " if example["url"] else ""
        lines.append(f"  ! {group['count']} × {group['description']}{host}, e.g. {where}{shorten(example['message'])}")
    shown = sum(g["count"] for g in groups)
    if shown < len(failures):
        lines.append(f"  ... and {len(failures) - shown} more of other kinds")
    lines.append("  all of them: msearch errors (--kind KIND, --host HOST), "
                 "by manifest: msearch manifests --errors-only")
    return lines


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--changes", "change_streams", multiple=True, metavar="URL",
              help="A IIIF Change Discovery activity stream to follow (repeatable).")
@click.option("--images/--no-images", default=True, show_default=True,
              help="Also fetch one image per canvas for encoding.")
@click.option("--annotations/--no-annotations", default=True, show_default=True,
              help="Also fetch annotation lists/pages that manifests reference, for their text.")
@click.option("--max-documents", type=click.IntRange(1, None), default=None,
              help="Stop a crawl after this many documents (with --engine ray: per host).")
@click.option("--host-down-after", type=click.IntRange(0, 1000), default=5, show_default=True,
              help="Connection failures and timeouts in a row after which a host is down for the run: its "
                   "requests are deferred to the next run, with a probe now and then (0: never).")
@ray_engine_options("local: this process. ray: one Ray task per host and per chunk of images, with the per-host "
                    "limits kept over the whole cluster (needs the [ray] extra; docs/scale-out.md).")
@_fetcher_options
@pass_state
def harvest(state: CLIState, sources, change_streams, images, annotations, max_documents, host_down_after, engine,
            address, ray_cpus, workers, per_host, rate, retries, timeout, regions, no_regions, region_limit,
            region_grid, region_overlap, progress, as_json):
    """Harvest IIIF manifests, collections or annotation lists (URLs or local JSON files),
    recursively; re-running is incremental, and resumes a run that was interrupted."""
    from harvest.changes import process_change_stream
    from harvest.http import is_local_source, local_path
    from harvest.manifests import HarvestOptions, harvest_sources

    if not sources and not change_streams:
        raise click.UsageError("give at least one SOURCE or --changes URL")
    refuse_without_ray(engine, address=address, ray_cpus=ray_cpus)
    regions = _region_method(regions, no_regions)
    progress = sys.stderr.isatty() if progress is None else progress
    _check_data_dir(state)
    detector = _region_detector(state, regions)
    if engine == "ray":
        if any(is_local_source(s) and local_path(s).is_dir() for s in sources):
            raise click.UsageError("a folder of images is published on this machine: run `msearch publish FOLDER` "
                                   "first, then harvest its manifest URL with --engine ray")
        result = _harvest_on_ray(state, sources, change_streams, images, annotations, max_documents, address,
                                 ray_cpus, workers, per_host, rate, retries, timeout, host_down_after, regions,
                                 region_grid, region_overlap, region_limit)
        emit(result, as_json, _summary(result))
        return
    sources, published, mirrors = _publish_folders(state, sources)
    fetcher = _make_fetcher(state, workers, per_host, rate, retries, timeout, host_down_after, local_mirrors=mirrors)
    factory = state.session_factory()
    options = HarvestOptions(workers=workers, max_documents=max_documents, annotations=annotations)
    result: dict = {"published": [p.as_dict() for p in published]} if published else {}
    try:
        if sources:
            result.update(harvest_sources(list(sources), factory, fetcher, options=options,
                                          show_progress=progress).as_dict())
        if change_streams:
            result["changes"] = [process_change_stream(url, factory, fetcher, options).as_dict()
                                 for url in change_streams]
        _image_phases(state, fetcher, result, images, regions, region_grid, region_overlap, workers, progress,
                      region_limit=region_limit, detector=detector)
    finally:
        fetcher.close()
        _release(factory)
    result["requests"] = fetcher.stats.get("requests", 0)
    emit(result, as_json, _summary(result))
    if sources and not result.get("manifests") and not result.get("collections") and (
            result.get("failures") or result.get("deferred")):
        # Nothing usable came of it (a typo'd URL, a folder of no images): say so and stop a
        # script (`make demo`) before it embeds and serves an empty site.
        raise click.ClickException("nothing was harvested; the reasons are listed above "
                                   "(all of them: msearch errors)")


def _publish_folders(state: CLIState, sources) -> tuple[list[str], list, Optional[dict]]:
    """Sources that are folders of images are published first, as `msearch publish` does (the
    obvious first try of a small museum): (sources with each folder replaced by its manifest's URL,
    the publish results, the fetcher's local mirror of the published files or None)."""
    from harvest.http import is_local_source, local_path
    from harvest.publish import PublishError, publish_folder

    root = state.config.data_dir / "published"
    base_url = state.config.public_url
    out, published = [], []
    for source in sources:
        path = local_path(source) if is_local_source(source) else None
        if path is None or not path.is_dir():
            out.append(source)
            continue
        try:
            published.append(publish_folder(path, root, base_url))
        except PublishError as exc:
            raise click.ClickException(f"{source}: {exc}") from None
        _adopt_publication(state, published[-1])
        out.append(published[-1].manifest_url)
    mirrors = {f"{base_url.rstrip('/')}/published/": root} if published else None
    return out, published, mirrors


def _harvest_on_ray(state: CLIState, sources, change_streams, images, annotations, max_documents, address, ray_cpus,
                    workers, per_host, rate, retries, timeout, host_down_after, regions, region_grid,
                    region_overlap, region_limit) -> dict:
    from harvest.cluster_fetch import FetcherSettings
    from harvest.ray_harvest import RayHarvestOptions, harvest_with_ray

    from ..distributed.runtime import RayUnavailableError
    from ..host_health import HealthPolicy

    knobs = {"max_per_host": min(per_host, workers), "requests_per_second": rate, "retries": retries,
             "health": HealthPolicy(down_after=host_down_after)}
    if timeout:
        knobs["timeout"] = timeout
    fetch = FetcherSettings.from_config(state.config, **knobs)
    # The tasks' threads: the same total in flight as a local run with --workers, per task.
    options = RayHarvestOptions(images=images, annotations=annotations, max_documents=max_documents,
                                threads=min(workers, 64), regions=bool(regions),
                                region_method=regions or "content", region_limit=region_limit,
                                region_levels=tuple(region_grid), region_overlap=region_overlap, num_cpus=ray_cpus)
    factory = state.session_factory()
    try:
        return harvest_with_ray(state.config, factory, list(sources), fetch, options,
                                change_streams=tuple(change_streams), address=address).as_dict()
    except RayUnavailableError as error:
        raise click.ClickException(str(error)) from None
    finally:
        _release(factory)


def _adopt_publication(state: CLIState, published) -> None:
    """Bring the catalogue in line with a (re-)publication before it is harvested: the manifest
    row follows a new base URL (same row, canvases and vectors; :func:`move_manifest`), and the
    cached info.json of its image services is forgotten (regenerated images may differ)."""
    from ..store.catalogue import forget_image_services, move_manifest
    from ..store.db import session_scope

    factory = state.session_factory()
    try:
        with session_scope(factory) as session:
            if published.previous_manifest_url or published.renamed_canvases:
                move_manifest(session, published.previous_manifest_url or published.manifest_url,
                              published.manifest_url, (published.previous_root_url or published.root_url) + "/",
                              published.root_url + "/", canvas_ids=published.renamed_canvases)
            forget_image_services(session, published.root_url + "/")
    finally:
        _release(factory)


def _publication_notes(report: dict) -> list[str]:
    lines = []
    if report.get("replaced_manifest"):
        lines.append(f"  (it was {report['replaced_manifest']}: the catalogue's row now has the new URLs)")
    if report.get("metadata_table"):
        lines.append(f"  metadata from {report['metadata_table']}")
    lines += [f"  ! {item['file']}: {item['reason']}" for item in report.get("skipped", [])]
    lines += [f"  ! {warning}" for warning in report.get("warnings", [])]
    return lines


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--base-url", envvar="MSEARCH_PUBLIC_URL", default="http://127.0.0.1:5000", show_default=True,
              help="Public URL of the web app (`msearch serve`) that will serve the files: the URL the site "
                   "is served at, since every id is written with it. Env: MSEARCH_PUBLIC_URL.")
@click.option("--slug", help="URL name of this set [default: the folder's name].")
@click.option("--label", help="Manifest label [default: the metadata table's title, else the folder's name].")
@click.option("--tile-size", type=click.IntRange(64, 4096), default=512, show_default=True)
@click.option("--metadata", "metadata_table", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The metadata table (TSV/CSV) describing the images [default: SOURCES.tsv, SOURCES.csv, "
                   "metadata.tsv or metadata.csv in FOLDER].")
@click.option("--replace", is_flag=True,
              help="Publish FOLDER under a name (slug) that another folder was published under, in its place.")
@click.option("--images/--no-images", default=True, show_default=True,
              help="Also make the derivatives for encoding (read from disk, no server needed).")
@_fetcher_options
@pass_state
def publish(state: CLIState, folder, base_url, slug, label, tile_size, metadata_table, replace, images, workers,
            per_host, rate, retries, timeout, regions, no_regions, region_limit, region_grid, region_overlap,
            progress, as_json):
    """Publish a folder of JPEG/PNG/TIFF images as a level-0 IIIF service and a manifest served
    by the web app under /published/, and harvest that manifest (its images and regions only).

    The slug names the publication: publishing the same slug again updates it in place (changed
    images, a new --base-url, the metadata table), in the files and in the catalogue."""
    from harvest.manifests import HarvestOptions, harvest_sources
    from harvest.publish import PublishError, publish_folder
    from sqlalchemy import select

    from ..models import Manifest
    from ..store.db import session_scope

    regions = _region_method(regions, no_regions)
    progress = sys.stderr.isatty() if progress is None else progress
    _check_data_dir(state)
    detector = _region_detector(state, regions)
    published_root = state.config.data_dir / "published"
    try:
        published = publish_folder(folder, published_root, base_url, slug=slug, label=label, tile=tile_size,
                                   replace=replace, metadata_table=metadata_table)
    except PublishError as exc:
        raise click.ClickException(str(exc)) from None
    _adopt_publication(state, published)
    # The app need not be running: URLs under the public prefix are read from the folder.
    fetcher = _make_fetcher(state, workers, per_host, rate, retries, timeout,
                            local_mirrors={f"{base_url.rstrip('/')}/published/": published_root})
    factory = state.session_factory()
    result = {"published": published.as_dict()}
    try:
        result["harvest"] = harvest_sources([published.manifest_url], factory, fetcher,
                                            options=HarvestOptions(workers=workers)).as_dict()
        with session_scope(factory) as session:
            manifest_ids = list(session.scalars(select(Manifest.id).where(Manifest.url == published.manifest_url)))
        _image_phases(state, fetcher, result, images, regions, region_grid, region_overlap, workers, progress,
                      manifest_ids=manifest_ids, region_limit=region_limit, detector=detector)
    finally:
        fetcher.close()
        _release(factory)
    text = "\n".join([f"published {len(published.images)} image(s) as {published.manifest_url} "
                      f"({result['published']['regenerated']} regenerated) in {published.folder}"]
                     + _publication_notes(result["published"]))
    if result["harvest"]["failures"]:
        text += "".join(f"\n  ! {f['url']}: {f['reason']}" for f in result["harvest"]["failures"])
    if "images" in result:
        text += f"\nimages fetched {result['images']['fetched']}, failed {len(result['images']['failures'])}"
    if "regions" in result:
        text += (f"\nregions planned {result['regions']['planned']}, fetched {result['regions']['fetched']}, "
                 f"failed {len(result['regions']['failures'])}")
    emit(result, as_json, text)
