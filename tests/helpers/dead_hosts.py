"""Image hosts that are down, on 127.0.0.1: one that accepts connections and never answers (a
black hole: a firewall that drops replies, a server whose workers are all stuck), one that refuses
them, and the manifest whose canvases live on such a host; then the same host answering, on the
same port, for the run after it comes back.
"""
from __future__ import annotations

import io
import socket
import threading

from .scripted_server import Reply, ScriptedServer, json_reply


class BlackHole:
    """A TCP port on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self, port: int = 0):
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self._socket.listen(256)
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="black-hole")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            self._held.append(connection)  # held open, never read, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class RefusingPort:
    """A port on 127.0.0.1 that refuses connections: bound, never listening, so no other
    process can start listening on it meanwhile."""

    def __init__(self):
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def manifest_on_image_host(base: str, image_base: str, canvases: int = 40) -> dict:
    """A v3 manifest at ``base``/manifest.json whose canvases each paint an image with its own
    Image API 3 service on ``image_base`` (so each canvas costs an info.json, a sized request
    and the image URL)."""
    items = []
    for c in range(canvases):
        service = f"{image_base}/iiif/{c}"
        items.append({
            "id": f"{base}/canvas/{c}", "type": "Canvas", "width": 1200, "height": 1600,
            "items": [{"id": f"{base}/page/{c}", "type": "AnnotationPage", "items": [{
                "id": f"{base}/anno/{c}", "type": "Annotation", "motivation": "painting",
                "target": f"{base}/canvas/{c}",
                "body": {"id": f"{service}/full/max/0/default.jpg", "type": "Image", "format": "image/jpeg",
                         "service": [{"id": service, "type": "ImageService3", "profile": "level2"}]}}]}]})
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/manifest.json",
            "type": "Manifest", "label": {"en": ["On a dead image host"]}, "items": items}


def image_host(port: int) -> ScriptedServer:
    """The image host answering at last, on ``port``: every service's info.json and a small JPEG
    for every image request."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 128), (140, 90, 40)).save(buffer, "JPEG", quality=85)
    jpeg = buffer.getvalue()
    server = ScriptedServer(port=port)

    def route(request):
        path = request.path
        if path.endswith("/info.json"):
            service = server.base_url + path.rsplit("/info.json", 1)[0]
            return json_reply({"@context": "http://iiif.io/api/image/3/context.json", "id": service,
                               "type": "ImageService3", "protocol": "http://iiif.io/api/image",
                               "profile": "level2", "width": 1200, "height": 1600})(request)
        return Reply(200, jpeg, {"Content-Type": "image/jpeg"})

    server.fallback = route
    return server
