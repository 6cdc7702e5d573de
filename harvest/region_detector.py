"""Region proposals from a detection model (``--regions detector``): an object detector in Hugging
Face format (``AutoModelForObjectDetection``: DETR, YOLOS...) or a zero-shot one
(``AutoModelForZeroShotObjectDetection``: OWL-ViT, OWLv2) asked for text prompts, named by
``MSEARCH_REGION_MODEL``. It runs on the canvas derivative harvest already has; its boxes come
back as :class:`.region_proposals.Proposal` in canvas coordinates (mapped as content proposals
are), best first, overlapping ones merged, at most the region limit.

The model is loaded lazily and once per process (per model and device): the command line loads
it before any harvesting work, so that a bad setting stops the run at once, and the plan then
reuses it. How good its boxes are on manuscripts is unverified: no trained detector weights can be
downloaded where this was written, and the tests run a tiny random model through the same path.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from PIL import Image

from manuscripts_search.config import DEFAULT_REGION_PROMPTS
from manuscripts_search.iiif.image_coordinates import image_to_canvas_xywh

from .region_proposals import DEFAULT_LIMIT, Proposal

log = logging.getLogger(__name__)

ZERO_SHOT = "zero-shot"  # asked for text prompts
CLOSED_SET = "closed-set"  # finds the classes it was trained on

OVERLAP_MERGED = 0.5  # intersection over union above which two boxes are one find (the better kept)
MIN_SIDE_FRACTION = 0.02  # of the image's long edge: a smaller box is too small to embed usefully

_WHAT_TO_DO = ("Set MSEARCH_REGION_MODEL to a Hugging Face hub id or a local directory holding a detection "
               "model in Hugging Face format (config.json, weights and processor files; a zero-shot "
               "detector such as OWL-ViT also its tokenizer), or make the hub reachable.")


class DetectorLoadError(RuntimeError):
    """The region detector cannot be used; the message says why and what to set."""


@dataclass
class _LoadedModel:
    model_id: str  # the hub id or the path as given
    revision: str  # hub commit hash, or a short content fingerprint of a local directory
    kind: str  # ZERO_SHOT | CLOSED_SET
    device: str
    model: Any = field(repr=False)
    processor: Any = field(repr=False)
    # One image at a time through a model shared by the process (and its processor's state).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class RegionDetector:
    """A loaded detection model with the prompts and the score floor a run asks it with.
    Build it with :func:`load_region_detector`."""

    loaded: _LoadedModel
    prompts: tuple[str, ...]
    threshold: float

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    @property
    def kind(self) -> str:
        return self.loaded.kind

    def describe(self) -> str:
        """What made the boxes, for the harvest report."""
        asked = f", prompts: {'; '.join(self.prompts)}" if self.kind == ZERO_SHOT else ""
        return f"{self.loaded.model_id}@{self.loaded.revision} ({self.kind}, threshold {self.threshold:g}{asked})"

    def detect(self, image: Image.Image, canvas_size: Optional[tuple[float, float]] = None,
               target_xywh: Optional[Sequence[float]] = None, limit: int = DEFAULT_LIMIT) -> list[Proposal]:
        """The model's boxes on ``image``, best first, at most ``limit``, in the coordinates of a
        canvas of ``canvas_size`` on which the image is painted at ``target_xywh`` (None: the whole
        canvas; no ``canvas_size``: image pixels). Raises RuntimeError/ValueError when the model
        fails on this image."""
        if limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit}")
        rgb = image.convert("RGB")
        width, height = rgb.size
        if limit == 0:
            return []
        kept = _merge_overlaps(_usable_boxes(self._raw_detections(rgb), width, height), limit)
        canvas_w, canvas_h = canvas_size if canvas_size else (width, height)
        proposals = []
        for score, (x0, y0, x1, y1) in kept:
            try:
                box = image_to_canvas_xywh((x0, y0, x1 - x0, y1 - y0), canvas_w, canvas_h, width, height, target_xywh)
            except ValueError:
                continue  # painted outside the canvas
            proposals.append(Proposal(*box, score=round(score, 4)))
        return list({p.box: p for p in proposals}.values())

    def _raw_detections(self, rgb: Image.Image) -> list[tuple[float, float, float, float, float]]:
        """(score, x0, y0, x1, y1) in image pixels, as the model's post-processing gives them."""
        import torch

        loaded = self.loaded
        sizes = [(rgb.height, rgb.width)]
        with loaded.lock, torch.no_grad():
            if loaded.kind == ZERO_SHOT:
                inputs = loaded.processor(text=[list(self.prompts)], images=rgb, return_tensors="pt")
            else:
                inputs = loaded.processor(images=rgb, return_tensors="pt")
            outputs = loaded.model(**inputs.to(loaded.device))
            if loaded.kind == ZERO_SHOT:
                results = loaded.processor.post_process_grounded_object_detection(
                    outputs, threshold=self.threshold, target_sizes=sizes)
            else:
                results = loaded.processor.post_process_object_detection(
                    outputs, threshold=self.threshold, target_sizes=sizes)
        found = results[0]
        scores = found["scores"].detach().float().cpu().tolist()
        boxes = found["boxes"].detach().float().cpu().tolist()
        return [(score, *box) for score, box in zip(scores, boxes)]


