"""One error type for everything a user can get wrong, rendered as JSON under /api and as a page
elsewhere. Real bugs still become 500s (logged with their traceback), in the same two shapes."""
from __future__ import annotations

import logging
from typing import Optional

from flask import Flask, current_app, jsonify, render_template, request
from sqlalchemy.exc import OperationalError, ProgrammingError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


class AppError(Exception):
    """A request that cannot be answered: ``message`` is shown to the user, ``status`` is the
    HTTP status (400 bad input, 404 unknown thing, 503 not ready yet)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def wants_json() -> bool:
    path = request.path
    return (path == "/api" or path.startswith("/api/") or path.startswith("/iiif/")) and path != "/api/docs"


def render_error(message: str, status: int, title: Optional[str] = None):
    if wants_json():
        return jsonify({"error": {"status": status, "message": message}}), status
    # Keep the user's words in the header search box so that a rejected query can be fixed.
    return render_template("error.html", message=message, status=status,
                           title=title or _TITLES.get(status, "Error"),
                           query=request.args.get("q", "")[:1000]), status


_TITLES = {400: "Bad request", 401: "Log in first", 403: "Not allowed", 404: "Not found",
           405: "Method not allowed", 413: "Too large", 500: "Internal error", 503: "Not ready yet"}


def _on_app_error(error: AppError):
    return render_error(error.message, error.status)


def _on_http_error(error: HTTPException):
    if isinstance(error, InternalServerError):
        return _on_internal_error(error)
    if error.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        return render_error(f"The upload is too large: at most {limit // (1024 * 1024)} MB per request.", 413)
    return render_error(error.description or error.name, error.code or 500, error.name)


def _on_internal_error(error: InternalServerError):
    # Flask has already logged the original exception with its traceback.
    return render_error("Something went wrong on our side; the error has been logged.", 500)


def _on_database_error(error: Exception):
    # A missing table (schema never migrated) or an unreachable server: an operator's job.
    log.exception("database error while serving %s", request.path)
    return render_error("The database is not available, or its schema is missing or out of date: "
                        "run `msearch init-db` (and check MSEARCH_DB).", 503)


def init_app(app: Flask) -> None:
    app.register_error_handler(AppError, _on_app_error)
    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(OperationalError, _on_database_error)
    app.register_error_handler(ProgrammingError, _on_database_error)
