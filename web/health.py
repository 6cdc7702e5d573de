"""``GET /healthz``: is this process able to serve? For load balancers, probes and operators.

JSON: ``status`` ("ok", or "unavailable" with HTTP 503 when the database cannot be reached or
holds no schema),
``version``, ``database`` (reachable, schema revision and whether it is the newest this code
knows), ``indexes`` (each saved index: space, vectors, and whether *this process* has it loaded
— the index loads lazily on the first search, once per process), ``model_loaded``, ``pid``.

Cheap and side-effect free: it never loads a model or an index, and errors are reported by
kind, never with connection strings (no passwords).
"""
from __future__ import annotations

import functools
import os

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from manuscripts_search import __version__
from manuscripts_search.redact import database_password, redact

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    app = current_app._get_current_object()
    database = _database_status(app)
    healthy = database["reachable"] and database["schema_revision"] is not None
    body = {"status": "ok" if healthy else "unavailable", "version": __version__,
            "pid": os.getpid(), "database": database, "indexes": _index_status(app),
            "model_loaded": _model_loaded(app)}
    response = jsonify(body)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def _database_status(app) -> dict:
    from web.database import get_session

    status = {"reachable": False, "dialect": None, "schema_revision": None, "schema_current": None}
    try:
        session = get_session()
        status["dialect"] = session.get_bind().dialect.name
        session.execute(text("SELECT 1"))
        status["reachable"] = True
        revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        status.update(schema_revision=revision, schema_current=revision == _head_revision())
    except Exception as error:  # unreachable, or reachable without a schema: the kind says which
        first_line = (str(error).splitlines() or [""])[0][:300]
        config = app.config.get("MSEARCH_CONFIG")
        status["error"] = redact(f"{error.__class__.__name__}: {first_line}",
                                 [database_password(getattr(config, "db_url", None))])
        if status["reachable"]:
            status["schema_current"] = False
    return status


@functools.lru_cache(maxsize=1)
def _head_revision():
    from alembic.script import ScriptDirectory

    from manuscripts_search.store.db import MIGRATIONS_DIR

    try:
        return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    except Exception:  # an installation without the migrations folder: unknown, not unhealthy
        return None


def _index_status(app) -> list[dict]:
    from web.resources import _resources, saved_indexes

    resources = _resources(app)
    loaded = {}
    for space, live in list(resources.live_indexes.items()):
        index = live.current  # the index in service; no file check from a health probe
        # A sharded index reports what it last counted: a probe must not wait on remote shards.
        size = None if index is None else getattr(index, "known_vectors", None)
        loaded[space] = (index is not None, live.reloads, len(index) if size is None and index is not None else size)
    summaries = []
    for saved in saved_indexes(app):
        state = loaded.get(saved.get("space"), (False, 0, None))
        summaries.append({**saved, "loaded": state[0], "reloads": state[1], "loaded_vectors": state[2]})
    return summaries


def _model_loaded(app) -> bool:
    from web.resources import _resources

    return _resources(app).encoder is not None
