"""Helpers of the browser tests (headless Debian Chromium driven by Playwright)."""
from __future__ import annotations

import shutil
import threading
from contextlib import contextmanager
from io import BytesIO
from typing import Iterator

import numpy as np

# Debian's Chromium, headless, with nothing phoning home (Playwright's own download fails here).
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update"]


def launch_chromium(playwright):
    """A headless Chromium from the system (Playwright gives each launch a fresh profile)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed: run `make system-deps` (apt-get install chromium)"
    return playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)


@contextmanager
def chromium_browser() -> Iterator:
    """Playwright driving :func:`launch_chromium`'s browser, closed afterwards (the browser
    fixtures of the test modules)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = launch_chromium(playwright)
        try:
            yield instance
        finally:
            instance.close()


def watch_problems(page) -> list:
    """The list that ``page``'s console errors and uncaught exceptions ("Uncaught …") go to."""
    problems: list = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"Uncaught {error}"))
    return problems


@contextmanager
def serve_app(app) -> Iterator[str]:
    """``app`` served over real HTTP on a free port of 127.0.0.1 (threaded); yields its base URL.
    Afterwards the server is stopped and the app's pooled database connections closed."""
    from werkzeug.serving import make_server

    from web.database import dispose_engine

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        dispose_engine(app)


def settled_box(page, element, timeout_ms: int = 10000) -> dict:
    """``element``'s bounding box once it stops moving (the viewer animates its zoom)."""
    previous = None
    for _ in range(timeout_ms // 200):
        page.wait_for_timeout(200)
        box = element.bounding_box()
        if box and previous and all(abs(box[key] - previous[key]) < 0.5 for key in box):
            return box
        previous = box
    raise AssertionError(f"the overlay kept moving for {timeout_ms} ms")


def mean_colour(page, box: dict, inset: float, mode: str = "RGB"):
    """Mean colour of the screen inside ``box`` less ``inset`` of it on each side: a tuple of
    floats in RGB mode, one float in "L" (grey) mode."""
    from PIL import Image

    clip = {"x": box["x"] + box["width"] * inset, "y": box["y"] + box["height"] * inset,
            "width": box["width"] * (1 - 2 * inset), "height": box["height"] * (1 - 2 * inset)}
    shot = np.asarray(Image.open(BytesIO(page.screenshot(clip=clip))).convert(mode))
    if mode == "L":
        return float(shot.mean())
    return tuple(float(v) for v in shot.reshape(-1, shot.shape[-1]).mean(axis=0))
