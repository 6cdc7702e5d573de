"""Parse IIIF Presentation 1, 2 and 3 documents into the internal model of :mod:`.model`.

This is the one place that knows how differently institutions write IIIF: v2 ``@id`` and
v3 ``id``, ``sequences`` and ``items``, ``oa:Choice`` and ``Choice``, image services described
by context, type, profile or a Stanford compliance URI, widths given as strings, v3 manifests
that still carry v2 ``sequences``. Structure is read by what a document contains rather than
by the version it declares, so mixtures parse too.

Only a document that cannot be a Manifest or Collection at all raises :class:`IIIFParseError`;
anything odd inside a usable document becomes a line in ``.warnings``.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterator
from typing import Any, Optional, Union
from urllib.parse import urljoin

from manuscripts_search.iiif.annotations import ManifestText, manifest_text
from manuscripts_search.iiif.json_limits import (check_json_text, check_json_value, remove_nul_characters,
                                                 remove_nul_escapes)
from manuscripts_search.iiif.language import to_language_map
from manuscripts_search.iiif.model import (
    CollectionMember,
    IIIFParseError,
    ImageServiceRef,
    LanguageMap,
    MetadataEntry,
    PaintedImage,
    ParsedCanvas,
    ParsedCollection,
    ParsedManifest,
)

Document = Union[bytes, bytearray, memoryview, str, dict]

# A manifest with thousands of canvases can repeat one oddity thousands of times.
MAX_WARNINGS = 200

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_DIGITS = re.compile(r"[0-9]{1,12}")
_LEVEL = re.compile(r"level\s*([012])(?![0-9])", re.IGNORECASE)
_IMAGE_URL_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".jp2", ".webp")
# Discovery API activities that take a resource away rather than announce it.
_REMOVAL_ACTIVITIES = {"delete", "remove"}


class _Warnings:
    """Collects non-fatal problems, capped so one bad field repeated per canvas stays readable."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.suppressed = 0
        self.tallies: dict[str, int] = {}

    def __call__(self, message: str) -> None:
        if len(self.messages) < MAX_WARNINGS:
            self.messages.append(message)
        else:
            self.suppressed += 1

    def tally(self, message: str) -> None:
        """Count a benign oddity that some publishers repeat on every canvas; reported once."""
        self.tallies[message] = self.tallies.get(message, 0) + 1

    def finish(self) -> list[str]:
        summary = [f"{message} ({count}x)" for message, count in self.tallies.items()]
        if self.suppressed:
            summary.append(f"... and {self.suppressed} more warnings")
        return self.messages + summary


