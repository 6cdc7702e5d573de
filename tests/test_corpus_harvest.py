"""Every v2/v3 manifest of the shared real-world corpus goes through `msearch harvest` as a local
file: each is stored with its canvases, or recorded with a clear error (two files are not
manifests); one bad file never stops the run."""
from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from manuscripts_search.cli import cli

CORPUS = Path(os.environ.get("MSEARCH_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus" / "iiif")
NOT_MANIFESTS = {"mirador__broken.json", "parser__europeana-canvas.json"}


def test_corpus_manifests_harvest_or_record_errors(msearch_env):
    files = sorted(list((CORPUS / "v2").glob("*.json")) + list((CORPUS / "v3").glob("*.json")))
    assert len(files) > 100, f"corpus not found at {CORPUS}"
    env = msearch_env
    runner = CliRunner()
    result = runner.invoke(cli, ["harvest", "--no-images", "--json", *map(str, files)], env=env,
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    failed = {Path(f["url"]).name: f["reason"] for f in report["failures"]}
    assert set(failed) == NOT_MANIFESTS, failed
    assert all(reason.strip() for reason in failed.values())

    rows = [json.loads(line) for line in
            runner.invoke(cli, ["manifests", "--json"], env=env).stdout.splitlines()]
    by_file = {Path(r["url"]).name: r for r in rows}
    assert set(by_file) == {f.name for f in files}  # every file accounted for, once
    for name, row in by_file.items():
        if name in NOT_MANIFESTS:
            assert row["error"] and row["canvas_count"] == 0
        else:
            assert row["error"] is None, (name, row["error"])
            assert row["iiif_version"] in (1, 2, 3)
            assert 0 <= row["image_canvas_count"] <= row["canvas_count"]
    stats = json.loads(runner.invoke(cli, ["stats", "--json"], env=env).stdout)
    assert stats["manifests_with_errors"] == 2
    assert stats["canvases"] == sum(r["canvas_count"] for r in rows)
