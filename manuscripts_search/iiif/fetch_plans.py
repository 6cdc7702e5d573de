"""IIIF Image API: reading info.json, building image request URLs and planning what to fetch.

Pure functions, no network. The harvester fetches ``info.json`` (when it can), calls
:func:`parse_info_json`, asks :func:`plan_fetch` which URLs to download for a canvas or a region of
it at the size the encoder needs, downloads them, and hands the images to :func:`stitch_tiles`.

Versions differ in URL syntax (Image API 1.1 and 2.x: size ``full``; 3.0: ``max``, and ``w,h`` as the
canonical size) and in what each compliance level guarantees (2.1 level 1 has ``w,`` but not ``!w,h``;
level 0 promises only the listed ``sizes`` and ``tiles``), so plans only ever use requests that the
service has promised to honour, and never ask for more pixels than the source has (3.0 refuses
upscaling without ``^``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from manuscripts_search.iiif.model import ImageServiceRef

if TYPE_CHECKING:  # Pillow is only needed by stitch_tiles
    from PIL import Image

XYWH = tuple[int, int, int, int]

_CONTEXT_VERSION = re.compile(r"iiif\.io/api/image/([123])/context\.json")
_PROFILE_V2_V3 = re.compile(r"iiif\.io/api/image/([123])/level([012])(?:\.json)?$")
_PROFILE_V1 = re.compile(r"library\.stanford\.edu/iiif/image-api/(?:1\.1/)?compliance\.html#level([012])$")
_PROFILE_LEVEL_NAME = re.compile(r"^level([012])$")
_TYPE_VERSION = {"ImageService1": 1, "ImageService2": 2, "ImageService3": 3}


@dataclass(frozen=True)
class TileSpec:
    """One entry of info.json ``tiles``: tile size in output pixels and the scale factors offered."""

    width: int
    height: int
    scale_factors: tuple[int, ...]


@dataclass(frozen=True)
class ImageInfo:
    """What an image service says about itself in its info.json, normalised across versions 1-3."""

    id: str  # base URI as the document gives it, without a trailing "/info.json"
    api_version: int  # 1, 2 or 3
    level: int | None  # compliance level 0/1/2, None when the profile names none we know
    width: int
    height: int
    profile: str | None = None  # the compliance URI or level name the level came from
    sizes: tuple[tuple[int, int], ...] = ()  # (w, h) of whole-image sizes on offer, smallest first
    tiles: tuple[TileSpec, ...] = ()
    max_width: int | None = None
    max_height: int | None = None
    max_area: int | None = None
    extra_formats: tuple[str, ...] = ()  # v3 extraFormats / v2 profile "formats" / v1 "formats"
    extra_qualities: tuple[str, ...] = ()
    extra_features: tuple[str, ...] = ()  # v3 extraFeatures / v2 profile "supports"


@dataclass(frozen=True)
class TileRequest:
    """One image request of a plan and where its pixels go in the stitched mosaic."""

    url: str
    x: int = 0
    y: int = 0
    # Expected pixel size of the response; None when the plan could not know it (no sizes known).
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class FetchPlan:
    """The requests to make for one image or region, and how to assemble their responses.

    Responses are pasted at their offsets into a mosaic of ``mosaic_size`` (a single request is the
    mosaic), then ``crop_box`` (left, top, right, bottom in mosaic pixels) is cut out of it.
    """

    requests: tuple[TileRequest, ...]
    mosaic_size: tuple[int, int] | None = None
    crop_box: tuple[int, int, int, int] | None = None
    output_size: tuple[int, int] | None = None  # expected size of the final image, when known
    region_xywh: XYWH | None = None  # full-image pixels delivered; None means the whole image

    @property
    def is_single(self) -> bool:
        return len(self.requests) == 1

    @property
    def url(self) -> str:
        """The URL of the first (for a single-request plan: the only) request."""
        return self.requests[0].url


# ---------------------------------------------------------------------------------------------
# info.json


def parse_info_json(doc: Any) -> ImageInfo:
    """Normalise an Image API 1.1, 2.x or 3.0 info.json document.

    Unusable pieces (a malformed ``sizes`` entry, a ``tiles`` entry without width) are dropped, since
    the rest of the document still lets us fetch the image.

    Raises:
        ValueError: ``doc`` is not a JSON object, or it lacks an id or a positive integer width/height.
    """
    if not isinstance(doc, dict):
        raise ValueError(f"info.json must be a JSON object, not {type(doc).__name__}")  # noqa: TRY004
    service_id = next((doc[key] for key in ("@id", "id") if isinstance(doc.get(key), str) and doc[key].strip()), None)
    if service_id is None:
        raise ValueError("info.json has no @id/id string naming the image service")
    service_id = _strip_service_id(service_id)
    width = _positive_int(doc.get("width"))
    height = _positive_int(doc.get("height"))
    if width is None or height is None:
        raise ValueError(
            f"info.json for {service_id} needs positive integer width and height, "
            f"got width={doc.get('width')!r}, height={doc.get('height')!r}"
        )

    profiles = doc.get("profile")
    profile_items = profiles if isinstance(profiles, list) else [profiles]
    profile_names = [p for p in profile_items if isinstance(p, str)]
    profile_objects = [p for p in profile_items if isinstance(p, dict)]
    level, profile = _compliance_level(profile_names)

    # v2 keeps limits and extras inside the profile's object entries; v3 and v1 at the top level.
    def gather(*keys: str) -> tuple[str, ...]:
        values: list[str] = []
        for source in [doc, *profile_objects]:
            for key in keys:
                values.extend(v for v in _string_list(source.get(key)) if v not in values)
        return tuple(values)

    def limit(key: str) -> int | None:
        for source in [doc, *profile_objects]:
            value = _positive_int(source.get(key))
            if value is not None:
                return value
        return None

    max_width, max_height = limit("maxWidth"), limit("maxHeight")
    if max_width is not None and max_height is None:
        max_height = max_width  # both 2.1 and 3.0 say a lone maxWidth also bounds the height

    return ImageInfo(
        id=service_id,
        api_version=_detect_api_version(doc, profile_names),
        level=level,
        width=width,
        height=height,
        profile=profile,
        sizes=_parse_sizes(doc.get("sizes")),
        tiles=_parse_tiles(doc),
        max_width=max_width,
        max_height=max_height,
        max_area=limit("maxArea"),
        extra_formats=gather("extraFormats", "formats"),
        extra_qualities=gather("extraQualities", "qualities"),
        extra_features=gather("extraFeatures", "supports"),
    )


def _detect_api_version(doc: dict, profile_names: list[str]) -> int:
    # @context is the most reliable signal; type and profile cover documents embedded in manifests,
    # which often drop the context (and v3 manifests embed v2 services with "id" keys).
    contexts = doc.get("@context")
    for context in contexts if isinstance(contexts, list) else [contexts]:
        if isinstance(context, str):
            match = _CONTEXT_VERSION.search(context)
            if match:
                return int(match.group(1))
            if "library.stanford.edu/iiif/image-api" in context:
                return 1
    for key in ("type", "@type"):
        version = _TYPE_VERSION.get(doc.get(key)) if isinstance(doc.get(key), str) else None
        if version:
            return version
    for name in profile_names:
        match = _PROFILE_V2_V3.search(name)
        if match:
            return int(match.group(1))
        if _PROFILE_V1.search(name):
            return 1
        if _PROFILE_LEVEL_NAME.match(name):
            return 3
    return 3 if "@id" not in doc and "id" in doc else 2


def _compliance_level(profile_names: list[str]) -> tuple[int | None, str | None]:
    for name in profile_names:
        for pattern in (_PROFILE_V2_V3, _PROFILE_V1, _PROFILE_LEVEL_NAME):
            match = pattern.search(name.strip())
            if match:
                return int(match.groups()[-1]), name.strip()
    return None, (profile_names[0] if profile_names else None)


def _parse_sizes(raw: Any) -> tuple[tuple[int, int], ...]:
    sizes = set()
    for entry in raw if isinstance(raw, list) else []:
        if isinstance(entry, dict):
            w, h = _positive_int(entry.get("width")), _positive_int(entry.get("height"))
            if w is not None and h is not None:
                sizes.add((w, h))
    return tuple(sorted(sizes, key=lambda wh: (wh[0] * wh[1], wh)))


def _parse_tiles(doc: dict) -> tuple[TileSpec, ...]:
    tiles = []
    raw = doc.get("tiles")
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        width = _positive_int(entry.get("width"))
        height = _positive_int(entry.get("height")) or width  # height defaults to width
        factors = _scale_factors(entry.get("scaleFactors"))
        if width is not None and factors:
            tiles.append(TileSpec(width, height, factors))
    # Image API 1.1 describes one tile set with flat properties.
    v1_width = _positive_int(doc.get("tile_width"))
    v1_factors = _scale_factors(doc.get("scale_factors"))
    if not tiles and v1_width is not None and v1_factors:
        tiles.append(TileSpec(v1_width, _positive_int(doc.get("tile_height")) or v1_width, v1_factors))
    return tuple(tiles)


def _scale_factors(raw: Any) -> tuple[int, ...]:
    values = {_positive_int(v) for v in raw} if isinstance(raw, list) else set()
    return tuple(sorted(v for v in values if v is not None))


def _positive_int(value: Any) -> int | None:
    """An integer > 0 from an int, an integral float or a digit string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and value.is_integer():
        return int(value) if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


