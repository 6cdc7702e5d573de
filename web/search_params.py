"""Reading a search from a request: the query string of ``/search`` and ``/api/search`` (and the
form of their POST, which adds an image), validated into a :class:`SearchRequest`.

Every bad value is an AppError 400 that names the parameter and what it accepts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict

from manuscripts_search.search.filters import FilterError, SearchFilters, parse_filter_options
from manuscripts_search.search.engine import SIGNALS, SearchRequest

from .errors import AppError
from .query_image_store import valid_handle

MAX_QUERY_CHARS = 1000
MAX_PAGE = 10_000
# Query-string names of the filters, as the core's parse_filter_options spells them.
FILTER_PARAMETERS = {"collection": "collection", "manifest": "manifest", "provider": "provider",
                     "institution": "provider", "date_from": "date-from", "date-from": "date-from",
                     "date_to": "date-to", "date-to": "date-to", "iiif_version": "iiif-version",
                     "iiif-version": "iiif-version", "has_transcription": "has-transcription",
                     "has-transcription": "has-transcription", "label": "label"}


@dataclass
class ParsedSearch:
    """A validated search, and enough to rebuild its links (next page, facets, export)."""

    text: Optional[str]
    k: int
    page: int
    group: str
    filters: SearchFilters
    like_canvas_id: Optional[int] = None
    like_region_id: Optional[int] = None
    signals: Optional[tuple[str, ...]] = None
    filter_args: list[tuple[str, str]] = field(default_factory=list)
    weaker: bool = False  # show hits below the score floors too
    default_group: str = "auto"  # left out of links when it is the group
    image_handle: Optional[str] = None  # a kept query image (see query_image_store)

    @property
    def reads_with_model(self) -> bool:
        """Whether the query goes through the image model (words, or a kept query image)."""
        return bool(self.text or self.image_handle)

    def to_request(self, image: Any = None) -> SearchRequest:
        """The engine's request; ``image`` (a PIL image) defaults to the kept query image."""
        if image is None and self.image_handle:
            from .query_image_store import load_query_image

            image = load_query_image(self.image_handle)
        return SearchRequest(text=self.text or None, image=image, like_canvas_id=self.like_canvas_id,
                             like_region_id=self.like_region_id, filters=self.filters, group=self.group,
                             offset=(self.page - 1) * self.k, limit=self.k, signals=self.signals,
                             weaker=self.weaker)

    def query_args(self, **changes) -> list[tuple[str, str]]:
        """The query string of this search as (name, value) pairs, with ``changes`` applied
        (None removes a parameter)."""
        base: dict[str, Any] = {"q": self.text, "k": self.k, "page": self.page if self.page > 1 else None,
                                "group": self.group if self.group != self.default_group else None,
                                "like": self.like_canvas_id, "like_region": self.like_region_id,
                                "image": self.image_handle, "weaker": "1" if self.weaker else None}
        base.update(changes)
        pairs = [(name, str(value)) for name, value in base.items() if value not in (None, "")]
        pairs += [(name, value) for name, value in self.filter_args if name not in changes]
        for signal in self.signals or ():
            pairs.append(("signal", signal))
        return pairs

    def query_string(self, **changes) -> str:
        return urlencode(self.query_args(**changes))

    @property
    def has_filters(self) -> bool:
        return self.filters.active


def parse_search(args: MultiDict, default_k: int, max_k: int, require_query: bool = True,
                 default_group: str = "canvas") -> ParsedSearch:
    """Validate a search's parameters: ``q``, ``k`` (page size), ``page``, ``group`` (canvas,
    manifest or auto; the pages default to auto, the API to canvas so that its answers keep one
    shape unless asked), ``like``, ``like_region``, ``image`` (a kept query image's handle),
    ``signal``, ``weaker`` and the filters. ``require_query``: an empty ``q`` (with no ``like`` or
    ``image``) is a 400."""
    text = (args.get("q") or "").strip()
    if len(text) > MAX_QUERY_CHARS:
        raise AppError(f"The query is too long ({len(text)} characters; at most {MAX_QUERY_CHARS}).", 400)
    like_canvas = _positive_int(args, "like", "like must be a canvas id (a whole number above 0)")
    like_region = _positive_int(args, "like_region", "like_region must be a region id (a whole number above 0)")
    image_handle = (args.get("image") or "").strip().lower() or None
    if image_handle is not None and not valid_handle(image_handle):
        raise AppError(f"image must be the handle of a query image (64 hexadecimal digits), "
                       f"got {image_handle[:20]!r}.", 400)
    if require_query and not text and not like_canvas and not like_region and not image_handle:
        raise AppError("The query is empty: type a few words describing what you are looking for.", 400)
    k = _bounded_int(args, "k", default_k, 1, max_k, f"k must be a whole number from 1 to {max_k}")
    page = _bounded_int(args, "page", 1, 1, MAX_PAGE, f"page must be a whole number from 1 to {MAX_PAGE}")
    group = (args.get("group") or default_group).strip()
    if group not in ("canvas", "manifest", "auto"):
        raise AppError(f"group must be canvas, manifest or auto, got {group[:20]!r}.", 400)
    weaker_raw = (args.get("weaker") or "").strip().lower()
    if weaker_raw not in ("", "0", "1", "true", "false", "yes", "no"):
        raise AppError(f"weaker must be 1 or 0, got {weaker_raw[:20]!r}.", 400)
    signals = tuple(dict.fromkeys(s.strip() for s in args.getlist("signal") if s.strip())) or None
    for signal in signals or ():
        if signal not in SIGNALS:
            raise AppError(f"signal must be one of {', '.join(SIGNALS)}, got {signal[:20]!r}.", 400)
    filter_args, pairs = [], []
    for name in args:
        if name in FILTER_PARAMETERS:
            for value in args.getlist(name):
                if value.strip():
                    filter_args.append((name, value.strip()[:500]))
                    pairs.append(f"{FILTER_PARAMETERS[name]}={value.strip()[:500]}")
    try:
        filters = parse_filter_options(pairs)
    except FilterError as error:
        raise AppError(str(error)[0].upper() + str(error)[1:], 400) from None
    return ParsedSearch(text or None, k, page, group, filters, like_canvas, like_region, signals, filter_args,
                        image_handle=image_handle, weaker=weaker_raw in ("1", "true", "yes"), default_group=default_group)


def _bounded_int(args: MultiDict, name: str, default: int, low: int, high: int, message: str) -> int:
    raw = (args.get(name) or "").strip()
    if not raw:
        return default
    # Length first: int() refuses strings of thousands of digits with a ValueError.
    value = int(raw) if len(raw) <= 6 and raw.isascii() and raw.isdigit() else low - 1
    if not low <= value <= high:
        raise AppError(f"{message}, got {raw[:20]!r}.", 400)
    return value


def _positive_int(args: MultiDict, name: str, message: str) -> Optional[int]:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    if not (len(raw) <= 18 and raw.isascii() and raw.isdigit() and int(raw) > 0):
        raise AppError(f"{message}, got {raw[:20]!r}.", 400)
    return int(raw)
