"""Export a set of search results as IIIF Presentation 3, built with ``iiif-prezi3``.

- :func:`result_manifest`: one Manifest whose canvases are the hits, each painting the original
  image (its Image API service, else the image URL), with ``partOf`` the source manifest and its
  ``homepage``/``requiredStatement``/``rights`` carried over, and region hits as ``highlighting``
  annotations on ``canvas#xywh=``;
- :func:`result_collection`: one Collection referencing the source manifests of the hits.

The pydantic models of ``iiif-prezi3`` validate everything on construction, so what these return
is valid Presentation 3 or a :class:`ExportError` is raised. Canvases keep their original ids:
IIIF canvases may appear in several manifests, and Content Search hits on them stay valid.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit

PRESENTATION_3_CONTEXT = "http://iiif.io/api/presentation/3/context.json"


class ExportError(ValueError):
    """The result set cannot be expressed as valid Presentation 3 (the message says why)."""


@dataclass(frozen=True)
class ExportImage:
    service_id: Optional[str]
    service_api_version: Optional[int]
    service_level: Optional[int]
    image_url: Optional[str]
    image_format: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None


@dataclass(frozen=True)
class ExportRegion:
    xywh: str  # canvas coordinates
    text: str  # what the highlight says ("visual match for …", a transcription line …)


@dataclass(frozen=True)
class ExportCanvas:
    canvas_id: str
    label: dict
    width: Optional[int]
    height: Optional[int]
    image: Optional[ExportImage]
    manifest_id: str  # the source manifest's URL (or id)
    manifest_label: dict = field(default_factory=dict)
    target_xywh: Optional[str] = None  # where the image sits on the canvas
    homepage: tuple[str, ...] = ()
    required_statement: Optional[dict] = None  # {"label": langmap, "value": langmap}
    rights: Optional[str] = None
    regions: tuple[ExportRegion, ...] = ()
    score: Optional[float] = None


@dataclass(frozen=True)
class ExportedManifest:
    json: dict
    skipped: list[str]  # canvas ids left out, with the reason


def result_manifest(manifest_url: str, label: dict, canvases: list[ExportCanvas], summary: Optional[dict] = None,
                    homepage_url: Optional[str] = None, services: Optional[list[dict]] = None,
                    provider_label: Optional[dict] = None) -> ExportedManifest:
    """A Presentation 3 Manifest at ``manifest_url`` holding ``canvases`` in the given order.

    Canvases without a size or without any http(s) image are left out (listed in ``skipped``);
    a canvas id met twice is kept once. Raises ExportError if the models refuse the result.
    """
    import iiif_prezi3 as prezi
    from pydantic import ValidationError

    skipped: list[str] = []
    items = []
    seen: set[str] = set()
    for position, canvas in enumerate(canvases):
        if canvas.canvas_id in seen:
            continue
        seen.add(canvas.canvas_id)
        try:
            built = _canvas(prezi, manifest_url, position, canvas)
        except (ValidationError, ValueError) as error:
            skipped.append(f"{canvas.canvas_id}: {_first_error(error)}")
            continue
        if isinstance(built, str):
            skipped.append(f"{canvas.canvas_id}: {built}")
            continue
        items.append(built)
    try:
        manifest = prezi.Manifest(id=manifest_url, label=_language_map(label) or {"none": ["Search results"]},
                                  items=items)
        if summary:
            manifest.summary = _language_map(summary)
        if homepage_url and _is_http(homepage_url):
            manifest.homepage = [prezi.Homepage(id=homepage_url, type="Text", format="text/html",
                                                label={"en": ["These results in manuscripts-search"]})]
        if provider_label:
            manifest.provider = [prezi.Provider(id=f"{manifest_url.split('#')[0]}#provider", type="Agent",
                                                label=_language_map(provider_label))]
        if services:
            manifest.service = services
        document = json.loads(manifest.json())
        prezi.Manifest(**document)  # what we serve must read back as valid
    except ValidationError as error:
        raise ExportError(f"the result manifest is not valid Presentation 3: {_first_error(error)}") from None
    return ExportedManifest(document, skipped)


def _canvas(prezi, manifest_url: str, position: int, canvas: ExportCanvas):
    width, height = canvas.width, canvas.height
    image = canvas.image
    if not (width and height) and image is not None and image.width and image.height:
        width, height = image.width, image.height  # the image defines the coordinates
    if not (width and height and width > 0 and height > 0):
        return "no size"
    body = _image_body(prezi, image, width, height) if image is not None else None
    if body is None:
        return "no http(s) image"
    base = manifest_url.split("#")[0].split("?")[0].rstrip("/")
    target = f"{canvas.canvas_id}#xywh={canvas.target_xywh}" if canvas.target_xywh else canvas.canvas_id
    painting = prezi.Annotation(id=f"{base}/painting/{position}", motivation="painting", body=body, target=target)
    built = prezi.Canvas(id=canvas.canvas_id, width=width, height=height,
                         label=_language_map(canvas.label) or {"none": [f"Result {position + 1}"]},
                         items=[prezi.AnnotationPage(id=f"{base}/page/{position}", items=[painting])])
    built.partOf = [prezi.LinkedResource(id=canvas.manifest_id, type="Manifest",
                                         **({"label": _language_map(canvas.manifest_label)}
                                            if _language_map(canvas.manifest_label) else {}))]
    homepages = [url for url in canvas.homepage if _is_http(url)]
    if homepages:
        built.homepage = [prezi.Homepage(id=url, type="Text", format="text/html",
                                         label={"en": ["Holding institution's page"]}) for url in homepages]
    statement = canvas.required_statement
    if isinstance(statement, dict) and _language_map(statement.get("label")) and _language_map(statement.get("value")):
        built.requiredStatement = prezi.KeyValueString(label=_language_map(statement["label"]),
                                                       value=_language_map(statement["value"]))
    if canvas.rights and _is_http(canvas.rights):
        try:
            built.rights = canvas.rights
        except ValueError:
            pass  # not a rights URI the specification accepts: left out rather than invalid
    if canvas.score is not None:
        built.metadata = [prezi.KeyValueString(label={"en": ["Search score"]},
                                               value={"none": [f"{canvas.score:.4f}"]})]
    highlights = []
    for number, region in enumerate(canvas.regions):
        highlights.append(prezi.Annotation(
            id=f"{base}/highlight/{position}/{number}", motivation="highlighting",
            body=prezi.TextualBody(type="TextualBody", value=region.text, format="text/plain"),
            target=f"{canvas.canvas_id}#xywh={region.xywh}"))
    if highlights:
        built.annotations = [prezi.AnnotationPage(id=f"{base}/highlights/{position}", items=highlights)]
    return built


def _image_body(prezi, image: ExportImage, width: int, height: int):
    from manuscripts_search.iiif.image_requests import image_request_url

    image_width, image_height = image.width or width, image.height or height
    if image.service_id and _is_http(image.service_id):
        version = image.service_api_version or 2
        level = image.service_level if image.service_level is not None else 1
        url = image.image_url if image.image_url and _is_http(image.image_url) else \
            image_request_url(image.service_id, version, size="max" if version >= 3 else "full")
        if version >= 3:
            service = prezi.ServiceV3(id=image.service_id, type="ImageService3", profile=f"level{min(level, 2)}")
        else:
            service = prezi.ServiceV2(**{"@id": image.service_id, "@type": "ImageService2",
                                         "profile": f"http://iiif.io/api/image/2/level{min(level, 2)}.json"})
        return prezi.AnnotationBody(id=url, type="Image", format=image.image_format or "image/jpeg",
                                    width=image_width, height=image_height, service=[service])
    if image.image_url and _is_http(image.image_url):
        return prezi.AnnotationBody(id=image.image_url, type="Image", format=image.image_format or "image/jpeg",
                                    width=image_width, height=image_height)
    return None


def result_collection(collection_url: str, label: dict, manifests: list[tuple[str, dict]],
                      summary: Optional[dict] = None, homepage_url: Optional[str] = None) -> dict:
    """A Presentation 3 Collection referencing ``manifests`` ((url, label) pairs, in order, each
    once). Raises ExportError if the models refuse the result."""
    import iiif_prezi3 as prezi
    from pydantic import ValidationError

    try:
        items, seen = [], set()
        for url, manifest_label in manifests:
            if url in seen or not _is_http(url):
                continue
            seen.add(url)
            items.append(prezi.ManifestRef(id=url, type="Manifest",
                                           label=_language_map(manifest_label) or {"none": [url]}))
        collection = prezi.Collection(id=collection_url, label=_language_map(label) or {"none": ["Search results"]},
                                      items=items)
        if summary:
            collection.summary = _language_map(summary)
        if homepage_url and _is_http(homepage_url):
            collection.homepage = [prezi.Homepage(id=homepage_url, type="Text", format="text/html",
                                                  label={"en": ["These results in manuscripts-search"]})]
        document = json.loads(collection.json())
        prezi.Collection(**document)
    except ValidationError as error:
        raise ExportError(f"the result collection is not valid Presentation 3: {_first_error(error)}") from None
    return document


def _language_map(value) -> dict:
    """``value`` as a clean language map: string keys, lists of non-empty strings."""
    if isinstance(value, str):
        return {"none": [value]} if value.strip() else {}
    if not isinstance(value, dict):
        return {}
    clean = {}
    for language, texts in value.items():
        if not isinstance(language, str):
            continue
        strings = [t for t in (texts if isinstance(texts, list) else [texts]) if isinstance(t, str) and t.strip()]
        if strings:
            clean[language or "none"] = strings
    return clean


def _is_http(url) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _first_error(error) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
        except (IndexError, TypeError):
            pass
    return str(error).splitlines()[0]
