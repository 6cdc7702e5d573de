"""A reader's handle on the saved index of one space, reopened when a writer saves a new one."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Optional

from .layouts import open_index
from .vector_index import IndexReadError, VectorIndex, index_signature

log = logging.getLogger(__name__)


class LiveIndex:
    """A reader's handle on the saved index of one space, reloaded when the files change on disk.

    ``get()`` costs two ``stat`` calls when nothing changed (at most once per ``check_interval``
    seconds); after a change it opens the new index and swaps it in, while concurrent queries keep
    using the copy they hold. If the new files cannot be read, the previous index stays in service
    and the error is logged (the writer may still be mid-save); with no previous index it raises.
    """

    def __init__(self, directory: Path, space: str, check_interval: float = 1.0,
                 ef_search: Optional[int] = None):
        self.directory = Path(directory)
        self.space = space
        self.check_interval = check_interval
        self.ef_search = ef_search
        self._lock = threading.Lock()
        self._index: Optional[VectorIndex] = None
        self._signature: Optional[tuple] = None
        self._checked_at = 0.0
        self.reloads = 0

    def get(self) -> Optional[VectorIndex]:
        """The current index, or None when none is saved. Raises IndexReadError (see class doc)."""
        now = time.monotonic()
        if self._index is not None and now - self._checked_at < self.check_interval:
            return self._index
        # While one thread loads a new index (seconds for millions of vectors), the others keep
        # answering from the one in service instead of queueing behind the lock.
        if not self._lock.acquire(blocking=self._index is None):
            return self._index
        try:
            return self._refresh(now)
        finally:
            self._lock.release()

    @property
    def current(self) -> Optional[VectorIndex]:
        """The index in service now, without checking the files (None before the first load)."""
        return self._index

    def _refresh(self, now: float) -> Optional[VectorIndex]:
        """Check the files and load them if they changed; the caller holds the lock."""
        self._checked_at = now
        signature = index_signature(self.directory, self.space)
        if signature is None:
            self._index, self._signature = None, None
            return None
        if signature == self._signature and self._index is not None:
            return self._index
        try:
            index = open_index(self.directory, self.space, ef_search=self.ef_search)
        except IndexReadError:
            if self._index is None:
                raise
            log.exception("cannot reload the index of %s; serving the previous one", self.space)
            return self._index
        # Re-stat: if the files changed while loading, the next call loads again.
        after = index_signature(self.directory, self.space)
        self._signature = signature if after == signature else None
        if self._index is not None:
            self.reloads += 1
            log.info("index of %s changed on disk; reloaded (%d vectors)", self.space,
                     len(index) if index else 0)
        self._index = index
        return index
