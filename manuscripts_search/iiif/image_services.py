"""IIIF Image API services as manifests describe them: told apart from auth, search and other
services by type, context, profile or a Stanford compliance URI; version and level read from
whichever of those the publisher wrote."""
from __future__ import annotations

import re
from typing import Any, Optional

from manuscripts_search.iiif.jsonld import as_list, local_types, node_id, resolve
from manuscripts_search.iiif.model import ImageServiceRef
from manuscripts_search.iiif.parsing import ParseWarnings, positive_int

_LEVEL = re.compile(r"level\s*([012])(?![0-9])", re.IGNORECASE)


def _profile_strings(service: dict) -> list[str]:
    # v2 profiles are a URI or [URI, {features}]; Image API 1.x manifests say dcterms:conformsTo.
    values = as_list(service.get("profile")) + as_list(service.get("dcterms:conformsTo"))
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def _is_image_api_profile(profile: str) -> bool:
    return "iiif.io/api/image/" in profile or "library.stanford.edu/iiif/image-api" in profile


def image_service_ref(service: Any, base: Optional[str] = None) -> Optional[ImageServiceRef]:
    """An :class:`ImageServiceRef` for one service description, or None when it is not an IIIF
    Image API service (auth, search, physical dimensions ...) or has no id."""
    if not isinstance(service, dict):
        return None
    type_names = local_types(service)
    contexts = [c for c in as_list(service.get("@context")) if isinstance(c, str)]
    profiles = _profile_strings(service)
    is_image_api = (
        any(t.startswith("imageservice") for t in type_names)
        or any("iiif.io/api/image/" in c for c in contexts)
        or any(_is_image_api_profile(p) for p in profiles)
        or service.get("protocol") == "http://iiif.io/api/image"
    )
    service_id = node_id(service)
    if not is_image_api or service_id is None:
        return None
    service_id = resolve(service_id, base)
    service_id = service_id.removesuffix("/info.json")
    service_id = service_id.rstrip("/")

    if "imageservice3" in type_names:
        api_version = 3
    elif {"imageservice2", "imageservice1"} & set(type_names):
        api_version = 2  # Image API 1.x URLs follow the 2.x syntax for what we request
    elif any("iiif.io/api/image/3" in c for c in contexts):
        api_version = 3
    elif contexts and any("iiif.io/api/image/" in c for c in contexts):
        api_version = 2
    elif any("iiif.io/api/image/3/" in p for p in profiles):
        api_version = 3
    else:
        api_version = 2

    level = None
    for profile in profiles:
        match = _LEVEL.search(profile)
        if match:
            level = int(match.group(1))
            break
    ignore = ParseWarnings()  # a service's advertised size is a hint; bad values just mean unknown
    return ImageServiceRef(
        id=service_id,
        api_version=api_version,
        profile=profiles[0] if profiles else None,
        level=level,
        width=positive_int(service.get("width"), ignore, "service width"),
        height=positive_int(service.get("height"), ignore, "service height"),
    )


def first_image_service(value: Any, base: Optional[str]) -> Optional[ImageServiceRef]:
    # Auth, search and extension services often come first in the list: skip past them.
    for service in as_list(value):
        ref = image_service_ref(service, base)
        if ref is not None:
            return ref
    return None
