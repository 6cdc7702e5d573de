"""The embedding worker's per-item CPU work in separate processes: read the derivative, decode,
hash, preprocess for the model.

Threads share one interpreter lock, and hashing and preprocessing hold it most of the time: on
any number of cores, decoding threads top out near what one core does (~350 images/s here). A
GPU encodes SigLIP 2 base several times faster than that, so with CUDA the worker hands this
work to a pool of processes instead (``--decode-processes``), each with the model's image
processor and no weights (:func:`..encoder_registry.load_image_preparer`), as PyTorch's own data
loader workers do. Items travel as :class:`..claims.WorkItem`; results come back as plain arrays.

The pool is started with "spawn": the parent has torch (and maybe CUDA) initialised, which a
forked child must not inherit.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..store.claims import WorkItem

_PREPARER: Any = None  # in each child: the encoder half without weights
_LOAD: Any = None  # in each child: the derivative loader


@dataclass(frozen=True)
class DecodeSpec:
    """What each child process needs to do an item's CPU work like the worker's own threads."""

    model: str  # preparer_source(encoder): "handcrafted", an absolute local directory or a hub id
    derivatives_dir: str
    min_side: int  # decode side (the worker's rule for this encoder)


@dataclass
class DecodedItem:
    hashes: Any = None  # ImageHashes, when the item needed them
    prepared: Any = None  # the model's input, as numpy arrays (tensors are rebuilt by the parent)
    error: Optional[str] = None  # why the item's image could not be used


def start_pool(spec: DecodeSpec, processes: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_child, initargs=(spec,))


def _start_child(spec: DecodeSpec) -> None:
    global _PREPARER, _LOAD
    import torch

    from ..store.derivatives import DerivativeStore
    from .registry import load_image_preparer
    from .image_loading import store_loader

    torch.set_num_threads(1)  # the processes themselves are the parallelism
    _PREPARER = load_image_preparer(spec.model)
    _LOAD = store_loader(DerivativeStore(Path(spec.derivatives_dir)), spec.min_side)


def decode_item(item: WorkItem) -> DecodedItem:
    """In a child: the item's hashes and prepared input, or the reason its image is unusable."""
    from .perceptual_hashes import image_hashes
    from .image_loading import ITEM_ERRORS

    try:
        image = _LOAD(item)
        hashes = image_hashes(image) if item.needs_hash else None
        prepared = _PREPARER.prepare_image(image) if item.needs_vector else None
    except ITEM_ERRORS as error:
        return DecodedItem(error=f"cannot read the {item.kind} image {item.derivative_sha256[:12]}: {error}")
    return DecodedItem(hashes=hashes, prepared=_as_arrays(prepared))


def _as_arrays(prepared: Any) -> Any:
    if isinstance(prepared, dict):  # tensors: plain arrays pickle without shared-memory handles
        return {name: value.numpy() if hasattr(value, "numpy") else value for name, value in prepared.items()}
    return prepared


def as_model_input(prepared: Any) -> Any:
    """In the parent: the prepared input as the encoder's ``encode_prepared`` takes it."""
    if isinstance(prepared, dict):
        import torch

        return {name: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                for name, value in prepared.items()}
    return prepared
