"""Text carried by IIIF annotations: transcriptions, OCR, translations, comments and tags.

Presentation 3 puts them in ``annotations`` pages (motivation ``supplementing``, ``commenting``,
``tagging`` ... with ``TextualBody`` bodies); Presentation 2 in ``otherContent`` annotation lists
(``cnt:ContentAsText`` or ``dctypes:Text`` resources with ``chars``, often motivated
``sc:painting``). Either may be embedded in the manifest or only referenced by URL, and pages
may be chained with ``next`` or gathered in an AnnotationCollection (``first``).

:func:`manifest_text` reads what a manifest embeds and lists what it references;
:func:`parse_annotation_document` reads one fetched AnnotationList/AnnotationPage/
AnnotationCollection (or a lone Annotation). Content Search responses look like annotation lists
but are search hits, not transcriptions; they are refused with a clear reason.

HTML bodies are reduced to plain text here: the text is searched, not displayed as markup.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Iterator, Optional

from manuscripts_search.iiif.jsonld import as_list, local_name, local_types, reference_id, resolve
from manuscripts_search.iiif.model import IIIFParseError

MAX_ANNOTATIONS = 50_000  # per document: more is a runaway export, not a page of text
MAX_TEXT_CHARS = 100_000  # per body
MAX_REFERENCES = 20_000  # annotation documents referenced by one manifest

# Motivations whose bodies are not text about the canvas (search hits, links, bookmarks).
_SKIPPED_MOTIVATIONS = {"highlighting", "linking", "bookmarking"}
_TAG_LIKE = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
_BLOCK_TAGS = {"p", "br", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5",
               "h6", "blockquote", "pre", "section", "article", "table", "hr", "dd", "dt"}


@dataclass
class ParsedTextAnnotation:
    text: str  # plain text, HTML reduced to its words
    canvas_id: Optional[str]  # the target canvas as published (fragment removed); None if unknown
    xywh: Optional[tuple[int, int, int, int]] = None  # canvas coordinates; None: whole canvas
    motivation: Optional[str] = None  # local name: supplementing, commenting, painting, tagging ...
    language: Optional[str] = None
    id: Optional[str] = None


@dataclass(frozen=True)
class AnnotationRef:
    """A referenced annotation document to fetch, and the canvas that referenced it."""

    url: str
    canvas_id: Optional[str] = None


@dataclass
class ManifestText:
    annotations: list[ParsedTextAnnotation] = field(default_factory=list)
    references: list[AnnotationRef] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ParsedAnnotationDocument:
    id: str
    kind: str  # AnnotationList | AnnotationPage | AnnotationCollection | Annotation
    annotations: list[ParsedTextAnnotation] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)  # further pages to fetch (next / first)
    warnings: list[str] = field(default_factory=list)


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "img":  # alt text is what a reader of the page would get
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(f" {alt} ")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML fragment: tags dropped, entities decoded, blocks on lines."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return normalise_text("".join(parser.parts))


def normalise_text(text: str) -> str:
    """Collapse runs of spaces within lines, drop blank lines, strip."""
    lines = (" ".join(line.split()) for line in text.replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


# --- bodies and targets -------------------------------------------------------------------------


def _language(obj: dict) -> Optional[str]:
    for key in ("language", "@language"):
        for value in as_list(obj.get(key)):
            if isinstance(value, str) and value.strip():
                return value.strip()[:35]
    return None


def _text_of(obj: dict) -> Optional[tuple[str, Optional[str]]]:
    """(raw text, format) of a textual body, or None when it carries no text inline."""
    for key in ("value", "chars", "@value"):
        value = obj.get(key)
        if isinstance(value, str):
            fmt = obj.get("format")
            return value, fmt.strip().lower() if isinstance(fmt, str) else None
    return None


def _textual_bodies(body: Any, warn, depth: int = 0) -> Iterator[tuple[str, Optional[str], Optional[str]]]:
    """(plain text, language, purpose) for every inline textual body, Choices and
    SpecificResources unwrapped. External text (a URL to an ALTO or hOCR file) is not fetched."""
    if depth > 6:
        return
    if isinstance(body, list):
        for item in body:
            yield from _textual_bodies(item, warn, depth + 1)
        return
    if not isinstance(body, dict):
        return
    kinds = local_types(body)
    if "choice" in kinds:
        for key in ("default", "item", "items"):
            yield from _textual_bodies(body.get(key), warn, depth + 1)
        return
    if "specificresource" in kinds:
        yield from _textual_bodies(body.get("source", body.get("full")), warn, depth + 1)
        return
    if kinds and not set(kinds) & {"textualbody", "contentastext", "text"}:
        return  # an Image, Sound, Dataset ... is not text
    found = _text_of(body)
    if found is None:
        return
    raw, fmt = found
    text = html_to_text(raw) if fmt == "text/html" or _TAG_LIKE.search(raw) else normalise_text(raw)
    if not text:
        return
    if len(text) > MAX_TEXT_CHARS:
        warn(f"a text body of {len(text)} characters was cut to {MAX_TEXT_CHARS}")
        text = text[:MAX_TEXT_CHARS]
    purposes = [p for p in as_list(body.get("purpose")) if isinstance(p, str)]
    yield text, _language(body), local_name(purposes[0]) if purposes else None


def _fragment(text: str) -> Optional[str]:
    fragment = text.split("#", 1)[1] if "#" in text else text
    for part in fragment.split("&"):
        part = part.strip()
        if part.startswith("xywh="):
            return part[len("xywh="):]
    return None


def _selector_xywh(selector: Any, depth: int = 0) -> Optional[str]:
    if depth > 4:
        return None
    for item in as_list(selector):
        if isinstance(item, str):
            found = _fragment(item)
        elif isinstance(item, dict):
            if "choice" in local_types(item):
                found = _selector_xywh([item.get("default"), *as_list(item.get("item"))], depth + 1)
            elif "imageapiselector" in local_types(item) and isinstance(item.get("region"), str):
                found = item["region"] if re.fullmatch(r"[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+", item["region"]) else None
            else:
                value = item.get("value")
                found = _fragment(value) if isinstance(value, str) else None
        else:
            found = None
        if found:
            return found
    return None


def _targets(target: Any, base: Optional[str], depth: int = 0) -> Iterator[tuple[Optional[str], Optional[str]]]:
    """(canvas id without fragment, xywh spec or None) for each target."""
    if depth > 4:
        return
    if isinstance(target, list):
        for item in target:
            yield from _targets(item, base, depth + 1)
        return
    if isinstance(target, str):
        canvas = target.split("#", 1)[0].strip()
        yield (resolve(canvas, base) if canvas else None), _fragment(target) if "#" in target else None
        return
    if not isinstance(target, dict):
        return
    source = target.get("source", target.get("full"))
    if source is not None:
        spec = _selector_xywh(target.get("selector"))
        for canvas, own_spec in _targets(source, base, depth + 1):
            yield canvas, spec or own_spec
        return
    target_id = reference_id(target)
    if target_id:
        yield from _targets(target_id, base, depth + 1)


def _box(spec: Optional[str], size: Optional[tuple[int, int]]) -> Optional[tuple[int, int, int, int]]:
    if not spec:
        return None
    percent = spec.startswith("percent:")
    if spec.startswith(("percent:", "pixel:")):
        spec = spec.split(":", 1)[1]
    try:
        x, y, w, h = (float(v) for v in spec.split(","))
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    if percent:
        if not size:
            return None
        x, w = x * size[0] / 100, w * size[0] / 100
        y, h = y * size[1] / 100, h * size[1] / 100
    box = (round(x), round(y), max(1, round(w)), max(1, round(h)))
    return box if box[0] >= 0 and box[1] >= 0 else None


def _motivation(annotation: dict) -> Optional[str]:
    for value in as_list(annotation.get("motivation")):
        if isinstance(value, str) and value.strip():
            return local_name(value)
    return None


def annotation_texts(annotation: Any, base: Optional[str], default_canvas: Optional[str] = None,
                     canvas_sizes: Optional[dict[str, tuple[int, int]]] = None,
                     warn=None) -> list[ParsedTextAnnotation]:
    """The textual bodies of one Web/Open Annotation, one entry per (body, target) pair."""
    warn = warn or (lambda _message: None)
    if not isinstance(annotation, dict):
        return []
    motivation = _motivation(annotation)
    if motivation in _SKIPPED_MOTIVATIONS:
        return []
    bodies = list(_textual_bodies(annotation.get("body", annotation.get("resource")), warn))
    if not bodies:
        return []
    targets = list(_targets(annotation.get("target", annotation.get("on")), base)) or [(default_canvas, None)]
    annotation_id = reference_id(annotation)
    results = []
    for canvas, spec in targets[:16]:
        canvas = canvas or default_canvas
        size = (canvas_sizes or {}).get(canvas) if canvas else None
        box = _box(spec, size)
        for text, language, purpose in bodies:
            if purpose in _SKIPPED_MOTIVATIONS:
                continue
            results.append(ParsedTextAnnotation(text=text, canvas_id=canvas, xywh=box,
                                                motivation=motivation or purpose, language=language,
                                                id=annotation_id))
    return results


# --- manifests ----------------------------------------------------------------------------------


class _Collector:
    def __init__(self, base: Optional[str], canvas_sizes: dict[str, tuple[int, int]]):
        self.base = base
        self.canvas_sizes = canvas_sizes
        self.result = ManifestText()
        self._refs: set[str] = set()

    def warn(self, message: str) -> None:
        if len(self.result.warnings) < 50:
            self.result.warnings.append(message)

    def reference(self, url: Optional[str], canvas: Optional[str]) -> None:
        if not url or len(self._refs) >= MAX_REFERENCES:
            return
        url = resolve(url, self.base)
        if url not in self._refs:
            self._refs.add(url)
            self.result.references.append(AnnotationRef(url, canvas))

    def annotations(self, items: Any, canvas: Optional[str], painting_only: bool = False) -> None:
        for annotation in as_list(items):
            if len(self.result.annotations) >= MAX_ANNOTATIONS:
                self.warn(f"more than {MAX_ANNOTATIONS} text annotations; the rest ignored")
                return
            if not isinstance(annotation, dict):
                continue  # the canvas parser warns of it; nothing to read here
            if painting_only and _motivation(annotation) not in (None, "painting"):
                continue
            self.result.annotations.extend(
                annotation_texts(annotation, self.base, canvas, self.canvas_sizes, self.warn))

    def layer_page(self, page: Any, canvas: Optional[str], image: dict) -> None:
        """Annotations embedded on a painted image: they target the image (pixels), so they are
        moved onto the canvas, scaled when both sizes are known."""
        if not isinstance(page, dict) or canvas is None:
            return
        size = self.canvas_sizes.get(canvas)
        image_w, image_h = image.get("width"), image.get("height")
        scale = None
        if size and isinstance(image_w, int) and isinstance(image_h, int) and image_w > 0 and image_h > 0:
            scale = (size[0] / image_w, size[1] / image_h)
        for annotation in as_list(page.get("items", page.get("resources"))):
            for text in annotation_texts(annotation, self.base, canvas, None, self.warn):
                text.canvas_id = canvas
                if text.xywh and scale:
                    x, y, w, h = text.xywh
                    text.xywh = (round(x * scale[0]), round(y * scale[1]),
                                 max(1, round(w * scale[0])), max(1, round(h * scale[1])))
                elif text.xywh and not scale:
                    text.xywh = None  # image pixels of unknown scale: the whole canvas is safer
                self.result.annotations.append(text)

    def page(self, page: Any, canvas: Optional[str]) -> None:
        """An embedded annotation page/list, or a reference to one (a string or an id only)."""
        if isinstance(page, str):
            self.reference(page, canvas)
            return
        if not isinstance(page, dict):
            return
        kinds = local_types(page)
        items = page.get("items", page.get("resources"))
        if items is None or "annotationcollection" in kinds:
            self.reference(reference_id(page), canvas)
            return
        self.annotations(items, canvas)
        for link in as_list(page.get("next")):
            self.reference(reference_id(link), canvas)


def _image_bodies(body: Any, depth: int = 0) -> Iterator[dict]:
    """Every object body of a painting annotation, Choice items included."""
    if depth > 6:
        return
    for item in as_list(body):
        if not isinstance(item, dict):
            continue
        kinds = local_types(item)
        if "choice" in kinds:
            for key in ("default", "item", "items"):
                yield from _image_bodies(item.get(key), depth + 1)
        elif "specificresource" in kinds:
            yield from _image_bodies(item.get("source"), depth + 1)
        else:
            yield item


def _canvases(doc: dict) -> Iterator[dict]:
    for item in as_list(doc.get("items")):
        if "canvas" in local_types(item):
            yield item
    for sequence in as_list(doc.get("sequences")):
        if isinstance(sequence, dict):
            for canvas in as_list(sequence.get("canvases")):
                if isinstance(canvas, dict):
                    yield canvas


def manifest_text(doc: dict, base: Optional[str] = None,
                  canvas_sizes: Optional[dict[str, tuple[int, int]]] = None) -> ManifestText:
    """Text annotations a manifest embeds, and the annotation documents it references.

    Reads canvas ``annotations`` (v3) and ``otherContent`` (v2), text painted on canvases, the
    manifest's own ``annotations`` and ranges' ``supplementary`` collections. Never raises.
    """
    collector = _Collector(base, canvas_sizes or {})
    seen: set[str] = set()
    for canvas in _canvases(doc):
        canvas_id = reference_id(canvas)
        canvas_id = resolve(canvas_id, base) if canvas_id else None
        if canvas_id in seen:
            continue
        seen.add(canvas_id)
        for page in as_list(canvas.get("annotations")) + as_list(canvas.get("otherContent")):
            collector.page(page, canvas_id)
        # Text painted onto the canvas (v3 items pages, v2 images) is text of the canvas too.
        painting = [a for page in as_list(canvas.get("items")) if isinstance(page, dict)
                    for a in as_list(page.get("items"))] + as_list(canvas.get("images"))
        collector.annotations(painting, canvas_id, painting_only=True)
        # Annotations on one image layer (a Choice item, say) are about that part of the canvas.
        for annotation in painting:
            if isinstance(annotation, dict):
                for body in _image_bodies(annotation.get("body", annotation.get("resource"))):
                    for page in as_list(body.get("annotations")):
                        collector.layer_page(page, canvas_id, body)
    for page in as_list(doc.get("annotations")):
        collector.page(page, None)
    for range_ in _ranges(doc.get("structures")):
        for supplementary in as_list(range_.get("supplementary")):
            collector.reference(reference_id(supplementary), None)
    return collector.result


def _ranges(value: Any, depth: int = 0) -> Iterator[dict]:
    if depth > 20:
        return
    for item in as_list(value):
        if isinstance(item, dict) and "range" in local_types(item):
            yield item
            yield from _ranges(item.get("items"), depth + 1)


# --- annotation documents -----------------------------------------------------------------------


_DOCUMENT_KINDS = {"annotationlist": "AnnotationList", "annotationpage": "AnnotationPage",
                   "annotationcollection": "AnnotationCollection", "annotation": "Annotation",
                   "layer": "AnnotationCollection"}


def annotation_document_kind(doc: Any) -> Optional[str]:
    """"AnnotationList", "AnnotationPage", "AnnotationCollection" or "Annotation" for a document
    of that type (v2 or v3), else None."""
    for kind in local_types(doc):
        if kind in _DOCUMENT_KINDS:
            return _DOCUMENT_KINDS[kind]
    return None


def _is_search_response(doc: dict) -> bool:
    contexts = [c for c in as_list(doc.get("@context")) if isinstance(c, str)]
    return any("iiif.io/api/search/" in c for c in contexts) or "hits" in doc


def parse_annotation_document(doc: dict, source_url: Optional[str] = None,
                              default_canvas: Optional[str] = None,
                              canvas_sizes: Optional[dict[str, tuple[int, int]]] = None
                              ) -> ParsedAnnotationDocument:
    """Text annotations of one annotation list/page/collection document (decoded JSON).

    ``default_canvas`` is the canvas that referenced the document, used for annotations that do
    not name their target. Raises IIIFParseError for Content Search responses (hits, term
    lists) and for documents that are not annotations at all.
    """
    if not isinstance(doc, dict):
        raise IIIFParseError("annotation document is not a JSON object")
    kinds = local_types(doc)
    if "termlist" in kinds:
        raise IIIFParseError("a IIIF Content Search autocomplete response (TermList), "
                             "not annotations to harvest")
    kind = annotation_document_kind(doc)
    if kind is None:
        if isinstance(doc.get("resources"), list):
            kind = "AnnotationList"
        elif isinstance(doc.get("items"), list) and all(
                "annotation" in local_types(i) for i in doc["items"] if isinstance(i, dict)):
            kind = "AnnotationPage"
        else:
            raise IIIFParseError(f"not an annotation list, page or collection (type {kinds or 'missing'})")
    if kind != "Annotation" and _is_search_response(doc):
        raise IIIFParseError("a IIIF Content Search response (search hits), not annotations to harvest")
    doc_id = reference_id(doc) or source_url or ""
    base = source_url or (doc_id or None)
    collector = _Collector(base, canvas_sizes or {})
    pages: list[str] = []
    if kind == "Annotation":
        collector.annotations([doc], default_canvas)
    elif kind == "AnnotationCollection":
        first = doc.get("first")
        if isinstance(first, dict) and isinstance(first.get("items"), list):
            collector.page(first, default_canvas)  # an embedded first page; its `next` is referenced
        else:
            pages.extend(resolve(u, base) for u in [reference_id(first)] if u)
    else:
        collector.annotations(doc.get("items", doc.get("resources")), default_canvas)
        pages.extend(resolve(u, base) for u in (reference_id(link) for link in as_list(doc.get("next"))) if u)
    pages.extend(ref.url for ref in collector.result.references)
    pages = [p for p in dict.fromkeys(pages) if p != doc_id]
    return ParsedAnnotationDocument(id=doc_id, kind=kind, annotations=collector.result.annotations,
                                    pages=pages, warnings=collector.result.warnings)
