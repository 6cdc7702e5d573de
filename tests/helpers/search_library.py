"""A small catalogue for the search engine tests (test_search_engine, test_search_cli): three
manifests (a book of hours, a herbal, a sampler of filler pages), a page whose quarters are
regions, transcriptions, a collection; image vectors from the given CLIP and, when asked, the
search documents, their sentence vectors and both indexes (what `msearch index` makes)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from manuscripts_search.index.sync import sync_index
from manuscripts_search.index.layouts import open_index
from manuscripts_search.store.vector_codec import encode_vector
from manuscripts_search.models import (Canvas, Collection, CollectionMembership, Embedding, Manifest, Region,
                                       TextAnnotation)
from manuscripts_search.search.documents import sync_documents
from manuscripts_search.search.engine import SearchContext, SearchRequest, run_search
from manuscripts_search.search.text_vectors import sync_text_vectors
from manuscripts_search.store.db import session_scope
from tests.helpers.model_factory import render_shape

GRID_CELLS = [("green", "square"), ("blue", "triangle"), ("yellow", "square"), ("red", "circle")]
CELL = 48  # canvas units per grid cell (the canvas is 2 x 2 cells)
# No red and no blue among the filler pages: queries for those colours have a known answer.
FILLER_CLASSES = [("green", "square"), ("yellow", "circle"), ("green", "triangle"), ("yellow", "square")]


@dataclass
class Library:
    """A small catalogue with vectors and indexes, and the ids the tests need."""

    factory: object
    index_dir: Path
    encoder: object
    text_encoder: object
    canvases: dict = field(default_factory=dict)  # key -> canvas id
    manifests: dict = field(default_factory=dict)  # key -> manifest id
    regions: dict = field(default_factory=dict)  # key -> (region id, xywh)
    collection_iiif: str = "https://lib.test/collection/hours"

    def context(self, session, with_text: bool = True) -> SearchContext:
        index = open_index(self.index_dir, self.encoder.space_id)
        text_index = open_index(self.index_dir, self.text_encoder.space_id) if with_text else None
        return SearchContext(session, index, self.encoder, text_index, self.text_encoder if with_text else None)

    def search(self, **request) -> "object":
        with session_scope(self.factory) as session:
            return run_search(self.context(session), SearchRequest(**request))


def _grid_image(size: int = 2 * CELL) -> Image.Image:
    image = Image.new("RGB", (size, size))
    half = size // 2
    for position, (colour, shape) in enumerate(GRID_CELLS):
        image.paste(render_shape(colour, shape, size=half, seed=40 + position),
                    ((position % 2) * half, (position // 2) * half))
    return image


def _embed(session, encoder, canvas_id: int, image: Image.Image, region_id=None) -> Embedding:
    vector = encoder.encode_images([image])[0]
    row = Embedding(space=encoder.space_id, model_id=encoder.model_id, model_revision=encoder.revision,
                    canvas_id=canvas_id, region_id=region_id, dim=encoder.dim,
                    vector=encode_vector(vector))
    session.add(row)
    session.flush()
    return row


def add_canvas(session, encoder, manifest_id: int, key: str, colour: str, shape: str, seed: int,
               position: int, label: str | None = None) -> Canvas:
    canvas = Canvas(manifest_id=manifest_id, iiif_id=f"https://lib.test/canvas/{key}", position=position,
                    label={"none": [label or f"f. {position + 1}r"]}, width=96, height=96,
                    service_id=f"https://lib.test/iiif/{key}", service_api_version=3, service_level=2)
    session.add(canvas)
    session.flush()
    _embed(session, encoder, canvas.id, render_shape(colour, shape, size=96, seed=seed))
    return canvas


def build_library(factory, index_dir: Path, encoder, text_encoder, make_indexes: bool = True) -> Library:
    """The catalogue with image vectors; with ``make_indexes`` also the search documents, their
    sentence vectors and both indexes (what `msearch index` makes)."""
    library = Library(factory, index_dir, encoder, text_encoder)
    with session_scope(factory) as session:
        hours = Manifest(url="https://lib.test/hours/manifest.json", iiif_id="https://lib.test/hours/manifest.json",
                         iiif_version=3, label={"en": ["Book of hours, use of Rome"]},
                         summary={"fr": ["Livre d'heures enluminé"]},
                         metadata_entries=[{"label": {"en": ["Date"]}, "value": {"en": ["c. 1450"]}}],
                         providers=[{"fr": ["Bibliothèque municipale de Lyon"]}],
                         nav_date="1450-01-01T00:00:00Z")
        herbal = Manifest(url="https://lib.test/herbal/manifest.json", iiif_id="https://lib.test/herbal/manifest.json",
                          iiif_version=2, label={"en": ["Herbal with medicinal plants"]},
                          providers=[{"en": ["Bodleian Libraries"]}], nav_date="1520-06-01T00:00:00Z")
        sampler = Manifest(url="https://lib.test/sampler/manifest.json", iiif_id="https://lib.test/sampler/manifest.json",
                           iiif_version=3, label={"en": ["Pattern sampler"]})
        session.add_all([hours, herbal, sampler])
        session.flush()
        library.manifests = {"hours": hours.id, "herbal": herbal.id, "sampler": sampler.id}
        collection = Collection(iiif_id=library.collection_iiif, label={"en": ["Hours"]})
        session.add(collection)
        session.flush()
        session.add(CollectionMembership(collection_id=collection.id, manifest_id=hours.id))

        specs = [("red1", hours.id, "red", "circle", 1), ("blue", hours.id, "blue", "triangle", 2),
                 ("red2", herbal.id, "red", "circle", 3), ("green", herbal.id, "green", "square", 4),
                 ("yellow", herbal.id, "yellow", "square", 5)]
        for position, (key, manifest_id, colour, shape, seed) in enumerate(specs):
            library.canvases[key] = add_canvas(session, encoder, manifest_id, key, colour, shape, seed,
                                               position).id
        # A page showing four things: the whole page has a vector, and so does each quarter.
        grid = Canvas(manifest_id=hours.id, iiif_id="https://lib.test/canvas/grid", position=10,
                      label={"none": ["f. 11r"]}, width=2 * CELL, height=2 * CELL,
                      service_id="https://lib.test/iiif/grid", service_api_version=3, service_level=2)
        session.add(grid)
        session.flush()
        library.canvases["grid"] = grid.id
        image = _grid_image()
        _embed(session, encoder, grid.id, image)
        for position, (colour, shape) in enumerate(GRID_CELLS):
            x, y = (position % 2) * CELL, (position // 2) * CELL
            region = Region(canvas_id=grid.id, x=x, y=y, w=CELL, h=CELL)
            session.add(region)
            session.flush()
            _embed(session, encoder, grid.id, image.crop((x, y, x + CELL, y + CELL)), region_id=region.id)
            library.regions[f"{colour} {shape}"] = (region.id, f"{x},{y},{CELL},{CELL}")
        for number in range(24):
            colour, shape = FILLER_CLASSES[number % len(FILLER_CLASSES)]
            library.canvases[f"filler{number}"] = add_canvas(session, encoder, sampler.id, f"filler{number}",
                                                             colour, shape, 100 + number, number).id
        session.add_all([
            TextAnnotation(manifest_id=hours.id, canvas_id=library.canvases["blue"], motivation="supplementing",
                           language="la", text="Incipit officium de Pâques, <b>rubrica</b>", x=10, y=20, w=30, h=8),
            TextAnnotation(manifest_id=herbal.id, canvas_id=library.canvases["yellow"], motivation="supplementing",
                           language="la", text="Herba salvia: contra dolorem capitis", x=5, y=5, w=40, h=10),
        ])
        session.flush()
        if not make_indexes:
            return library
        sync_documents(session)
        sync_text_vectors(session, text_encoder)
        sync_index(session, index_dir, encoder.space_id)
        sync_index(session, index_dir, text_encoder.space_id)
    return library
