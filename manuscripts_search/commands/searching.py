"""`msearch index ...`, `msearch search` and `msearch classify ...`: indexes, queries, categories."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Optional

import click

from ..search.signal_registry import signal_names
from .common import CLIState, emit, pass_state

MAX_QUERY_IMAGE_BYTES = 32 * 1024 * 1024


def _index_params(m, ef_construction, ef):
    from ..index.vector_index import IndexParams

    try:
        return IndexParams().replace(M=m, ef_construction=ef_construction, ef_search=ef)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _layout_option(default):
    from ..index.layouts import LAYOUTS

    return click.option("--layout", type=click.Choice(["auto", *LAYOUTS]), default=default,
                        help="Index layout: auto picks the best recall that fits MSEARCH_INDEX_MEMORY "
                             "(hnsw float32 for small spaces, hnsw-f16, ivf-rabitq or ivfpq for millions, hnsw-i8). "
                             + ("Default: keep each index's layout (auto for a new one)." if default is None
                                else "Default: auto."))


def _hnsw_options(command):
    command = click.option("--ef", type=click.IntRange(1, 100_000), default=None,
                           help="Query beam width stored with a new index (default 128).")(command)
    command = click.option("--ef-construction", type=click.IntRange(1, 100_000), default=None,
                           help="Build beam width for a new or rebuilt index (default 200).")(command)
    command = click.option("--M", "m", type=click.IntRange(2, 256), default=None,
                           help="HNSW links per node for a new or rebuilt index (default 32).")(command)
    return command


def _shards_option(command):
    from ..index.shards import MAX_SHARDS

    return click.option("--shards", type=click.IntRange(1, MAX_SHARDS), default=None,
                        help="Split each image space's index into this many shards by canvas (1: one "
                             "index). Default: keep the current count.")(command)


@contextmanager
def index_writer_lock(index_dir):
    """One writer of the index directory at a time (``msearch embed`` syncs at its end, too)."""
    import fcntl

    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".sync.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# -- index ------------------------------------------------------------------------------------

@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--text/--no-text", "with_text", default=True, show_default=True,
              help="Also refresh search documents, their sentence vectors (MiniLM) and their index.")
@_hnsw_options
@_layout_option(None)
@_shards_option
@click.pass_context
def index(ctx, as_json, with_text, m, ef_construction, ef, layout, shards):
    """Bring the indexes in step with the database (add new, drop stale vectors; no rebuild).
    With --shards N, image spaces are split into N shards by canvas (changing N rebuilds them
    beside the old set, which serves until the new one is complete)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..store.db import session_scope
    from ..index.shard_sync import sync_space
    from ..index.sync import TEXT_SPACE_PREFIX, spaces

    state: CLIState = ctx.obj
    params = _index_params(m, ef_construction, ef)
    factory = state.session_factory()
    result: dict = {}
    if with_text:
        result["text"] = _refresh_text(state, factory)
    with session_scope(factory) as session, index_writer_lock(state.config.index_dir):
        result["indexes"] = [sync_space(session, state.config.index_dir, s,
                                        None if s.startswith(TEXT_SPACE_PREFIX) else shards, params,
                                        layout=layout, budget_bytes=state.config.index_memory,
                                        show_progress=sys.stderr.isatty()).as_dict()
                             for s in spaces(session)]
    lines = [f"{r['space']}: +{r['added']} -{r['removed']} = {r['total']} [{r['layout']}]"
             + (f" in {r['shards']} shards" if r["shards"] > 1 else "")
             + (f" (re-sharded from {r['resharded_from']})" if r.get("resharded_from") else
                " (rebuilt)" if r["rebuilt"] else "") + (f"\n  {r['reason']}" if r.get("reason") else "")
             for r in result["indexes"]]
    if "text" in result:
        text = result["text"]
        lines.insert(0, f"documents: +{text['documents']['added']} ~{text['documents']['updated']} "
                        f"-{text['documents']['removed']} = {text['documents']['total']}; "
                        f"{text['encoded']} encoded" + (f" ({text['error']})" if text.get("error") else ""))
    emit(result, as_json, "\n".join(lines) or "no vectors yet")


