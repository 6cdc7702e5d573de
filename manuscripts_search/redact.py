"""Keeping secrets (database passwords, the admin token) out of messages and logs.

Secrets come only from the environment or config files; anything that turns an exception or a
URL into text for a user or a log line passes it through :func:`redact` first.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional

MASK = "***"
# scheme://user:password@host — the password part of any URL-like text.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<password>[^@\s/]+)(?=@)")
# password=... in libpq connection strings and query parameters.
_KEY_VALUE_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<password>'[^']*'|\"[^\"]*\"|[^\s&;]+)",
                                 re.IGNORECASE)


def database_password(db_url: Optional[str]) -> Optional[str]:
    """The password in a database URL (None when it has none or cannot be parsed)."""
    if not db_url:
        return None
    try:
        from sqlalchemy.engine import make_url

        return make_url(db_url).password or None
    except Exception:  # an unparsable URL: the regular expressions below still mask it
        return None


def redact(text: str, secrets: Iterable[Optional[str]] = ()) -> str:
    """``text`` with URL passwords, ``password=`` values and each of ``secrets`` (literal strings,
    also in their URL-encoded form) replaced by ``***``."""
    from urllib.parse import quote

    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _KEY_VALUE_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for secret in secrets:
        if secret and len(secret) >= 4:  # masking "a" would garble every message
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, MASK)
    return text


_LOG_SECRETS: set[str] = set()
_previous_factory = None


def protect_in_logs(*secrets: Optional[str]) -> None:
    """Mask ``secrets`` (and any URL password) in every log record this process creates from
    now on, whichever logger or handler deals with it: the message and its formatted traceback
    are redacted when the record is made. Idempotent; each call adds secrets."""
    import logging

    global _previous_factory
    _LOG_SECRETS.update(s for s in secrets if s)
    if _previous_factory is None:
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_redacting_record_factory)


def _redacting_record_factory(*args, **kwargs):
    import logging

    record = _previous_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # mismatched arguments: logging reports that itself when it formats
        return record
    cleaned = redact(message, _LOG_SECRETS)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        # Handlers reuse exc_text when it is set, so the raw traceback is never formatted.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info), _LOG_SECRETS)
    return record
