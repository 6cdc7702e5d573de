"""Real third-party IIIF image servers on 127.0.0.1, started once per test session:

* ``iipsrv_server``: IIPImage (Debian ``iipimage-server``, Image API 2, level 1) as FastCGI
  behind ``lighttpd``, serving pyramidal TIFFs made with libvips (``vips tiffsave --pyramid``);
* ``static_level0_server``: a static level-0 tree (Image API 2.1) written by ``iiif_static.py``
  of the ``iiif`` reference package and served as plain files by the same lighttpd;
* ``iiif_reference_server``: the ``iiif`` reference implementation's ``iiif_testserver.py``
  (Flask, Image API 3.0, level 1).

Each fixture yields a :class:`ImageServer` with the service id of every image and the source
file it was made from, so tests can compare what they fetch with a crop made locally.
Missing binaries are an error with the install hint, not a skip.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.corpus import CORPUS_IMAGES

# Two pages of different shapes and sizes, small enough to keep the session quick.
SOURCE_IMAGES = {"hours": "ms_sbb_hdschr-25_047r_book-of-hours.jpg", "scream": "painting_munch_the-scream.jpg"}
IIPSRV = Path("/usr/lib/iipimage-server/iipsrv.fcgi")
INSTALL_HINT = "install the Debian packages iipimage-server, lighttpd and libvips-tools (make system-deps)"


@dataclass
class ImageServer:
    name: str
    services: dict[str, str]  # image name -> service id (no /info.json)
    sources: dict[str, Path]  # image name -> the original file
    access_log: Path | None = None
    extra: dict = field(default_factory=dict)

    def access_lines(self) -> list[str]:
        return self.access_log.read_text(errors="replace").splitlines() if self.access_log else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s: {last}")


def stop(process: subprocess.Popen) -> None:
    import os
    import signal

    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)  # the server and the FastCGI children it spawned
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _require(*binaries: str) -> None:
    missing = [b for b in binaries if not (Path(b).exists() if b.startswith("/") else shutil.which(b))]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: {INSTALL_HINT}")


@pytest.fixture(scope="session")
def _lighttpd_servers(tmp_path_factory):
    _require("lighttpd", "vips", str(IIPSRV))
    root = tmp_path_factory.mktemp("lighttpd")
    docroot = root / "www"
    (docroot / "static").mkdir(parents=True)
    (root / "tiff").mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sources = {name: CORPUS_IMAGES / file for name, file in SOURCE_IMAGES.items()}
    for name, source in sources.items():
        subprocess.run(["vips", "tiffsave", str(source), str(root / "tiff" / f"{name}.tif"), "--tile", "--pyramid",
                        "--compression", "jpeg", "--Q", "95", "--tile-width", "256", "--tile-height", "256"],
                       check=True, capture_output=True, timeout=120)
        # The reference package's static generator: a level-0 Image API 2.1 tree per image.
        subprocess.run([sys.executable, str(Path(sys.executable).parent / "iiif_static.py"), "-d",
                        str(docroot / "static"), "-t", "256", "-a", "2.1", "-p", f"{base}/static", "-i", name,
                        str(source)], check=True, capture_output=True, timeout=300)
    access_log = root / "access.log"
    config = root / "lighttpd.conf"
    config.write_text(f"""
server.document-root = "{docroot}"
server.bind = "127.0.0.1"
server.port = {port}
server.modules = ("mod_fastcgi", "mod_accesslog")
server.errorlog = "{root / 'error.log'}"
accesslog.filename = "{access_log}"
server.follow-symlink = "enable"
mimetype.assign = (".json" => "application/json", ".jpg" => "image/jpeg")
fastcgi.server = ("/fcgi-bin/iipsrv.fcgi" => ((
    "bin-path" => "{IIPSRV}",
    "socket" => "{root / 'iipsrv.sock'}",
    "check-local" => "disable",
    "min-procs" => 1, "max-procs" => 1,
    "bin-environment" => ("FILESYSTEM_PREFIX" => "{root / 'tiff'}/", "LOGFILE" => "{root / 'iipsrv.log'}",
                          "VERBOSITY" => "1", "MAX_IMAGE_CACHE_SIZE" => "32", "CORS" => "*")
)))
""")
    process = subprocess.Popen(["lighttpd", "-D", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(f"{base}/fcgi-bin/iipsrv.fcgi?IIIF=hours.tif/info.json", process, "lighttpd + iipsrv")
        iipsrv = ImageServer("iipsrv", {n: f"{base}/fcgi-bin/iipsrv.fcgi?IIIF={n}.tif" for n in sources},
                             sources, access_log)
        static = ImageServer("static level 0", {n: f"{base}/static/{n}" for n in sources}, sources, access_log)
        yield iipsrv, static
    finally:
        stop(process)


@pytest.fixture(scope="session")
def iipsrv_server(_lighttpd_servers) -> ImageServer:
    return _lighttpd_servers[0]


@pytest.fixture(scope="session")
def static_level0_server(_lighttpd_servers) -> ImageServer:
    return _lighttpd_servers[1]


@pytest.fixture(scope="session")
def iiif_reference_server(tmp_path_factory):
    script = Path(sys.executable).parent / "iiif_testserver.py"
    if not script.exists():
        pytest.fail(f"{script} not found: pip install -r requirements-test.txt (the `iiif` package)")
    root = tmp_path_factory.mktemp("iiif-reference")
    images = root / "images"
    images.mkdir()
    sources = {name: CORPUS_IMAGES / file for name, file in SOURCE_IMAGES.items()}
    for name, source in sources.items():
        shutil.copy(source, images / f"{name}.jpg")  # the server finds images by identifier + .jpg
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), "--host", "127.0.0.1", "--port", str(port), "--image-dir", str(images),
         "--api-versions", "3.0", "--manipulators", "pil", "--pages-dir", str(root), "--quiet"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}/3.0_pil"
    try:
        wait_until_up(f"{base}/hours/info.json", process, "iiif_testserver.py")
        yield ImageServer("iiif reference (Image API 3.0)", {n: f"{base}/{n}" for n in sources}, sources)
    finally:
        stop(process)
