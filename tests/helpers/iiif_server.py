"""A real IIIF HTTP server on 127.0.0.1 for tests: JSON documents plus Image API 2/3/level-0 images.

It is written from the Image API 2.1 and 3.0 specifications independently of the product's Image
API client (``manuscripts_search.iiif.info_json``, ``image_requests``, ``fetch_plans``; it imports
nothing from the product), so tests of the client against it can fail when the client gets the
syntax wrong.

Flavours of every registered image:

* ``/iiif2/{id}``: Image API 2.1, level 2 (regions full/square/x,y,w,h/pct:, sizes full/max/w,/,h/
  pct:n/w,h/!w,h with upscaling allowed, rotation 0/90/180/270 and mirroring, qualities
  default/color/gray/bitonal/native, jpg/png).
* ``/iiif3/{id}``: Image API 3.0, level 2 (``max`` instead of ``full``; anything larger than the
  region needs the ``^`` prefix; qualities default/color/gray/bitonal).
* ``/iiif0/{id}`` (2.1) and ``/iiif0v3/{id}`` (3.0): level 0 as a static file tree would serve it:
  only the listed sizes and the tiles in canonical form (2.1 ``x,y,w,h/w,``, 3.0 ``x,y,w,h/w,h``;
  listed sizes as ``full/w,`` or ``full/w,h`` for 2.1, ``full/w,h`` for 3.0), everything else 404.
* ``/raw/{id}.jpg``: the image as a plain JPEG file.
"""
from __future__ import annotations

import io
import json
import math
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from PIL import Image, ImageOps

CONTEXT_V2 = "http://iiif.io/api/image/2/context.json"
CONTEXT_V3 = "http://iiif.io/api/image/3/context.json"
PROTOCOL = "http://iiif.io/api/image"
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
MAX_OUTPUT_PIXELS = 40_000_000  # a typo in a test must not make the server allocate gigabytes
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._~-]+$")
_FLAVOURS = {"iiif2": (2, 2), "iiif3": (3, 2), "iiif0": (2, 0), "iiif0v3": (3, 0)}  # prefix -> (version, level)


class BadRequest(Exception):
    """A syntactically or semantically invalid image request (HTTP 400)."""


@dataclass
class _RegisteredImage:
    image: Image.Image  # RGB
    tile_size: int
    scale_factors: list[int]
    level0_sizes: list[tuple[int, int]]
    max_width: int | None
    raw_jpeg: bytes
    # Level-0 files per flavour prefix: request path after the identifier -> (region box, output size)
    static_files: dict[str, dict[str, tuple[tuple[int, int, int, int], tuple[int, int]]]] = field(default_factory=dict)


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str]