# ---------------------------------------------------------------------------------------------
# Image request URLs


def image_request_url(
    service_id: str,
    api_version: int,
    region: str | Sequence[int] = "full",
    size: str | None = None,
    rotation: float = 0,
    quality: str = "default",
    fmt: str = "jpg",
) -> str:
    """Build ``{service}/{region}/{size}/{rotation}/{quality}.{format}`` in the service's syntax.

    ``region`` is ``"full"``, ``"square"``, ``"pct:..."``, an ``"x,y,w,h"`` string or an (x, y, w, h)
    tuple. ``size`` is a size parameter string; None, ``"full"`` and ``"max"`` all mean the whole
    region at full resolution and become ``full`` for API 1/2 and ``max`` for API 3. ``quality``
    ``"default"``/``"native"`` becomes ``native`` for API 1 and ``default`` otherwise.

    Raises:
        ValueError: an unknown api_version, an empty service id, or a malformed region/rotation.
    """
    if api_version not in (1, 2, 3):
        raise ValueError(f"unsupported Image API version {api_version!r}; expected 1, 2 or 3")
    if not isinstance(service_id, str) or not service_id.strip():
        raise ValueError("an image request needs a non-empty service id")
    base = _strip_service_id(service_id)
    # Quote only what is not valid in a URL (spaces, non-ASCII); '%' stays so existing escapes survive.
    base = quote(base, safe=":/?#[]@!$&'()*+,;=%~")

    if isinstance(region, str):
        region_param = region.strip()
        if not region_param:
            raise ValueError("empty region parameter")
    else:
        region_param = ",".join(str(v) for v in _checked_xywh(region, "region"))

    size_param = (size or "max").strip()
    if size_param in ("full", "max"):
        size_param = "max" if api_version == 3 else "full"

    if not isinstance(rotation, (int, float)) or isinstance(rotation, bool) or not 0 <= rotation <= 360:
        raise ValueError(f"rotation must be a number from 0 to 360, got {rotation!r}")
    rotation_param = str(int(rotation)) if float(rotation).is_integer() else repr(float(rotation))

    quality_param = quality
    if quality in ("default", "native"):
        quality_param = "native" if api_version == 1 else "default"
    elif quality in ("gray", "grey"):
        quality_param = "grey" if api_version == 1 else "gray"
    return f"{base}/{region_param}/{size_param}/{rotation_param}/{quality_param}.{fmt.lstrip('.')}"


