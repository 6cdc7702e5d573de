"""A space's index split into shards by canvas, and the shard plan that says which set is live.

A canvas and all its regions land in one shard, chosen by a stable hash of the canvas's row id
(splitmix64, the same on every machine and Python version), so grouping hits by canvas and "more
like this region" never need two shards. Each shard is an ordinary index of any layout, saved
under its own name (``<space>#shard-<i>-of-<n>``), with its own single writer and its own files.

The plan (``<base>.shards.json`` beside the indexes) names the shard count of the live set. It is
the commit point when the count changes: the new set is built beside the old one, the plan is
replaced atomically, and only then are the old files deleted, so readers keep answering from the
old set until the new one is complete. No plan means the space is one index, as before sharding.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .vector_index import IndexReadError, atomic_write, fsync_directory, index_basename

MAX_SHARDS = 1024
PLAN_FORMAT = 1


@dataclass(frozen=True)
class ShardPart:
    """Shard ``number`` (0-based) of a set of ``count``."""

    number: int
    count: int

    def __post_init__(self):
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the number of shards must be between 1 and {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.number < self.count:
            raise ValueError(f"shard {self.number} does not exist in a set of {self.count}")

    def index_name(self, space: str) -> str:
        """The name the shard's index files are saved under (its ``space`` in their metadata)."""
        return f"{space}#shard-{self.number + 1}-of-{self.count}"

    def describe(self) -> str:
        return f"{self.number + 1}/{self.count}"

    def holds(self, canvas_ids: np.ndarray) -> np.ndarray:
        """Which of ``canvas_ids`` belong to this shard: a boolean mask."""
        return shard_numbers(canvas_ids, self.count) == self.number


def all_parts(count: int) -> list[ShardPart]:
    return [ShardPart(number, count) for number in range(count)]


def shard_numbers(canvas_ids, count: int) -> np.ndarray:
    """The shard (0-based) of each canvas id among ``count``: splitmix64 of the id, modulo count.
    A hash, not ``id % count``, so that patterns in how ids are given out (a sequence stepping by
    a fixed increment, blocks cached per session, whole manuscripts deleted) cannot pile canvases
    into some shards."""
    z = np.asarray(canvas_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(count)).astype(np.int64)


# -- the plan --------------------------------------------------------------------------------------

def plan_path(directory: Path, space: str) -> Path:
    return Path(directory) / f"{index_basename(space)}.shards.json"


def read_plan(directory: Path, space: str) -> Optional[dict]:
    """The shard plan of ``space`` (``{"space", "count", ...}``); None when the space is one index.
    Raises IndexReadError for a plan that cannot be read."""
    path = plan_path(directory, space)
    try:
        plan = json.loads(path.read_text())
        if not isinstance(plan, dict) or plan.get("space") != space:
            raise ValueError("it is not the shard plan of this space")
        ShardPart(0, int(plan["count"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IndexReadError(f"the shard plan {path} cannot be read ({error}); run "
                             "`msearch index rebuild --shards N`") from error
    return plan


def shard_count(directory: Path, space: str) -> int:
    """How many shards the live set of ``space`` has (1: one index, no plan)."""
    plan = read_plan(directory, space)
    return int(plan["count"]) if plan else 1


def write_plan(directory: Path, space: str, count: int) -> None:
    """Make the set of ``count`` shards the live one (the commit point); ``count`` 1 removes the
    plan, which makes the single index live again."""
    path = plan_path(directory, space)
    if count == 1:
        path.unlink(missing_ok=True)
    else:
        text = json.dumps({"format": PLAN_FORMAT, "space": space, "count": int(count), "saved_at": time.time()})
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    fsync_directory(Path(directory))


def plan_signature(directory: Path, space: str) -> Optional[tuple]:
    """What changes when the plan is replaced (None when there is none); one ``stat``."""
    try:
        stat = plan_path(directory, space).stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def remove_index_files(directory: Path, name: str) -> int:
    """Delete every file of the saved index ``name`` (any layout, any generation); returns how many."""
    base = index_basename(name)
    removed = 0
    for path in Path(directory).glob(f"{base}.*"):
        if path.name.endswith(".shards.json"):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed
