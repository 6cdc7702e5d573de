"""The machine misbehaving under a real `msearch` process: a read-only data directory, a disk that
fills up mid-run, a PostgreSQL server stopped mid-harvest, and secrets that must not leak into
messages or logs. Each failure is one clear message (no traceback), and running the command again
resumes and completes without duplicates.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from manuscripts_search.cli import cli
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.models import Canvas, Manifest
from tests.helpers.postgres import TempPostgres
from tests.helpers.scripted_server import Reply, ScriptedServer

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "Pg-S3cret-Passw0rd"


def png_bytes(seed: int, size: int = 96) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.effect_noise((size, size), 40 + seed).convert("RGB")  # noise: no two alike, poorly compressible
    image.save(buffer, "PNG")
    return buffer.getvalue()


def serve_library(server: ScriptedServer, manifests: int, canvases: int = 2) -> str:
    """A collection of ``manifests`` manifests whose canvases paint real PNG images."""
    base = server.base_url
    for m in range(manifests):
        items = []
        for c in range(canvases):
            image_path = f"/img/{m}-{c}.png"
            data = png_bytes(m * canvases + c)
            server.add(image_path, lambda _r, data=data: Reply(200, data, {"Content-Type": "image/png"}))
            items.append({"id": f"{base}/m/{m}/c{c}", "type": "Canvas", "width": 96, "height": 96,
                          "items": [{"id": f"{base}/m/{m}/p{c}", "type": "AnnotationPage", "items": [{
                              "id": f"{base}/m/{m}/a{c}", "type": "Annotation", "motivation": "painting",
                              "target": f"{base}/m/{m}/c{c}",
                              "body": {"id": base + image_path, "type": "Image", "format": "image/png"}}]}]})
        server.add_json(f"/m/{m}.json", {"@context": "http://iiif.io/api/presentation/3/context.json",
                                         "id": f"{base}/m/{m}.json", "type": "Manifest",
                                         "label": {"en": [f"volume {m}"]}, "items": items})
    return server.add_json("/collection.json", {
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/collection.json",
        "type": "Collection", "label": {"en": ["library"]},
        "items": [{"id": f"{base}/m/{m}.json", "type": "Manifest"} for m in range(manifests)]})


def msearch(env: dict, *args: str, limit_file_bytes: int | None = None) -> subprocess.Popen:
    """A real `msearch` process; ``limit_file_bytes`` caps the size of any file it writes (a disk
    that fills up: writes past the cap fail with EFBIG, as they would with ENOSPC)."""
    def limit():  # runs in the child before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    entry = "import sys; from manuscripts_search.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", entry, *args], cwd=REPO,
                            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit if limit_file_bytes else None)


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def catalogue_counts(db_url: str) -> tuple[int, int, int, int]:
    """(manifests, distinct manifest URLs, canvases, canvases with a derivative)."""
    engine = make_engine(db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            return (session.scalar(select(func.count()).select_from(Manifest)),
                    session.scalar(select(func.count(func.distinct(Manifest.url)))),
                    session.scalar(select(func.count()).select_from(Canvas)),
                    session.scalar(select(func.count()).select_from(Canvas)
                                   .where(Canvas.derivative_sha256.is_not(None))))
    finally:
        engine.dispose()


@contextlib.contextmanager
def read_only(directory: Path):
    """Make ``directory`` read-only for this process: a read-only bind mount as root (root ignores
    permission bits), else permission bits."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", str(directory), str(directory)], capture_output=True)
        if mounted.returncode != 0:
            pytest.fail(f"cannot bind-mount {directory} read-only as root: {mounted.stderr.decode()}")
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True, capture_output=True)
            yield
        finally:
            subprocess.run(["umount", str(directory)], check=True, capture_output=True)
    else:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)


