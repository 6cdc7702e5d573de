"""Failures of the machine rather than of the input: a full or read-only disk, a directory this
user may not write, a database that goes away. Each becomes one clear message that says what to
do; the work finished before it is kept (every stage commits as it goes), so running the same
command again resumes.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Optional

from .redact import redact

# Errors of our own storage, as opposed to a bad file from somewhere else.
STORAGE_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG})
RESUME_HINT = "work finished so far is kept: run the same command again to resume"


class StorageError(RuntimeError):
    """A local directory cannot be written (read-only, full, no permission); the message names
    it, says why, and what to do."""


def describe_os_error(error: OSError, path: Optional[Path] = None) -> str:
    """A short, human reason for ``error`` on ``path`` (e.g. "read-only file system")."""
    where = path or (Path(error.filename) if getattr(error, "filename", None) else None)
    reason = {errno.EROFS: "it is on a read-only file system",
              errno.ENOSPC: "the disk is full (no space left on device)",
              errno.EDQUOT: "the disk quota is exhausted",
              errno.EFBIG: "the file size limit was reached",
              errno.EACCES: f"this user (uid {os.getuid()}) may not write there" if hasattr(os, "getuid")
              else "permission denied",
              errno.EPERM: "the operation is not permitted there"}.get(error.errno, error.strerror or str(error))
    return f"cannot write to {where}: {reason}" if where else f"cannot write: {reason}"


def storage_error(error: OSError, path: Optional[Path] = None, what: str = "") -> StorageError:
    """The StorageError for an OSError raised while writing our own files."""
    prefix = f"{what}: " if what else ""
    return StorageError(f"{prefix}{describe_os_error(error, path)}. Free some space or fix the permissions "
                        f"(or point MSEARCH_DATA_DIR elsewhere); {RESUME_HINT}.")


def is_storage_failure(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


def check_writable_directory(directory: Path, what: str = "the data directory") -> None:
    """Create ``directory`` if needed and prove that a file can be written, synced and removed
    there. Raises StorageError with the reason (read-only, full, permissions)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".msearch-write-check-")
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        raise storage_error(error, directory, what) from None


def describe_database_error(error: BaseException, db_url: Optional[str] = None) -> str:
    """A one-paragraph message for a database failure in the middle of a command (the server went
    away, the disk under SQLite filled up), without the password of ``db_url``."""
    password = None
    url_text = ""
    if db_url:
        try:
            from sqlalchemy.engine import make_url

            parsed = make_url(db_url)
            password = parsed.password
            url_text = f" {parsed.render_as_string(hide_password=True)}"
        except Exception:  # an unparsable URL: show none of it
            url_text = ""
    original = getattr(error, "orig", None) or error
    first_line = (str(original).strip().splitlines() or [error.__class__.__name__])[0][:300]
    hint = ("check that the database server is running and reachable" if "sqlite" not in url_text
            else "check the disk holding the database file (space, permissions)")
    if "disk is full" in first_line or "database or disk is full" in first_line:
        hint = "free some disk space"
    return redact(f"the database{url_text} failed: {first_line} — {hint}; {RESUME_HINT}.", [password])


def is_database_outage(error: BaseException) -> bool:
    """Whether a database error comes from the server or the disk under it (gone, unreachable,
    full, read-only) rather than from what we asked it to store: such errors end the command
    (resumable) instead of being recorded against one document."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (OperationalError, InterfaceError))
