"""Who may change things: reading and searching are public; admin actions need the token from
MSEARCH_ADMIN_TOKEN (or the app setting ADMIN_TOKEN), given once on the login form (then a
signed session cookie) or per request as ``Authorization: Bearer <token>`` for the JSON API.

Forms that change state carry a per-session CSRF token, checked on every POST to a form route.
The admin token is never logged, never put in a URL and never echoed; with no token configured
admin actions are refused (403) with a message saying how to enable them.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import wraps
from typing import Optional

from flask import Flask, current_app, request, session

from .errors import AppError

_CSRF_KEY = "csrf_token"
_ADMIN_KEY = "admin"
NO_TOKEN_MESSAGE = ("Admin actions are disabled: set MSEARCH_ADMIN_TOKEN to a long random string "
                    "in the server's environment, restart it, and log in with that token.")


def init_app(app: Flask) -> None:
    token = admin_token(app)
    if not app.config.get("SECRET_KEY"):
        # Derived from the admin token so that every worker process signs sessions alike and a
        # new token logs everybody out; without a token, sessions only carry CSRF tokens.
        app.config["SECRET_KEY"] = (hashlib.sha256(b"msearch-session\0" + token.encode()).hexdigest()
                                    if token else secrets.token_hex(32))
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["is_admin"] = is_admin


def admin_token(app: Optional[Flask] = None) -> Optional[str]:
    app = app or current_app
    token = app.config.get("ADMIN_TOKEN") or getattr(app.config.get("MSEARCH_CONFIG"), "admin_token", None) or None
    return token if token and token.strip() else None


def token_matches(given: Optional[str]) -> bool:
    token = admin_token()
    if not token or not given:
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.strip().encode("utf-8"))


def is_admin() -> bool:
    """Whether this request is authenticated: a bearer token, or a logged-in session."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return token_matches(header[7:])
    return bool(session.get(_ADMIN_KEY)) and admin_token() is not None


def log_in(given: str) -> None:
    """Start an admin session; AppError 403 for a wrong token (or none configured)."""
    if admin_token() is None:
        raise AppError(NO_TOKEN_MESSAGE, 403)
    if not token_matches(given):
        raise AppError("That token is not the admin token.", 403)
    session.clear()
    session[_ADMIN_KEY] = True
    session[_CSRF_KEY] = secrets.token_urlsafe(32)  # a new session, a new CSRF token


def log_out() -> None:
    session.clear()


def require_admin(view):
    """Refuse the view (401, or 403 when admin is disabled) unless the request is authenticated."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if admin_token() is None:
            raise AppError(NO_TOKEN_MESSAGE, 403)
        if request.args.get("token") or request.args.get("admin_token"):
            raise AppError("Never put the admin token in a URL (it ends up in logs and histories); "
                           "use the login form or an Authorization: Bearer header.", 400)
        if not is_admin():
            raise AppError("Log in as an administrator first (admin token).", 401)
        return view(*args, **kwargs)
    return wrapped


def csrf_token() -> str:
    """This session's CSRF token, created on first use (templates put it in every POST form)."""
    if _CSRF_KEY not in session:
        session[_CSRF_KEY] = secrets.token_urlsafe(32)
    return session[_CSRF_KEY]


def check_csrf() -> None:
    """AppError 400 unless the form's ``csrf_token`` matches the session's."""
    expected = session.get(_CSRF_KEY)
    given = request.form.get("csrf_token", "")
    if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise AppError("The form has expired or did not come from this site (CSRF check failed): "
                       "reload the page and try again.", 400)