def _strip_service_id(service_id: str) -> str:
    base = service_id.strip().rstrip("/")
    if base.endswith("/info.json"):
        base = base[: -len("/info.json")].rstrip("/")
    return base


def _checked_xywh(xywh: Sequence[Any], what: str) -> XYWH:
    try:
        x, y, w, h = (int(v) if not isinstance(v, bool) and float(v).is_integer() else None for v in xywh)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be four integers (x, y, w, h), got {xywh!r}") from None
    if None in (x, y, w, h):
        raise ValueError(f"{what} must be four integers (x, y, w, h), got {xywh!r}")
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ValueError(f"{what} needs x, y >= 0 and w, h > 0, got {xywh!r}")
    return x, y, w, h


# ---------------------------------------------------------------------------------------------
# Fetch planning


def plan_fetch(
    info: ImageInfo | None,
    service: ImageServiceRef,
    target_long_edge: int,
    region_xywh: Sequence[int] | None = None,
) -> FetchPlan:
    """Choose requests that ``service`` promises to honour for an image (or a region of it, in
    full-image pixels) whose long edge is at least ``target_long_edge`` where the source allows it.

    Never asks for more pixels than the region has, and respects maxWidth/maxHeight/maxArea.
    Level 0: a listed size (the smallest big enough, else the largest) for whole images, tiles
    stitched and cropped for regions. Levels 1/2 and unknown: one request scaled by the server.
    Without info.json: the service's width/height when the manifest gave them, else ``!t,t``.

    Raises:
        ValueError: target_long_edge is not a positive integer, or the region is malformed or
            lies outside the image.
    """
    target = _positive_int(target_long_edge)
    if target is None or isinstance(target_long_edge, str):
        raise ValueError(f"target_long_edge must be a positive integer, got {target_long_edge!r}")
    region = _checked_xywh(region_xywh, "region_xywh") if region_xywh is not None else None
    if info is None:
        return _plan_without_info(service, target, region)

    # The URL the manifest gave is the one we reached; info.json ids are sometimes internal hosts.
    base = _strip_service_id(service.id or info.id)
    version = info.api_version
    region = _clamp_region(region, info.width, info.height)
    if info.level == 0:
        return _plan_level0(base, info, target, region)
    if info.level is None and region is None:
        listed = _smallest_size_at_least(info.sizes, target)
        if listed is not None:  # a listed size is a cached derivative on most servers
            return _single(image_request_url(base, version, "full", _listed_size_param(info, listed)), listed)
    return _plan_scaled(base, version, info.width, info.height, region, target, info)


