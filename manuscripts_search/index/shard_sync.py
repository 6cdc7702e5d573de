"""Keep a space's index in step with the database whether it is one index or a set of shards,
and change the number of shards without a moment in which nothing serves.

``sync_space`` is what ``msearch index`` and ``msearch embed`` call: with the live count it syncs
each shard (or the single index); asked for another count it builds the new set beside the old
one, commits the plan, then deletes the old files (:mod:`.shards` explains the plan). Text spaces
stay one index: one vector per search document, small next to an image space's regions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sqlalchemy.orm import Session

from .shards import ShardPart, all_parts, read_plan, remove_index_files, write_plan
from .sync import TEXT_SPACE_PREFIX, SyncReport, rebuild_index, sync_index, verify_index
from .vector_index import IndexParams, IndexReadError, read_metadata


@dataclass
class SpaceReport:
    """The sync of a space: the sum over its shards, and each shard's own report."""

    space: str
    shards: int
    parts: list[SyncReport] = field(default_factory=list)
    resharded_from: Optional[int] = None  # the count before, when it changed

    @property
    def added(self) -> int:
        return sum(part.added for part in self.parts)

    @property
    def removed(self) -> int:
        return sum(part.removed for part in self.parts)

    @property
    def total(self) -> int:
        return sum(part.total for part in self.parts)

    @property
    def rebuilt(self) -> bool:
        return any(part.rebuilt for part in self.parts)

    def as_dict(self) -> dict:
        layouts = sorted({part.layout for part in self.parts if part.layout})
        reasons = [part.reason for part in self.parts if part.reason]
        report = {"space": self.space, "added": self.added, "removed": self.removed, "total": self.total,
                  "rebuilt": self.rebuilt or self.resharded_from is not None,
                  "layout": ", ".join(layouts) or None, "shards": self.shards}
        if reasons:
            report["reason"] = reasons[0]
        if self.shards > 1:
            report["per_shard"] = [part.total for part in self.parts]
        if self.resharded_from is not None:
            report["resharded_from"] = self.resharded_from
        return report


def _parts(count: int) -> list[Optional[ShardPart]]:
    return [None] if count == 1 else list(all_parts(count))


def sync_space(session: Session, index_dir: Path, space: str, shards: Optional[int] = None,
               params: Optional[IndexParams] = None, layout: Optional[str] = None,
               budget_bytes: Optional[int] = None, show_progress: bool = False,
               rebuild: bool = False) -> SpaceReport:
    """Sync (or with ``rebuild``, rebuild) the index of ``space`` as ``shards`` shards (None: as
    many as it has now). Raises ValueError for a text space asked for more than one shard, or a
    shard count out of range."""
    index_dir = Path(index_dir)
    plan = read_plan(index_dir, space)
    current = int(plan["count"]) if plan else 1
    target = current if shards is None else int(shards)
    if target != 1:
        ShardPart(0, target)  # the range check, before any work
        if space.startswith(TEXT_SPACE_PREFIX):
            raise ValueError(f"text space {space!r} is not split into shards (one vector per document: "
                             "it stays one index)")
    report = SpaceReport(space, target, resharded_from=None if target == current else current)
    changing = target != current
    if changing or rebuild:
        layout = layout or _layout_in_use(index_dir, space, current)
        for part in _progress(_parts(target), show_progress and target > 1, space):
            report.parts.append(rebuild_index(session, index_dir, space, params, layout=layout,
                                              budget_bytes=budget_bytes, show_progress=show_progress, part=part))
    else:
        for part in _parts(target):
            report.parts.append(sync_index(session, index_dir, space, params, layout=layout,
                                           budget_bytes=budget_bytes, show_progress=show_progress, part=part))
    if changing:
        write_plan(index_dir, space, target)  # the commit point: readers move to the new set
        for part in _parts(current):  # nobody reads the old set any more (mapped pages stay valid)
            remove_index_files(index_dir, part.index_name(space) if part else space)
    return report


def _layout_in_use(index_dir: Path, space: str, count: int) -> str:
    """The layout the live set was built with (a re-shard keeps it); ``auto`` when unknown."""
    first = _parts(count)[0]
    try:
        meta = read_metadata(index_dir, first.index_name(space) if first else space)
    except IndexReadError:
        meta = None
    return str((meta or {}).get("layout") or "auto")


def _progress(parts, enabled: bool, space: str):
    from tqdm import tqdm

    return tqdm(parts, unit="shard", desc=f"building shards of {space}", disable=not enabled, leave=False)


def verify_space(session: Session, index_dir: Path, space: str, deep: bool = False) -> dict:
    """:func:`.sync.verify_index` for every shard of ``space``, as one result: ``ok`` when every
    shard matches its part of the database (a vector in the wrong shard counts as missing from
    one and extra in the other)."""
    plan = read_plan(index_dir, space)
    count = int(plan["count"]) if plan else 1
    results = [verify_index(session, index_dir, space, deep=deep, part=part) for part in _parts(count)]
    if count == 1:
        return {**results[0], "shards": 1}
    combined = {"space": space, "shards": count, "index_present": all(r["index_present"] for r in results),
                "layout": ", ".join(sorted({r["layout"] for r in results if r["layout"]})) or None}
    for key in ("missing_from_index", "extra_in_index", "mismatched_vectors"):
        combined[key] = sorted(label for r in results for label in r[key])[:100]
    for key in ("missing_count", "extra_count", "deleted_in_index", "mismatched_count"):
        combined[key] = sum(r[key] for r in results)
    if deep:
        combined["vectors_checked"] = sum(r.get("vectors_checked", 0) for r in results)
    combined["problems"] = [f"shard {r['shard']}: {problem}" for r in results for problem in r["problems"]]
    combined["per_shard"] = [{key: r[key] for key in ("shard", "ok", "missing_count", "extra_count")}
                             for r in results]
    combined["ok"] = all(r["ok"] for r in results)
    return combined
