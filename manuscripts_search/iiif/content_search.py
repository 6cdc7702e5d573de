"""IIIF Content Search responses, 2.0 and 1.0, and the service blocks that declare them.

Small pure functions from plain data (:class:`SearchMatch`, :class:`ResultPage`, terms) to the
JSON the specs define:

- Search 2.0: an ``AnnotationPage`` (``@context`` search/2), paged through an embedded
  ``AnnotationCollection`` in ``partOf`` (a one-item array) with ``first``/``last``/``total``,
  ``next``/``prev`` and ``startIndex``; match highlighting as ``highlighting`` annotations with a ``TextQuoteSelector``
  in ``annotations``; autocomplete as a ``TermPage`` of ``{"value", "total"}`` terms;
- Search 1.0: an ``sc:AnnotationList`` (presentation/2 and search/1 contexts) with ``within`` a
  ``sc:Layer`` (``total``, ``first``, ``last``, ``ignored``), ``resources`` and ``search:Hit``
  ``hits`` with ``match``/``before``/``after``; autocomplete as a ``search:TermList``.

Viewers (Mirador 3/4, Universal Viewer) find a search service only by its Search 1 ``profile``
and read only Search 1 responses, so a re-published manifest declares both services: the
Search 2 block first (Clover takes the first search service it meets, and reads Search 2), then
the Search 1 block with its profile (Mirador and UV look it up by profile, wherever it stands).
Each block is written in the syntax of the document it goes into (``@id`` in Presentation 2).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional

SEARCH_2_CONTEXT = "http://iiif.io/api/search/2/context.json"
SEARCH_1_CONTEXT = "http://iiif.io/api/search/1/context.json"
PRESENTATION_2_CONTEXT = "http://iiif.io/api/presentation/2/context.json"
PRESENTATION_3_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
SEARCH_1_PROFILE = "http://iiif.io/api/search/1/search"
AUTOCOMPLETE_1_PROFILE = "http://iiif.io/api/search/1/autocomplete"

# Presentation 3 motivations to their Open Annotation names in Search 1 responses.
_V2_MOTIVATIONS = {"painting": "sc:painting", "supplementing": "sc:painting", "commenting": "oa:commenting",
                   "describing": "oa:describing", "tagging": "oa:tagging", "highlighting": "oa:highlighting"}


@dataclass(frozen=True)
class SearchMatch:
    """One matching annotation: its text on (part of) a canvas, or on a manifest."""

    annotation_id: str  # URI; hits and highlights refer to it
    target_id: str  # the canvas (or manifest) URI, without fragment
    text: str  # the annotation's whole text
    motivation: str = "supplementing"  # Presentation 3 motivation
    xywh: Optional[str] = None  # "x,y,w,h" in canvas coordinates; None: the whole resource
    exact: Optional[str] = None  # the matching words inside ``text`` ...
    prefix: str = ""  # ... and the text just before and after them
    suffix: str = ""
    label: Optional[dict] = None  # language map shown by viewers (e.g. the canvas label)
    target_type: str = "Canvas"
    part_of: Optional[dict] = None  # {"id", "type": "Manifest", "label"} when the scope spans manifests
    extent: Optional[tuple[int, int]] = None  # the canvas's (width, height), when known

    @property
    def target(self) -> str:
        return f"{self.target_id}#xywh={self.xywh}" if self.xywh else self.target_id

    @property
    def region_target(self) -> str:
        """The target as a region, always: a match on the whole canvas as its full extent.

        Universal Viewer 4 reads the box of every Search 1 hit from ``#xywh=`` and fails on a bare
        canvas URI (no hit shown at all). A canvas of unknown size (the harvested manifest gave
        none) is given its top-left pixel: the viewer still goes to the page, and draws nothing
        that could be taken for the place of the match.
        """
        if self.xywh or self.target_type != "Canvas":
            return self.target
        width, height = self.extent or (0, 0)
        box = f"0,0,{width},{height}" if width and height and width > 0 and height > 0 else "0,0,1,1"
        return f"{self.target_id}#xywh={box}"


@dataclass(frozen=True)
class ResultPage:
    """Where one page sits in the whole result: its URL, the result's URL (the collection, or
    the Search 1 layer), and the URLs of the first, last, next and previous pages."""

    page_url: str
    collection_url: str
    total: int
    start_index: int
    first_url: str
    last_url: str
    next_url: Optional[str] = None
    prev_url: Optional[str] = None
    ignored: tuple[str, ...] = field(default_factory=tuple)


# -- Search 2.0 --------------------------------------------------------------------------------

def search2_response(matches: list[SearchMatch], page: ResultPage) -> dict:
    """A Content Search 2.0 ``AnnotationPage`` for one page of ``matches``."""
    response: dict = {"@context": SEARCH_2_CONTEXT, "id": page.page_url, "type": "AnnotationPage"}
    if page.ignored:
        response["ignored"] = list(page.ignored)
    # An array: Presentation 3 says partOf "MUST be an array of JSON objects", and Clover's
    # parser maps over it (it fails on the single object of the Search 2.0 examples).
    response["partOf"] = [{
        "id": page.collection_url, "type": "AnnotationCollection", "total": page.total,
        "first": {"id": page.first_url, "type": "AnnotationPage"},
        "last": {"id": page.last_url, "type": "AnnotationPage"},
    }]
    if page.next_url:
        response["next"] = {"id": page.next_url, "type": "AnnotationPage"}
    if page.prev_url:
        response["prev"] = {"id": page.prev_url, "type": "AnnotationPage"}
    response["startIndex"] = page.start_index
    response["items"] = [_search2_annotation(match) for match in matches]
    highlights = [_search2_highlight(match, position) for position, match in enumerate(matches, 1)
                  if match.exact]
    if highlights:
        response["annotations"] = [{"type": "AnnotationPage", "items": highlights}]
    return response


def _search2_annotation(match: SearchMatch) -> dict:
    annotation: dict = {
        "id": match.annotation_id, "type": "Annotation", "motivation": match.motivation,
        "body": {"type": "TextualBody", "value": match.text, "format": "text/plain"},
    }
    if match.label:
        annotation["label"] = match.label
    if match.part_of:
        annotation["target"] = {"id": match.target, "type": match.target_type, "partOf": [match.part_of]}
    else:
        annotation["target"] = match.target
    return annotation


def _search2_highlight(match: SearchMatch, position: int) -> dict:
    selector: dict = {"type": "TextQuoteSelector"}
    if match.prefix:
        selector["prefix"] = match.prefix
    selector["exact"] = match.exact
    if match.suffix:
        selector["suffix"] = match.suffix
    return {"id": f"{match.annotation_id}#match-{position}", "type": "Annotation", "motivation": "highlighting",
            "target": {"type": "SpecificResource", "source": match.annotation_id, "selector": [selector]}}


def autocomplete2_response(page_url: str, terms: list[tuple[str, int]], ignored: tuple[str, ...] = ()) -> dict:
    """A Content Search 2.0 autocomplete ``TermPage``: ``terms`` are (term, occurrences)."""
    response: dict = {"@context": SEARCH_2_CONTEXT, "id": page_url, "type": "TermPage"}
    if ignored:
        response["ignored"] = list(ignored)
    response["items"] = [{"value": term, "total": count} for term, count in terms]
    return response


def search2_service(search_url: str, autocomplete_url: Optional[str], presentation_version: int = 3) -> dict:
    """The Search 2.0 service block, with its nested autocomplete service (spec section 3), in
    the syntax of the manifest it goes into: Presentation 3 ``id``/``type``; Presentation 2, whose
    services are identified by ``@id`` (its validator refuses a service without one), the same
    block with ``@context``/``@id``/``@type``."""
    if presentation_version >= 3:
        service: dict = {"id": search_url, "type": "SearchService2"}
        if autocomplete_url:
            service["service"] = [{"id": autocomplete_url, "type": "AutoCompleteService2"}]
        return service
    service = {"@context": SEARCH_2_CONTEXT, "@id": search_url, "@type": "SearchService2"}
    if autocomplete_url:
        service["service"] = {"@id": autocomplete_url, "@type": "AutoCompleteService2"}
    return service


# -- Search 1.0 --------------------------------------------------------------------------------

def search1_response(matches: list[SearchMatch], page: ResultPage) -> dict:
    """A Content Search 1.0 ``sc:AnnotationList`` for one page of ``matches``, with ``hits``.

    Only canvas-targeted matches belong here: Search 1 viewers jump to the canvas of each hit.
    """
    layer: dict = {"@type": "sc:Layer", "total": page.total, "first": page.first_url, "last": page.last_url}
    if page.ignored:
        layer["ignored"] = list(page.ignored)
    response: dict = {
        "@context": [PRESENTATION_2_CONTEXT, SEARCH_1_CONTEXT],
        "@id": page.page_url, "@type": "sc:AnnotationList", "within": layer,
    }
    if page.next_url:
        response["next"] = page.next_url
    if page.prev_url:
        response["prev"] = page.prev_url
    response["startIndex"] = page.start_index
    response["resources"] = [_search1_annotation(match) for match in matches]
    response["hits"] = [_search1_hit(match) for match in matches]
    return response


def _search1_annotation(match: SearchMatch) -> dict:
    annotation: dict = {
        "@id": match.annotation_id, "@type": "oa:Annotation",
        "motivation": _V2_MOTIVATIONS.get(match.motivation, "sc:painting"),
        "resource": {"@type": "cnt:ContentAsText", "chars": match.text},
    }
    # Always the plain "canvas#xywh=" string: Mirador reads an object ``on`` only in the
    # SpecificResource form (``full``), and fails on the spec's ``within`` form; and always with
    # a region, which Universal Viewer needs (see SearchMatch.region_target).
    annotation["on"] = match.region_target
    label = _first_label(match.label)
    if label:
        annotation["label"] = label
    return annotation


def _search1_hit(match: SearchMatch) -> dict:
    hit: dict = {"@type": "search:Hit", "annotations": [match.annotation_id]}
    if match.exact:
        hit["match"] = match.exact
        if match.prefix:
            hit["before"] = match.prefix
        if match.suffix:
            hit["after"] = match.suffix
    return hit


def autocomplete1_response(page_url: str, terms: list[tuple[str, int]], search_url_for: Callable[[str], str],
                           ignored: tuple[str, ...] = ()) -> dict:
    """A Content Search 1.0 autocomplete ``search:TermList``; ``search_url_for(term)`` is the
    search link of each term."""
    response: dict = {"@context": SEARCH_1_CONTEXT, "@id": page_url, "@type": "search:TermList"}
    if ignored:
        response["ignored"] = list(ignored)
    response["terms"] = [{"match": term, "url": search_url_for(term), "count": count} for term, count in terms]
    return response


def search1_service(search_url: str, autocomplete_url: Optional[str], presentation_version: int) -> dict:
    """The Search 1.0 service block in the syntax of the manifest it goes into: Presentation 2
    writes ``@context``/``@id``/``profile``; Presentation 3 names older services by ``@id`` and
    ``@type`` ``SearchService1`` (Presentation 3, section on services), keeping the ``profile``
    that viewers look for."""
    if presentation_version >= 3:
        service: dict = {"@id": search_url, "@type": "SearchService1", "profile": SEARCH_1_PROFILE}
        if autocomplete_url:
            service["service"] = [{"@id": autocomplete_url, "@type": "AutoCompleteService1",
                                   "profile": AUTOCOMPLETE_1_PROFILE}]
        return service
    service = {"@context": SEARCH_1_CONTEXT, "@id": search_url, "profile": SEARCH_1_PROFILE}
    if autocomplete_url:
        service["service"] = {"@id": autocomplete_url, "profile": AUTOCOMPLETE_1_PROFILE}
    return service


# -- declaring services on a manifest --------------------------------------------------------------

@dataclass(frozen=True)
class SearchServiceURLs:
    search1: str
    autocomplete1: str
    search2: str
    autocomplete2: str


def search_services(urls: SearchServiceURLs, presentation_version: int) -> list[dict]:
    """Our Search 2 and Search 1 blocks, in that order (see the module's docstring)."""
    return [search2_service(urls.search2, urls.autocomplete2, presentation_version),
            search1_service(urls.search1, urls.autocomplete1, presentation_version)]


def with_search_services(manifest: dict, urls: SearchServiceURLs, presentation_version: int) -> dict:
    """A copy of ``manifest`` (Presentation 2 or 3 JSON) declaring our Search 2 and Search 1
    services first in its ``service`` list; services it already declares are kept after them."""
    result = copy.deepcopy(manifest)
    existing = result.get("service")
    existing = [] if existing is None else (existing if isinstance(existing, list) else [existing])
    ours = search_services(urls, presentation_version)
    result["service"] = ours + [s for s in existing if not _same_service(s, ours)]
    if presentation_version >= 3:
        context = result.get("@context") or PRESENTATION_3_CONTEXT
        contexts = context if isinstance(context, list) else [context]
        if SEARCH_2_CONTEXT not in contexts:
            # Extension contexts come before the Presentation context (Presentation 3, JSON-LD).
            result["@context"] = [SEARCH_2_CONTEXT, *contexts]
    return result


def _same_service(service, ours: list[dict]) -> bool:
    if not isinstance(service, dict):
        return False
    service_id = service.get("id") or service.get("@id")
    return any(service_id == (own.get("id") or own.get("@id")) for own in ours)


def _first_label(label) -> Optional[str]:
    if isinstance(label, str):
        return label
    if isinstance(label, dict):
        for values in label.values():
            for value in values if isinstance(values, list) else [values]:
                if isinstance(value, str) and value.strip():
                    return value
    return None
