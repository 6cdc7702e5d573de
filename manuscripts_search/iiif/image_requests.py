"""Image API request URLs: ``{service}/{region}/{size}/{rotation}/{quality}.{format}``.

One builder for every place that asks an image service for pixels (fetch plans, search results,
the web's region and canvas images, IIIF exports), because the versions spell the same request
differently (size ``full`` in 1.1 and 2.x but ``max`` in 3.0; quality ``native`` and ``grey`` in
1.1) and a wrong spelling is refused by the server. Pure functions, no network.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from manuscripts_search.iiif.image_coordinates import XYWH


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
    base = strip_service_id(service_id)
    # Quote only what is not valid in a URL (spaces, non-ASCII); '%' stays so existing escapes survive.
    base = quote(base, safe=":/?#[]@!$&'()*+,;=%~")

    if isinstance(region, str):
        region_param = region.strip()
        if not region_param:
            raise ValueError("empty region parameter")
    else:
        region_param = ",".join(str(v) for v in checked_xywh(region, "region"))

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


def strip_service_id(service_id: str) -> str:
    base = service_id.strip().rstrip("/")
    if base.endswith("/info.json"):
        base = base[: -len("/info.json")].rstrip("/")
    return base


def checked_xywh(xywh: Sequence[Any], what: str) -> XYWH:
    try:
        x, y, w, h = (int(v) if not isinstance(v, bool) and float(v).is_integer() else None for v in xywh)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be four integers (x, y, w, h), got {xywh!r}") from None
    if None in (x, y, w, h):
        raise ValueError(f"{what} must be four integers (x, y, w, h), got {xywh!r}")
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ValueError(f"{what} needs x, y >= 0 and w, h > 0, got {xywh!r}")
    return x, y, w, h