def _usable_boxes(detections, width: int, height: int) -> list[tuple[float, tuple[float, float, float, float]]]:
    """Finite boxes clipped to the image, big enough to embed, best first; scores into 0..1."""
    min_side = max(2.0, MIN_SIDE_FRACTION * max(width, height))
    usable = []
    for score, x0, y0, x1, y1 in detections:
        if not all(math.isfinite(v) for v in (score, x0, y0, x1, y1)):
            continue
        x0, x1 = sorted((min(max(x0, 0.0), width), min(max(x1, 0.0), width)))
        y0, y1 = sorted((min(max(y0, 0.0), height), min(max(y1, 0.0), height)))
        if x1 - x0 >= min_side and y1 - y0 >= min_side:
            usable.append((min(max(float(score), 0.0), 1.0), (x0, y0, x1, y1)))
    return sorted(usable, key=lambda found: -found[0])


def _merge_overlaps(found, limit: int):
    """Greedy non-maximum suppression: a zero-shot detector reports one object from neighbouring
    patches and under several prompts; the best of each group is kept, up to ``limit``."""
    kept: list = []
    for score, box in found:
        if all(_iou(box, other) <= OVERLAP_MERGED for _, other in kept):
            kept.append((score, box))
            if len(kept) == limit:
                break
    return kept


def _iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


_loaded: dict[tuple[str, str], _LoadedModel] = {}
_loading = threading.Lock()


def load_region_detector(model: Optional[str], device: Optional[str] = None,
                         prompts: Sequence[str] = DEFAULT_REGION_PROMPTS, threshold: float = 0.1) -> RegionDetector:
    """The detector ``model`` names (a hub id or a local directory), loaded on first use in this
    process and reused after; ``device`` defaults to cuda when present, else cpu (as the
    encoders). Raises DetectorLoadError, saying what to set, when no model is given or it cannot
    be loaded, is not a detector, or fails on a test image."""
    if not model or not model.strip():
        raise DetectorLoadError(f"no region detection model is set. {_WHAT_TO_DO}")
    prompts = tuple(prompts)
    if not prompts:
        raise DetectorLoadError("a region detector needs at least one prompt (MSEARCH_REGION_PROMPTS)")
    if not 0 <= threshold <= 1:
        raise DetectorLoadError(f"the detection threshold must be from 0 to 1, got {threshold!r}")
    try:
        import torch
    except ImportError as error:  # pragma: no cover - an install requirement
        raise DetectorLoadError(f"cannot load region model {model!r}: {error}") from error
    device_name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with _loading:
        from manuscripts_search.embedding.encoders import local_model_path

        try:
            local_dir = local_model_path(model)
        except ValueError as error:
            raise DetectorLoadError(f"cannot load region model {model!r}: {error}. {_WHAT_TO_DO}") from None
        key = (str(local_dir.resolve()) if local_dir else model, device_name)
        if key not in _loaded:
            loaded = _load(model, local_dir, device_name)
            _probe(RegionDetector(loaded, prompts, threshold))
            _loaded[key] = loaded
            log.info("region detector %s@%s (%s) loaded on %s", model, loaded.revision, loaded.kind, device_name)
        return RegionDetector(_loaded[key], prompts, float(threshold))