def test_read_only_data_dir_is_refused_clearly_then_the_run_resumes(msearch_env, tmp_path):
    data_dir = Path(msearch_env["MSEARCH_DATA_DIR"])
    with ScriptedServer() as server:
        url = serve_library(server, manifests=2)
        with read_only(data_dir):
            code, out, err = finish(msearch(msearch_env, "harvest", "--json", "--no-progress", url))
        assert code == 1, (out, err)
        assert "Traceback" not in err
        assert f"cannot write to {data_dir}" in err
        assert ("read-only file system" in err) or ("may not write" in err)
        assert "run the same command again to resume" in err
        assert server.paths() == [], "nothing was fetched for a run that cannot store anything"
        code, out, err = finish(msearch(msearch_env, "harvest", "--json", "--no-progress", url))
        assert code == 0, err
        assert json.loads(out)["images"]["fetched"] == 4
    assert catalogue_counts(msearch_env["MSEARCH_DB"]) == (2, 2, 4, 4)


@contextlib.contextmanager
def small_disk(directory: Path, size: str):
    """``directory`` on a file system of ``size`` (a tmpfs; needs root). Yields a function that
    grows it to a new size, as freeing space would, keeping the files."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs at {directory}: {mounted.stderr.decode()}")
    try:
        yield lambda new_size: subprocess.run(["mount", "-o", f"remount,size={new_size}", str(directory)],
                                              check=True, capture_output=True)
    finally:
        subprocess.run(["umount", str(directory)], check=True, capture_output=True)


def test_disk_filling_up_mid_harvest_stops_clearly_then_resumes(msearch_env):
    """The data directory is a 160 KB file system: image derivatives fill it part way through.
    As root a real full disk (ENOSPC); otherwise a per-process file size cap (EFBIG)."""
    data_dir = Path(msearch_env["MSEARCH_DATA_DIR"])
    derivatives = data_dir / "derivatives"
    with ScriptedServer() as server, contextlib.ExitStack() as stack:
        url = serve_library(server, manifests=12, canvases=3)
        limit = None
        if os.geteuid() == 0:
            grow = stack.enter_context(small_disk(data_dir, "160k"))
        else:
            limit, grow = 40_000, None
        code, out, err = finish(msearch(msearch_env, "harvest", "--json", "--no-progress", "--workers", "2", url,
                                        limit_file_bytes=limit))
        assert code == 1, (out, err[-2000:])
        assert "Traceback" not in err, err[-3000:]
        if limit is None:
            assert f"saving an image derivative: cannot write to {derivatives}" in err, err
            assert "the disk is full (no space left on device)" in err
            assert 0 < len(list(derivatives.rglob("*"))), "it stopped part way, not before starting"
            grow("64m")
        assert "run the same command again to resume" in err or "cannot open the database" in err, err
        code, out, err = finish(msearch(msearch_env, "harvest", "--json", "--no-progress", url))
        assert code == 0, err[-3000:]
        assert catalogue_counts(msearch_env["MSEARCH_DB"]) == (12, 12, 36, 36)
        assert len([p for p in derivatives.rglob("*") if p.is_file() and not p.name.startswith(".")]) == 36
        assert not [p for p in derivatives.rglob(".tmp-*")], "no half-written files are left behind"


@pytest.mark.postgres
@pytest.mark.own_database
@pytest.mark.slow
def test_postgres_stopped_mid_harvest_then_restarted_resumes_without_duplicates(tmp_path):
    server_pg = TempPostgres()
    try:
        base_url = server_pg.start()
    except subprocess.CalledProcessError as error:
        pytest.fail(f"could not start a PostgreSQL for this test: {error.stderr or error.stdout}")
    try:
        # Trust authentication ignores the password; it is there to prove it never shows.
        db_url = base_url.replace("msearch@", f"msearch:{PASSWORD}@")
        env = {"MSEARCH_DATA_DIR": str(tmp_path / "data"), "MSEARCH_DB": db_url}
        upgrade_database(engine := make_engine(db_url))
        engine.dispose()
        with ScriptedServer(latency=0.05) as server:
            url = serve_library(server, manifests=40, canvases=2)
            process = msearch(env, "harvest", "--json", "--no-progress", "--workers", "2", "--no-images", url)
            deadline = time.monotonic() + 60
            while catalogue_counts(db_url)[0] < 5:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the harvest made no progress"
                time.sleep(0.1)
            server_pg.halt("immediate")
            code, out, err = finish(process)
            assert code == 1, (out, err[-2000:])
            assert "Traceback" not in err, err[-3000:]
            assert "the database postgresql+psycopg://msearch:***@127.0.0.1" in err, err[-2000:]
            assert "database server is running" in err and "run the same command again to resume" in err
            assert PASSWORD not in out + err
            server_pg.restart()
            partial = catalogue_counts(db_url)
            assert 5 <= partial[0] < 40
            code, out, err = finish(msearch(env, "harvest", "--json", "--no-progress", "--no-images", url))
            assert code == 0, err[-3000:]
        assert catalogue_counts(db_url)[:3] == (40, 40, 80)
    finally:
        server_pg.stop()


# -- secrets ----------------------------------------------------------------------------------------------

@pytest.fixture
def refused_port():
    """A port on 127.0.0.1 that refuses connections for the whole test: bound here and never
    listening, so no other process can start listening on it in the meantime."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_database_password_is_hidden_from_cli_errors_and_logs(tmp_path, refused_port):
    db_url = f"postgresql://msearch:{PASSWORD}@127.0.0.1:{refused_port}/msearch"
    result = CliRunner().invoke(cli, ["-vv", "stats", "--json"],
                                env={"MSEARCH_DB": db_url, "MSEARCH_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "cannot open the database postgresql+psycopg://msearch:***@127.0.0.1" in result.output
    assert PASSWORD not in result.output
    assert "Traceback" not in result.output


def test_database_password_is_hidden_from_server_side_errors(postgres_server_url, tmp_path):
    """A real server refusing the connection (no such database): its message, not our URL."""
    server = postgres_server_url.rsplit("/", 1)[0].replace("msearch@", f"msearch:{PASSWORD}@")
    result = CliRunner().invoke(cli, ["stats", "--json"],
                                env={"MSEARCH_DB": f"{server}/no_such_database", "MSEARCH_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "no_such_database" in result.output and "does not exist" in result.output
    assert PASSWORD not in result.output


def test_secrets_never_reach_web_responses_or_logs(tmp_path, caplog, refused_port):
    from web import create_app, health, logging_setup
    from web.database import dispose_engine

    from manuscripts_search.config import load_config

    token = "admin-T0ken-abcdef123456"
    db_url = f"postgresql://msearch:{PASSWORD}@127.0.0.1:{refused_port}/msearch"
    app = create_app(config=load_config({"MSEARCH_DATA_DIR": str(tmp_path), "MSEARCH_DB": db_url}),
                     test_config={"TESTING": True, "ADMIN_TOKEN": token, "PROPAGATE_EXCEPTIONS": False})
    logging_setup.init_app(app)
    if "health" not in app.blueprints:
        app.register_blueprint(health.bp)

    def careless():
        app.logger.warning("debugging: token=%s url=%s", token, db_url)
        raise RuntimeError(f"could not reach {db_url} with {token}")

    app.add_url_rule("/careless", "careless", careless)
    client = app.test_client()
    texts = []
    with caplog.at_level("DEBUG"):
        # The database refuses every connection: pages that need it are 503; the careless view's
        # exception a 500; a wrong admin token a 401 before any database work, the right one 503.
        for method, url, headers, status in (
                ("GET", "/healthz", {}, 503), ("GET", "/manifests", {}, 503), ("GET", "/api/stats", {}, 503),
                ("GET", "/careless", {}, 500),
                ("POST", "/api/admin/sources", {"Authorization": f"Bearer {token}x"}, 401),
                ("POST", "/api/admin/sources", {"Authorization": f"Bearer {token}"}, 503)):
            response = client.open(url, method=method, headers=headers, json={"url": "https://example.org/m"})
            assert response.status_code == status, (method, url, response.status_code)
            texts.append(response.get_data(as_text=True))
    health_body = json.loads(texts[0])
    assert health_body["status"] == "unavailable" and not health_body["database"]["reachable"]
    logged = "\n".join(r.getMessage() + "\n" + (r.exc_text or "") for r in caplog.records)
    assert "could not reach postgresql://msearch:***@127.0.0.1" in logged, "the careless log line was kept, masked"
    for text in texts + [logged, caplog.text]:
        assert PASSWORD not in text
        assert token not in text
    dispose_engine(app)
