"""Claims with leases: how several ``msearch embed`` processes share one queue of canvases and
regions without embedding any item twice.

A worker claims a handful of pending items at a time by inserting rows into ``embedding_claims``
(one per space and item, unique), leased until a time it keeps extending while it lives. The
claim row is deleted in the same transaction that writes the item's vector, so a crash at any
moment leaves either the vector or the claim, never half of both. A dead worker's claims are taken
over once their lease has run out; a worker on the same host sees at once that the process
holding a claim is gone (its pid no longer runs that program) and takes its claims without waiting.

PostgreSQL: claiming is one short transaction; ``FOR NO KEY UPDATE SKIP LOCKED`` keeps concurrent
claimers off each other's candidates and the unique index settles any race (``ON CONFLICT DO
NOTHING``). Lease times come from the server's clock, so workers on several machines agree.
SQLite: every write transaction starts with ``BEGIN IMMEDIATE``, which serialises writers (waiting
up to the busy timeout), so processes on one machine share the queue safely too.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from .db import dialect_insert, dialect_name, write_transaction
from ..models import Canvas, Embedding, EmbeddingClaim, PerceptualHash, Region
from ..models.base import utcnow

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_RETRY_AFTER_SECONDS = 3600.0  # a failed item waits this long before any worker tries again


class ClaimError(RuntimeError):
    """The database cannot host claims (an unsupported dialect); the message says which."""


@dataclass(frozen=True)
class WorkItem:
    """One claimed canvas (``region_id`` None) or region, and what it still needs."""

    claim_id: int
    canvas_id: int
    region_id: Optional[int]
    derivative_sha256: str
    needs_vector: bool
    needs_hash: bool

    @property
    def kind(self) -> str:
        return "canvas" if self.region_id is None else "region"

    @property
    def item_id(self) -> int:
        return self.canvas_id if self.region_id is None else self.region_id


def _process_start(pid: int) -> Optional[str]:
    """When the process started (Linux /proc ticks since boot); None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def new_worker_id() -> str:
    """``host:pid:start:token``: unique per process, and enough to tell later whether it still runs."""
    return f"{_host()}:{os.getpid()}:{_process_start(os.getpid()) or '-'}:{uuid.uuid4().hex[:8]}"


def _host() -> str:
    return socket.gethostname()[:120] or "localhost"


def worker_is_gone(worker_id: str) -> bool:
    """Whether ``worker_id`` names a process of this host that no longer runs. Workers of other
    hosts (or ids in another form) are never judged gone here: their leases decide."""
    parts = worker_id.split(":")
    if len(parts) != 4 or parts[0] != _host() or not parts[1].isdigit():
        return False
    pid, started = int(parts[1]), parts[2]
    if pid == os.getpid():
        return False
    current_start = _process_start(pid)
    if current_start is not None:
        return started not in ("-", current_start)  # the pid now belongs to another process
    if Path("/proc/self/stat").exists():
        return True  # /proc works here, and has no such pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def database_now(session: Session) -> float:
    """Unix time in seconds: the server's clock on PostgreSQL, this machine's on SQLite."""
    if dialect_name(session) == "postgresql":
        return float(session.scalar(select(func.extract("epoch", func.clock_timestamp()))))
    return time.time()


