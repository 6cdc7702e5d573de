"""A small but complete catalogue for the web tests: a IIIF v3 manifest of coloured shapes (its
JSON kept as harvested, metadata with hostile HTML, requiredStatement, rights, provider, date),
page and region vectors encoded by the test session's tiny CLIP from real rendered images,
transcription lines with boxes, a collection, search documents (full text), and the saved index.

Images are published by a real IIIF server when one is given (browser tests), else under the
unreachable host iiif.test (client tests, which never fetch images).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
from sqlalchemy import select

from manuscripts_search.config import Config, load_config
from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.store.vector_codec import decode_vectors, encode_vector
from manuscripts_search.search.documents import sync_documents
from manuscripts_search.index.layouts import new_index
from manuscripts_search.models import (Canvas, Collection, CollectionMembership, Embedding, Manifest, Region, Source,
                                       TextAnnotation)
from tests.helpers.model_factory import render_shape

CANVAS_W, CANVAS_H = 1000, 1500
IMAGE_W, IMAGE_H = 500, 750  # the images are half the canvas size: coordinates must be converted
HOSTILE_METADATA = [
    {"label": {"en": ["Description"]},
     "value": {"en": ['<p>A <b>book</b> of shapes <script>alert("meta")</script><img src="x" onerror="alert(7)">'
                      '<a href="javascript:alert(8)">bad link</a> <a href="https://example.org/about">about</a>'
                      '<iframe src="https://evil.example"></iframe></p>']}},
    {"label": {"en": ["Date"]}, "value": {"none": ["c. 1450"]}},
    {"label": {"en": ["Plain <b>not html</b>"]}, "value": {"none": ["5 < 6 and <i>not html either"]}},
]
# (key, colour, shape, transcription line or None)
PAGES = [
    ("red_circle", "red", "circle", "Here begins the book of the red dragon"),
    ("blue_triangle", "blue", "triangle", "A blue triangle drawn by the scribe"),
    ("green_square", "green", "square", None),
    ("scene", "yellow", "square", "Dragons and birds in the margin"),
]
SCENE_REGION = (500, 750, 500, 750)  # the scene's lower right quarter shows a red circle


@dataclass
class WebSite:
    config: Config
    canvas_ids: dict = field(default_factory=dict)
    manifest_ids: dict = field(default_factory=dict)
    region_ids: dict = field(default_factory=dict)
    collection_id: Optional[int] = None
    canvas_iiif_ids: dict = field(default_factory=dict)
    manifest_url: str = ""


def site_config(data_dir: Path, model_dir: Path, db_url: str) -> Config:
    return load_config({"MSEARCH_DATA_DIR": str(data_dir), "MSEARCH_MODEL": str(model_dir),
                        "MSEARCH_DB": db_url, "MSEARCH_DEVICE": "cpu"})


def page_image(colour: str, shape: str, seed: int):
    """A page image: the shape alone, or (scene) a yellow square with a red circle in a corner."""
    image = render_shape(colour, shape, size=IMAGE_W, seed=seed).resize((IMAGE_W, IMAGE_H))
    return image


def scene_image(seed: int):
    from PIL import Image

    page = Image.new("RGB", (IMAGE_W, IMAGE_H), (128, 128, 128))
    page.paste(render_shape("yellow", "square", size=IMAGE_W // 2, seed=seed).resize((IMAGE_W // 2, IMAGE_H // 2)), (0, 0))
    page.paste(render_shape("red", "circle", size=IMAGE_W // 2, seed=seed + 1).resize((IMAGE_W // 2, IMAGE_H // 2)),
               (IMAGE_W // 2, IMAGE_H // 2))
    return page


def build_site(config: Config, encoder, image_server=None) -> WebSite:
    """Fill ``config``'s database and index; ``image_server`` (an IIIFTestServer) publishes the
    page images for real, else they live under http://iiif.test/."""
    site = WebSite(config)
    base = image_server.base_url if image_server is not None else "http://iiif.test"
    manifest_url = f"{base}/shapes/manifest.json"
    site.manifest_url = manifest_url
    engine = make_engine(config.db_url)
    try:
        upgrade_database(engine)
        factory = make_sessionmaker(engine)
        with session_scope(factory) as session:
            source = Source(url=manifest_url, kind="manifest", status="harvested")
            session.add(source)
            session.flush()
            images, canvases_json = {}, []
            for seed, (key, colour, shape, _) in enumerate(PAGES):
                image = scene_image(seed) if key == "scene" else page_image(colour, shape, seed)
                images[key] = image
                ident = f"{colour}-{shape}" if key != "scene" else "scene"
                service = f"{base}/iiif3/{ident}"
                if image_server is not None:
                    service = image_server.add_image(ident, image)["v3"]
                canvases_json.append((key, ident, service))
            manifest_json = _manifest_json(manifest_url, base, canvases_json)
            manifest = Manifest(
                url=manifest_url, iiif_id=manifest_url, source_id=source.id, iiif_version=3,
                label={"en": ["Book of shapes"], "fr": ["Livre des formes"]},
                summary={"en": ["Shapes drawn for <b>testing</b>."]},
                metadata_entries=HOSTILE_METADATA,
                required_statement={"label": {"en": ["Attribution"]},
                                    "value": {"en": ['<span>Provided by the <a href="https://example.org/library">'
                                                     'Shape Library</a><script>alert(9)</script></span>']}},
                rights="http://creativecommons.org/licenses/by/4.0/", nav_date="1450-01-01T00:00:00Z",
                providers=[{"id": "https://example.org/library", "label": {"en": ["Bibliothèque des formes"]}}],
                homepage=[{"id": "https://example.org/book", "label": {"en": ["The book's page"]}}],
                raw_json=json.dumps(manifest_json), canvas_count=len(PAGES), image_canvas_count=len(PAGES))
            session.add(manifest)
            session.flush()
            site.manifest_ids["book"] = manifest.id
            for position, ((key, colour, shape, line), (_, ident, service)) in enumerate(zip(PAGES, canvases_json)):
                canvas_iiif = f"{base}/shapes/canvas/{ident}"
                canvas = Canvas(manifest_id=manifest.id, iiif_id=canvas_iiif, position=position,
                                label={"none": [f"f. {position + 1}r {colour} {shape}"]}, width=CANVAS_W,
                                height=CANVAS_H, service_id=service, service_api_version=3, service_level=2,
                                image_width=IMAGE_W, image_height=IMAGE_H)
                session.add(canvas)
                session.flush()
                site.canvas_ids[key] = canvas.id
                site.canvas_iiif_ids[key] = canvas_iiif
                _embed(session, encoder, canvas.id, None, images[key])
                if line:
                    session.add(TextAnnotation(manifest_id=manifest.id, canvas_id=canvas.id, canvas_iiif_id=canvas_iiif,
                                               motivation="supplementing", text=line, x=100, y=100, w=800, h=60,
                                               source_url=manifest_url, origin_url=manifest_url))
                if key == "scene":
                    for name, box in (("circle", SCENE_REGION), ("square", (0, 0, 500, 750))):
                        region = Region(canvas_id=canvas.id, x=box[0], y=box[1], w=box[2], h=box[3])
                        session.add(region)
                        session.flush()
                        site.region_ids[name] = region.id
                        crop = images[key].crop((box[0] // 2, box[1] // 2, (box[0] + box[2]) // 2,
                                                 (box[1] + box[3]) // 2))
                        _embed(session, encoder, canvas.id, region.id, crop)
            hostile = Manifest(url="javascript:alert(4)", iiif_id="javascript:alert(4)", iiif_version=3,
                               label={"none": ["<script>alert(1)</script>"]}, metadata_entries=[
                                   {"label": {"en": ["<script>x</script>"]}, "value": {"en": ["<b onclick=\"x()\">bold</b>"]}}])
            session.add(hostile)
            session.flush()
            site.manifest_ids["hostile"] = hostile.id
            collection = Collection(iiif_id=f"{base}/shapes/collection.json", label={"en": ["All shapes"]}, iiif_version=3)
            session.add(collection)
            session.flush()
            session.add(CollectionMembership(collection_id=collection.id, manifest_id=manifest.id))
            site.collection_id = collection.id
            session.flush()
            sync_documents(session)
            rows = session.scalars(select(Embedding).where(Embedding.space == encoder.space_id)).all()
            index = new_index(encoder.space_id, encoder.dim)
            index.add([row.id for row in rows], decode_vectors([row.vector for row in rows], encoder.dim))
            index.save(config.index_dir)
    finally:
        engine.dispose()
    return site


def add_scene_regions(site: WebSite, encoder, boxes: list[tuple[int, int, int, int]]) -> None:
    """More regions (canvas coordinates) on the scene, each embedded from its crop of the scene's
    image, and the index saved again with them: a page with overlapping region hits."""
    engine = make_engine(site.config.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            canvas_id = site.canvas_ids["scene"]
            image = scene_image([key for key, *_ in PAGES].index("scene"))  # build_site's seed
            for box in boxes:
                region = Region(canvas_id=canvas_id, x=box[0], y=box[1], w=box[2], h=box[3])
                session.add(region)
                session.flush()
                site.region_ids[",".join(map(str, box))] = region.id
                _embed(session, encoder, canvas_id, region.id,
                       image.crop((box[0] // 2, box[1] // 2, (box[0] + box[2]) // 2, (box[1] + box[3]) // 2)))
            rows = session.scalars(select(Embedding).where(Embedding.space == encoder.space_id)).all()
            index = new_index(encoder.space_id, encoder.dim)
            index.add([row.id for row in rows], decode_vectors([row.vector for row in rows], encoder.dim))
            index.save(site.config.index_dir)
    finally:
        engine.dispose()


def _embed(session, encoder, canvas_id: int, region_id: Optional[int], image) -> None:
    vector = encoder.encode_images([image])[0]
    session.add(Embedding(space=encoder.space_id, model_id=encoder.model_id, model_revision=encoder.revision,
                          canvas_id=canvas_id, region_id=region_id, dim=encoder.dim,
                          vector=encode_vector(vector)))
    session.flush()


def _manifest_json(manifest_url: str, base: str, canvases: list) -> dict:
    items = []
    for position, (key, ident, service) in enumerate(canvases):
        canvas_id = f"{base}/shapes/canvas/{ident}"
        items.append({
            "id": canvas_id, "type": "Canvas", "label": {"none": [f"f. {position + 1}r"]},
            "width": CANVAS_W, "height": CANVAS_H,
            "items": [{"id": f"{canvas_id}/page", "type": "AnnotationPage", "items": [{
                "id": f"{canvas_id}/painting", "type": "Annotation", "motivation": "painting", "target": canvas_id,
                "body": {"id": f"{service}/full/max/0/default.jpg", "type": "Image", "format": "image/jpeg",
                         "width": IMAGE_W, "height": IMAGE_H,
                         "service": [{"id": service, "type": "ImageService3", "profile": "level2"}]}}]}]})
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": manifest_url, "type": "Manifest",
            "label": {"en": ["Book of shapes"]}, "items": items}


# -- fixtures (a pytest plugin, listed in conftest.py's pytest_plugins) -------------------------

@pytest.fixture(scope="module")
def shapes_site(tmp_path_factory, trained_clip_dir, trained_clip_encoder, module_db_url) -> WebSite:
    """The book of shapes, built once per module in the module's database."""
    return build_site(site_config(tmp_path_factory.mktemp("shapes-site"), trained_clip_dir, module_db_url),
                      trained_clip_encoder)