def _plan_without_info(service: ImageServiceRef, target: int, region: XYWH | None) -> FetchPlan:
    base, version = _strip_service_id(service.id), service.api_version
    if version not in (1, 2, 3):
        version = 2  # unknown versions most often speak the 2.x syntax
    width = _positive_int(service.width)
    height = _positive_int(service.height)
    if width is not None and height is not None:
        region = _clamp_region(region, width, height)

    if service.level == 0:
        # Without info.json we know no listed sizes; the whole image at full size is what level 0 promises.
        url = image_request_url(base, version, "full", "max")
        full = (width, height) if width and height else None
        if region is None:
            return _single(url, full)
        rx, ry, rw, rh = region
        return FetchPlan(
            requests=(TileRequest(url, 0, 0, *(full or (None, None))),),
            mosaic_size=full,
            crop_box=(rx, ry, rx + rw, ry + rh),
            output_size=(rw, rh),
            region_xywh=region,
        )

    if region is not None:
        known = region[2], region[3]
    elif width is not None and height is not None:
        known = width, height
    else:
        return _single(image_request_url(base, version, "full", f"!{target},{target}"), None)
    return _plan_scaled(base, version, width, height, region, target, None, known_size=known,
                        level=service.level)


def _plan_scaled(
    base: str,
    version: int,
    width: int | None,
    height: int | None,
    region: XYWH | None,
    target: int,
    info: ImageInfo | None,
    known_size: tuple[int, int] | None = None,
    level: int | None = None,
) -> FetchPlan:
    """One request the server scales: level 1/2, or unknown level treated as level 1."""
    if info is not None:
        level = info.level
    region_w, region_h = (region[2], region[3]) if region else (known_size or (width, height))
    out_w, out_h = _scaled_size(
        region_w, region_h, target,
        info.max_width if info else None, info.max_height if info else None, info.max_area if info else None,
    )
    confined_ok = level == 2 or (info is not None and "sizeByConfinedWh" in info.extra_features)
    if (out_w, out_h) == (region_w, region_h):
        size_param = "max"  # full resolution of the region: valid at every level
    elif confined_ok:
        size_param = f"!{max(out_w, out_h)},{max(out_w, out_h)}"
    else:
        size_param = f"{out_w},"  # "w," is the one scaling form level 1 promises in 2.1 and 3.0
    whole = region is None or (width is not None and region == (0, 0, width, height))
    url = image_request_url(base, version, "full" if whole else region, size_param)
    return _single(url, (out_w, out_h), None if whole else region)