class _ItemKind:
    """The queries that differ between canvases and regions."""

    def __init__(self, name: str, space: str, hash_algorithm: Optional[str]):
        self.name = name
        self.space = space
        self.hash_algorithm = hash_algorithm
        if name == "canvas":
            self.table, self.canvas_column = Canvas, Canvas.id
            self.vector_match = and_(Embedding.canvas_id == Canvas.id, Embedding.region_id.is_(None))
            self.hash_match = and_(PerceptualHash.canvas_id == Canvas.id, PerceptualHash.region_id.is_(None))
            self.claim_match = and_(EmbeddingClaim.canvas_id == Canvas.id, EmbeddingClaim.region_id.is_(None))
        else:
            self.table, self.canvas_column = Region, Region.canvas_id
            self.vector_match = Embedding.region_id == Region.id
            self.hash_match = PerceptualHash.region_id == Region.id
            self.claim_match = EmbeddingClaim.region_id == Region.id

    def _conditions(self, now: float):
        has_vector = exists().where(self.vector_match, Embedding.space == self.space, Embedding.stale.is_(False))
        has_hash = exists().where(self.hash_match, PerceptualHash.algorithm == self.hash_algorithm,
                                  PerceptualHash.derivative_sha256 == self.table.derivative_sha256)
        blocked = exists().where(self.claim_match, EmbeddingClaim.space == self.space,
                                 EmbeddingClaim.lease_until > now)
        needs_work = ~has_vector | ~has_hash if self.hash_algorithm else ~has_vector
        return has_vector, has_hash, blocked, needs_work

    def candidates(self, session: Session, now: float, after_id: int, limit: int) -> list[tuple]:
        """(id, canvas id, derivative, has vector, has hash) of pending items past ``after_id``."""
        has_vector, has_hash, blocked, needs_work = self._conditions(now)
        query = (select(self.table.id, self.canvas_column, self.table.derivative_sha256, has_vector,
                        has_hash if self.hash_algorithm else has_vector)
                 .where(self.table.derivative_sha256.is_not(None), self.table.id > after_id, needs_work, ~blocked)
                 .order_by(self.table.id).limit(limit))
        if dialect_name(session) == "postgresql":
            query = query.with_for_update(of=self.table, skip_locked=True, key_share=True)
        return list(session.execute(query))

    def count_pending(self, session: Session, now: float) -> int:
        _has_vector, _has_hash, blocked, needs_work = self._conditions(now)
        return int(session.scalar(select(func.count()).select_from(self.table).where(
            self.table.derivative_sha256.is_not(None), needs_work, ~blocked)) or 0)

    def claim_key(self, row) -> dict:
        return {"canvas_id": row[1], "region_id": None} if self.name == "canvas" else \
            {"canvas_id": row[1], "region_id": row[0]}

    def claim_row_match(self, ids: list[int]):
        if self.name == "canvas":
            return and_(EmbeddingClaim.region_id.is_(None), EmbeddingClaim.canvas_id.in_(ids))
        return EmbeddingClaim.region_id.in_(ids)


