"""What administrators may do, shared by the admin pages and the JSON API: add a source, start
a harvest, delete a source (with the manifests harvested from it) or a manifest."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from manuscripts_search.models import Manifest, Source

from .errors import AppError
from .harvest_jobs import STEPS, jobs_dir, read_record, start_job

log = logging.getLogger(__name__)
MAX_URL_CHARS = 2000


def validate_source_url(url: str) -> str:
    """An http(s) URL; AppError 400 otherwise (a server must not read its own files for a form)."""
    url = (url or "").strip()
    if not url:
        raise AppError("Give the URL of a IIIF manifest or collection.", 400)
    if len(url) > MAX_URL_CHARS:
        raise AppError(f"The URL is longer than {MAX_URL_CHARS} characters.", 400)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise AppError("That is not a URL.", 400) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AppError("Sources added here must be http(s) URLs; local files are harvested with "
                       "`msearch harvest` on the server.", 400)
    return url


def add_source(session: Session, url: str) -> Source:
    url = validate_source_url(url)
    source = session.scalar(select(Source).where(Source.url == url))
    if source is None:
        source = Source(url=url, kind="unknown", status="added")
        session.add(source)
        session.commit()
        log.info("admin added source %s", url)
    return source


def load_source(session: Session, source_id: int) -> Source:
    source = session.get(Source, source_id) if 0 < source_id < 2**63 else None
    if source is None:
        raise AppError(f"There is no source with id {source_id}.", 404)
    return source


def load_job(job_id: str) -> dict:
    """The record of harvest job ``job_id``; AppError 404 when there is none."""
    record = read_record(jobs_dir(current_app.config["MSEARCH_CONFIG"].data_dir), job_id)
    if record is None:
        raise AppError(f"There is no harvest job {job_id[:40]!r}.", 404)
    return record


def start_harvest(session: Session, source: Source, steps: tuple[str, ...] = ("harvest",)) -> dict:
    steps = tuple(step for step in STEPS if step in steps) or ("harvest",)
    if steps[0] != "harvest":
        steps = ("harvest", *steps)
    job = start_job(current_app.config["MSEARCH_CONFIG"], source.url, steps)
    source.status = "harvest started"
    session.commit()
    log.info("admin started harvest job %s of %s", job["id"], source.url)
    return job


def delete_source(session: Session, source: Source) -> int:
    """Delete ``source`` and the manifests harvested from it; returns how many manifests went."""
    manifest_ids = list(session.scalars(select(Manifest.id).where(Manifest.source_id == source.id)))
    if manifest_ids:
        session.execute(delete(Manifest).where(Manifest.id.in_(manifest_ids)))
    session.delete(source)
    session.commit()
    log.info("admin deleted source %s and %d manifest(s)", source.url, len(manifest_ids))
    return len(manifest_ids)


def delete_manifest(session: Session, manifest_id: int) -> str:
    manifest = session.get(Manifest, manifest_id) if 0 < manifest_id < 2**63 else None
    if manifest is None:
        raise AppError(f"There is no manifest with id {manifest_id}.", 404)
    url = manifest.url
    # Canvases, regions, vectors, text and labels go with it (foreign keys cascade); the index
    # drops its vectors at the next `msearch index`, and search skips them until then.
    session.execute(delete(Manifest).where(Manifest.id == manifest_id))
    session.commit()
    log.info("admin deleted manifest %s", url)
    return url