def _scaled_size(
    width: int, height: int, target: int,
    max_width: int | None, max_height: int | None, max_area: int | None,
) -> tuple[int, int]:
    """The size to ask for: long edge = target (never above the source), within server limits."""
    scale = min(1.0, target / max(width, height))
    limit = 1.0
    if max_width:
        limit = min(limit, max_width / width)
    if max_height:
        limit = min(limit, max_height / height)
    if max_area:
        limit = min(limit, math.sqrt(max_area / (width * height)))
    if scale <= limit:
        return max(1, round(width * scale)), max(1, round(height * scale))
    # Floor so that rounding never pushes the request over a server limit.
    return max(1, math.floor(width * limit)), max(1, math.floor(height * limit))


def _plan_level0(base: str, info: ImageInfo, target: int, region: XYWH | None) -> FetchPlan:
    version = info.api_version
    if region is None or region == (0, 0, info.width, info.height):
        chosen = _smallest_size_at_least(info.sizes, target)
        if chosen is not None:
            return _single(image_request_url(base, version, "full", _listed_size_param(info, chosen)), chosen)
        tiled = _plan_tiles(base, info, (0, 0, info.width, info.height), target) if info.tiles else None
        if info.sizes:
            largest = max(info.sizes, key=lambda wh: (max(wh), wh))
            # Tiles can beat the largest listed size when the listing stops at thumbnails.
            if tiled is None or max(tiled.output_size) <= max(largest):
                return _single(image_request_url(base, version, "full", _listed_size_param(info, largest)), largest)
        if tiled is not None:
            return tiled
        return _single(image_request_url(base, version, "full", "max"), (info.width, info.height))

    if info.tiles:
        return _plan_tiles(base, info, region, target)
    # No tiles: fetch a whole listed size (or the full image) and cut the region out of it.
    rx, ry, rw, rh = region
    if info.sizes:
        fits = [wh for wh in info.sizes if max(rw * wh[0] / info.width, rh * wh[1] / info.height) >= target]
        chosen = min(fits, key=lambda wh: wh[0] * wh[1]) if fits else max(info.sizes, key=lambda wh: wh[0] * wh[1])
    else:
        chosen = (info.width, info.height)
    sx, sy = chosen[0] / info.width, chosen[1] / info.height
    crop = _outer_box(rx * sx, ry * sy, (rx + rw) * sx, (ry + rh) * sy, *chosen)
    size_param = _listed_size_param(info, chosen) if info.sizes else "max"
    return FetchPlan(
        requests=(TileRequest(image_request_url(base, version, "full", size_param), 0, 0, *chosen),),
        mosaic_size=chosen,
        crop_box=crop,
        output_size=(crop[2] - crop[0], crop[3] - crop[1]),
        region_xywh=region,
    )