class ClaimQueue:
    """One worker's view of the shared queue of one embedding space.

    ``hash_algorithm`` set: items whose perceptual hashes are missing or outdated are pending
    too (then only the hash is computed where the vector exists). Not thread-safe: one thread
    claims; :meth:`renew` may run in another (it uses its own session).
    """

    def __init__(self, factory: sessionmaker[Session], space: str, worker_id: Optional[str] = None, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, regions: bool = True,
                 hash_algorithm: Optional[str] = None):
        if lease_seconds <= 0:
            raise ValueError(f"lease must be positive, got {lease_seconds}")
        self.factory = factory
        self.space = space
        self.worker_id = worker_id or new_worker_id()
        self.lease_seconds = float(lease_seconds)
        self.kinds = [_ItemKind("canvas", space, hash_algorithm)]
        if regions:
            self.kinds.append(_ItemKind("region", space, hash_algorithm))
        self._cursor = {kind.name: 0 for kind in self.kinds}
        self._wrapped = {kind.name: False for kind in self.kinds}
        self._exhausted: set[str] = set()

    def count_pending(self) -> dict[str, int]:
        """Items that need work and nobody holds, by kind (a snapshot: others may be claiming)."""
        with self.factory() as session:
            now = database_now(session)
            return {kind.name: kind.count_pending(session, now) for kind in self.kinds}

    def release_gone_workers(self) -> int:
        """Expire the claims of processes of this host that are no longer running; returns how many."""
        with self.factory() as session:
            holders = list(session.scalars(select(EmbeddingClaim.worker_id).distinct().where(
                EmbeddingClaim.worker_id.is_not(None))))
        gone = [holder for holder in holders if worker_is_gone(holder)]
        if not gone:
            return 0
        with write_transaction(self.factory) as session:
            result = session.execute(update(EmbeddingClaim).where(EmbeddingClaim.worker_id.in_(gone))
                                     .values(worker_id=None, lease_until=0.0, updated_at=utcnow()))
            return result.rowcount or 0

    def claim(self, limit: int) -> list[WorkItem]:
        """Claim up to ``limit`` pending items, canvases first; [] when none is left for this run.

        Each kind is scanned once in id order from where the last claim stopped, then once more
        from the start (for items released meanwhile by failed or dead workers).
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        claimed: list[WorkItem] = []
        for kind in self.kinds:
            while len(claimed) < limit and kind.name not in self._exhausted:
                found, taken = self._claim_some(kind, limit - len(claimed))
                claimed += taken
                if found:
                    continue
                if self._wrapped[kind.name] or self._cursor[kind.name] == 0:
                    self._exhausted.add(kind.name)
                else:
                    self._cursor[kind.name], self._wrapped[kind.name] = 0, True
        return claimed

    def _claim_some(self, kind: _ItemKind, limit: int) -> tuple[int, list[WorkItem]]:
        """One transaction: (candidates seen, items claimed)."""
        with write_transaction(self.factory) as session:
            now = database_now(session)
            rows = kind.candidates(session, now, self._cursor[kind.name], limit)
            if not rows:
                return 0, []
            self._cursor[kind.name] = rows[-1][0]
            by_id = {row[0]: row for row in rows}
            lease_until = now + self.lease_seconds
            taken_over = session.execute(
                update(EmbeddingClaim)
                .where(EmbeddingClaim.space == self.space, kind.claim_row_match(list(by_id)),
                       EmbeddingClaim.lease_until <= now)
                .values(worker_id=self.worker_id, lease_until=lease_until, updated_at=utcnow())
                .returning(EmbeddingClaim.id, EmbeddingClaim.canvas_id, EmbeddingClaim.region_id)).all()
            claimed = {(region_id if kind.name == "region" else canvas_id): claim_id
                       for claim_id, canvas_id, region_id in taken_over}
            fresh = [{"space": self.space, **kind.claim_key(row), "worker_id": self.worker_id,
                      "lease_until": lease_until, "attempts": 0, "updated_at": utcnow()}
                     for item_id, row in by_id.items() if item_id not in claimed]
            if fresh:
                statement = dialect_insert(session)(EmbeddingClaim).values(fresh).on_conflict_do_nothing().returning(
                    EmbeddingClaim.id, EmbeddingClaim.canvas_id, EmbeddingClaim.region_id)
                for claim_id, canvas_id, region_id in session.execute(statement):
                    claimed[region_id if kind.name == "region" else canvas_id] = claim_id
            items = []
            for item_id, claim_id in sorted(claimed.items()):
                _id, canvas_id, sha, has_vector, has_hash = by_id[item_id]
                items.append(WorkItem(claim_id=claim_id, canvas_id=canvas_id,
                                      region_id=item_id if kind.name == "region" else None,
                                      derivative_sha256=sha, needs_vector=not has_vector,
                                      needs_hash=kind.hash_algorithm is not None and not has_hash))
            return len(rows), items

    def renew(self) -> int:
        """Extend the lease of every claim this worker holds; returns how many it holds."""
        with write_transaction(self.factory) as session:
            lease_until = database_now(session) + self.lease_seconds
            result = session.execute(update(EmbeddingClaim).where(EmbeddingClaim.worker_id == self.worker_id)
                                     .values(lease_until=lease_until, updated_at=utcnow()))
            return result.rowcount or 0

    def take_ownership(self, session: Session, claim_ids: list[int]) -> set[int]:
        """Delete this worker's claims ``claim_ids`` inside the caller's write transaction; returns
        those it still held (a claim whose lease ran out may have been taken by another worker,
        whose result then counts instead)."""
        if not claim_ids:
            return set()
        return set(session.scalars(delete(EmbeddingClaim).where(
            EmbeddingClaim.id.in_(claim_ids), EmbeddingClaim.worker_id == self.worker_id)
            .returning(EmbeddingClaim.id)))

    def mark_failed(self, session: Session, failures: dict[int, str], retry_after: float) -> None:
        """Give back claims whose item failed: nobody retries them for ``retry_after`` seconds."""
        if not failures:
            return
        retry_at = database_now(session) + retry_after
        for claim_id, reason in failures.items():
            session.execute(update(EmbeddingClaim)
                            .where(EmbeddingClaim.id == claim_id, EmbeddingClaim.worker_id == self.worker_id)
                            .values(worker_id=None, lease_until=retry_at, last_error=reason[:2000],
                                    attempts=EmbeddingClaim.attempts + 1, updated_at=utcnow()))

    def release_all(self) -> int:
        """Give back every claim this worker still holds, at once (an orderly stop)."""
        with write_transaction(self.factory) as session:
            result = session.execute(update(EmbeddingClaim).where(EmbeddingClaim.worker_id == self.worker_id)
                                     .values(worker_id=None, lease_until=0.0, updated_at=utcnow()))
            return result.rowcount or 0


def clear_failures(factory: sessionmaker[Session], space: str) -> int:
    """Make failed items of ``space`` eligible again now (``msearch embed --retry-failed``)."""
    with write_transaction(factory) as session:
        result = session.execute(delete(EmbeddingClaim).where(
            EmbeddingClaim.space == space, EmbeddingClaim.worker_id.is_(None)))
        return result.rowcount or 0


class LeaseKeeper:
    """Extends a worker's leases every third of the lease time while the run lasts (a ``with``
    block): the local pipeline, and the Ray driver, whose actors never renew."""

    def __init__(self, claims: ClaimQueue):
        self.claims = claims
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def _run(self) -> None:
        interval = max(self.claims.lease_seconds / 3, 0.05)
        while not self.done.wait(interval):
            try:
                self.claims.renew()
            except Exception as error:  # noqa: BLE001 - a missed renewal is retried; leases are long
                log.warning("could not extend claim leases: %s", error)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.thread.join()
