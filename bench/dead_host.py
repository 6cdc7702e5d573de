"""A harvest whose image host is down (issue 15, point 1): ``msearch harvest --timeout T`` of one
manifest of ``--canvases`` canvases (default 40) whose Image API services live on a host that
accepts connections and never answers (``--mode black-hole``) or refuses them (``--mode
refused``); then, with ``--second-run``, the same harvest again once the host answers on the same
port. Prints seconds, requests and what the report says, per run.

Run: ``.venv/bin/python bench/dead_host.py [--mode black-hole|refused] [--canvases 40]
[--timeout 5] [--second-run] [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_harvest(env: dict, manifest_url: str, timeout: float) -> tuple[float, dict]:
    from click.testing import CliRunner

    from manuscripts_search.cli import cli

    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["harvest", manifest_url, "--timeout", str(timeout), "--json"], env=env,
                                catch_exceptions=False)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"harvest failed ({result.exit_code}): {result.output}")
    return elapsed, json.loads(result.stdout)


def summarise(label: str, elapsed: float, report: dict) -> dict:
    images = report.get("images", {})
    row = {"run": label, "seconds": round(elapsed, 1), "requests": report.get("requests"),
           "fetched": images.get("fetched"), "failed": len(images.get("failures", [])),
           "deferred": sum(images.get("deferred", {}).values())}
    print(json.dumps(row))
    return row


def main() -> None:
    from tests.helpers.dead_hosts import BlackHole, RefusingPort, image_host, manifest_on_image_host
    from tests.helpers.scripted_server import ScriptedServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("black-hole", "refused"), default="black-hole")
    parser.add_argument("--canvases", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--second-run", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer() as site:
        env = {"MSEARCH_DATA_DIR": f"{tmp}/data", "MSEARCH_DB": f"sqlite:///{tmp}/msearch.sqlite3",
               "MSEARCH_ALLOW_HOSTS": "127.0.0.1,localhost"}
        down = BlackHole() if args.mode == "black-hole" else RefusingPort()
        port = down.port
        site.add_json("/manifest.json", manifest_on_image_host(site.base_url, down.base_url, args.canvases))
        try:
            rows.append(summarise(args.mode, *run_harvest(env, site.url("/manifest.json"), args.timeout)))
        finally:
            down.close()
        if args.second_run:
            with image_host(port):
                rows.append(summarise("host answers", *run_harvest(env, site.url("/manifest.json"), args.timeout)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
