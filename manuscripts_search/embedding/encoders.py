"""Vision-language encoder: images and texts into one normalised embedding space.

A CLIP- or SigLIP-style model is loaded with transformers' ``AutoModel`` and ``AutoProcessor``
from a Hugging Face hub id or a local directory in HF format. Rows returned by the encoder are
float32 and L2-normalised, so a dot product is the cosine similarity. ``space_id`` names the
embedding space (model and exact revision): vectors from different spaces must never be mixed.

torch and transformers are imported inside functions so that importing this module stays cheap.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .hub import hub_status
from .interface import VISION_LANGUAGE

DEFAULT_MODEL_ID = "google/siglip2-base-patch16-224"

# SigLIP models were trained on lower-cased text padded to a fixed length, with no attention mask.
_SIGLIP_MODEL_TYPES = frozenset({"siglip", "siglip2"})

# Files whose content changes what a model computes; they make up a local directory's revision.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
_PROCESSOR_FILES = (
    "preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "spiece.model", "vocab.json", "merges.txt", "vocab.txt",
)
_FINGERPRINT_PREFIX_BYTES = 1024 * 1024
_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
_AUTOCAST_DTYPES = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}

_WHAT_TO_DO = (
    "Set MSEARCH_MODEL to a local directory holding a CLIP or SigLIP model in Hugging Face format "
    "(config.json, weights, processor and tokenizer files), or make the hub reachable."
)


class EncoderLoadError(RuntimeError):
    """The vision-language model could not be loaded; the message names the model and says why."""


@dataclass
class VisionLanguageEncoder:
    """A loaded model with its processor; encodes images and texts into one space.

    Build it with :func:`load_vision_language_encoder`.
    """

    model_id: str  # the hub id or the path as given
    revision: str  # hub commit hash, or a short content fingerprint of a local directory
    dim: int
    device: str
    model: Any = field(repr=False)
    processor: Any = field(repr=False)
    # Inference choices for the batched pipeline (see configure_inference); vectors stay float32.
    precision: str = "fp32"
    compiled_image_features: Any = field(default=None, repr=False)
    # A fast tokenizer changes its padding/truncation state on each call; web threads share it.
    _tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def space_id(self) -> str:
        """Identifies the embedding space: vectors compare only within one space."""
        return f"{self.model_id}@{self.revision}"

    @property
    def _is_siglip(self) -> bool:
        return getattr(self.model.config, "model_type", "") in _SIGLIP_MODEL_TYPES

    def encode_images(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Encode PIL images; returns float32 ``(len(images), dim)`` with unit-length rows.

        Raises TypeError when an item is not a PIL image, ValueError for a batch size below 1.
        """
        _check_batch_size(batch_size)
        for position, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise TypeError(f"images[{position}] is {type(image).__name__}, expected a PIL image")
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [self._encode_image_batch(images[start:start + batch_size])
                   for start in range(0, len(images), batch_size)]
        return np.concatenate(batches, axis=0)

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Encode texts; returns float32 ``(len(texts), dim)`` with unit-length rows.

        Raises TypeError when an item is not a string, ValueError for a batch size below 1.
        """
        _check_batch_size(batch_size)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [self._encode_text_batch(texts[start:start + batch_size])
                   for start in range(0, len(texts), batch_size)]
        return np.concatenate(batches, axis=0)

    supports_text = True  # both towers: text queries land in the image space
    kind = VISION_LANGUAGE

    def preparer_source(self) -> str:
        # A local directory travels as an absolute path (the same on every node), else the hub id.
        local = Path(self.model_id).expanduser()
        return str(local.resolve()) if local.is_dir() else self.model_id

    @property
    def input_side(self) -> int:
        """The side in pixels the image processor feeds the model: decoding larger is wasted."""
        return _processor_input_side(self.processor.image_processor)

    def configure_inference(self, precision: str = "auto", compile: bool = False) -> None:
        """Choose how :meth:`encode_prepared` runs the image tower.

        ``precision``: "fp32", "fp16" or "bf16" (autocast; the weights and the returned vectors
        stay float32), or "auto": fp16 on CUDA, fp32 elsewhere. ``compile``: wrap the image tower
        in ``torch.compile`` (pays off on long runs; batches are then padded to one shape).
        Raises ValueError for an unknown precision or one the device cannot run.
        """
        import torch

        chosen = ("fp16" if self.device.startswith("cuda") else "fp32") if precision == "auto" else precision
        if chosen not in _AUTOCAST_DTYPES:
            raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
        if chosen == "fp16" and not self.device.startswith("cuda"):
            raise ValueError(f"fp16 needs a CUDA device (this encoder runs on {self.device}); use bf16 or fp32")
        self.precision = chosen
        self.compiled_image_features = torch.compile(self.model.get_image_features) if compile else None

    def prepare_image(self, image: Image.Image) -> dict:
        """One image as the model's input tensors (batch of one, on the CPU). Thread-safe: the
        embedding worker runs it in its decoding threads, apart from :meth:`encode_prepared`.

        Raises TypeError when ``image`` is not a PIL image.
        """
        import torch

        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, got {type(image).__name__}")
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        inputs = self.processor.image_processor(images=[rgb], return_tensors="pt")
        return {name: value for name, value in inputs.items() if isinstance(value, torch.Tensor)}

    def encode_prepared(self, prepared: list[dict], pad_to: int | None = None) -> np.ndarray:
        """Encode what :meth:`prepare_image` made, as one batch; float32 unit rows.

        ``pad_to`` repeats the last input up to that many rows (their vectors are dropped), so a
        compiled model sees one batch shape. Raises ValueError for inputs of mixed shapes.
        """
        import torch

        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        count = len(prepared)
        if self.compiled_image_features is not None and pad_to and count < pad_to:
            prepared = list(prepared) + [prepared[-1]] * (pad_to - count)
        try:
            batch = {name: torch.cat([item[name] for item in prepared]) for name in prepared[0]}
        except RuntimeError as error:
            raise ValueError(f"prepared images do not stack into one batch: {error}") from error
        on_cuda = self.device.startswith("cuda")
        # Pinned host memory lets the copy to the GPU overlap with work already queued there.
        batch = {name: (value.pin_memory() if on_cuda else value).to(self.device, non_blocking=on_cuda)
                 for name, value in batch.items()}
        image_features = self.compiled_image_features or self.model.get_image_features
        autocast_dtype = _AUTOCAST_DTYPES[self.precision]
        with torch.inference_mode(), torch.autocast("cuda" if on_cuda else "cpu",
                                                    dtype=getattr(torch, autocast_dtype) if autocast_dtype else None,
                                                    enabled=autocast_dtype is not None):
            features = _projected(image_features(**batch))
        return _normalised_numpy(features[:count])

    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        rgb_images = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        # Pass every tensor the image processor makes: NaFlex SigLIP2 also needs its patch mask
        # and spatial shapes, CLIP and fixed-resolution SigLIP only pixel values.
        inputs = self.processor.image_processor(images=rgb_images, return_tensors="pt")
        inputs = {name: value.to(self.device) for name, value in inputs.items()
                  if isinstance(value, torch.Tensor)}
        with torch.inference_mode():
            features = _projected(self.model.get_image_features(**inputs))
        return _normalised_numpy(features)

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        text_config = getattr(self.model.config, "text_config", self.model.config)
        max_positions = int(getattr(text_config, "max_position_embeddings", 0) or 0)
        tokenizer = self.processor.tokenizer
        if self._is_siglip:
            # SigLIP pools the last position and was trained on sequences padded to a fixed length
            # (64 for SigLIP 2, per its model card) with no attention mask, so only input_ids go
            # in. Its tokenizers lower-case (SigLIP 2's training default), but checkpoints that
            # ship a plain Gemma tokenizer do not, hence lower() here.
            with self._tokenizer_lock:
                encoded = tokenizer([text.lower() for text in texts], padding="max_length",
                                    truncation=True, max_length=max_positions or 64, return_tensors="pt")
            inputs = {"input_ids": encoded["input_ids"].to(self.device)}
        else:
            # CLIP pools at the end-of-text token and masks padding, so batch-wise padding is exact.
            limit = _usable_max_length(tokenizer, max_positions)
            with self._tokenizer_lock:
                encoded = tokenizer(texts, padding=True, truncation=True, max_length=limit,
                                    return_tensors="pt")
            inputs = {name: encoded[name].to(self.device)
                      for name in ("input_ids", "attention_mask") if name in encoded}
        with torch.inference_mode():
            features = _projected(self.model.get_text_features(**inputs))
        return _normalised_numpy(features)


def load_vision_language_encoder(model_name_or_path: str = DEFAULT_MODEL_ID,
                                 device: str | None = None) -> VisionLanguageEncoder:
    """Load a CLIP/SigLIP-style model and its processor from a hub id or a local directory.

    ``device`` defaults to ``cuda`` when available, else ``cpu``.
    Raises EncoderLoadError when the model cannot be found or downloaded, is not a vision-language
    model with image and text towers, or cannot run on the requested device.
    """
    try:
        import torch
        from transformers import AutoModel, AutoProcessor
    except ImportError as error:  # pragma: no cover - both are install requirements
        raise EncoderLoadError(f"cannot load model {model_name_or_path!r}: {error}") from error

    if not model_name_or_path or not model_name_or_path.strip():
        raise EncoderLoadError(f"no model given (got {model_name_or_path!r}). {_WHAT_TO_DO}")
    local_dir = _local_model_dir(model_name_or_path)
    reachable, unreachable_why = (True, "") if local_dir is not None else hub_status()
    try:
        model = AutoModel.from_pretrained(str(local_dir or model_name_or_path), local_files_only=not reachable)
        processor = AutoProcessor.from_pretrained(str(local_dir or model_name_or_path),
                                                  local_files_only=not reachable)
    except OSError as error:
        reason = missing_model_reason(error, local_dir, reachable, unreachable_why)
        raise EncoderLoadError(f"cannot load model {model_name_or_path!r}: {reason}. {_WHAT_TO_DO}") from error
    except (ValueError, KeyError, TypeError) as error:
        raise EncoderLoadError(
            f"cannot load model {model_name_or_path!r}: its configuration is not usable here ({error}). "
            f"{_WHAT_TO_DO}") from error

    _check_vision_language_parts(model_name_or_path, model, processor)
    device_name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = model.to(torch.device(device_name))
    except (RuntimeError, AssertionError, ValueError) as error:
        raise EncoderLoadError(
            f"cannot load model {model_name_or_path!r} on device {device_name!r}: {error}. "
            "Set MSEARCH_DEVICE to a device present on this machine (e.g. cpu).") from error
    model.eval()

    revision = model_revision(model_name_or_path, local_dir)
    encoder = VisionLanguageEncoder(model_id=model_name_or_path, revision=revision, dim=0,
                                    device=device_name, model=model, processor=processor)
    encoder.dim = _probe_dimension(model_name_or_path, encoder)
    return encoder


def missing_model_reason(error: OSError, local_dir: Path | None, reachable: bool, unreachable_why: str) -> str:
    """Why ``from_pretrained`` found no model (its OSError), in the words a user can act on: an
    incomplete local directory, an unreachable hub without a cached copy, or an unknown id."""
    if local_dir is not None:
        return f"the directory {local_dir} is not a complete model in Hugging Face format ({error})"
    if not reachable:
        return f"{unreachable_why}, and the model is not in this machine's Hugging Face cache"
    return ("it is not a local directory and could not be fetched from the Hugging Face hub "
            f"(unknown id, or no access): {error}")


def _local_model_dir(model_name_or_path: str) -> Path | None:
    """The directory to load from, None for a hub id; raises EncoderLoadError for a missing path."""
    try:
        return local_model_path(model_name_or_path)
    except ValueError as error:
        raise EncoderLoadError(f"cannot load model {model_name_or_path!r}: {error}. {_WHAT_TO_DO}") from None


def local_model_path(model_name_or_path: str) -> Path | None:
    """The local directory a model setting names, None for a hub id; raises ValueError (the
    reason) for a path that does not exist or is not a directory. Shared with the region detector."""
    candidate = Path(model_name_or_path).expanduser()
    if candidate.is_dir():
        return candidate
    # Hub ids are "name" or "owner/name"; anything else shaped like a path is meant as one.
    looks_like_path = (model_name_or_path.startswith(("/", ".", "~")) or model_name_or_path.count("/") > 1
                       or (os.sep != "/" and os.sep in model_name_or_path))
    if looks_like_path or candidate.exists():
        raise ValueError(f"the path {'is not a directory' if candidate.exists() else 'does not exist'}")
    return None


def _check_vision_language_parts(model_name: str, model: Any, processor: Any) -> None:
    missing = [name for name in ("get_image_features", "get_text_features") if not hasattr(model, name)]
    if missing:
        raise EncoderLoadError(
            f"cannot use model {model_name!r}: {type(model).__name__} is not a CLIP/SigLIP-style "
            f"vision-language model (it has no {', '.join(missing)}). {_WHAT_TO_DO}")
    parts = [name for name in ("image_processor", "tokenizer") if getattr(processor, name, None) is None]
    if parts:
        raise EncoderLoadError(
            f"cannot use model {model_name!r}: its processor ({type(processor).__name__}) lacks "
            f"{' and '.join(parts)}; the directory needs both image processor and tokenizer files. "
            f"{_WHAT_TO_DO}")


def _probe_dimension(model_name: str, encoder: VisionLanguageEncoder) -> int:
    """Encode one blank image and one text: checks the model runs and both towers agree in size."""
    try:
        image_dim = encoder._encode_image_batch([Image.new("RGB", (64, 64), (127, 127, 127))]).shape[1]
        text_dim = encoder._encode_text_batch(["a page"]).shape[1]
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as error:
        raise EncoderLoadError(f"model {model_name!r} loaded but failed to encode a test input: {error}. "
                               f"{_WHAT_TO_DO}") from error
    if image_dim != text_dim:
        raise EncoderLoadError(f"model {model_name!r} makes {image_dim}-d image vectors but {text_dim}-d "
                               "text vectors; it is not a joint image-text model.")
    return int(image_dim)


def model_revision(model_name_or_path: str, local_dir: Path | None) -> str:
    """The hub commit of a cached model, or a content fingerprint of a local directory."""
    if local_dir is not None:
        return fingerprint_model_dir(local_dir)
    from huggingface_hub import try_to_load_from_cache

    cached_config = try_to_load_from_cache(model_name_or_path, "config.json")
    if isinstance(cached_config, str):
        snapshot = Path(cached_config).parent
        if snapshot.parent.name == "snapshots" and _COMMIT_HASH.match(snapshot.name):
            return snapshot.name
        return fingerprint_model_dir(snapshot)
    return "unknown"


def fingerprint_model_dir(directory: Path) -> str:
    """A short sha256 over config.json and the names, sizes and first MiB of weight/processor files.

    Cheap even for multi-GB weights; any retraining changes the safetensors header or early tensors.
    """
    digest = hashlib.sha256()
    config_file = directory / "config.json"
    if config_file.is_file():
        digest.update(config_file.read_bytes())
    tracked = sorted(path for path in directory.iterdir() if path.is_file() and (
        path.name.endswith(_WEIGHT_SUFFIXES) or path.name in _PROCESSOR_FILES))
    for path in tracked:
        digest.update(f"\0{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(_FINGERPRINT_PREFIX_BYTES))
    return digest.hexdigest()[:16]


def _projected(output: Any):
    """The projected embedding: transformers 5 returns an output object, older versions a tensor."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unexpected feature output of type {type(output).__name__}")