class IIIFTestServer:
    """Threaded HTTP server bound to 127.0.0.1 on a free port; ``close()`` stops it."""

    def __init__(self) -> None:
        self._json_routes: dict[str, _Response] = {}
        self._images: dict[str, _RegisteredImage] = {}
        self._lock = threading.Lock()
        self.requests: list[str] = []  # request paths (with query string), in arrival order
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="iiif-test-server", daemon=True
        )
        self._thread.start()
        self._closed = False

    # -- registration -------------------------------------------------------------------------

    def add_json(self, path: str, doc: dict | list | bytes | str, headers: dict | None = None,
                 status: int = 200) -> str:
        """Serve ``doc`` (encoded as JSON unless bytes/str are given, which are sent verbatim) at
        ``/path``; returns its absolute URL. ``headers`` override the defaults (Content-Type)."""
        path = "/" + path.lstrip("/")
        if isinstance(doc, bytes):
            body = doc
        elif isinstance(doc, str):
            body = doc.encode("utf-8")
        else:
            body = json.dumps(doc).encode("utf-8")
        merged = {"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"}
        merged.update(headers or {})
        with self._lock:
            self._json_routes[path] = _Response(status, body, merged)
        return self.base_url + path

    def add_image(self, identifier: str, image: Image.Image, *, tile_size: int = 256,
                  level0_sizes: list[tuple[int, int]] | None = None,
                  max_width: int | None = None) -> dict[str, str]:
        """Register ``image`` under every flavour; returns the service ids and the raw URL:
        ``{"v2", "v3", "level0", "level0_v3", "raw"}``.

        ``level0_sizes`` default to the whole image scaled by each tile scale factor above 1 (as
        static tile generators list thumbnails); ``max_width`` adds maxWidth to the v2/v3 flavours.
        """
        if not _IDENTIFIER.match(identifier):
            raise ValueError(f"identifier {identifier!r} must be URL-safe (letters, digits, . _ ~ -)")
        rgb = image.convert("RGB")
        width, height = rgb.size
        scale_factors = [1]
        while math.ceil(width / scale_factors[-1]) > tile_size or math.ceil(height / scale_factors[-1]) > tile_size:
            scale_factors.append(scale_factors[-1] * 2)
        if level0_sizes is None:
            level0_sizes = [(math.ceil(width / s), math.ceil(height / s)) for s in scale_factors if s > 1]
            level0_sizes = level0_sizes or [(width, height)]
        raw = io.BytesIO()
        rgb.save(raw, "JPEG", quality=95)
        registered = _RegisteredImage(rgb, tile_size, scale_factors, list(level0_sizes), max_width, raw.getvalue())
        registered.static_files = {
            "iiif0": _static_level0_files(width, height, tile_size, scale_factors, registered.level0_sizes, 2),
            "iiif0v3": _static_level0_files(width, height, tile_size, scale_factors, registered.level0_sizes, 3),
        }
        with self._lock:
            self._images[identifier] = registered
        return {
            "v2": f"{self.base_url}/iiif2/{identifier}",
            "v3": f"{self.base_url}/iiif3/{identifier}",
            "level0": f"{self.base_url}/iiif0/{identifier}",
            "level0_v3": f"{self.base_url}/iiif0v3/{identifier}",
            "raw": f"{self.base_url}/raw/{identifier}.jpg",
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- request handling (called from handler threads) ----------------------------------------

    def _respond(self, raw_path: str) -> _Response:
        with self._lock:
            self.requests.append(raw_path)
        path = urlsplit(raw_path).path
        with self._lock:
            json_route = self._json_routes.get(path)
        if json_route is not None:
            return json_route
        segments = path.strip("/").split("/")
        if len(segments) == 2 and segments[0] == "raw" and segments[1].endswith(".jpg"):
            registered = self._images.get(unquote(segments[1][: -len(".jpg")]))
            if registered is None:
                return _text(404, f"no image {segments[1]!r}")
            return _Response(200, registered.raw_jpeg, {"Content-Type": "image/jpeg"})
        if len(segments) < 2 or segments[0] not in _FLAVOURS:
            return _text(404, f"nothing at {path}")
        prefix, identifier = segments[0], unquote(segments[1])
        registered = self._images.get(identifier)
        if registered is None:
            return _text(404, f"no image {identifier!r}")
        version, level = _FLAVOURS[prefix]
        base = f"{self.base_url}/{prefix}/{quote(identifier)}"
        rest = segments[2:]
        if not rest or rest == [""]:
            return _Response(303, b"", {"Location": base + "/info.json"})
        if rest == ["info.json"]:
            info = _info_json(registered, base, version, level)
            content_type = f'application/ld+json;profile="{CONTEXT_V3}"' if version == 3 else "application/json"
            return _Response(200, json.dumps(info).encode(), {"Content-Type": content_type,
                                                              "Access-Control-Allow-Origin": "*"})
        if len(rest) != 4:
            return _text(400, f"an image request is region/size/rotation/quality.format, got {'/'.join(rest)!r}")
        try:
            if level == 0:
                static = registered.static_files[prefix].get("/".join(rest))
                if static is None:
                    return _text(404, f"level 0: no static file for {'/'.join(rest)!r}")
                box, size = static
                return _encoded(_cut(registered.image, box, size), "jpg")
            return _encoded(*_render(registered, version, rest))
        except BadRequest as error:
            return _text(400, str(error))


class _Handler(BaseHTTPRequestHandler):
    server_version = "IIIFTestServer/1.0"

    def do_GET(self) -> None:  # name fixed by http.server
        response = self.server.owner._respond(self.path)  # type: ignore[attr-defined]
        self._send(response, with_body=True)

    def do_HEAD(self) -> None:
        response = self.server.owner._respond(self.path)  # type: ignore[attr-defined]
        self._send(response, with_body=False)

    def do_OPTIONS(self) -> None:  # CORS preflight
        self._send(_Response(204, b"", {"Access-Control-Allow-Origin": "*",
                                        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS"}), with_body=False)

    def _send(self, response: _Response, with_body: bool) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass


# -- info.json --------------------------------------------------------------------------------------


def _info_json(registered: _RegisteredImage, base: str, version: int, level: int) -> dict:
    width, height = registered.image.size
    if level == 0:
        sizes = registered.level0_sizes
    else:
        sizes = sorted({(math.ceil(width / s), math.ceil(height / s)) for s in registered.scale_factors})
    size_list = [{"width": w, "height": h} for w, h in sizes]
    if version == 2:
        tiles = [{"width": registered.tile_size, "scaleFactors": registered.scale_factors}]
        if level == 0:
            profile = ["http://iiif.io/api/image/2/level0.json", {"formats": ["jpg"], "qualities": ["default"]}]
        else:
            extras = {"formats": ["jpg", "png"], "qualities": ["default", "color", "gray", "bitonal"],
                      "supports": ["baseUriRedirect", "cors", "mirroring", "regionSquare", "sizeAboveFull"]}
            if registered.max_width:
                extras["maxWidth"] = registered.max_width
            profile = ["http://iiif.io/api/image/2/level2.json", extras]
        return {"@context": CONTEXT_V2, "@id": base, "protocol": PROTOCOL, "width": width, "height": height,
                "profile": profile, "sizes": size_list, "tiles": tiles}
    info = {"@context": CONTEXT_V3, "id": base, "type": "ImageService3", "protocol": PROTOCOL,
            "profile": f"level{level}", "width": width, "height": height, "sizes": size_list,
            "tiles": [{"width": registered.tile_size, "height": registered.tile_size,
                       "scaleFactors": registered.scale_factors}]}
    if level == 2:
        info["extraQualities"] = ["color", "gray", "bitonal"]
        info["extraFeatures"] = ["baseUriRedirect", "cors", "jsonldMediaType", "mirroring", "sizeUpscaling"]
        if registered.max_width:
            info["maxWidth"] = registered.max_width
    return info


def _static_level0_files(width: int, height: int, tile: int, scale_factors: list[int],
                         sizes: list[tuple[int, int]], version: int) -> dict:
    """The files a static level-0 tree holds: listed sizes and every tile, by canonical path."""
    files = {}
    for w, h in sizes:
        if (w, h) == (width, height):
            files[f"full/{'max' if version == 3 else 'full'}/0/default.jpg"] = ((0, 0, width, height), (w, h))
        elif version == 3:
            files[f"full/{w},{h}/0/default.jpg"] = ((0, 0, width, height), (w, h))
        else:  # 2.1 canonical is "w,"; 2.0's sizeByWhListed asks for "w,h", so both exist
            files[f"full/{w},/0/default.jpg"] = ((0, 0, width, height), (w, h))
            files[f"full/{w},{h}/0/default.jpg"] = ((0, 0, width, height), (w, h))
    # Tile (n, m) at scale s covers n*tile*s .. in full-image pixels (Image API implementation notes).
    for s in scale_factors:
        span = tile * s
        for y in range(0, height, span):
            for x in range(0, width, span):
                rw, rh = min(span, width - x), min(span, height - y)
                sw, sh = math.ceil(rw / s), math.ceil(rh / s)
                whole = (x, y, rw, rh) == (0, 0, width, height)
                region = "full" if whole else f"{x},{y},{rw},{rh}"
                if whole and (sw, sh) == (width, height):
                    size = "max" if version == 3 else "full"
                else:
                    size = f"{sw},{sh}" if version == 3 else f"{sw},"
                files[f"{region}/{size}/0/default.jpg"] = ((x, y, rw, rh), (sw, sh))
    return files


# -- image requests (levels 1-2) --------------------------------------------------------------------


def _render(registered: _RegisteredImage, version: int, params: list[str]) -> tuple[Image.Image, str]:
    region_param, size_param, rotation_param, quality_format = (unquote(p) for p in params)
    image = registered.image
    box = _parse_region(region_param, *image.size)
    size = _parse_size(size_param, box[2], box[3], version, registered.max_width)
    mirror, degrees = _parse_rotation(rotation_param)
    quality, _, fmt = quality_format.rpartition(".")
    allowed = {"default", "color", "gray", "bitonal"} | ({"native"} if version == 2 else set())
    if quality not in allowed:
        raise BadRequest(f"quality {quality!r} is not one of {sorted(allowed)}")
    if fmt not in MEDIA_TYPES:
        raise BadRequest(f"format {fmt!r} is not one of {sorted(MEDIA_TYPES)}")
    result = _cut(image, box, size)
    if mirror:
        result = ImageOps.mirror(result)
    if degrees:
        # IIIF rotates clockwise; Pillow's rotate is counter-clockwise.
        result = result.rotate(-degrees, expand=True)
    if quality == "gray":
        result = result.convert("L")
    elif quality == "bitonal":
        result = result.convert("1")
    return result, fmt


def _parse_region(param: str, width: int, height: int) -> tuple[int, int, int, int]:
    if param == "full":
        return 0, 0, width, height
    if param == "square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    if param.startswith("pct:"):
        x, y, w, h = _numbers(param[4:], "region", float)
        x, y, w, h = round(x * width / 100), round(y * height / 100), round(w * width / 100), round(h * height / 100)
    else:
        x, y, w, h = _numbers(param, "region", int)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise BadRequest(f"region {param!r} needs non-negative x,y and positive w,h")
    if x >= width or y >= height:
        raise BadRequest(f"region {param!r} lies outside the {width}x{height} image")
    return x, y, min(w, width - x), min(h, height - y)


def _parse_size(param: str, region_w: int, region_h: int, version: int, max_width: int | None) -> tuple[int, int]:
    upscale = param.startswith("^")
    if upscale and version == 2:
        raise BadRequest("the ^ size prefix is Image API 3.0 syntax")
    body = param[1:] if upscale else param
    limit_w = max_width or 10**9
    if body == "full":
        if version == 3:
            raise BadRequest("size 'full' is not valid in Image API 3.0; use 'max'")
        return region_w, region_h
    if body == "max":
        # ^max grows the region up to maxWidth/maxHeight; without limits both mean the region as is.
        scale = min(limit_w / region_w, limit_w / region_h)
        scale = scale if upscale and max_width else min(1.0, scale)
        return max(1, math.floor(region_w * scale)), max(1, math.floor(region_h * scale))
    if body.startswith("pct:"):
        try:
            percent = float(body[4:])
        except ValueError:
            raise BadRequest(f"size {param!r}: pct: needs a number") from None
        if percent <= 0:
            raise BadRequest(f"size {param!r} must be positive")
        size = max(1, round(region_w * percent / 100)), max(1, round(region_h * percent / 100))
    elif body.startswith("!"):
        w, h = _numbers(body[1:], "size", int, count=2)
        scale = min(w / region_w, h / region_h)
        if version == 3 and not upscale:
            scale = min(scale, 1.0)  # 3.0: !w,h never exceeds the region without ^
        size = max(1, min(w, round(region_w * scale))), max(1, min(h, round(region_h * scale)))
    else:
        parts = body.split(",")
        if len(parts) != 2 or not any(parts):
            raise BadRequest(f"size {param!r} is not one of max, w,, ,h, pct:n, w,h, !w,h")
        w_text, h_text = parts
        if not all(text.isdigit() for text in parts if text):
            raise BadRequest(f"size {param!r} has a non-integer dimension")
        w = int(w_text) if w_text else None
        h = int(h_text) if h_text else None
        if w == 0 or h == 0:
            raise BadRequest(f"size {param!r} must be positive")
        if w is None:
            w = max(1, round(region_w * h / region_h))
        if h is None:
            h = max(1, round(region_h * w / region_w))
        size = w, h
    if version == 3 and not upscale and (size[0] > region_w or size[1] > region_h):
        raise BadRequest(f"size {param!r} is larger than the {region_w}x{region_h} region; 3.0 needs ^ to upscale")
    if size[0] > limit_w or size[1] > limit_w:
        raise BadRequest(f"size {param!r} exceeds maxWidth/maxHeight {limit_w}")
    if size[0] * size[1] > MAX_OUTPUT_PIXELS:
        raise BadRequest(f"size {param!r} asks for more than {MAX_OUTPUT_PIXELS} pixels")
    return size


def _parse_rotation(param: str) -> tuple[bool, int]:
    mirror = param.startswith("!")
    text = param[1:] if mirror else param
    try:
        degrees = float(text)
    except ValueError:
        raise BadRequest(f"rotation {param!r} is not a number") from None
    if degrees not in (0, 90, 180, 270):
        raise BadRequest(f"rotation {param!r}: only 0, 90, 180 and 270 are supported")
    return mirror, int(degrees)


def _numbers(text: str, what: str, kind: type, count: int = 4) -> list:
    parts = text.split(",")
    try:
        if len(parts) != count:
            raise ValueError
        if kind is int and not all(p.isdigit() for p in parts):
            raise ValueError
        return [kind(p) for p in parts]
    except ValueError:
        raise BadRequest(f"{what} {text!r} needs {count} comma-separated {kind.__name__}s") from None


def _cut(image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image:
    x, y, w, h = box
    region = image.crop((x, y, x + w, y + h))
    return region if region.size == size else region.resize(size, Image.Resampling.LANCZOS)


def _encoded(image: Image.Image, fmt: str) -> _Response:
    buffer = io.BytesIO()
    if fmt == "jpg":
        image.convert("L" if image.mode in ("1", "L") else "RGB").save(buffer, "JPEG", quality=90)
    else:
        image.save(buffer, "PNG")
    return _Response(200, buffer.getvalue(), {"Content-Type": MEDIA_TYPES[fmt], "Access-Control-Allow-Origin": "*"})


def _text(status: int, message: str) -> _Response:
    return _Response(status, message.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"})
