"""Harvests started from the admin pages: each runs as its own process (``python -m
web.harvest_job_runner``), which runs ``msearch harvest`` (then ``embed`` and ``index`` when
asked) and records its progress in ``<data dir>/jobs/<id>.json`` with the output in ``<id>.log``.

The web process only starts jobs and reads those files: the writer of the database and the
index is always a separate process, as with the command line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from manuscripts_search.config import child_environment

STEPS = ("harvest", "embed", "index")
MAX_LISTED_JOBS = 50
MAX_LOG_CHARS = 20_000


def jobs_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "jobs"


def start_job(config, url: str, steps: tuple[str, ...]) -> dict:
    """Start a harvest of ``url`` running ``steps`` in a child process; returns the job record."""
    unknown = [step for step in steps if step not in STEPS]
    if unknown or not steps or steps[0] != "harvest":
        raise ValueError(f"steps must start with harvest and be among {', '.join(STEPS)}")
    directory = jobs_dir(config.data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    job_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    record = {"id": job_id, "url": url, "steps": list(steps), "status": "starting",
              "started_at": _now(), "finished_at": None, "results": []}
    write_record(directory, record)
    env = child_environment(MSEARCH_DATA_DIR=str(config.data_dir), MSEARCH_DB=config.db_url,
                            MSEARCH_MODEL=config.model, PYTHONUNBUFFERED="1")
    if config.device:
        env["MSEARCH_DEVICE"] = config.device
    project_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = project_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(directory / f"{job_id}.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "web.harvest_job_runner", str(directory), job_id],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   cwd=project_root, start_new_session=True)
    # A thread waits for the child so that it is reaped (no zombie, no ResourceWarning).
    threading.Thread(target=process.wait, name=f"harvest-job-{job_id}", daemon=True).start()
    record["pid"] = process.pid
    return record


def write_record(directory: Path, record: dict) -> None:
    path = directory / f"{record['id']}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, ensure_ascii=False))
    os.replace(temporary, path)  # readers never see half a file


def read_record(directory: Path, job_id: str) -> Optional[dict]:
    if not job_id.replace("-", "").replace("T", "").isalnum() or len(job_id) > 40:
        return None
    try:
        record = json.loads((directory / f"{job_id}.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        log = (directory / f"{job_id}.log").read_text(errors="replace")
    except OSError:
        log = ""
    record["log_tail"] = log[-MAX_LOG_CHARS:]
    return record


def list_jobs(data_dir: Path) -> list[dict]:
    directory = jobs_dir(data_dir)
    if not directory.is_dir():
        return []
    records = []
    for path in sorted(directory.glob("*.json"), reverse=True)[:MAX_LISTED_JOBS]:
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
