"""What a search may use in this process, and running it: the bridge from the web app to
:func:`manuscripts_search.search.engine.run_search`.

Searching degrades instead of failing: without the vision-language model (not downloadable, a
bad directory) or without its index, a text query still searches metadata and transcriptions
(full text, and MiniLM sentence vectors when their index exists), and the page says so in a
notice. Only a query nothing can answer is refused (503 with what to run, or 400).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from flask import current_app
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from manuscripts_search.search.filters import FilterError
from manuscripts_search.models import Canvas, Embedding, Region, SearchDocument
from manuscripts_search.search.engine import SearchContext, SearchError, SearchPage, SearchRequest, run_search
from manuscripts_search.search.signal_registry import text_only_signals

from .errors import AppError
from .resources import (NO_INDEX_MESSAGE, encoder_fallback_reason, get_encoder, get_index, has_any_index,
                        saved_indexes)

log = logging.getLogger(__name__)

# What a scholar reads; the reason itself (an exception's text) goes to the log and the admin page.
NO_MODEL_NOTICE = ("The image model {model} is not available, so results come from metadata and "
                   "transcriptions only.")
# On a search by image, metadata and transcriptions have nothing to match: say what is compared.
FALLBACK_IMAGE_NOTICE = ("The image model {model} is not available, so your image is compared by simple "
                         "colour and texture features only.")
NO_IMAGE_MODEL_MESSAGE = "Searching by image needs the image model {model}, which is not available right now."


@dataclass
class SearchSetup:
    context: SearchContext
    notices: list[str] = field(default_factory=list)

    @property
    def visual(self) -> bool:
        return self.context.index is not None


def prepare_search(session: Session, *, text: bool, visual: bool, image_space_needed: bool = False,
                   image: bool = False) -> SearchSetup:
    """The encoders and indexes available for a query: ``visual`` when it needs the image
    side (text through the model, an image), ``text`` for full-text and semantic search,
    ``image_space_needed`` when only stored vectors are compared ("more like this"), ``image``
    when the query is an image (the notices then say what that image is compared by).

    Never raises for a missing model or index: what is missing becomes a notice.
    """
    app = current_app._get_current_object()
    setup = SearchSetup(SearchContext(session, score_floors=dict(app.config["MSEARCH_CONFIG"].score_floors)))
    if visual or image_space_needed:
        _add_visual(app, setup, load_model=visual, image=image)
    if text:
        _add_semantic(app, setup)
    return setup


def _add_visual(app, setup: SearchSetup, load_model: bool, image: bool = False) -> None:
    if not has_any_index(app):
        setup.notices.append(NO_INDEX_MESSAGE)
        return
    encoder = None
    if load_model:
        try:
            encoder = get_encoder(app)
        except AppError:
            if not image:  # an image query without a model is refused with its own message
                setup.notices.append(NO_MODEL_NOTICE.format(model=_model_name(app)))
        reason = encoder_fallback_reason(app)
        if reason and image:
            setup.notices.append(FALLBACK_IMAGE_NOTICE.format(model=_model_name(app)))
        elif reason:
            setup.notices.append(NO_MODEL_NOTICE.format(model=_model_name(app)) + " Searching by image "
                                 "uses simple colour and texture features.")
        elif encoder is not None and not encoder.supports_text:
            setup.notices.append("The image encoder in use cannot read text, so text queries search "
                                 "metadata and transcriptions only.")
    space = getattr(encoder, "space_id", None) or _only_image_space(app)
    if space is None:
        return
    try:
        setup.context.index = get_index(app, space)
        setup.context.encoder = encoder
    except AppError as error:
        setup.notices.append(error.message)


def _model_name(app) -> str:
    # The last part of a path or hub id: enough to recognise it, without the installation's paths.
    model = str(app.config["MSEARCH_CONFIG"].model).rstrip("/")
    return model.rsplit("/", 1)[-1] if model.startswith(("/", ".", "~")) else model


def _only_image_space(app) -> Optional[str]:
    spaces = [s["space"] for s in saved_indexes(app) if s.get("space") and not s["space"].startswith("text:")]
    return spaces[0] if len(spaces) == 1 else None


def _add_semantic(app, setup: SearchSetup) -> None:
    """The MiniLM sentence index and encoder, when an index for them was saved."""
    from manuscripts_search.embedding.text_encoder import TextEncoderLoadError, load_text_encoder, text_space_id

    space = text_space_id()
    if space is None or not any(s.get("space") == space for s in saved_indexes(app)):
        return
    try:
        index = get_index(app, space)
        encoder = load_text_encoder(device=app.config["MSEARCH_CONFIG"].device)
    except (AppError, TextEncoderLoadError) as error:
        log.warning("semantic text search unavailable: %s", error)
        return
    setup.context.text_index, setup.context.text_encoder = index, encoder


def image_model_missing(setup: SearchSetup) -> str:
    """The 503 message of an image search that no encoder can read."""
    model = _model_name(current_app._get_current_object())
    about_model = (NO_MODEL_NOTICE.format(model=model), FALLBACK_IMAGE_NOTICE.format(model=model))
    reasons = [notice for notice in setup.notices if notice not in about_model]  # e.g. no index for its space
    return " ".join([NO_IMAGE_MODEL_MESSAGE.format(model=model), *reasons])


def has_text_documents(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(SearchDocument.id.is_not(None)))))


def execute(setup: SearchSetup, request: SearchRequest) -> SearchPage:
    """Run ``request``; raises AppError 503 when nothing is indexed yet, 400 for a request the
    engine refuses (its message says why)."""
    context = setup.context
    wants_text_tower = bool(request.text) and context.encoder is not None \
        and not context.encoder.supports_text
    if wants_text_tower and request.image is None:
        text_signals = text_only_signals()
        request.signals = tuple(s for s in (request.signals or text_signals) if s in text_signals) or None
    if request.like_canvas_id or request.like_region_id:
        _find_like_space(setup, request)
    if context.index is None and request.image is None and not (request.like_canvas_id or request.like_region_id) \
            and not has_text_documents(context.session) and not has_any_index(current_app._get_current_object()):
        raise AppError(NO_INDEX_MESSAGE, 503)
    try:
        return run_search(context, request)
    except FilterError as error:
        raise AppError(str(error), 400) from None
    except SearchError as error:
        message = str(error)
        if "index" in message and ("msearch" in message or "no index" in message):
            raise AppError(message[0].upper() + message[1:], 503) from None
        raise AppError(message[0].upper() + message[1:], 400) from None


def _find_like_space(setup: SearchSetup, request: SearchRequest) -> None:
    """"More like this" compares the stored vector of a canvas (or region): say what is true when
    there is none — the page has no image, or its image is not encoded yet — and search the
    space that holds it when the app could not tell which (several image spaces indexed)."""
    app = current_app._get_current_object()
    session = setup.context.session
    if request.like_canvas_id:
        canvas = session.get(Canvas, request.like_canvas_id)
        if canvas is None:
            raise AppError(f"There is no canvas {request.like_canvas_id}.", 404)
        if not canvas.service_id and not canvas.image_url:
            raise AppError("This page has no image to compare, so no pages can be found that look like it.", 404)
        vector_of = (Embedding.canvas_id == canvas.id) & Embedding.region_id.is_(None)
        what = "This page's image"
    else:
        if session.get(Region, request.like_region_id) is None:
            raise AppError(f"There is no region {request.like_region_id}.", 404)
        vector_of = Embedding.region_id == request.like_region_id
        what = "This region"
    spaces = set(session.scalars(select(Embedding.space).where(vector_of, Embedding.stale.is_(False)).distinct()))
    index = setup.context.index
    if index is not None and index.space in spaces:
        return
    indexed = [s["space"] for s in saved_indexes(app) if s.get("space") in spaces]
    if not indexed:
        raise AppError(f"{what} is not encoded for image search yet: run msearch embed "
                       "(and msearch index) to compare it.", 503)
    setup.context.index = get_index(app, indexed[0])


def describe_setup(setup: SearchSetup) -> dict[str, Any]:
    return {"visual": setup.context.index is not None and setup.context.encoder is not None,
            "semantic": setup.context.text_index is not None, "notices": list(setup.notices)}
