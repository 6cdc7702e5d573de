"""The child process of an admin-started harvest (see :mod:`web.harvest_jobs`): runs each step
as ``msearch <step>`` and records how it went. Usage: ``python -m web.harvest_job_runner DIR ID``."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from web.harvest_jobs import _now, write_record


def _command(step: str, url: str) -> list[str]:
    # Not "-m manuscripts_search.cli": run as __main__, the module would be a second copy with
    # none of the commands registered on it.
    base = [sys.executable, "-c", "import sys; from manuscripts_search.cli import main; sys.exit(main(sys.argv[1:]))"]
    if step == "harvest":
        return base + ["harvest", url, "--no-progress"]
    return base + [step]


def main(argv: list[str]) -> int:
    import json

    directory, job_id = Path(argv[0]), argv[1]
    record = json.loads((directory / f"{job_id}.json").read_text())
    record["status"] = "running"
    write_record(directory, record)
    status = "finished"
    for step in record["steps"]:
        started = time.monotonic()
        print(f"== msearch {step}", flush=True)
        code = subprocess.call(_command(step, record["url"]), stdin=subprocess.DEVNULL)
        record["results"].append({"step": step, "exit_code": code, "seconds": round(time.monotonic() - started, 1)})
        write_record(directory, record)
        if code != 0:
            status = "failed"
            break
    record["status"], record["finished_at"] = status, _now()
    write_record(directory, record)
    return 0 if status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
