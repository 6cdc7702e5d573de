"""Every search signal, declared once: its name, what it needs, when it can answer a request, how
it ranks, and what its own score means. The engine runs the signals in this order, the CLI's
``--signal`` choices, the web API's parameter check and the OpenAPI document read their names from
here.

Adding a signal: a ranking function returning a :class:`~.signals.CanvasRanking` (its own module),
and one line in :data:`SIGNALS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Embedding
from ..store.vector_codec import decode_vector
from .calibration import ScoreFloor, resolve_floor
from .errors import SearchError
from .signals import CanvasRanking, fulltext_ranking, semantic_ranking, visual_ranking


@dataclass(frozen=True)
class Signal:
    name: str
    score: str  # what the score means when this signal answers alone ("cosine", "bm25")
    needs: str  # what it needs, in words
    uses_vision_model: bool  # needs the vision-language model (or its image index)
    # (request, context) -> whether it takes part; raises SearchError when the request asks for
    # what cannot be done (an image search without an index).
    wanted: Callable[..., bool]
    # (request, context, depth, canvas_filter) -> its ranking, or None when it has nothing to search.
    rank: Callable[..., Optional[CanvasRanking]]


def stored_vector(session: Session, space: str, canvas_id: Optional[int] = None,
                  region_id: Optional[int] = None) -> tuple[np.ndarray, int]:
    """The live vector of a canvas (whole page) or region in ``space``, and its canvas id.

    Raises SearchError when there is none (unknown id, or not embedded in this space).
    """
    condition = (Embedding.region_id == region_id) if region_id else (
        (Embedding.canvas_id == canvas_id) & Embedding.region_id.is_(None))
    row = session.execute(select(Embedding.vector, Embedding.canvas_id, Embedding.dim).where(
        Embedding.space == space, Embedding.stale.is_(False), condition)).first()
    if row is None:
        what = f"region {region_id}" if region_id else f"canvas {canvas_id}"
        raise SearchError(f"{what} has no vector in the model space {space}: unknown id, or not embedded yet")
    return decode_vector(row[0], row[2]), int(row[1])


def reads_text(encoder) -> bool:
    return encoder is not None and bool(encoder.supports_text)


def _image_query(request) -> bool:
    return bool(request.image is not None or request.like_canvas_id or request.like_region_id)


def _visual_wanted(request, context) -> bool:
    image_query = _image_query(request)
    # Handcrafted features have no text side: a text query goes to the text signals.
    if not image_query and not (request.text and reads_text(context.encoder)):
        return False
    if context.index is None:
        if image_query:
            raise SearchError("image search needs the vector index: run `msearch embed` and `msearch index`")
        return False
    if request.image is not None and context.encoder is None:
        raise SearchError("the vision-language model is not loaded, so the image cannot be encoded")
    # A text query without the model: full-text and semantic search still answer it.
    return context.encoder is not None or image_query


def query_vector(request, context) -> tuple[np.ndarray, Optional[int]]:
    """The visual query vector and the canvas to leave out ("more like this" is not itself)."""
    if request.like_canvas_id or request.like_region_id:
        vector, canvas_id = stored_vector(context.session, context.index.space,
                                          request.like_canvas_id, request.like_region_id)
        return vector, (canvas_id if request.like_canvas_id else None)
    vectors = []
    if request.image is not None:
        vectors.append(context.encoder.encode_images([request.image])[0])
    if request.text and context.encoder is not None and reads_text(context.encoder):
        vectors.append(context.encoder.encode_texts([request.text])[0])
    if context.index is not None and vectors[0].shape[0] != context.index.dim:
        raise SearchError(f"the model makes {vectors[0].shape[0]}-d vectors but the index holds "
                          f"{context.index.dim}-d ones: run `msearch index rebuild`")
    # Text and image together: the mean of the two unit vectors looks for both at once.
    vector = np.mean(vectors, axis=0)
    return vector / max(float(np.linalg.norm(vector)), 1e-12), None


def visual_floor(request, context) -> ScoreFloor:
    """The visual signal's floor for ``request``: text queries only (an image or "more like this"
    asks for the nearest pictures, however near), none when the request wants weaker matches."""
    if request.weaker or _image_query(request) or not reads_text(context.encoder):
        return ScoreFloor("visual", None, "off")
    encoder = context.encoder
    return resolve_floor("visual", context.score_floors.get("visual", "auto"), context.index,
                         encoder.space_id, encoder.encode_texts)


def semantic_floor(request, context) -> ScoreFloor:
    if request.weaker:
        return ScoreFloor("semantic", None, "off")
    encoder = context.text_encoder
    return resolve_floor("semantic", context.score_floors.get("semantic", "auto"), context.text_index,
                         encoder.space_id, encoder.encode)


def _visual_rank(request, context, depth: int, canvas_filter) -> CanvasRanking:
    vector, exclude = query_vector(request, context)
    return visual_ranking(context.session, context.index, vector, depth, canvas_filter,
                          exclude_canvas=exclude, ef=request.ef, min_score=visual_floor(request, context).value,
                          filters=request.filters)


def _fulltext_rank(request, context, depth: int, canvas_filter) -> Optional[CanvasRanking]:
    try:
        return fulltext_ranking(context.session, request.text, depth, canvas_filter)
    except ValueError:
        return None  # no searchable word (punctuation only): the other signals still answer


def _semantic_wanted(request, context) -> bool:
    return bool(request.text) and context.text_index is not None and context.text_encoder is not None


def _semantic_rank(request, context, depth: int, canvas_filter) -> CanvasRanking:
    text_vector = context.text_encoder.encode([request.text])[0]
    return semantic_ranking(context.session, context.text_index, text_vector, request.text, depth, canvas_filter,
                            min_score=semantic_floor(request, context).value)


SIGNALS: tuple[Signal, ...] = (
    Signal("visual", "cosine", "the vision-language model and the image index", True, _visual_wanted, _visual_rank),
    Signal("fulltext", "bm25", "a text query (metadata, labels, transcriptions)", False,
           lambda request, context: bool(request.text), _fulltext_rank),
    Signal("semantic", "cosine", "a text query, the sentence encoder and the text index", False,
           _semantic_wanted, _semantic_rank),
)
BY_NAME: dict[str, Signal] = {signal.name: signal for signal in SIGNALS}


def signal_names() -> tuple[str, ...]:
    return tuple(BY_NAME)


def text_only_signals() -> tuple[str, ...]:
    """The signals that answer without the vision-language model."""
    return tuple(signal.name for signal in SIGNALS if not signal.uses_vision_model)
