"""Which image encoder a run uses: the configured vision-language model, or — when it cannot be
loaded — the weight-free handcrafted features, with the reason said out loud.

Every encoder implements :class:`.interface.ImageEncoder` (space, dimension, images, optional
text, preparation in another thread or process). Spaces are
recorded in ``model_spaces`` (:func:`register_space`) so that tools can list which models made
the stored vectors. Text search (full text, and MiniLM sentence vectors from
:mod:`.text_encoder`) needs none of this, so it keeps working whatever happens here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from .handcrafted import HANDCRAFTED_MODEL_ID, HANDCRAFTED_NAME, HandcraftedEncoder
from .interface import HANDCRAFTED, VISION_LANGUAGE, ImageEncoder
from ..models import ModelSpace
from ..models.base import utcnow

log = logging.getLogger(__name__)



class SpaceMismatchError(RuntimeError):
    """A space id is already recorded with another model or vector size; the message says what."""


@dataclass
class ResolvedEncoder:
    """The encoder a run uses and how it was chosen."""

    encoder: Any
    kind: str  # vision-language | handcrafted
    requested: str  # the model that was asked for
    fallback_reason: Optional[str] = None  # why the requested model is not the one in use

    @property
    def is_fallback(self) -> bool:
        return self.fallback_reason is not None

    def describe(self) -> str:
        """One line for a person: what is used and, for a fallback, why and what still works."""
        if not self.is_fallback:
            return f"using {self.kind} encoder {self.encoder.space_id}"
        return (f"cannot use the configured model {self.requested!r}: {self.fallback_reason.rstrip('.')}. "
                f"Falling back to the handcrafted colour/texture features ({self.encoder.space_id}): "
                "image-to-image search and near-duplicates work; text queries use metadata and "
                "transcriptions only until the model can be loaded.")


def is_handcrafted_name(model: str) -> bool:
    return model.strip().lower() in (HANDCRAFTED_NAME, HANDCRAFTED_MODEL_ID)


def resolve_image_encoder(model: str, device: Optional[str] = None, *, fallback: bool = True,
                          precision: str = "auto", compile: bool = False) -> ResolvedEncoder:
    """Load ``model`` ("handcrafted", a hub id or a local directory).

    With ``fallback``, a model that cannot be loaded gives the handcrafted encoder and the reason;
    without, EncoderLoadError is raised. Raises ValueError for a precision the device cannot run.
    """
    from .encoders import EncoderLoadError, load_vision_language_encoder

    if is_handcrafted_name(model):
        return ResolvedEncoder(HandcraftedEncoder(), HANDCRAFTED, model)
    try:
        encoder = load_vision_language_encoder(model, device=device)
    except EncoderLoadError as error:
        if not fallback:
            raise
        resolved = ResolvedEncoder(HandcraftedEncoder(), HANDCRAFTED, model, fallback_reason=str(error))
        log.info("%s", resolved.describe())
        return resolved
    encoder.configure_inference(precision=precision, compile=compile)
    return ResolvedEncoder(encoder, VISION_LANGUAGE, model)


def load_image_preparer(model: str):
    """The encoder half that runs apart from the model (Ray's CPU actors, decoding processes):
    ``prepare_image`` and ``input_side``, loaded without model weights (the image processor only).
    Raises EncoderLoadError when the model's processor cannot be loaded."""
    from .encoders import EncoderLoadError, VisionLanguageEncoder
    from .hub import hub_status

    if is_handcrafted_name(model):
        return HandcraftedEncoder()
    from transformers import AutoProcessor

    local = Path(model).expanduser()
    try:
        processor = AutoProcessor.from_pretrained(str(local) if local.is_dir() else model,
                                                  local_files_only=not local.is_dir() and not hub_status()[0])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise EncoderLoadError(f"cannot load the image processor of {model!r} on this node: {error}") from error
    # The encoder's own prepare_image, on an encoder that holds no model: it only needs the processor.
    return VisionLanguageEncoder(model_id=model, revision="", dim=0, device="cpu", model=None, processor=processor)


def preparer_source(encoder: ImageEncoder) -> str:
    """What :func:`load_image_preparer` needs to rebuild ``encoder``'s ``prepare_image`` in another
    process: "handcrafted", a local directory as an absolute path, or the hub id."""
    return encoder.preparer_source()


# Below this many image-tower parameters, splitting each matrix product over CPU threads costs more
# in synchronisation than it gains (measured: a 0.1M-parameter CLIP runs 7x faster on one thread),
# and the threads then fight the decoding threads for the cores.
SMALL_MODEL_PARAMETERS = 20_000_000


def choose_torch_threads(encoder: Any, requested: int = 0) -> Optional[int]:
    """The intra-op thread count for ``encoder`` on the CPU: ``requested`` when above 0; else 1 for
    a small model, None (torch's default, one per core) for a large one or a GPU."""
    if requested > 0:
        return requested
    model = getattr(encoder, "model", None)
    if model is None or not str(getattr(encoder, "device", "cpu")).startswith("cpu"):
        return None
    tower = getattr(model, "vision_model", model)
    return 1 if sum(parameter.numel() for parameter in tower.parameters()) < SMALL_MODEL_PARAMETERS else None


def encoder_kind(encoder: ImageEncoder) -> str:
    return encoder.kind


def register_space(session: Session, encoder: ImageEncoder) -> ModelSpace:
    """Record (or touch) the space ``encoder`` writes vectors in.

    Raises SpaceMismatchError when that space id is recorded with another model, revision or size.
    """
    from ..store.db import dialect_insert

    # Two workers may start on a new space at once: insert-or-nothing, then read what is there.
    session.execute(dialect_insert(session)(ModelSpace).values(
        space=encoder.space_id, kind=encoder_kind(encoder), model_id=encoder.model_id,
        revision=encoder.revision, dim=int(encoder.dim), supports_text=bool(encoder.supports_text),
        created_at=utcnow(), last_used_at=utcnow()).on_conflict_do_nothing())
    row = session.get(ModelSpace, encoder.space_id, populate_existing=True)
    if (row.model_id, row.revision, row.dim) != (encoder.model_id, encoder.revision, int(encoder.dim)):
        raise SpaceMismatchError(
            f"space {encoder.space_id!r} is recorded for {row.model_id}@{row.revision} ({row.dim}-d), "
            f"not {encoder.model_id}@{encoder.revision} ({encoder.dim}-d); refusing to mix vectors")
    row.last_used_at = utcnow()
    return row


def recorded_spaces(session: Session) -> list[ModelSpace]:
    """Every space that vectors were written in, oldest first."""
    return list(session.scalars(select(ModelSpace).order_by(ModelSpace.created_at, ModelSpace.space)))
