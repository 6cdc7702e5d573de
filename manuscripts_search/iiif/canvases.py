"""Canvases and the images painted on them: v3 ``items`` and v1/v2 ``sequences``, painting
annotations with Choice and SpecificResource bodies, and ``xywh`` targets that place an image on
part of a canvas."""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Optional

from manuscripts_search.iiif.image_services import first_image_service
from manuscripts_search.iiif.jsonld import (as_list, describe_type, link_ids, local_name, local_types, node_id,
                                            resolve)
from manuscripts_search.iiif.language import to_language_map
from manuscripts_search.iiif.model import PaintedImage, ParsedCanvas
from manuscripts_search.iiif.parsing import ParseWarnings, positive_int

_IMAGE_URL_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".jp2", ".webp")
IMAGE_TYPES = {"image", "stillimage"}  # local names of the body types that are pictures
PLACEHOLDER_HINT = "displayifcontentunsupported"


def _is_painting(annotation: dict) -> bool:
    motivations = [m for m in as_list(annotation.get("motivation")) if isinstance(m, str)]
    motivations = [m for m in motivations if m.strip()]
    # Missing motivation is common in v2 image annotations, whose place says they paint.
    return not motivations or any(local_name(m) == "painting" for m in motivations)


def _body_candidates(body: Any, depth: int = 0) -> Iterator[Any]:
    """Bodies in preference order: a Choice's default, then its items; a SpecificResource's
    source instead of itself."""
    if depth > 6:
        return
    if isinstance(body, list):
        for item in body:
            yield from _body_candidates(item, depth + 1)
        return
    if isinstance(body, dict):
        kinds = local_types(body)
        if "choice" in kinds:
            yield from _body_candidates(body.get("default"), depth + 1)
            yield from _body_candidates(body.get("item"), depth + 1)
            yield from _body_candidates(body.get("items"), depth + 1)
            return
        if "specificresource" in kinds:
            yield from _body_candidates(body.get("source", body.get("full")), depth + 1)
            return
    if body is not None:
        yield body


def _is_image_body(body: Any, base: Optional[str]) -> bool:
    if isinstance(body, str):
        return body.split("?")[0].lower().endswith(_IMAGE_URL_SUFFIXES)
    if not isinstance(body, dict):
        return False
    kinds = local_types(body)
    fmt = body.get("format")
    fmt = fmt.strip().lower() if isinstance(fmt, str) else ""
    if fmt.startswith(("video/", "audio/")):
        return False  # a poster-less video typed as an image is still a video
    if kinds:
        # dctypes:Image, dcterms:Image, Image, StillImage; Video, dctypes:MovingImage, Sound,
        # Text, PDF paint no image.
        return any(k in IMAGE_TYPES for k in kinds)
    if fmt.startswith("image/"):
        return True
    return first_image_service(body.get("service"), base) is not None


def _xywh_fragment(target: Any) -> Optional[str]:
    texts: list[str] = []
    if isinstance(target, str):
        texts.append(target)
    elif isinstance(target, dict):
        for selector in as_list(target.get("selector")):
            if isinstance(selector, dict) and isinstance(selector.get("value"), str):
                texts.append(selector["value"])
        source = target.get("source", target.get("full"))
        texts.append(source if isinstance(source, str) else node_id(source) or "")
        texts.append(node_id(target) or "")
    for text in texts:
        fragment = text.split("#", 1)[1] if "#" in text else text
        for part in fragment.split("&"):
            if part.strip().startswith("xywh="):
                return part.strip()[len("xywh=") :]
    return None