# --- small JSON-LD helpers -------------------------------------------------------------------


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _get_id(obj: Any) -> Optional[str]:
    """The v3 ``id`` or v2 ``@id`` of an object, stripped; None when absent or not a string."""
    if not isinstance(obj, dict):
        return None
    for key in ("id", "@id"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _get_types(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return []
    raw = obj.get("type", obj.get("@type"))
    return [t for t in _as_list(raw) if isinstance(t, str)]


def _local_name(type_name: str) -> str:
    """``sc:Manifest``, ``http://iiif.io/api/presentation/2#Manifest`` -> ``manifest``."""
    return re.split(r"[:#/]", type_name.strip())[-1].lower()


def _local_types(obj: Any) -> list[str]:
    return [_local_name(t) for t in _get_types(obj)]


def _describe_type(obj: dict) -> str:
    types = _get_types(obj)
    return repr(types[0]) if len(types) == 1 else repr(types)


def _has_scheme(url: str) -> bool:
    # Two letters at least, so that a Windows path "C:\..." is not taken for a URI.
    return bool(_SCHEME.match(url))


def _resolve(url: str, base: Optional[str]) -> str:
    url = url.strip()
    if base is None or _has_scheme(url):
        return url
    return urljoin(base, url)


def _link_ids(value: Any, base: Optional[str]) -> list[str]:
    """URLs from a link property given as a string, an object with an id, or a list of them."""
    urls: list[str] = []
    for item in _as_list(value):
        url = item.strip() if isinstance(item, str) else _get_id(item)
        if url:
            url = _resolve(url, base)
            if url not in urls:
                urls.append(url)
    return urls


def _positive_int(value: Any, warn: _Warnings, where: str) -> Optional[int]:
    """A pixel size: ints, whole floats and digit strings (with a warning) that are > 0."""
    if value is None:
        return None
    number: Optional[int] = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
        warn.tally("pixel sizes given as strings of digits")
    if number is None or number <= 0:
        warn(f"{where} is {value!r}, not a positive integer; treated as unknown")
        return None
    return number


# --- decoding and classification -------------------------------------------------------------


def _decode_bytes(data: bytes, warn: _Warnings) -> str:
    # JSON is UTF-8 by RFC 8259, but BOMs, UTF-16 exports and Windows-1252 files all occur.
    data = data.removeprefix(codecs.BOM_UTF8)
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                break  # a lying BOM: fall through to the byte-wise fallbacks below
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
    try:
        text = data.decode("cp1252")
        warn(f"document is not valid UTF-8 (bad byte at offset {offset}); decoded as Windows-1252")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        warn(f"document is not valid UTF-8 (bad byte at offset {offset}); decoded as ISO-8859-1")
    return text


def _load_json(doc: Any, warn: _Warnings) -> dict:
    if isinstance(doc, (bytes, bytearray, memoryview)):
        doc = _decode_bytes(bytes(doc), warn)
    if isinstance(doc, str):
        text = doc.removeprefix("\ufeff")
        check_json_text(text)  # size and nesting limits, before any recursive decoding
        text, nuls = remove_nul_escapes(text)
        if nuls:
            warn(f"document contains {nuls} NUL character(s) (\\u0000); removed")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as error:
            raise IIIFParseError(
                f"invalid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
            ) from None
        except (RecursionError, ValueError) as error:
            raise IIIFParseError(f"invalid JSON: {error}") from None
    elif not isinstance(doc, (dict, list, int, float, bool, type(None))):
        raise TypeError(f"expected bytes, str or a decoded JSON object, got {type(doc).__name__}")
    else:
        check_json_value(doc)
        doc, nuls = remove_nul_characters(doc)
        if nuls:
            warn(f"document contains {nuls} NUL character(s); removed")
    if not isinstance(doc, dict):
        kind = {list: "an array", bool: "a boolean", type(None): "null"}.get(type(doc))
        kind = kind or ("a string" if isinstance(doc, str) else "a number")
        raise IIIFParseError(f"JSON is {kind}, not an object: not a IIIF Manifest or Collection")
    return doc


def _context_version(doc: dict) -> Optional[int]:
    contexts = [c for c in _as_list(doc.get("@context")) if isinstance(c, str)]
    found = set()
    for context in contexts:
        if "iiif.io/api/presentation/3" in context:
            found.add(3)
        elif "iiif.io/api/presentation/2" in context:
            found.add(2)
        elif (
            "shared-canvas.org" in context
            or "iiif.io/api/presentation/1" in context
            or "iiif.io/api/metadata/1" in context
        ):
            found.add(1)
        elif "iiif.io/api/discovery/" in context:
            found.add(3)
    return max(found) if found else None


def _key_version(doc: dict) -> int:
    """Without a Presentation context, JSON-LD keywords and v2-only keys tell v2 from v3."""
    if any(t.startswith("sc:") for t in _get_types(doc)):
        return 2
    if "@id" in doc or "@type" in doc or "sequences" in doc or "manifests" in doc:
        return 2
    return 3


_KINDS = {
    "manifest": "Manifest",
    "collection": "Collection",
    "orderedcollection": "OrderedCollection",
    "orderedcollectionpage": "OrderedCollectionPage",
}


def _infer_kind_from_keys(doc: dict) -> Optional[str]:
    if isinstance(doc.get("sequences"), list):
        return "Manifest"
    if any(isinstance(doc.get(key), list) for key in ("manifests", "collections", "members")):
        return "Collection"
    item_types = {t for item in _as_list(doc.get("items")) for t in _local_types(item)}
    if "canvas" in item_types:
        return "Manifest"
    if item_types & {"manifest", "collection"}:
        return "Collection"
    return None


def _classify(doc: dict, warn: _Warnings) -> str:
    types = _get_types(doc)
    for type_name in types:
        kind = _KINDS.get(_local_name(type_name))
        if kind:
            return kind
    if types:
        raise IIIFParseError(
            f"document is a {_describe_type(doc)}, not a IIIF Manifest or Collection"
        )
    kind = _infer_kind_from_keys(doc)
    if kind is None:
        keys = ", ".join(sorted(str(k) for k in doc)[:8]) or "none"
        raise IIIFParseError(
            f"not a IIIF Manifest or Collection: no @type/type and no IIIF structure (keys: {keys})"
        )
    warn(f"document has no @type/type; treated as a {kind} from its keys")
    return kind


def _document_id(doc: dict, source_url: Optional[str], kind: str, warn: _Warnings) -> str:
    raw = doc.get("id", doc.get("@id"))
    doc_id = _get_id(doc)
    if doc_id is None and raw is not None:
        warn(f"{kind} id is {raw!r}, not a URI")
    if doc_id is None:
        if source_url:
            warn(f"{kind} has no id; using the source URL")
            return source_url
        raise IIIFParseError(f"{kind} has no id and no source URL was given to stand in for it")
    if _has_scheme(doc_id):
        return doc_id
    if source_url:
        resolved = urljoin(source_url, doc_id)
        warn(f"relative {kind} id {doc_id!r} resolved against the source URL to {resolved}")
        return resolved
    warn(f"relative {kind} id {doc_id!r} kept as published: no source URL to resolve it against")
    return doc_id


# --- image services --------------------------------------------------------------------------


def _profile_strings(service: dict) -> list[str]:
    # v2 profiles are a URI or [URI, {features}]; Image API 1.x manifests say dcterms:conformsTo.
    values = _as_list(service.get("profile")) + _as_list(service.get("dcterms:conformsTo"))
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def _is_image_api_profile(profile: str) -> bool:
    return "iiif.io/api/image/" in profile or "library.stanford.edu/iiif/image-api" in profile


def image_service_ref(service: Any, base: Optional[str] = None) -> Optional[ImageServiceRef]:
    """An :class:`ImageServiceRef` for one service description, or None when it is not an IIIF
    Image API service (auth, search, physical dimensions ...) or has no id."""
    if not isinstance(service, dict):
        return None
    type_names = _local_types(service)
    contexts = [c for c in _as_list(service.get("@context")) if isinstance(c, str)]
    profiles = _profile_strings(service)
    is_image_api = (
        any(t.startswith("imageservice") for t in type_names)
        or any("iiif.io/api/image/" in c for c in contexts)
        or any(_is_image_api_profile(p) for p in profiles)
        or service.get("protocol") == "http://iiif.io/api/image"
    )
    service_id = _get_id(service)
    if not is_image_api or service_id is None:
        return None
    service_id = _resolve(service_id, base)
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
    ignore = _Warnings()  # a service's advertised size is a hint; bad values just mean unknown
    return ImageServiceRef(
        id=service_id,
        api_version=api_version,
        profile=profiles[0] if profiles else None,
        level=level,
        width=_positive_int(service.get("width"), ignore, "service width"),
        height=_positive_int(service.get("height"), ignore, "service height"),
    )


def _first_image_service(value: Any, base: Optional[str]) -> Optional[ImageServiceRef]:
    # Auth, search and extension services often come first in the list: skip past them.
    for service in _as_list(value):
        ref = image_service_ref(service, base)
        if ref is not None:
            return ref
    return None


# --- painted images --------------------------------------------------------------------------


def _is_painting(annotation: dict) -> bool:
    motivations = [m for m in _as_list(annotation.get("motivation")) if isinstance(m, str)]
    motivations = [m for m in motivations if m.strip()]
    # Missing motivation is common in v2 image annotations, whose place says they paint.
    return not motivations or any(_local_name(m) == "painting" for m in motivations)


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
        kinds = _local_types(body)
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
    kinds = _local_types(body)
    if kinds:
        # dctypes:Image, dcterms:Image, Image, StillImage; Video/Sound/Text/PDF paint no image.
        return any(k.endswith("image") for k in kinds)
    fmt = body.get("format")
    if isinstance(fmt, str) and fmt.strip().lower().startswith("image/"):
        return True
    return _first_image_service(body.get("service"), base) is not None


def _xywh_fragment(target: Any) -> Optional[str]:
    texts: list[str] = []
    if isinstance(target, str):
        texts.append(target)
    elif isinstance(target, dict):
        for selector in _as_list(target.get("selector")):
            if isinstance(selector, dict) and isinstance(selector.get("value"), str):
                texts.append(selector["value"])
        source = target.get("source", target.get("full"))
        texts.append(source if isinstance(source, str) else _get_id(source) or "")
        texts.append(_get_id(target) or "")
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
    warn: _Warnings,
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
    warn: _Warnings,
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
            url: Optional[str] = _resolve(candidate, base)
            service = None
            candidate = {}
        else:
            url = _get_id(candidate)
            url = _resolve(url, base) if url else None
            service = _first_image_service(candidate.get("service"), base)
        if url is None and service is None:
            warn(f"{where}: image body has neither an id nor an image service")
            continue
        fmt = candidate.get("format")
        return PaintedImage(
            url=url,
            service=service,
            format=fmt.strip() if isinstance(fmt, str) and fmt.strip() else None,
            width=_positive_int(candidate.get("width"), warn, f"{where}: image width"),
            height=_positive_int(candidate.get("height"), warn, f"{where}: image height"),
            target_xywh=_target_xywh(
                annotation.get("target", annotation.get("on")),
                canvas_width,
                canvas_height,
                warn,
                where,
            ),
        )
    return None


def _painting_annotations(canvas: dict, warn: _Warnings, where: str) -> Iterator[Any]:
    yield from _as_list(canvas.get("images"))  # v1/v2
    if "images" not in canvas and isinstance(canvas.get("resources"), list):
        # Presentation 1 drafts (e.g. Stanford's Walters manifests) list image annotations here.
        warn.tally("canvas lists its image annotations under Presentation 1 `resources`")
        yield from canvas["resources"]
    for page in _as_list(canvas.get("items")):  # v3 AnnotationPages
        if not isinstance(page, dict):
            warn(f"{where}: items holds a {type(page).__name__}, not an AnnotationPage")
        elif "items" not in page:
            warn(f"{where}: AnnotationPage {_get_id(page)!r} is only referenced; not fetched")
        else:
            yield from _as_list(page.get("items"))


def _read_canvas(
    canvas: dict, order: int, canvas_id: str, base: Optional[str], warn: _Warnings
) -> ParsedCanvas:
    where = f"canvas {canvas_id}"
    width = _positive_int(canvas.get("width"), warn, f"{where}: width")
    height = _positive_int(canvas.get("height"), warn, f"{where}: height")
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
    )


def _canvas_objects(doc: dict, warn: _Warnings) -> Iterator[tuple[str, Any]]:
    """(where, canvas) pairs from v3 ``items`` and from every v1/v2 sequence, in document order."""
    for index, item in enumerate(_as_list(doc.get("items"))):
        kinds = _local_types(item)
        if "canvas" in kinds:
            yield f"items[{index}]", item
        else:
            described = _describe_type(item) if isinstance(item, dict) else type(item).__name__
            warn(f"items[{index}] is a {described}, not a Canvas; ignored")
    for seq_index, sequence in enumerate(_as_list(doc.get("sequences"))):
        if not isinstance(sequence, dict):
            warn(f"sequences[{seq_index}] is not an embedded sequence; ignored")
            continue
        for index, canvas in enumerate(_as_list(sequence.get("canvases"))):
            yield f"sequences[{seq_index}].canvases[{index}]", canvas


def _read_canvases(doc: dict, base: Optional[str], warn: _Warnings) -> list[ParsedCanvas]:
    canvases: list[ParsedCanvas] = []
    seen: set[str] = set()
    duplicates = 0
    for where, canvas in _canvas_objects(doc, warn):
        canvas_id = _get_id(canvas)
        if canvas_id is None:
            warn(f"{where} has no id; ignored")
            continue
        canvas_id = _resolve(canvas_id, base)
        if canvas_id in seen:
            duplicates += 1  # other sequences/orders reuse the same canvases
            continue
        seen.add(canvas_id)
        canvases.append(_read_canvas(canvas, len(canvases), canvas_id, base, warn))
    if duplicates:
        warn(f"{duplicates} canvas references repeat a canvas already listed; kept the first")
    return canvases


# --- manifests -------------------------------------------------------------------------------


def _metadata(value: Any, warn: _Warnings) -> list[MetadataEntry]:
    entries = []
    for index, item in enumerate(_as_list(value)):
        if not isinstance(item, dict):
            warn(f"metadata[{index}] is a {type(item).__name__}, not a label/value pair; ignored")
            continue
        label = to_language_map(item.get("label"), warn, f"metadata[{index}].label")
        text = to_language_map(item.get("value"), warn, f"metadata[{index}].value")
        if label or text:
            entries.append(MetadataEntry(label=label, value=text))
    return entries


def _required_statement(doc: dict, warn: _Warnings) -> Optional[MetadataEntry]:
    statement = doc.get("requiredStatement")
    if isinstance(statement, dict):
        value = to_language_map(statement.get("value"), warn, "requiredStatement.value")
        if value:
            label = to_language_map(statement.get("label"), warn, "requiredStatement.label")
            return MetadataEntry(label=label, value=value)
    elif statement is not None:
        warn("requiredStatement is not a label/value object; ignored")
    attribution = to_language_map(doc.get("attribution"), warn, "attribution")
    if attribution:
        return MetadataEntry(label={"en": ["Attribution"]}, value=attribution)
    return None


def _rights(doc: dict) -> Optional[str]:
    # Kept as published, not resolved: "license" is sometimes free text such as "Public domain".
    for key in ("rights", "license"):
        for item in _as_list(doc.get(key)):
            text = item.strip() if isinstance(item, str) else _get_id(item)
            if text:
                return text
    return None


def _providers(doc: dict, warn: _Warnings) -> list[LanguageMap]:
    providers = []
    for index, provider in enumerate(_as_list(doc.get("provider"))):
        if not isinstance(provider, dict):
            warn(f"provider[{index}] is not an object; ignored")
            continue
        label = to_language_map(provider.get("label"), warn, f"provider[{index}].label")
        if label:
            providers.append(label)
    return providers


def _read_manifest(
    doc: dict, version: int, source_url: Optional[str], warn: _Warnings
) -> ParsedManifest:
    manifest_id = _document_id(doc, source_url, "Manifest", warn)
    base = source_url or (manifest_id if _has_scheme(manifest_id) else None)
    nav_date = doc.get("navDate")
    if nav_date is not None and not isinstance(nav_date, str):
        warn(f"navDate is {nav_date!r}, not a date string; ignored")
        nav_date = None
    thumbnails = _link_ids(doc.get("thumbnail"), base)
    summary = doc.get("summary") if "summary" in doc else doc.get("description")
    canvases = _read_canvases(doc, base, warn)
    if not canvases:
        warn("manifest lists no canvases")
    return ParsedManifest(
        id=manifest_id,
        iiif_version=version,
        label=to_language_map(doc.get("label"), warn, "label"),
        summary=to_language_map(summary, warn, "summary"),
        metadata=_metadata(doc.get("metadata"), warn),
        required_statement=_required_statement(doc, warn),
        rights=_rights(doc),
        nav_date=nav_date.strip() if nav_date and nav_date.strip() else None,
        providers=_providers(doc, warn),
        homepage=_link_ids(doc.get("homepage", doc.get("related")), base),
        see_also=_link_ids(doc.get("seeAlso"), base),
        thumbnail=thumbnails[0] if thumbnails else None,
        canvases=canvases,
        warnings=warn.finish(),
    )


# --- collections -----------------------------------------------------------------------------


_MEMBER_KINDS = {"manifest": "Manifest", "collection": "Collection"}


class _MemberList:
    """Members in order of first appearance; the same id listed twice is kept once, and the
    collection itself is never its own member (that would send a harvester round in a loop)."""

    def __init__(self, collection_id: str, base: Optional[str], warn: _Warnings) -> None:
        self.base = base
        self.warn = warn
        self.members: list[CollectionMember] = []
        self._seen: set[str] = {collection_id}

    def add(self, entry: Any, default_kind: Optional[str], where: str) -> None:
        if isinstance(entry, str) and entry.strip():
            member_id, kind, label = entry.strip(), default_kind, None
        elif isinstance(entry, dict) and _get_id(entry):
            member_id = _get_id(entry)
            kinds = _local_types(entry)
            kind = _MEMBER_KINDS.get(next((k for k in kinds if k in _MEMBER_KINDS), ""))
            if not kinds:
                kind = default_kind  # an untyped entry in `manifests` is a manifest
            label = entry.get("label")
        else:
            self.warn(f"{where} has no id; ignored")
            return
        if kind is None:
            described = f"a {_describe_type(entry)}" if _get_types(entry) else "untyped"
            self.warn(f"{where} is {described}, not a Manifest or Collection; ignored")
            return
        member_id = _resolve(member_id, self.base)
        if member_id in self._seen:
            return
        self._seen.add(member_id)
        self.members.append(
            CollectionMember(
                id=member_id, kind=kind, label=to_language_map(label, self.warn, f"{where}.label")
            )
        )


def _read_collection(
    doc: dict, kind: str, version: int, source_url: Optional[str], warn: _Warnings
) -> ParsedCollection:
    collection_id = _document_id(doc, source_url, "Collection", warn)
    base = source_url or (collection_id if _has_scheme(collection_id) else None)
    members = _MemberList(collection_id, base, warn)
    pages: list[str] = []
    if kind == "OrderedCollectionPage":  # IIIF Change Discovery: activities about resources
        for index, activity in enumerate(_as_list(doc.get("orderedItems"))):
            activity_types = _local_types(activity)
            if set(activity_types) & _REMOVAL_ACTIVITIES:
                continue
            target = activity.get("object") if isinstance(activity, dict) else None
            members.add(target, None, f"orderedItems[{index}].object")
        pages = _link_ids(doc.get("next"), base)
    elif kind == "OrderedCollection":
        pages = _link_ids(doc.get("first"), base) or _link_ids(doc.get("last"), base)
    else:
        # v2.1 `members` carries the publisher's intended order, so it goes first.
        for key, default_kind in (
            ("members", None),
            ("manifests", "Manifest"),
            ("collections", "Collection"),
        ):
            for index, entry in enumerate(_as_list(doc.get(key))):
                members.add(entry, default_kind, f"{key}[{index}]")
        for index, entry in enumerate(_as_list(doc.get("items"))):
            members.add(entry, None, f"items[{index}]")
        # A paged collection points at its first page; each page points at the next.
        for key in ("first", "next"):
            for url in _link_ids(doc.get(key), base):
                if url not in pages and url != collection_id:
                    pages.append(url)
    if not members.members and not pages:
        warn("collection lists no members and no pages")
    return ParsedCollection(
        id=collection_id,
        iiif_version=version,
        label=to_language_map(doc.get("label"), warn, "label"),
        members=members.members,
        pages=pages,
        warnings=warn.finish(),
    )


# --- public API ------------------------------------------------------------------------------


def parse_document(
    doc: Document, source_url: Optional[str] = None
) -> Union[ParsedManifest, ParsedCollection]:
    """Parse a IIIF Presentation 1/2/3 Manifest or Collection (also a collection page, and IIIF
    Change Discovery OrderedCollection/OrderedCollectionPage) given as bytes, text or decoded JSON.

    ``source_url`` is where the document was fetched from: relative ids resolve against it and
    it stands in for a missing id.

    Raises IIIFParseError (with the reason) for invalid JSON, JSON that is not an object, and
    documents that are not a Manifest or Collection (an AnnotationList, a bare Canvas, ``{}``),
    or have neither an id nor a ``source_url``. Raises TypeError for a ``doc`` of another Python
    type. Problems inside a usable document are recorded in ``.warnings`` instead.
    """
    warn = _Warnings()
    data = _load_json(doc, warn)
    kind = _classify(data, warn)
    version = _context_version(data) or _key_version(data)
    if kind == "Manifest":
        return _read_manifest(data, version, source_url, warn)
    return _read_collection(data, kind, version, source_url, warn)


def parse_document_with_text(
    doc: Document, source_url: Optional[str] = None
) -> tuple[Union[ParsedManifest, ParsedCollection], Optional[ManifestText]]:
    """Like :func:`parse_document`, and for a Manifest also the text annotations it embeds and
    the annotation documents it references (see :func:`.annotations.manifest_text`); the JSON is
    decoded once. The second item is None for a Collection. Raises as :func:`parse_document`."""
    warn = _Warnings()
    data = _load_json(doc, warn)
    kind = _classify(data, warn)
    version = _context_version(data) or _key_version(data)
    if kind != "Manifest":
        return _read_collection(data, kind, version, source_url, warn), None
    manifest = _read_manifest(data, version, source_url, warn)
    base = source_url or (manifest.id if _has_scheme(manifest.id) else None)
    sizes = {c.id: (c.width, c.height) for c in manifest.canvases if c.width and c.height}
    return manifest, manifest_text(data, base, sizes)


def load_json_object(doc: Document) -> dict:
    """Decode ``doc`` as the parser does (BOMs, UTF-16, Windows-1252 fallback) and return the JSON
    object. Raises IIIFParseError for invalid JSON or JSON that is not an object."""
    return _load_json(doc, _Warnings())


def parse_manifest(doc: Document, source_url: Optional[str] = None) -> ParsedManifest:
    """Like :func:`parse_document`, and raises IIIFParseError when the document is a Collection."""
    parsed = parse_document(doc, source_url)
    if not isinstance(parsed, ParsedManifest):
        raise IIIFParseError(f"expected a Manifest, found a Collection ({parsed.id})")
    return parsed


def parse_collection(doc: Document, source_url: Optional[str] = None) -> ParsedCollection:
    """Like :func:`parse_document`, and raises IIIFParseError when the document is a Manifest."""
    parsed = parse_document(doc, source_url)
    if not isinstance(parsed, ParsedCollection):
        raise IIIFParseError(f"expected a Collection, found a Manifest ({parsed.id})")
    return parsed