def _refresh_text(state: CLIState, factory) -> dict:
    from ..store.db import session_scope
    from ..search.documents import sync_documents
    from ..embedding.text_encoder import TextEncoderLoadError, load_text_encoder
    from ..search.text_vectors import pending_document_ids, sync_text_vectors

    with session_scope(factory) as session:
        documents = sync_documents(session).as_dict()
    report = {"documents": documents, "encoded": 0}
    if documents["total"] == 0:
        return report
    try:
        encoder = load_text_encoder(device=state.config.device)
    except TextEncoderLoadError as error:
        # Full-text search still works without sentence vectors; say why semantic search does not.
        report["error"] = str(error)
        return report
    with session_scope(factory) as session:
        pending = len(pending_document_ids(session, encoder.space_id))
    if pending:
        from tqdm import tqdm

        with tqdm(total=pending, unit="doc", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
            with session_scope(factory) as session:
                report["encoded"] = sync_text_vectors(session, encoder, progress=bar.update).encoded
    return report


@index.command("rebuild")
@click.option("--space", "only_space", default=None, help="Rebuild only this space (default: all).")
@_hnsw_options
@_layout_option("auto")
@_shards_option
@pass_state
def index_rebuild(state: CLIState, only_space, m, ef_construction, ef, layout, shards):
    """Rebuild indexes from the database (drops deleted vectors; applies new parameters; converts
    to another layout or shard count)."""
    from ..store.db import session_scope
    from ..index.shard_sync import sync_space
    from ..index.sync import TEXT_SPACE_PREFIX, spaces

    params = _index_params(m, ef_construction, ef)
    with session_scope(state.session_factory()) as session, index_writer_lock(state.config.index_dir):
        chosen = [s for s in spaces(session) if only_space in (None, s)]
        if only_space and not chosen:
            raise click.ClickException(f"no vectors in space {only_space!r}; `msearch index verify` lists spaces")
        for space in chosen:
            text = space.startswith(TEXT_SPACE_PREFIX)
            try:
                report = sync_space(session, state.config.index_dir, space, None if text else shards, params,
                                    layout=layout, budget_bytes=state.config.index_memory,
                                    show_progress=sys.stderr.isatty(), rebuild=True).as_dict()
            except ValueError as error:
                raise click.ClickException(str(error)) from None
            click.echo(f"{space}: rebuilt as {report['layout']} with {report['total']} vector(s)"
                       + (f" in {report['shards']} shards" if report["shards"] > 1 else "")
                       + (f"\n  {report['reason']}" if report.get("reason") else ""))


@index.command("verify")
@click.option("--deep", is_flag=True, help="Also compare every vector in the index with the database.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def index_verify(state: CLIState, deep, as_json):
    """Check index ⇔ database consistency; exit status 1 when they differ."""
    from ..store.db import session_scope
    from ..index.shard_sync import verify_space
    from ..index.sync import spaces

    with session_scope(state.session_factory()) as session:
        results = [verify_space(session, state.config.index_dir, s, deep=deep) for s in spaces(session)]
    emit(results, as_json, "\n".join(
        f"{r['space']}: {'ok' if r['ok'] else 'MISMATCH'}" + (f" ({r['shards']} shards)" if r["shards"] > 1 else "")
        + f" (missing {r['missing_count']}, "
        f"extra {r['extra_count']}" + (f", vectors differing {r['mismatched_count']}" if deep else "") + ")"
        + "".join(f"\n  {problem}" for problem in r["problems"]) for r in results) or "no vectors yet")
    if not all(r["ok"] for r in results):
        sys.exit(1)


# -- search -----------------------------------------------------------------------------------

def _load_query_image(state: CLIState, source: str):
    """A PIL image from a local path or an http(s) URL; ClickException with the reason otherwise."""
    from ..image_decoding import MAX_QUERY_IMAGE_PIXELS, ImageDecodeError, decode_image

    if source.startswith(("http://", "https://")):
        from harvest.http import FetchError, Fetcher

        fetcher = Fetcher(state.config.user_agent, timeout=state.config.http_timeout,
                          max_bytes=MAX_QUERY_IMAGE_BYTES)
        try:
            body = fetcher.get(source, expect="image").body
        except FetchError as error:
            raise click.ClickException(f"cannot fetch the query image: {error}") from None
        finally:
            fetcher.close()
    else:
        try:
            with open(source, "rb") as handle:
                body = handle.read(MAX_QUERY_IMAGE_BYTES + 1)
        except OSError as error:
            raise click.ClickException(f"cannot read the query image {source}: {error.strerror}") from None
        if len(body) > MAX_QUERY_IMAGE_BYTES:
            raise click.ClickException(f"the query image is larger than {MAX_QUERY_IMAGE_BYTES} bytes")
    try:
        return decode_image(body, MAX_QUERY_IMAGE_PIXELS)
    except ImageDecodeError as error:
        raise click.ClickException(f"the query image cannot be decoded: {error}") from None


def _text_resources(state: CLIState):
    """(text index, text encoder) when a sentence-vector index exists, else (None, None)."""
    from ..index.layouts import open_index
    from ..index.vector_index import IndexReadError
    from ..embedding.text_encoder import TextEncoderLoadError, load_text_encoder, text_space_id

    space = text_space_id()
    if space is None:
        return None, None
    try:
        text_index = open_index(state.config.index_dir, space)
    except IndexReadError:
        return None, None
    if text_index is None or len(text_index) == 0:
        return None, None
    try:
        return text_index, load_text_encoder(device=state.config.device)
    except TextEncoderLoadError:
        return None, None


@click.command()
@click.argument("query", required=False)
@click.option("--image", "image_source", metavar="PATH|URL", help="Find canvases that look like this image.")
@click.option("--like", "like_canvas", type=click.IntRange(1), metavar="CANVAS_ID",
              help="More like this canvas (database id).")
@click.option("--like-region", type=click.IntRange(1), metavar="REGION_ID", help="More like this region.")
@click.option("--duplicates-of", type=click.IntRange(1), metavar="CANVAS_ID",
              help="Near-duplicates of this canvas by perceptual hash.")
@click.option("--max-distance", type=click.IntRange(0, 256), default=None,
              help="Largest Hamming distance for --duplicates-of, in bits of the 256-bit crop-tolerant "
                   "hashes [default: 55, which keeps re-encoded, resized and slightly cropped copies].")
@click.option("--filter", "filter_pairs", multiple=True, metavar="NAME=VALUE",
              help="collection, manifest, provider, date-from, date-to, iiif-version, has-transcription, "
                   "label; repeat for more.")
@click.option("--group", type=click.Choice(["canvas", "manifest", "auto"]), default="canvas", show_default=True,
              help="auto: by manuscript when one manuscript would fill the first page.")
@click.option("--weaker", is_flag=True,
              help="Also show hits that score no better than nonsense queries do (below the score floors).")
@click.option("--page", type=click.IntRange(1, 10_000), default=1, show_default=True)
@click.option("-k", "--k", "--per-page", "per_page", type=click.IntRange(1, 200), default=10, show_default=True,
              help="Results per page.")
@click.option("--signal", "signals", multiple=True, type=click.Choice(signal_names()),
              help="Use only these rankings (default: all that apply).")
@click.option("--ef", type=click.IntRange(1, 100_000), default=None, help="HNSW query beam width.")
@click.option("--explain", is_flag=True, help="Show each hit's signals, regions and snippets.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit (or group), one per line.")
@click.option("--page-json", is_flag=True, help="The whole page (hits, facets, paging) as one JSON object.")
@pass_state
def search(state: CLIState, query, image_source, like_canvas, like_region, duplicates_of, max_distance,
           filter_pairs, group, weaker, page, per_page, signals, ef, explain, as_json, page_json):
    """Find canvases by QUERY text (what they show, their metadata and transcriptions), by an
    image, like an existing canvas or region, or near-duplicates of a canvas."""
    from ..store.db import session_scope
    from ..search.filters import FilterError, parse_filter_options
    from ..search.engine import SearchContext, SearchError, SearchRequest, load_index, run_search

    if duplicates_of:
        _search_duplicates(state, duplicates_of, max_distance, per_page, as_json or page_json)
        return
    if not (query or image_source or like_canvas or like_region):
        raise click.UsageError("give a QUERY, --image, --like, --like-region or --duplicates-of")
    try:
        filters = parse_filter_options(list(filter_pairs))
    except FilterError as error:
        raise click.BadParameter(str(error), param_hint="--filter") from None
    factory = state.session_factory()
    needs_model = bool(query or image_source) and (not signals or "visual" in signals)
    # Without the vision-language model this is the handcrafted fallback (said on stderr): it
    # searches images by image, and text queries go to full-text and semantic search only.
    encoder = state.encoder() if needs_model else None
    image = _load_query_image(state, image_source) if image_source else None
    request = SearchRequest(text=query, image=image, like_canvas_id=like_canvas, like_region_id=like_region,
                            filters=filters, group=group, offset=(page - 1) * per_page, limit=per_page,
                            signals=tuple(signals) or None, ef=ef, weaker=weaker)
    text_index, text_encoder = _text_resources(state) if query and (not signals or "semantic" in signals) \
        else (None, None)
    try:
        with session_scope(factory) as session:
            visual_index = None
            if encoder is not None or like_canvas or like_region:
                space = encoder.space_id if encoder is not None else _only_image_space(session)
                try:
                    config = state.config
                    visual_index = load_index(config.index_dir, space, config.search_backend, config.ray_address,
                                              config.shard_deadline)
                except SearchError:
                    if image_source or like_canvas or like_region:
                        raise
            result = run_search(SearchContext(session, visual_index, encoder, text_index, text_encoder,
                                              score_floors=dict(state.config.score_floors)), request)
    except (SearchError, FilterError) as error:
        raise click.ClickException(str(error)) from None
    _print_page(result, as_json, page_json, explain)


def _only_image_space(session) -> str:
    from ..index.sync import TEXT_SPACE_PREFIX, spaces

    image_spaces = [s for s in spaces(session) if not s.startswith(TEXT_SPACE_PREFIX)]
    if len(image_spaces) != 1:
        raise click.ClickException("several model spaces have vectors: set --model to choose one"
                                   if image_spaces else "no vectors yet: run `msearch embed` first")
    return image_spaces[0]


def _print_page(result, as_json: bool, page_json: bool, explain: bool) -> None:
    if page_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    items = result.hits if result.group == "canvas" else result.groups
    if as_json:
        for item in items:
            click.echo(json.dumps(item.as_dict(), ensure_ascii=False))
        return
    if not items:
        weaker = "; --weaker shows the hits that score no better than nonsense" if result.below_floor else ""
        click.echo(f"no results{weaker}")
        return
    for item in items:
        if result.group == "manifest":
            click.echo(f"{item.rank:>3}. {item.score:.4f}  {item.manifest_label or item.manifest} "
                       f"({item.matching_canvases} matching canvas(es))")
            for hit in item.canvases:
                click.echo(f"       {hit.canvas_label or hit.canvas}  [canvas {hit.canvas_id}]")
            continue
        where = f" @{item.xywh}" if item.xywh else ""
        click.echo(f"{item.rank:>3}. {item.score:.4f}  {item.manifest_label or item.manifest} — "
                   f"{item.canvas_label or item.canvas}{where}  [canvas {item.canvas_id}]")
        if explain:
            for name, contribution in item.signals.items():
                click.echo(f"       {name}: rank {contribution['rank']}, score {contribution['score']:.4f}, "
                           f"+{contribution['contribution']:.4f}")
            shown = item.shown_regions  # what the pages draw; --json lists all the evidence
            for region in shown:
                click.echo(f"       region {region.xywh} #{region.rank} {region.label} "
                           f"({region.signal} {region.score:.4f})")
            if len(item.regions) > len(shown):
                click.echo(f"       ({len(item.regions) - len(shown)} more matching region(s), overlapping "
                           f"these or past the {len(shown)} shown)")
            for text in item.snippets:
                click.echo(f"       “{text}”")
    more = "; more with --page" if result.has_more else ""
    total = f"{result.total}" if result.total_exact else f"more than {result.total}"
    click.echo(f"-- {total} canvases in {result.manuscripts} manuscript(s); {result.score} scores from "
               f"{', '.join(result.signals)}{more}")


def _search_duplicates(state: CLIState, canvas_id: int, max_distance: Optional[int], limit: int,
                       as_json: bool) -> None:
    """Other digitisations of a canvas: re-encoded, resized or slightly cropped copies, found by
    comparing each image's hash with the other's crops both ways."""
    from ..store.db import session_scope
    from ..embedding.perceptual_hashes import find_near_duplicates
    from ..embedding.perceptual_hashes import CROP_MATCH_BITS

    try:
        with session_scope(state.session_factory()) as session:
            hits = find_near_duplicates(session, canvas_id=canvas_id, limit=limit,
                                        max_distance=CROP_MATCH_BITS if max_distance is None else max_distance)
    except ValueError as error:  # HashLookupError included: no hashes for that canvas yet
        raise click.ClickException(str(error)) from None
    for hit in hits:
        click.echo(json.dumps(hit.as_dict()) if as_json else
                   f"canvas {hit.canvas_id}: {hit.distance} of 256 bits differ ({hit.similarity:.3f})")
    if not hits and not as_json:
        click.echo("no near-duplicates")


# -- classify ---------------------------------------------------------------------------------

@click.group()
def classify():
    """Categories defined by text prompts and example images; canvases labelled by the nearest."""


@classify.command("add")
@click.argument("name")
@click.option("--prompt", "prompts", multiple=True, help="A text prototype, e.g. 'a map'. Repeatable.")
@click.option("--image", "images", multiple=True, metavar="PATH|URL", help="An example image. Repeatable.")
@click.option("--canvas", "canvases", multiple=True, type=click.IntRange(1), help="An example canvas id.")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="Similarity needed to its prototypes (default per kind: text 0.2, image 0.75).")
@click.option("--description", default=None)
@pass_state
def classify_add(state: CLIState, name, prompts, images, canvases, threshold, description):
    """Create or extend category NAME with prototypes."""
    from ..search.classification import (ClassificationError, add_canvas_prototype, add_image_prototype,
                                  add_text_prototype, get_or_create_category)
    from ..store.db import session_scope

    if not (prompts or images or canvases or threshold is not None or description):
        raise click.UsageError("give at least one --prompt, --image or --canvas (or a new --threshold)")
    # Categories live in the model's space: no silent switch to the handcrafted features here.
    encoder = state.encoder(fallback=False) if (prompts or images or canvases) else None
    loaded = [(source, _load_query_image(state, source)) for source in images]
    try:
        with session_scope(state.session_factory()) as session:
            category = get_or_create_category(session, name, description, threshold)
            for prompt in prompts:
                add_text_prototype(session, category, prompt, encoder)
            for source, image in loaded:
                add_image_prototype(session, category, image, source, encoder)
            for canvas_id in canvases:
                add_canvas_prototype(session, category, canvas_id, encoder.space_id)
    except ClassificationError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{name}: {len(prompts)} prompt(s), {len(images)} image(s), {len(canvases)} canvas(es) added")


@classify.command("run")
@click.option("--closed", is_flag=True, help="Closed set: every canvas gets its nearest category.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def classify_run(state: CLIState, closed, as_json):
    """Label every embedded canvas with its nearest category (replaces earlier labels)."""
    from ..search.classification import ClassificationError, classify_canvases
    from ..store.db import session_scope

    encoder = state.encoder(fallback=False)
    try:
        with session_scope(state.session_factory()) as session:
            report = classify_canvases(session, encoder.space_id, encoder=encoder, closed_set=closed)
    except ClassificationError as error:
        raise click.ClickException(str(error)) from None
    result = report.as_dict()
    emit(result, as_json, f"{result['labelled']} of {result['canvases']} canvas(es) labelled: "
         + (", ".join(f"{name} {count}" for name, count in sorted(result["per_category"].items())) or "none")
         + "".join(f"\nskipped prototype {p}" for p in result["skipped_prototypes"]))


@classify.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def classify_list(state: CLIState, as_json):
    """Categories, their prototypes and how many canvases carry each."""
    from ..search.classification import category_summaries
    from ..store.db import session_scope

    with session_scope(state.session_factory()) as session:
        summaries = category_summaries(session)
    emit(summaries, as_json, "\n".join(
        f"{s['name']}: {s['labelled']} canvas(es); " + ", ".join(f"{p['kind']} {p['value']}" for p in s["prototypes"])
        for s in summaries) or "no categories")


@classify.command("remove")
@click.argument("name")
@pass_state
def classify_remove(state: CLIState, name):
    """Delete category NAME, its prototypes and its labels."""
    from sqlalchemy import delete

    from ..store.db import session_scope
    from ..models import Category

    with session_scope(state.session_factory()) as session:
        removed = session.execute(delete(Category).where(Category.name == name)).rowcount
    if not removed:
        raise click.ClickException(f"no category called {name!r}")
    click.echo(f"removed {name}")