def _plan_tiles(base: str, info: ImageInfo, region: XYWH, target: int) -> FetchPlan:
    """Tiles covering ``region`` at the coarsest scale factor that still reaches ``target``."""
    rx, ry, rw, rh = region
    long_edge = max(rw, rh)
    candidates = [(s, tile) for tile in info.tiles for s in tile.scale_factors]
    reaching = [c for c in candidates if long_edge / c[0] >= target]
    if reaching:  # coarsest scale that reaches the target; larger tiles mean fewer requests
        scale, tile = max(reaching, key=lambda c: (c[0], c[1].width * c[1].height))
    else:  # nothing reaches it: the finest scale offered
        scale, tile = min(candidates, key=lambda c: (c[0], -c[1].width * c[1].height))

    # Tile grid per the Image API implementation notes: tile (n, m) covers n*tw*s.. in full pixels.
    span_w, span_h = tile.width * scale, tile.height * scale
    first_col, last_col = rx // span_w, (rx + rw - 1) // span_w
    first_row, last_row = ry // span_h, (ry + rh - 1) // span_h
    requests = []
    for row in range(first_row, last_row + 1):
        for col in range(first_col, last_col + 1):
            xr, yr = col * span_w, row * span_h
            wr, hr = min(span_w, info.width - xr), min(span_h, info.height - yr)
            ws, hs = -(-wr // scale), -(-hr // scale)  # ceiling division
            tile_region = "full" if (xr, yr, wr, hr) == (0, 0, info.width, info.height) else (xr, yr, wr, hr)
            url = image_request_url(base, info.api_version, tile_region, _tile_size_param(info, tile_region, ws, hs))
            requests.append(TileRequest(url, (col - first_col) * tile.width, (row - first_row) * tile.height, ws, hs))
    mosaic_w = sum(r.width for r in requests if r.y == 0)
    mosaic_h = sum(r.height for r in requests if r.x == 0)
    origin_x, origin_y = first_col * span_w, first_row * span_h
    crop = _outer_box(
        (rx - origin_x) / scale, (ry - origin_y) / scale,
        (rx + rw - origin_x) / scale, (ry + rh - origin_y) / scale,
        mosaic_w, mosaic_h,
    )
    whole = region == (0, 0, info.width, info.height)
    return FetchPlan(
        requests=tuple(requests),
        mosaic_size=(mosaic_w, mosaic_h),
        crop_box=None if crop == (0, 0, mosaic_w, mosaic_h) else crop,
        output_size=(crop[2] - crop[0], crop[3] - crop[1]),
        region_xywh=None if whole else region,
    )


def _listed_size_param(info: ImageInfo, size: tuple[int, int]) -> str:
    """The canonical size syntax for a whole-image size listed in info.json."""
    if size == (info.width, info.height):
        return "max"  # becomes "full" for API 1/2
    return f"{size[0]},{size[1]}" if info.api_version == 3 else f"{size[0]},"


def _tile_size_param(info: ImageInfo, tile_region: Any, width: int, height: int) -> str:
    # Static level-0 tile sets store 2.x tiles under "w," and 3.0 tiles under "w,h" (canonical forms).
    if tile_region == "full" and (width, height) == (info.width, info.height):
        return "max"
    return f"{width},{height}" if info.api_version == 3 else f"{width},"


def _smallest_size_at_least(sizes: Iterable[tuple[int, int]], target: int) -> tuple[int, int] | None:
    big_enough = [wh for wh in sizes if max(wh) >= target]
    return min(big_enough, key=lambda wh: (max(wh), wh)) if big_enough else None


def _clamp_region(region: XYWH | None, width: int, height: int) -> XYWH | None:
    if region is None:
        return None
    x, y, w, h = region
    x1, y1 = min(x + w, width), min(y + h, height)
    if x >= width or y >= height or x1 <= x or y1 <= y:
        raise ValueError(f"region {region} lies outside the {width}x{height} image")
    return x, y, x1 - x, y1 - y


def _outer_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The smallest integer box containing the float box, clamped to width x height."""
    # Round away float noise first so that 2.0000000001 does not grow the box by a pixel.
    left = max(0, math.floor(round(x0, 6)))
    top = max(0, math.floor(round(y0, 6)))
    right = min(width, math.ceil(round(x1, 6)))
    bottom = min(height, math.ceil(round(y1, 6)))
    return left, top, right, bottom


def _single(url: str, size: tuple[int, int] | None, region: XYWH | None = None) -> FetchPlan:
    width, height = size if size else (None, None)
    return FetchPlan(
        requests=(TileRequest(url, 0, 0, width, height),),
        mosaic_size=size,
        output_size=size,
        region_xywh=region,
    )


# ---------------------------------------------------------------------------------------------
# Assembling responses


def stitch_tiles(plan: FetchPlan, tile_images: Sequence[Image.Image]) -> Image.Image:
    """Assemble the responses to ``plan.requests`` (same order) into one RGB image.

    A response whose size differs from what the plan expected (servers round differently) is
    resized to the expected size for a mosaic; for a single response the crop box is scaled instead.

    Raises:
        ValueError: the number of images differs from the number of requests, or the crop is empty.
    """
    from PIL import Image

    if len(tile_images) != len(plan.requests):
        raise ValueError(f"plan has {len(plan.requests)} requests but {len(tile_images)} images were given")
    if plan.is_single:
        image = tile_images[0].convert("RGB")
        if plan.crop_box is None:
            return image
        expected = plan.mosaic_size or image.size
        sx, sy = image.width / expected[0], image.height / expected[1]
        left, top, right, bottom = plan.crop_box
        box = _outer_box(left * sx, top * sy, right * sx, bottom * sy, image.width, image.height)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"crop box {plan.crop_box} is empty for a {image.width}x{image.height} response")
        return image.crop(box)

    if plan.mosaic_size is None:
        raise ValueError("a plan with several requests needs a mosaic_size")
    mosaic = Image.new("RGB", plan.mosaic_size)
    for request, tile in zip(plan.requests, tile_images):
        tile = tile.convert("RGB")
        expected = (request.width or tile.width, request.height or tile.height)
        if tile.size != expected:
            tile = tile.resize(expected, Image.Resampling.BICUBIC)
        mosaic.paste(tile, (request.x, request.y))
    return mosaic.crop(plan.crop_box) if plan.crop_box else mosaic


# ---------------------------------------------------------------------------------------------
# Canvas <-> image coordinates


def canvas_to_image_xywh(
    canvas_xywh: Sequence[float],
    canvas_w: float,
    canvas_h: float,
    image_w: int,
    image_h: int,
    target_xywh: Sequence[float] | None = None,
) -> XYWH:
    """Map a canvas-coordinate box to the smallest covering box of image pixels.

    ``target_xywh`` is where the image is painted on the canvas (None: the whole canvas); the
    canvas and the image have independent sizes, so the x and y scales may differ.

    Raises:
        ValueError: a non-positive size, or a box that does not overlap the painted image.
    """
    tx, ty, tw, th = _painted_area(canvas_w, canvas_h, target_xywh)
    image_w, image_h = _positive_size(image_w, image_h, "image")
    cx, cy, cw, ch = _float_box(canvas_xywh, "canvas_xywh")
    sx, sy = image_w / tw, image_h / th
    box = _outer_box((cx - tx) * sx, (cy - ty) * sy, (cx + cw - tx) * sx, (cy + ch - ty) * sy, image_w, image_h)
    return _non_empty(box, f"canvas box {tuple(canvas_xywh)} does not overlap the painted image")


def image_to_canvas_xywh(
    image_xywh: Sequence[float],
    canvas_w: float,
    canvas_h: float,
    image_w: int,
    image_h: int,
    target_xywh: Sequence[float] | None = None,
) -> XYWH:
    """Inverse of :func:`canvas_to_image_xywh`: image pixels to the covering canvas box.

    Raises:
        ValueError: a non-positive size, or a box that maps outside the canvas.
    """
    tx, ty, tw, th = _painted_area(canvas_w, canvas_h, target_xywh)
    image_w, image_h = _positive_size(image_w, image_h, "image")
    ix, iy, iw, ih = _float_box(image_xywh, "image_xywh")
    sx, sy = tw / image_w, th / image_h
    box = _outer_box(tx + ix * sx, ty + iy * sy, tx + (ix + iw) * sx, ty + (iy + ih) * sy,
                     math.ceil(canvas_w), math.ceil(canvas_h))
    return _non_empty(box, f"image box {tuple(image_xywh)} maps outside the canvas")


def _painted_area(canvas_w: float, canvas_h: float, target_xywh: Sequence[float] | None) -> tuple[float, ...]:
    canvas_w, canvas_h = _positive_size(canvas_w, canvas_h, "canvas")
    if target_xywh is None:
        return 0.0, 0.0, canvas_w, canvas_h
    return _float_box(target_xywh, "target_xywh")


def _positive_size(width: Any, height: Any, what: str) -> tuple[float, float]:
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
            raise ValueError(f"{what} size must be positive numbers, got {width!r}x{height!r}")
    return width, height


def _float_box(xywh: Sequence[Any], what: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in xywh)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be four numbers (x, y, w, h), got {xywh!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError(f"{what} needs finite numbers and w, h > 0, got {xywh!r}")
    return x, y, w, h


def _non_empty(box: tuple[int, int, int, int], message: str) -> XYWH:
    left, top, right, bottom = box
    if right <= left or bottom <= top:
        raise ValueError(message)
    return left, top, right - left, bottom - top