def region_detector_from_config(config) -> RegionDetector:
    """The detector of ``config`` (MSEARCH_REGION_MODEL, _PROMPTS, _THRESHOLD, MSEARCH_DEVICE)."""
    return load_region_detector(config.region_model, config.device, config.region_prompts, config.region_threshold)


def _load(model_name: str, local_dir, device_name: str) -> _LoadedModel:
    import torch
    from transformers import (AutoConfig, AutoImageProcessor, AutoModelForObjectDetection,
                              AutoModelForZeroShotObjectDetection, AutoProcessor)
    from transformers.models.auto.modeling_auto import (MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES,
                                                        MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES)

    from manuscripts_search.embedding.encoders import missing_model_reason, model_revision
    from manuscripts_search.embedding.hub import hub_status

    reachable, unreachable_why = (True, "") if local_dir is not None else hub_status()
    source = str(local_dir or model_name)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=not reachable)
        model_type = getattr(config, "model_type", "")
        if model_type in MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES:
            kind = ZERO_SHOT
            model = AutoModelForZeroShotObjectDetection.from_pretrained(source, local_files_only=not reachable)
            processor = AutoProcessor.from_pretrained(source, local_files_only=not reachable)
        elif model_type in MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES:
            kind = CLOSED_SET
            model = AutoModelForObjectDetection.from_pretrained(source, local_files_only=not reachable)
            processor = AutoImageProcessor.from_pretrained(source, local_files_only=not reachable)
        else:
            raise DetectorLoadError(
                f"cannot use region model {model_name!r}: it is a {model_type or 'unknown'} model, not an object "
                "detector (AutoModelForObjectDetection) or a zero-shot detector (OWL-ViT, OWLv2). " + _WHAT_TO_DO)
    except OSError as error:
        reason = missing_model_reason(error, local_dir, reachable, unreachable_why)
        raise DetectorLoadError(f"cannot load region model {model_name!r}: {reason}. {_WHAT_TO_DO}") from error
    except (ValueError, KeyError, TypeError, ImportError) as error:
        raise DetectorLoadError(f"cannot load region model {model_name!r}: its configuration is not usable here "
                                f"({error}). {_WHAT_TO_DO}") from error
    post_process = "post_process_grounded_object_detection" if kind == ZERO_SHOT else "post_process_object_detection"
    if not hasattr(processor, post_process) or (kind == ZERO_SHOT and getattr(processor, "tokenizer", None) is None):
        lacks = post_process + (" or no tokenizer" if kind == ZERO_SHOT else "")
        raise DetectorLoadError(f"cannot use region model {model_name!r}: its processor ({type(processor).__name__}) "
                                f"has no {lacks}. {_WHAT_TO_DO}")
    try:
        model = model.to(torch.device(device_name))
    except (RuntimeError, AssertionError, ValueError) as error:
        raise DetectorLoadError(f"cannot load region model {model_name!r} on device {device_name!r}: {error}. "
                                "Set MSEARCH_DEVICE to a device present on this machine (e.g. cpu).") from error
    model.eval()
    return _LoadedModel(model_name, model_revision(model_name, local_dir), kind, device_name, model, processor)


def _probe(detector: RegionDetector) -> None:
    """One blank page through the model: a detector that cannot run stops the run before it starts."""
    try:
        detector.detect(Image.new("RGB", (96, 128), (230, 220, 200)), limit=1)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise DetectorLoadError(f"region model {detector.model_id!r} loaded but failed on a test image: {error}. "
                                f"{_WHAT_TO_DO}") from error
