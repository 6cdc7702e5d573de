"""Is the Hugging Face hub reachable? Asked once, fast, before loading a model by hub id.

Without the answer, ``from_pretrained`` on a machine with no route to the hub retries for ~25 s
and prints a screenful of warnings before failing; with it, an unreachable hub means loading from
the local cache only (``local_files_only``), which succeeds at once for a cached model and fails
at once, with one clear sentence, for one that is not.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Optional
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 2.0
REMEMBER_S = 300.0  # a reachability answer holds this long (a server retries its model for hours)

_lock = threading.Lock()
_answer: Optional[tuple[float, bool, str]] = None  # (when, reachable, why not)


def hub_status() -> tuple[bool, str]:
    """(reachable, why not): False in offline mode (HF_HUB_OFFLINE, read by huggingface_hub) or
    when the hub's host does not accept a TCP connection within :data:`PROBE_TIMEOUT_S`."""
    global _answer
    with _lock:
        if _answer is not None and time.monotonic() - _answer[0] < REMEMBER_S:
            return _answer[1], _answer[2]
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        reachable, why = False, "offline mode (HF_HUB_OFFLINE) is set"
    else:
        reachable, why = _probe(constants.ENDPOINT)
    with _lock:
        _answer = (time.monotonic(), reachable, why)
    return reachable, why


def forget() -> None:
    """Ask again next time (tests; after the network changed)."""
    global _answer
    with _lock:
        _answer = None


def _probe(endpoint: str) -> tuple[bool, str]:
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list = []

    def connect():  # name resolution can hang too: the whole attempt runs under the deadline
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(error)

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(PROBE_TIMEOUT_S + 0.5)
    if not outcome:
        return False, f"the model hub {host} did not answer within {PROBE_TIMEOUT_S:.0f} s"
    if outcome[0] is not None:
        return False, f"the model hub {host} cannot be reached ({outcome[0].strerror or outcome[0]})"
    return True, ""