def _target_xywh(
    target: Any,
    canvas_width: Optional[int],
    canvas_height: Optional[int],
    warn: ParseWarnings,
    where: str,
) -> Optional[tuple[int, int, int, int]]:
    spec = _xywh_fragment(target)
    if spec is None:
        return None
    percent = spec.startswith("percent:")
    spec = spec.split(":", 1)[1] if spec.startswith(("percent:", "pixel:")) else spec
    try:
        numbers = [float(n) for n in spec.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        warn(f"{where}: target xywh={spec!r} is not four numbers; painting the whole canvas")
        return None
    x, y, w, h = numbers
    if percent:
        if not (canvas_width and canvas_height):
            warn(f"{where}: percent xywh on a canvas of unknown size; painting the whole canvas")
            return None
        x, w = x * canvas_width / 100, w * canvas_width / 100
        y, h = y * canvas_height / 100, h * canvas_height / 100
    box = (round(x), round(y), round(w), round(h))
    if box[2] <= 0 or box[3] <= 0:
        warn(f"{where}: target xywh={spec!r} has no area; painting the whole canvas")
        return None
    if box == (0, 0, canvas_width, canvas_height):
        return None
    return box


def _painted_image(
    annotation: dict,
    canvas_width: Optional[int],
    canvas_height: Optional[int],
    base: Optional[str],
    warn: ParseWarnings,
    where: str,
) -> Optional[PaintedImage]:
    body = annotation.get("body", annotation.get("resource"))
    if body is None:
        warn(f"{where}: painting annotation has no body/resource")
        return None
    for candidate in _body_candidates(body):
        if not _is_image_body(candidate, base):
            continue
        if isinstance(candidate, str):
            url: Optional[str] = resolve(candidate, base)
            service = None
            candidate = {}
        else:
            url = node_id(candidate)
            url = resolve(url, base) if url else None
            service = first_image_service(candidate.get("service"), base)
        if url is None and service is None:
            warn(f"{where}: image body has neither an id nor an image service")
            continue
        fmt = candidate.get("format")
        return PaintedImage(
            url=url,
            service=service,
            format=fmt.strip() if isinstance(fmt, str) and fmt.strip() else None,
            width=positive_int(candidate.get("width"), warn, f"{where}: image width"),
            height=positive_int(candidate.get("height"), warn, f"{where}: image height"),
            target_xywh=_target_xywh(
                annotation.get("target", annotation.get("on")),
                canvas_width,
                canvas_height,
                warn,
                where,
            ),
        )
    return None


def _painting_annotations(canvas: dict, warn: ParseWarnings, where: str) -> Iterator[Any]:
    yield from as_list(canvas.get("images"))  # v1/v2
    if "images" not in canvas and isinstance(canvas.get("resources"), list):
        # Presentation 1 drafts (e.g. Stanford's Walters manifests) list image annotations here.
        warn.tally("canvas lists its image annotations under Presentation 1 `resources`")
        yield from canvas["resources"]
    for page in as_list(canvas.get("items")):  # v3 AnnotationPages
        if not isinstance(page, dict):
            warn(f"{where}: items holds a {type(page).__name__}, not an AnnotationPage")
        elif "items" not in page:
            warn(f"{where}: AnnotationPage {node_id(page)!r} is only referenced; not fetched")
        else:
            yield from as_list(page.get("items"))


def _read_canvas(
    canvas: dict, order: int, canvas_id: str, base: Optional[str], warn: ParseWarnings
) -> ParsedCanvas:
    where = f"canvas {canvas_id}"
    width = positive_int(canvas.get("width"), warn, f"{where}: width")
    height = positive_int(canvas.get("height"), warn, f"{where}: height")
    images: list[PaintedImage] = []
    for annotation in _painting_annotations(canvas, warn, where):
        if not isinstance(annotation, dict):
            warn(f"{where}: annotation is a {type(annotation).__name__}, not an object")
            continue
        if not _is_painting(annotation):
            continue
        image = _painted_image(annotation, width, height, base, warn, where)
        if image is not None:
            images.append(image)
    return ParsedCanvas(
        id=canvas_id,
        order=order,
        label=to_language_map(canvas.get("label"), warn, f"{where}: label"),
        width=width,
        height=height,
        images=images,
        thumbnail=_thumbnail(canvas, base),
    )


def _thumbnail(canvas: dict, base: Optional[str]) -> Optional[str]:
    """The first http(s) URL of the canvas's ``thumbnail`` (a string, an object or a list)."""
    for url in link_ids(canvas.get("thumbnail"), base):
        if url.startswith(("http://", "https://")) and len(url) <= 2000:
            return url
    return None


def _is_placeholder(obj: Any) -> bool:
    """A v2 stand-in shown by viewers that cannot play the real content (Wellcome's audio and
    video manifests: ``compatibilityHint: displayIfContentUnsupported``): its image is a generic
    poster, not what the item shows."""
    return isinstance(obj, dict) and any(
        isinstance(hint, str) and local_name(hint) == PLACEHOLDER_HINT for hint in as_list(obj.get("compatibilityHint")))


def _canvas_objects(doc: dict, warn: ParseWarnings) -> Iterator[tuple[str, Any]]:
    """(where, canvas) pairs from v3 ``items`` and from every v1/v2 sequence, in document order;
    placeholder sequences and canvases are left out."""
    for index, item in enumerate(as_list(doc.get("items"))):
        kinds = local_types(item)
        if "canvas" in kinds:
            yield f"items[{index}]", item
        else:
            described = describe_type(item) if isinstance(item, dict) else type(item).__name__
            warn(f"items[{index}] is a {described}, not a Canvas; ignored")
    for seq_index, sequence in enumerate(as_list(doc.get("sequences"))):
        if not isinstance(sequence, dict):
            warn(f"sequences[{seq_index}] is not an embedded sequence; ignored")
            continue
        if _is_placeholder(sequence):
            warn(f"sequences[{seq_index}] is a placeholder for content viewers cannot show "
                 "(compatibilityHint displayIfContentUnsupported); its canvases are not indexed")
            continue
        for index, canvas in enumerate(as_list(sequence.get("canvases"))):
            if _is_placeholder(canvas):
                warn.tally("placeholder canvases (compatibilityHint displayIfContentUnsupported) not indexed")
                continue
            yield f"sequences[{seq_index}].canvases[{index}]", canvas


def read_canvases(doc: dict, base: Optional[str], warn: ParseWarnings) -> list[ParsedCanvas]:
    canvases: list[ParsedCanvas] = []
    seen: set[str] = set()
    duplicates = 0
    for where, canvas in _canvas_objects(doc, warn):
        canvas_id = node_id(canvas)
        if canvas_id is None:
            warn(f"{where} has no id; ignored")
            continue
        canvas_id = resolve(canvas_id, base)
        if canvas_id in seen:
            duplicates += 1  # other sequences/orders reuse the same canvases
            continue
        seen.add(canvas_id)
        canvases.append(_read_canvas(canvas, len(canvases), canvas_id, base, warn))
    if duplicates:
        warn(f"{duplicates} canvas references repeat a canvas already listed; kept the first")
    return canvases