def _normalised_numpy(features) -> np.ndarray:
    import torch

    normalised = torch.nn.functional.normalize(features.float(), dim=-1)
    return normalised.cpu().numpy().astype(np.float32, copy=False)


def _processor_input_side(image_processor: Any) -> int:
    """Best guess of the model's input side from an image processor's settings (224 if unknown)."""
    sides = []
    for setting in ("crop_size", "size"):
        value = getattr(image_processor, setting, None)
        if isinstance(value, int):
            sides.append(value)
            continue
        for key in ("height", "width", "shortest_edge", "longest_edge"):  # a dict or a SizeDict
            side = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
            if isinstance(side, int):
                sides.append(side)
    patches, patch = getattr(image_processor, "max_num_patches", None), getattr(image_processor, "patch_size", None)
    if isinstance(patches, int) and isinstance(patch, int):  # NaFlex: a budget of patches, not a side
        sides.append(int(patch * patches ** 0.5))
    return max(sides) if sides else 224


def _usable_max_length(tokenizer: Any, max_positions: int) -> int:
    # Tokenizers without a configured limit report a huge sentinel model_max_length.
    tokenizer_limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    candidates = [limit for limit in (tokenizer_limit, max_positions) if 0 < limit < 100_000]
    return min(candidates) if candidates else 77


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
