"""A real PostgreSQL server for the tests.

If MSEARCH_TEST_PG_URL is set (an existing server), it is used. Otherwise a throw-away cluster is
made with initdb in a temporary directory, started on a free port on 127.0.0.1, and stopped at the
end of the session. PostgreSQL refuses to run as root, so as root the cluster runs as the
``postgres`` system user.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]


def _pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "postgres").exists():
            return candidate
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found: install postgresql-15 "
                       "(make setup-test does) or set MSEARCH_TEST_PG_URL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TempPostgres:
    def __init__(self):
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="msearch-pg-"))
        self.port = _free_port()
        self.as_user = None
        if os.geteuid() == 0:
            self.as_user = "postgres"
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = list(args)
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--"] + command
        return subprocess.run(command, check=check, capture_output=True, text=True, cwd="/tmp")

    def start(self) -> str:
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "msearch", "--auth=trust",
                  "-E", "UTF8", "--locale=C.UTF-8")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off", "start")
        return f"postgresql+psycopg://msearch@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w",
                  "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def halt(self, mode: str = "immediate") -> None:
        """Stop the server but keep its data, as an outage would (``immediate``: no shutdown
        checkpoint, clients cut off)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Start the server again on its data and port after :meth:`halt`."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off", "start")


@pytest.fixture(scope="session")
def postgres_server_url():
    """URL of a PostgreSQL server's maintenance database (``postgres``)."""
    existing = os.environ.get("MSEARCH_TEST_PG_URL")
    if existing:
        yield existing
        return
    server = TempPostgres()
    try:
        url = server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        raise RuntimeError(f"could not start a test PostgreSQL: {exc.stderr or exc.stdout}") from None
    yield url
    server.stop()


@pytest.fixture
def postgres_url(postgres_server_url):
    """A fresh, empty database on the test server for one test; dropped afterwards."""
    import sqlalchemy

    name = f"msearch_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    base = postgres_server_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()
