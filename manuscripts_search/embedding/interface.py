"""What every image encoder offers, whatever makes its vectors: a vision-language model
(CLIP/SigLIP through ``transformers``), the weight-free handcrafted features, or a future one.
The registry, the embedding worker, its decoding processes, the Ray stages and search use only
this; none of them asks which class an encoder is.

Adding an encoder: a class with these members (in its own module of this package), and its
loading rule in :mod:`.registry`.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

VISION_LANGUAGE = "vision-language"
HANDCRAFTED = "handcrafted"


@runtime_checkable
class ImageEncoder(Protocol):
    kind: str  # VISION_LANGUAGE, HANDCRAFTED, ...: recorded with the space
    supports_text: bool  # has a text side: text queries land in the image space

    @property
    def model_id(self) -> str: ...

    @property
    def revision(self) -> str: ...

    @property
    def space_id(self) -> str:
        """The vector space (model and revision): vectors of two spaces never mix."""

    @property
    def dim(self) -> int: ...

    def encode_images(self, images: list, batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per image."""

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit vectors in the image space; raises when ``supports_text`` is False."""

    def prepare_image(self, image) -> Any:
        """The model input of one image (runs in the decoding threads or processes)."""

    def encode_prepared(self, prepared: list) -> np.ndarray:
        """Unit vectors of prepared inputs (runs on the model's thread)."""

    def preparer_source(self) -> str:
        """What another process loads to rebuild :meth:`prepare_image` (registry.load_image_preparer)."""
