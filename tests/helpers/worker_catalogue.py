"""A small catalogue for the embedding worker's tests: canvases (and region crops) whose
derivatives are real JPEGs in a real derivative store, written straight into a migrated database
(the harvester's own tests cover how they get there)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from sqlalchemy import select

from manuscripts_search.store.db import make_engine, make_sessionmaker, session_scope, upgrade_database
from manuscripts_search.store.derivatives import DerivativeStore
from manuscripts_search.store.vector_codec import decode_vector, stored_size
from manuscripts_search.models import Canvas, Embedding, EmbeddingClaim, Manifest, PerceptualHash, Region
from tests.helpers.model_factory import render_shape

CORPUS_IMAGES = Path("/work/shared/corpus/images")


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def load_corpus_image(name: str, long_edge: int = 448) -> Image.Image:
    """A corpus image at derivative size (decoded at reduced scale: the originals are large)."""
    with Image.open(CORPUS_IMAGES / name) as image:
        image.draft("RGB", (long_edge, long_edge))
        image = image.convert("RGB")
    image.thumbnail((long_edge, long_edge), Image.Resampling.LANCZOS)
    return image


def corpus_image_names() -> list[str]:
    return sorted(path.name for path in CORPUS_IMAGES.glob("*.jpg"))


def migrated_factory(db_url: str):
    engine = make_engine(db_url)
    upgrade_database(engine)
    return make_sessionmaker(engine)


@dataclass
class Catalogue:
    factory: object
    store: DerivativeStore
    canvas_ids: list[int] = field(default_factory=list)
    region_ids: list[int] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # canvas id → what it shows

    @property
    def items(self) -> int:
        return len(self.canvas_ids) + len(self.region_ids)


def build_catalogue(factory, data_dir: Path, images: list[tuple[str, Image.Image]], regions_per_canvas: int = 0,
                    manifest_url: str = "http://iiif.test/manifest.json", catalogue: Optional[Catalogue] = None) -> Catalogue:
    """One manifest holding a canvas per ``(label, image)``; ``regions_per_canvas`` (0, 2 or 4)
    crops of each, stored as region derivatives."""
    catalogue = catalogue or Catalogue(factory, DerivativeStore(data_dir / "derivatives"))
    with session_scope(factory) as session:
        manifest = Manifest(url=manifest_url, iiif_id=manifest_url, iiif_version=3, label={"en": ["Test book"]})
        session.add(manifest)
        session.flush()
        for position, (label, image) in enumerate(images):
            sha = catalogue.store.put(jpeg_bytes(image))
            canvas = Canvas(manifest_id=manifest.id, iiif_id=f"{manifest_url}/canvas/{position}", position=position,
                            label={"en": [label]}, width=image.width, height=image.height,
                            image_url=f"{manifest_url}/image/{position}.jpg", derivative_sha256=sha,
                            derivative_width=image.width, derivative_height=image.height)
            session.add(canvas)
            session.flush()
            catalogue.canvas_ids.append(canvas.id)
            catalogue.labels[canvas.id] = label
            for x, y, w, h in _boxes(image.width, image.height, regions_per_canvas):
                region = Region(canvas_id=canvas.id, x=x, y=y, w=w, h=h,
                                derivative_sha256=catalogue.store.put(jpeg_bytes(image.crop((x, y, x + w, y + h)))))
                session.add(region)
                session.flush()
                catalogue.region_ids.append(region.id)
    return catalogue


def _boxes(width: int, height: int, count: int) -> list[tuple[int, int, int, int]]:
    if count == 0:
        return []
    half_w, half_h = width // 2, height // 2
    boxes = [(0, 0, half_w, half_h), (half_w, half_h, width - half_w, height - half_h),
             (half_w, 0, width - half_w, half_h), (0, half_h, half_w, height - half_h)]
    if count not in (2, 4):
        raise ValueError("regions_per_canvas must be 0, 2 or 4")
    return boxes[:count]


def shape_images(count: int, size: int = 96, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """``count`` rendered shapes cycling through colours and shapes, labelled "red circle" etc."""
    from tests.helpers.model_factory import shape_classes

    classes = shape_classes()
    return [(f"{colour} {shape}", render_shape(colour, shape, size=size, seed=seed + index))
            for index, (colour, shape) in ((i, classes[i % len(classes)]) for i in range(count))]


def vector_rows(factory, space: Optional[str] = None) -> list[Embedding]:
    with session_scope(factory) as session:
        query = select(Embedding).order_by(Embedding.id)
        if space is not None:
            query = query.where(Embedding.space == space)
        return list(session.scalars(query))


def claim_rows(factory) -> list[EmbeddingClaim]:
    with session_scope(factory) as session:
        return list(session.scalars(select(EmbeddingClaim).order_by(EmbeddingClaim.id)))


def as_vector(row: Embedding) -> np.ndarray:
    return decode_vector(row.vector, row.dim)


def vectors_by_item(factory, space: str) -> dict:
    """``{(canvas id, region id or None): vector}`` of ``space``: to compare two runs item for item."""
    return {(row.canvas_id, row.region_id): as_vector(row) for row in vector_rows(factory, space)}


def hashes_by_item(factory) -> dict:
    """``{(canvas id, region id or None): (64-bit hash, crop hashes, derivative)}`` of every image."""
    with session_scope(factory) as session:
        return {(h.canvas_id, h.region_id): (h.phash64, h.crop_hashes, h.derivative_sha256)
                for h in session.scalars(select(PerceptualHash))}


def assert_each_item_once(factory, catalogue: Catalogue, space: str, dim: int) -> None:
    """Every canvas and region has exactly one live, whole, unit-length vector in ``space``."""
    rows = vector_rows(factory, space)
    keys = [(row.canvas_id, row.region_id) for row in rows]
    assert len(keys) == len(set(keys)), "an item has two vectors"
    expected = {(cid, None) for cid in catalogue.canvas_ids}
    with session_scope(factory) as session:
        expected |= {(canvas_id, region_id) for region_id, canvas_id in session.execute(
            select(Region.id, Region.canvas_id).where(Region.id.in_(catalogue.region_ids)))}
    assert set(keys) == expected
    for row in rows:
        assert not row.stale and row.dim == dim and len(row.vector) == stored_size(dim)
        assert abs(float(np.linalg.norm(as_vector(row))) - 1.0) < 1e-4
