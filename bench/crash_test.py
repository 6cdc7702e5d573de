"""Crash test: SIGKILL `msearch harvest`, `msearch embed`, `msearch index rebuild` and a bare
index-save loop at random moments, restart, and check that nothing was lost or duplicated.

Each trial changes the IIIF library first (new manifests, manifests whose canvases now paint
other images), so every stage has real work when it is killed. Then:

1. the stages before the victim run to completion (so the victim has something to do);
2. the victim runs and is SIGKILLed after a random fraction of its usual duration;
3. the saved indexes must still load (no torn file), before anything repairs them;
4. recovery: harvest, embed (each model), `msearch index` run again, to completion;
5. checks: every served manifest present once with exactly its canvases; every canvas has a
   derivative on disk and exactly one live embedding per model (regions too); no stale vectors
   left; ``msearch index verify`` clean for every space.

The server is a real HTTP server on 127.0.0.1 (tests/helpers/scripted_server.py) serving real PNG
images; the models are tiny CLIP and SigLIP in Hugging Face format, loaded by the real path.

Run: ``.venv/bin/python bench/crash_test.py --trials 50 [--db URL] [--seed 1] [--json out.json]``.
tests/test_crash_recovery.py runs three trials of the same code.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("harvest", "embed-a", "embed-b", "index-rebuild", "index-save")
# Both scripts touch the file named by argv[1] once imported, so a kill lands in the work itself
# rather than in the interpreter's start-up.
_RUN_CLI = ("import json, sys, time\n"
            "from pathlib import Path\n"
            "from manuscripts_search.cli import main\n"
            "Path(sys.argv.pop(1)).touch()\n"
            "timings = {}\n"
            "for name, argv in json.loads(sys.argv[1]):\n"
            "    started = time.monotonic()\n"
            "    code = main(argv)\n"
            "    timings[name] = [code, time.monotonic() - started]\n"
            "    if code:\n"
            "        print(json.dumps(timings)); sys.exit(code)\n"
            "print(json.dumps(timings))\n")
_SAVE_LOOP = ("import sys\n"
              "from pathlib import Path\n"
              "from manuscripts_search.index.layouts import open_index\n"
              "import hnswlib\n"
              "Path(sys.argv.pop(1)).touch()\n"
              "directory, spaces = Path(sys.argv[1]), sys.argv[2:]\n"
              "while True:\n"
              "    for space in spaces:\n"
              "        index = open_index(directory, space)\n"
              "        if index is not None:\n"
              "            index.save(directory)\n")


def png(seed: int, size: int = 64) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((size, size), 20 + seed % 200).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


class Library:
    """IIIF manifests served over HTTP; ``versions[m]`` is how often manifest m's images changed."""

    def __init__(self, server, canvases: int = 3):
        self.server = server
        self.canvases = canvases
        self.versions: dict[int, int] = {}

    @property
    def collection_url(self) -> str:
        return self.server.url("/collection.json")

    def manifest_url(self, m: int) -> str:
        return self.server.url(f"/m/{m}.json")

    def canvas_ids(self, m: int) -> set[str]:
        return {f"{self.server.base_url}/m/{m}/c{c}" for c in range(self.canvases)}

    def expected(self) -> dict[str, set[str]]:
        """What the catalogue must hold: canvas ids by manifest URL."""
        return {self.manifest_url(m): self.canvas_ids(m) for m in self.versions}

    def publish(self, m: int) -> None:
        from tests.helpers.scripted_server import Reply

        base, version = self.server.base_url, self.versions[m]
        items = []
        for c in range(self.canvases):
            path = f"/img/{m}-{c}-v{version}.png"
            data = png(m * 1000 + c * 10 + version)
            self.server.add(path, lambda _r, data=data: Reply(200, data, {"Content-Type": "image/png"}))
            items.append({"id": f"{base}/m/{m}/c{c}", "type": "Canvas", "width": 64, "height": 64,
                          "items": [{"id": f"{base}/m/{m}/p{c}", "type": "AnnotationPage", "items": [{
                              "id": f"{base}/m/{m}/a{c}", "type": "Annotation", "motivation": "painting",
                              "target": f"{base}/m/{m}/c{c}",
                              "body": {"id": base + path, "type": "Image", "format": "image/png",
                                       "width": 64, "height": 64}}]}]})
        self.server.add_json(f"/m/{m}.json", {"@context": "http://iiif.io/api/presentation/3/context.json",
                                              "id": self.manifest_url(m), "type": "Manifest",
                                              "label": {"en": [f"volume {m} (v{version})"]}, "items": items})

    def publish_collection(self) -> None:
        self.server.add_json("/collection.json", {
            "@context": "http://iiif.io/api/presentation/3/context.json", "id": self.collection_url,
            "type": "Collection", "label": {"en": ["crash-test library"]},
            "items": [{"id": self.manifest_url(m), "type": "Manifest"} for m in sorted(self.versions)]})

    def grow(self, rng: random.Random, new: int, changed: int) -> None:
        """``new`` more manifests, and ``changed`` existing ones whose images change."""
        for m in rng.sample(sorted(self.versions), min(changed, len(self.versions))):
            self.versions[m] += 1
            self.publish(m)
        start = max(self.versions, default=-1) + 1
        for m in range(start, start + new):
            self.versions[m] = 0
            self.publish(m)
        self.publish_collection()


