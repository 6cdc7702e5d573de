"""Open-set classification of canvases by prototypes, in one vision-language space.

A curator defines categories by text prompts ("a map", "a decorated initial") and/or example
images or existing canvases ("prototypes"). A canvas is labelled with the category of its nearest
prototype when that similarity clears the prototype's threshold; otherwise it stays unlabelled
(open set: "none of these" is an answer). Closed-set classification is the same with no threshold:
every canvas gets its nearest category.

Text→image and image→image cosines live on different scales (CLIP-style models: roughly 0.2–0.35
against 0.6–0.95), so each prototype kind has its own default threshold, and "nearest" compares
margins above threshold rather than raw similarities. A category's own threshold, when set,
applies to all its prototypes. Labels are stored per space and become facets and filters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..models import CanvasLabel, Category, CategoryPrototype, Embedding
from ..store.vector_codec import decode_vector, decode_vectors, encode_vector

DEFAULT_THRESHOLDS = {"text": 0.2, "image": 0.75, "canvas": 0.75}


class ClassificationError(ValueError):
    """A category or prototype cannot be made or used; the message says why."""


@dataclass
class ClassifyReport:
    space: str
    canvases: int = 0
    labelled: int = 0
    per_category: dict[str, int] = field(default_factory=dict)
    skipped_prototypes: list[str] = field(default_factory=list)  # not available in this space

    def as_dict(self) -> dict:
        return {"space": self.space, "canvases": self.canvases, "labelled": self.labelled,
                "unlabelled": self.canvases - self.labelled, "per_category": self.per_category,
                "skipped_prototypes": self.skipped_prototypes}


def get_or_create_category(session: Session, name: str, description: Optional[str] = None,
                           threshold: Optional[float] = None) -> Category:
    """The category called ``name`` (created when missing; description/threshold updated when given).

    Raises ClassificationError for an empty or over-long name or a threshold outside [-1, 1].
    """
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ClassificationError("a category name must have 1 to 200 characters")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ClassificationError(f"a threshold is a cosine similarity between -1 and 1, got {threshold}")
    category = session.scalar(select(Category).where(Category.name == name))
    if category is None:
        category = Category(name=name)
        session.add(category)
    if description is not None:
        category.description = description
    if threshold is not None:
        category.threshold = threshold
    session.flush()
    return category


def _store(session, category, kind, space, vector, text=None, source=None, canvas_id=None) -> CategoryPrototype:
    vector = np.asarray(vector, dtype=np.float32)  # stored L2-normalised (encode_vector)
    prototype = CategoryPrototype(category_id=category.id, kind=kind, text=text, source=source,
                                  canvas_id=canvas_id, space=space, dim=int(vector.shape[0]),
                                  vector=encode_vector(vector))
    session.add(prototype)
    session.flush()
    return prototype


def add_text_prototype(session: Session, category: Category, prompt: str, encoder) -> CategoryPrototype:
    prompt = (prompt or "").strip()
    if not prompt or len(prompt) > 1000:
        raise ClassificationError("a text prototype needs a prompt of 1 to 1000 characters")
    return _store(session, category, "text", encoder.space_id, encoder.encode_texts([prompt])[0], text=prompt)


def add_image_prototype(session: Session, category: Category, image, source: str, encoder) -> CategoryPrototype:
    """``image`` is a PIL image; ``source`` says where it came from (path or URL), for the record."""
    return _store(session, category, "image", encoder.space_id, encoder.encode_images([image])[0],
                  source=source[:2000])


def add_canvas_prototype(session: Session, category: Category, canvas_id: int, space: str) -> CategoryPrototype:
    """An existing canvas as an example, by its stored vector in ``space``.

    Raises ClassificationError when the canvas has no live vector in that space.
    """
    row = session.execute(select(Embedding.vector, Embedding.dim).where(
        Embedding.space == space, Embedding.canvas_id == canvas_id, Embedding.region_id.is_(None),
        Embedding.stale.is_(False))).first()
    if row is None:
        raise ClassificationError(f"canvas {canvas_id} has no vector in {space}: unknown or not embedded yet")
    return _store(session, category, "canvas", space, decode_vector(row.vector, row.dim), canvas_id=canvas_id)


def _prototypes_in_space(session: Session, space: str, encoder, report: ClassifyReport) -> list[CategoryPrototype]:
    """Prototypes usable in ``space``; text and canvas prototypes defined in another space are
    carried over (re-encoded, or the canvas's vector in this space); images must be re-added."""
    all_prototypes = list(session.scalars(select(CategoryPrototype).order_by(CategoryPrototype.id)))
    here = [p for p in all_prototypes if p.space == space]
    have = {(p.category_id, p.kind, p.text, p.source, p.canvas_id) for p in here}
    for prototype in all_prototypes:
        key = (prototype.category_id, prototype.kind, prototype.text, prototype.source, prototype.canvas_id)
        if prototype.space == space or key in have:
            continue
        have.add(key)
        category = session.get(Category, prototype.category_id)
        try:
            if prototype.kind == "text" and encoder is not None and encoder.space_id == space:
                here.append(add_text_prototype(session, category, prototype.text, encoder))
            elif prototype.kind == "canvas":
                here.append(add_canvas_prototype(session, category, prototype.canvas_id, space))
            else:
                raise ClassificationError("re-add it in this model's space")
        except ClassificationError:
            report.skipped_prototypes.append(f"{category.name}: {prototype.kind} "
                                             f"{prototype.text or prototype.source or prototype.canvas_id}")
    return here


def classify_canvases(session: Session, space: str, encoder=None, closed_set: bool = False,
                      thresholds: Optional[dict[str, float]] = None, batch: int = 20_000) -> ClassifyReport:
    """Label every live canvas vector of ``space`` with its nearest prototype's category.

    Replaces the space's previous labels. ``encoder`` (of this space) lets text prototypes defined
    under another model be re-encoded. Raises ClassificationError when there is no prototype.
    """
    report = ClassifyReport(space)
    defaults = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    prototypes = _prototypes_in_space(session, space, encoder, report)
    if not prototypes:
        raise ClassificationError("no category has a prototype usable in this space: add one with "
                                  "`msearch classify add NAME --prompt TEXT` (or --image / --canvas)")
    categories = {c.id: c for c in session.scalars(select(Category))}
    matrix = np.stack([decode_vector(p.vector, p.dim) for p in prototypes])
    limits = np.array([categories[p.category_id].threshold if categories[p.category_id].threshold is not None
                       else defaults[p.kind] for p in prototypes], dtype=np.float32)
    owner = np.array([p.category_id for p in prototypes])
    session.execute(delete(CanvasLabel).where(CanvasLabel.space == space))
    rows = session.execute(select(Embedding.canvas_id, Embedding.vector, Embedding.dim).where(
        Embedding.space == space, Embedding.region_id.is_(None), Embedding.stale.is_(False))
        .order_by(Embedding.canvas_id)).all()
    for start in range(0, len(rows), batch):
        block = rows[start:start + batch]
        other = next((dim for _, _, dim in block if dim != matrix.shape[1]), None)
        if other is not None:
            raise ClassificationError(f"prototype vectors are {matrix.shape[1]}-d but the space's are "
                                      f"{other}-d")
        vectors = decode_vectors([blob for _, blob, _ in block], matrix.shape[1])
        similarity = vectors @ matrix.T
        margin = similarity - limits  # comparable across prototype kinds
        best = margin.argmax(axis=1)
        for (canvas_id, _, _), choice, row_margin, row_similarity in zip(block, best, margin, similarity):
            report.canvases += 1
            if not closed_set and row_margin[choice] < 0:
                continue
            name = categories[int(owner[choice])].name
            session.add(CanvasLabel(canvas_id=canvas_id, category_id=int(owner[choice]), space=space,
                                    score=float(row_similarity[choice])))
            report.labelled += 1
            report.per_category[name] = report.per_category.get(name, 0) + 1
        session.flush()
    return report


def category_summaries(session: Session, space: Optional[str] = None) -> list[dict]:
    """Every category with its prototypes (kind and text/source) and label count."""
    from sqlalchemy import func

    counts_query = select(CanvasLabel.category_id, func.count()).group_by(CanvasLabel.category_id)
    if space:
        counts_query = counts_query.where(CanvasLabel.space == space)
    counts = dict(session.execute(counts_query).all())
    summaries = []
    for category in session.scalars(select(Category).order_by(Category.name)):
        prototypes = session.scalars(select(CategoryPrototype).where(
            CategoryPrototype.category_id == category.id).order_by(CategoryPrototype.id))
        summaries.append({"name": category.name, "description": category.description,
                          "threshold": category.threshold, "labelled": counts.get(category.id, 0),
                          "prototypes": [{"kind": p.kind, "value": p.text or p.source or p.canvas_id,
                                          "space": p.space} for p in prototypes]})
    return summaries
