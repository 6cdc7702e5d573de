"""The internal, version-independent model that Presentation 1/2/3 documents are normalised into.

Everything downstream (store, harvester, worker, web) speaks only these types, so the messy
variety of real-world IIIF is handled in exactly one place: :mod:`manuscripts_search.iiif.presentation`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# A IIIF v3 language map: {"en": ["The title"], "none": ["..."]}. v2 values are converted into it.
LanguageMap = dict[str, list[str]]


@dataclass(frozen=True)
class ImageServiceRef:
    """A IIIF Image API service that can render a painted image at any requested size/region."""

    id: str  # base URI, no trailing slash, no /info.json
    api_version: int  # 2 or 3 (1 is treated as 2 by URL syntax)
    profile: Optional[str] = None  # the raw profile/compliance URI or level name
    level: Optional[int] = None  # 0, 1, 2 when known
    width: Optional[int] = None  # full image size in pixels, when the manifest says so
    height: Optional[int] = None


@dataclass
class PaintedImage:
    """One image painted onto a canvas (the first choice item when the body is a Choice)."""

    url: Optional[str]  # the direct image URL given in the body (may be a full-size IIIF URL)
    service: Optional[ImageServiceRef]
    format: Optional[str] = None
    width: Optional[int] = None  # pixel size of the body, when given
    height: Optional[int] = None
    # Where on the canvas it is painted, in canvas coordinates; None means the whole canvas.
    target_xywh: Optional[tuple[int, int, int, int]] = None


@dataclass
class ParsedCanvas:
    id: str
    order: int  # 0-based position in the manifest's (first) sequence / items
    label: LanguageMap = field(default_factory=dict)
    width: Optional[int] = None  # None when missing or not a positive integer
    height: Optional[int] = None
    images: list[PaintedImage] = field(default_factory=list)
    thumbnail: Optional[str] = None  # the canvas's own ``thumbnail`` image URL, when it gives one

    @property
    def paints_image(self) -> bool:
        return bool(self.images)

    @property
    def image(self) -> Optional[PaintedImage]:
        return self.images[0] if self.images else None


@dataclass
class MetadataEntry:
    label: LanguageMap
    value: LanguageMap


@dataclass
class ParsedManifest:
    id: str
    iiif_version: int  # 1, 2 or 3: the version the document was written in
    label: LanguageMap = field(default_factory=dict)
    summary: LanguageMap = field(default_factory=dict)
    metadata: list[MetadataEntry] = field(default_factory=list)
    required_statement: Optional[MetadataEntry] = None
    rights: Optional[str] = None  # v3 rights / v2 license URI
    nav_date: Optional[str] = None
    providers: list[LanguageMap] = field(default_factory=list)  # provider labels / v2 attribution-logo owners
    homepage: list[str] = field(default_factory=list)
    see_also: list[str] = field(default_factory=list)
    thumbnail: Optional[str] = None
    canvases: list[ParsedCanvas] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # non-fatal problems met while normalising

    @property
    def canvas_count(self) -> int:
        return len(self.canvases)

    @property
    def image_canvas_count(self) -> int:
        return sum(1 for c in self.canvases if c.paints_image)


@dataclass
class CollectionMember:
    id: str
    kind: str  # "Manifest" or "Collection"
    label: LanguageMap = field(default_factory=dict)


@dataclass
class ParsedCollection:
    id: str
    iiif_version: int
    label: LanguageMap = field(default_factory=dict)
    members: list[CollectionMember] = field(default_factory=list)
    # Paged collections (v2 `first`/`next`, v3 has none in spec but some servers page): URLs to follow.
    pages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class IIIFParseError(ValueError):
    """A document is not a usable IIIF resource; the message says why, for recording against its URL."""