@dataclass
class CrashTest:
    workdir: Path
    db_url: str
    model_a: Path
    model_b: Path
    seed: int = 0
    verbose: bool = True
    durations: dict = field(default_factory=lambda: {s: 4.0 for s in STAGES})
    outcomes: list = field(default_factory=list)
    expected: dict = field(default_factory=dict)  # the library's last state, as Library.expected()

    @property
    def env(self) -> dict:
        return {**os.environ, "MSEARCH_DATA_DIR": str(self.workdir / "data"), "MSEARCH_DB": self.db_url,
                "MSEARCH_DEVICE": "cpu", "MSEARCH_ALLOW_HOSTS": "127.0.0.1", "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}

    @property
    def index_dir(self) -> Path:
        return self.workdir / "data" / "index"

    def commands(self, library: Library) -> dict[str, list[str]]:
        return {"harvest": ["harvest", "--json", "--no-progress", "--workers", "4", library.collection_url],
                "embed-a": ["--model", str(self.model_a), "embed", "--json", "--no-progress", "--no-fallback",
                            "--batch-size", "8"],
                "embed-b": ["--model", str(self.model_b), "embed", "--json", "--no-progress", "--no-fallback",
                            "--batch-size", "8"],
                "index-rebuild": ["index", "rebuild"],
                "index": ["index", "--json", "--no-text"],
                "verify": ["index", "verify", "--json"]}

    # -- processes ---------------------------------------------------------------------------------

    def run_cli(self, steps: list[tuple[str, list[str]]], kill_after: Optional[float] = None) -> dict:
        """Run ``steps`` (name, argv) in one fresh `msearch` process; with ``kill_after``, SIGKILL
        it after that many seconds. Returns {"killed", "code", "timings", "stderr"}."""
        ready = self._ready_file()
        process = subprocess.Popen([sys.executable, "-c", _RUN_CLI, str(ready), json.dumps(steps)], cwd=REPO,
                                   env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self._finish(process, kill_after, ready)

    def run_save_loop(self, kill_after: float) -> dict:
        spaces = [self._space_of(path) for path in sorted(self.index_dir.glob("*.json"))]
        ready = self._ready_file()
        process = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(ready), str(self.index_dir),
                                    *[s for s in spaces if s]],
                                   cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self._finish(process, kill_after, ready)

    def _ready_file(self) -> Path:
        path = self.workdir / "ready"
        path.unlink(missing_ok=True)
        return path

    @staticmethod
    def _space_of(meta_path: Path) -> Optional[str]:
        try:
            return json.loads(meta_path.read_text())["space"]
        except (OSError, ValueError, KeyError):
            return None

    @staticmethod
    def _finish(process, kill_after: Optional[float], ready: Path) -> dict:
        killed = False
        if kill_after is not None:
            deadline = time.monotonic() + 120
            while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            try:
                process.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                killed = True
        out, err = process.communicate(timeout=600)
        timings = {}
        for line in reversed(out.splitlines()):
            if line.startswith("{") and not killed:
                try:
                    timings = json.loads(line)
                    break
                except ValueError:
                    continue
        return {"killed": killed, "code": process.returncode, "timings": timings, "stderr": err[-3000:]}

    # -- one trial ---------------------------------------------------------------------------------

    def trial(self, number: int, library: Library, rng: random.Random, victim: str) -> dict:
        library.grow(rng, new=rng.randint(1, 3), changed=rng.randint(0, 2))
        commands = self.commands(library)
        order = ["harvest", "embed-a", "embed-b", "index-rebuild"]
        before = order[:order.index(victim)] if victim in order else order
        if before:
            prepared = self.run_cli([(name, commands[name]) for name in before])
            if prepared["code"] != 0:
                raise RuntimeError(f"trial {number}: preparing {before} failed: {prepared['stderr']}")
            self._learn(prepared["timings"])
        fraction = rng.uniform(0.05, 1.0)
        kill_after = fraction * self.durations[victim]
        if victim == "index-save":
            victim_run = self.run_save_loop(kill_after)
        else:
            victim_run = self.run_cli([(victim, commands[victim])], kill_after=kill_after)
            if not victim_run["killed"]:
                self._learn(victim_run["timings"])
        torn = self.torn_indexes()
        # One fresh process restarts every stage, then verifies (one interpreter start, not five).
        recovery = self.run_cli([(name, commands[name]) for name in ("harvest", "embed-a", "embed-b", "index",
                                                                       "verify")])
        problems = []
        verified = recovery["timings"].get("verify", [None])[0]
        if recovery["code"] != 0 and verified is None:
            problems.append(f"recovery failed (exit {recovery['code']}): {recovery['stderr'][-1500:]}")
        else:
            self._learn(recovery["timings"])
        if verified not in (0, None) or (verified is None and recovery["code"] == 0):
            problems.append(f"msearch index verify failed: {recovery['stderr'][-1500:]}")
        problems += [f"index unreadable right after the kill: {t}" for t in torn]
        self.expected = library.expected()
        problems += self.check(self.expected)
        outcome = {"trial": number, "victim": victim, "kill_after_s": round(kill_after, 2),
                   "killed": victim_run["killed"], "victim_exit": victim_run["code"], "problems": problems}
        if self.verbose:
            state = "killed" if victim_run["killed"] else "finished before the kill"
            print(f"trial {number:3d}: {victim:<13} {state} at {kill_after:5.2f} s → "
                  + ("ok" if not problems else "PROBLEMS: " + "; ".join(problems)), flush=True)
        return outcome

    def _learn(self, timings: dict) -> None:
        for name, (code, seconds) in timings.items():
            if code == 0 and name in self.durations:
                self.durations[name] = 0.5 * self.durations[name] + 0.5 * seconds
        self.durations["index-save"] = max(0.5, 0.5 * self.durations.get("index-rebuild", 2.0))

    # -- checks ------------------------------------------------------------------------------------

    def torn_indexes(self) -> list[str]:
        from manuscripts_search.index.layouts import open_index
        from manuscripts_search.index.vector_index import IndexReadError

        torn = []
        for meta in sorted(self.index_dir.glob("*.json")):
            space = self._space_of(meta)
            if space is None:
                torn.append(f"{meta.name}: metadata unreadable")
                continue
            try:
                open_index(self.index_dir, space)
            except IndexReadError as error:
                torn.append(str(error))
        return torn

    def check(self, expected: dict[str, set[str]]) -> list[str]:
        """Problems with the catalogue against ``expected`` (canvas ids by manifest URL)."""
        import sqlalchemy as sa

        from manuscripts_search.store.db import make_engine
        from manuscripts_search.store.derivatives import DerivativeStore
        from manuscripts_search.models import Canvas, Embedding, Manifest, Region

        problems = []
        engine = make_engine(self.db_url)
        store = DerivativeStore(self.workdir / "data" / "derivatives")
        try:
            with engine.connect() as db:
                manifests = db.execute(sa.select(Manifest.id, Manifest.url, Manifest.error)).all()
                urls = [row.url for row in manifests]
                if len(urls) != len(set(urls)):
                    problems.append("a manifest is stored twice")
                missing = set(expected) - set(urls)
                if missing:
                    problems.append(f"{len(missing)} manifest(s) missing, e.g. {sorted(missing)[:2]}")
                failed = [row.url for row in manifests if row.error]
                if failed:
                    problems.append(f"manifests with errors: {failed[:3]}")
                by_manifest: dict[int, list[str]] = {row.id: [] for row in manifests}
                for manifest_id, iiif_id in db.execute(sa.select(Canvas.manifest_id, Canvas.iiif_id)):
                    by_manifest[manifest_id].append(iiif_id)
                for row in manifests:
                    if sorted(by_manifest[row.id]) != sorted(expected.get(row.url, ())):
                        problems.append(f"{row.url} has canvases {sorted(by_manifest[row.id])}")
                canvases = db.execute(sa.select(Canvas.id, Canvas.derivative_sha256)).all()
                no_image = [c.id for c in canvases if not c.derivative_sha256 or not store.has(c.derivative_sha256)]
                if no_image:
                    problems.append(f"{len(no_image)} canvas(es) without a derivative on disk")
                spaces = list(db.scalars(sa.select(Embedding.space).distinct()))
                if len(spaces) != 2:
                    problems.append(f"expected two model spaces, found {spaces}")
                regions = db.execute(sa.select(Region.id).where(Region.derivative_sha256.is_not(None))).scalars().all()
                for space in spaces:
                    rows = db.execute(sa.select(Embedding.canvas_id, Embedding.region_id, Embedding.stale)
                                      .where(Embedding.space == space)).all()
                    live_canvases = [r.canvas_id for r in rows if r.region_id is None and not r.stale]
                    live_regions = [r.region_id for r in rows if r.region_id is not None and not r.stale]
                    stale = [r for r in rows if r.stale]
                    if sorted(live_canvases) != sorted(c.id for c in canvases):
                        problems.append(f"{space}: canvases embedded {len(live_canvases)} times for "
                                        f"{len(canvases)} canvases (distinct {len(set(live_canvases))})")
                    if sorted(live_regions) != sorted(regions):
                        problems.append(f"{space}: {len(live_regions)} region vectors for {len(regions)} regions")
                    if stale:
                        problems.append(f"{space}: {len(stale)} stale vector(s) left after embedding")
        finally:
            engine.dispose()
        return problems

    # -- the run -----------------------------------------------------------------------------------

    def run(self, trials: int) -> dict:
        from tests.helpers.scripted_server import ScriptedServer

        rng = random.Random(self.seed)
        started = time.monotonic()
        with ScriptedServer(latency=0.01) as server:
            library = Library(server)
            library.grow(rng, new=12, changed=0)
            first = self.run_cli([(name, self.commands(library)[name])
                                  for name in ("harvest", "embed-a", "embed-b", "index-rebuild")])
            if first["code"] != 0:
                raise RuntimeError(f"the first, uninterrupted pipeline failed: {first['stderr']}")
            self._learn(first["timings"])
            for number in range(1, trials + 1):
                victim = STAGES[(number - 1) % len(STAGES)] if number <= len(STAGES) else rng.choice(STAGES)
                self.outcomes.append(self.trial(number, library, rng, victim))
            manifests = len(library.versions)
        failed = [o for o in self.outcomes if o["problems"]]
        summary = {"trials": trials, "killed": sum(o["killed"] for o in self.outcomes),
                   "finished_before_kill": sum(not o["killed"] for o in self.outcomes),
                   "by_stage": {s: sum(o["victim"] == s and o["killed"] for o in self.outcomes) for s in STAGES},
                   "failed_trials": len(failed), "manifests_at_end": manifests,
                   "canvases_at_end": manifests * 3, "seconds": round(time.monotonic() - started, 1),
                   "db": self.db_url.split(":", 1)[0], "outcomes": self.outcomes}
        return summary


def build_models(directory: Path) -> tuple[Path, Path]:
    from tests.helpers.model_factory import build_random_clip, build_random_siglip

    return build_random_clip(directory / "clip", seed=1), build_random_siglip(directory / "siglip", seed=2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in the work directory)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="msearch-crash-"))
    model_a, model_b = build_models(workdir / "models")
    db_url = args.db or f"sqlite:///{workdir / 'msearch.sqlite3'}"
    summary = CrashTest(workdir, db_url, model_a, model_b, seed=args.seed).run(args.trials)
    print(f"\n{summary['trials']} trials in {summary['seconds']} s on {summary['db']}: {summary['killed']} "
          f"processes killed mid-run ({summary['by_stage']}), {summary['finished_before_kill']} finished before "
          f"their kill; {summary['failed_trials']} trial(s) with problems; library at the end: "
          f"{summary['manifests_at_end']} manifests, {summary['canvases_at_end']} canvases.")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if summary["failed_trials"] else 0


if __name__ == "__main__":
    sys.exit(main())
