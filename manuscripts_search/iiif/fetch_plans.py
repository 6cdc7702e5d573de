"""Fetch planning: which Image API requests give an image, or a region of it, at the size needed.

The harvester fetches ``info.json`` (when it can; see ``info_json``), asks :func:`plan_fetch` which
URLs to download for a canvas or a region of it at the size the encoder needs, downloads them, and
hands the images to ``tile_stitching.stitch_tiles`` with the plan. Pure functions, no network.

Compliance levels differ in what they guarantee (2.1 level 1 has ``w,`` but not ``!w,h``; level 0
promises only the listed ``sizes`` and ``tiles``), so plans only ever use requests that the
service has promised to honour, and never ask for more pixels than the source has (3.0 refuses
upscaling without ``^``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from manuscripts_search.iiif.image_coordinates import XYWH, outer_box
from manuscripts_search.iiif.image_requests import checked_xywh, image_request_url, strip_service_id
from manuscripts_search.iiif.info_json import ImageInfo
from manuscripts_search.iiif.parsing import pixel_count
from manuscripts_search.iiif.model import ImageServiceRef


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
    target = pixel_count(target_long_edge)
    if target is None or isinstance(target_long_edge, str):
        raise ValueError(f"target_long_edge must be a positive integer, got {target_long_edge!r}")
    region = checked_xywh(region_xywh, "region_xywh") if region_xywh is not None else None
    if info is None:
        return _plan_without_info(service, target, region)

    # The URL the manifest gave is the one we reached; info.json ids are sometimes internal hosts.
    base = strip_service_id(service.id or info.id)
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
    base, version = strip_service_id(service.id), service.api_version
    if version not in (1, 2, 3):
        version = 2  # unknown versions most often speak the 2.x syntax
    width = pixel_count(service.width)
    height = pixel_count(service.height)
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
    crop = outer_box(rx * sx, ry * sy, (rx + rw) * sx, (ry + rh) * sy, *chosen)
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
    crop = outer_box(
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




def _single(url: str, size: tuple[int, int] | None, region: XYWH | None = None) -> FetchPlan:
    width, height = size if size else (None, None)
    return FetchPlan(
        requests=(TileRequest(url, 0, 0, width, height),),
        mosaic_size=size,
        output_size=size,
        region_xywh=region,
    )
