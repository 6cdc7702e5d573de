"""Reading an Image API info.json: what an image service says it can serve, in one shape.

Image API 1.1, 2.x and 3.0 describe the same facts differently (the version in ``@context``,
``type`` or the profile URI; limits and extras at the top level in 1.1 and 3.0 but inside profile
objects in 2.x; 1.1's flat ``tile_width``/``scale_factors``), so :func:`parse_info_json` turns any of
them into one :class:`ImageInfo` that fetch planning (``fetch_plans``) can trust without asking
which version it came from. Pure functions, no network.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from manuscripts_search.iiif.image_requests import strip_service_id
from manuscripts_search.iiif.parsing import pixel_count

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
    service_id = strip_service_id(service_id)
    width = pixel_count(doc.get("width"))
    height = pixel_count(doc.get("height"))
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
            value = pixel_count(source.get(key))
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
            w, h = pixel_count(entry.get("width")), pixel_count(entry.get("height"))
            if w is not None and h is not None:
                sizes.add((w, h))
    return tuple(sorted(sizes, key=lambda wh: (wh[0] * wh[1], wh)))


def _parse_tiles(doc: dict) -> tuple[TileSpec, ...]:
    tiles = []
    raw = doc.get("tiles")
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        width = pixel_count(entry.get("width"))
        height = pixel_count(entry.get("height")) or width  # height defaults to width
        factors = _scale_factors(entry.get("scaleFactors"))
        if width is not None and factors:
            tiles.append(TileSpec(width, height, factors))
    # Image API 1.1 describes one tile set with flat properties.
    v1_width = pixel_count(doc.get("tile_width"))
    v1_factors = _scale_factors(doc.get("scale_factors"))
    if not tiles and v1_width is not None and v1_factors:
        tiles.append(TileSpec(v1_width, pixel_count(doc.get("tile_height")) or v1_width, v1_factors))
    return tuple(tiles)


def _scale_factors(raw: Any) -> tuple[int, ...]:
    values = {pixel_count(v) for v in raw} if isinstance(raw, list) else set()
    return tuple(sorted(v for v in values if v is not None))


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
