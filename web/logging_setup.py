"""Request ids and structured (JSON, one object per line) logs for the web app.

Every request gets an id: the caller's ``X-Request-ID`` when it is a short token (a proxy's
trace id), else a fresh one. It is echoed in the response's ``X-Request-ID`` header, attached to
every log record written while the request runs (``request_id``), and to one access record per
request (logger ``msearch.access``: method, path, status, duration, bytes, client). Query
strings are not logged: they hold what people search for.

Secrets never reach a log line: the admin token and the database password are masked in every
record the process creates, whatever logger wrote it (:func:`manuscripts_search.redact.protect_in_logs`).

``init_app(app)`` installs the per-request part. The JSON handler on the root logger is installed
once per process, unless ``LOG_FORMAT`` (or MSEARCH_LOG_FORMAT) is ``text`` or the app is under
test; ``LOG_LEVEL`` (MSEARCH_LOG_LEVEL) sets the level, default INFO.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Optional

from flask import Flask, g, has_request_context, request

from manuscripts_search.redact import database_password, protect_in_logs

access_log = logging.getLogger("msearch.access")

_INCOMING_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
# LogRecord attributes that are not "extra" fields.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_HANDLER_NAME = "msearch-json"
_EXTENSION = "msearch.logging"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, request_id, any ``extra`` fields,
    and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                 "request_id": getattr(record, "request_id", None) or _current_request_id()}
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and name not in entry and not name.startswith("_"):
                entry[name] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _current_request_id() or "-"
        return True


def _current_request_id() -> Optional[str]:
    if has_request_context():
        return g.get("request_id")
    return None


def configure_logging(fmt: str = "json", level: str = "INFO", stream=None) -> logging.Handler:
    """Install (once per process) a root handler writing ``fmt`` ("json" or "text") records with
    request ids, replacing plain stderr/stdout handlers (gunicorn's, basicConfig's), which would
    print every record twice. Returns the handler. Raises ValueError for an unknown format or level."""
    if fmt not in ("json", "text"):
        raise ValueError(f"MSEARCH_LOG_FORMAT must be json or text, not {fmt!r}")
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"MSEARCH_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.get_name() == _HANDLER_NAME:
            return handler
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    handler.addFilter(RequestIdFilter())
    for other in list(root.handlers):
        if isinstance(other, logging.StreamHandler) and other.stream in (sys.stderr, sys.stdout):
            root.removeHandler(other)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    return handler


def app_secrets(app: Flask) -> list[str]:
    """The secrets this app knows: the admin token and the database password."""
    config = app.config.get("MSEARCH_CONFIG")
    token = app.config.get("ADMIN_TOKEN") or getattr(config, "admin_token", None)
    return [s for s in (token, database_password(getattr(config, "db_url", None))) if s]


def init_app(app: Flask) -> None:
    """Request ids, access records and secret masking for ``app`` (see the module doc).
    Raises ValueError for a bad LOG_FORMAT / LOG_LEVEL."""
    settings = app.config.get("MSEARCH_CONFIG")
    fmt = app.config.get("LOG_FORMAT") or getattr(settings, "log_format", None) or "json"
    level = app.config.get("LOG_LEVEL") or getattr(settings, "log_level", None) or "INFO"
    protect_in_logs(*app_secrets(app))
    if not app.testing and app.config.get("LOG_CONFIGURE", True):
        configure_logging(fmt, level)
    if not app.extensions.get(_EXTENSION):  # idempotent: hooks registered once per app
        app.extensions[_EXTENSION] = True
        app.before_request(_start_request)
        app.after_request(_finish_request)


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _INCOMING_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish_request(response):
    request_id = g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started else None
    if request.path != "/healthz":  # probes every few seconds would drown the real traffic
        access_log.info("%s %s %s", request.method, request.path, response.status_code,
                        extra={"method": request.method, "path": request.path, "status": response.status_code,
                               "duration_ms": duration_ms, "bytes": response.calculate_content_length(),
                               "client": request.remote_addr, "request_id": request_id})
    return response
