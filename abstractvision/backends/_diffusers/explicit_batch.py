"""Explicit batches (``count``/``seeds``) on Diffusers: exact by default, batched on request.

Batched matrix products are not batch-invariant: on CPU (MKL/oneDNN) a UNet row computed in a
batch of 6 differs from the same row alone by ~1e-7, enough to flip a PNG byte now and then
(measured on the tiny SD: 1 image in 3). So by default (``exact_batches=True``) a batch runs one
pipeline call per image and image k is byte-identical to a single call with seed k. With
``exact_batches=False`` a text->image batch is one pipeline call per chunk (what pays on a GPU):

``run_batch`` runs the first request of a chunk through the backend's normal path with the
chunk's seeds made current (a context variable): the backend's ``_call`` then builds one item per
seed (one generator per image, so image k is a single call with seed k up to rounding; the VAE
decodes one image at a time) and ``_image`` hands every image to ``collect`` instead of
keeping the first. A chunk holds at most ``max(max_batch_size, DEFAULT_CHUNK)`` images so a big
batch does not take a big batch's memory; a chunk that runs out of memory is retried one by one.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Sequence
from typing import Any

from ...control import GenerationControl
from ...errors import OutOfMemoryError
from .._common import image_asset
from . import batching, outputs

__all__ = ["DEFAULT_CHUNK", "active", "collect", "items", "run_batch"]

DEFAULT_CHUNK = 4


@dataclasses.dataclass
class _Batch:
    seeds: list[int]
    assets: list[Any] = dataclasses.field(default_factory=list)


_CURRENT: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar(
    "abstractvision_explicit_batch", default=None
)


def active() -> bool:
    return _CURRENT.get() is not None


def items(prompt: str, seed: int, control: GenerationControl) -> list[batching.Item]:
    """The items of one pipeline call: the current batch's seeds, else the single request's."""
    batch = _CURRENT.get()
    seeds = batch.seeds if batch is not None else [seed]
    return [batching.Item(prompt, s, control) for s in seeds]


def collect(result: Any, meta: dict[str, Any], model: str, output_format: str | None) -> Any:
    """Encode every image of a batch call, each with its own seed; returns the first asset."""
    batch = _CURRENT.get()
    assert batch is not None
    images = outputs.to_images(getattr(result, "images", result), model)
    for image, seed in zip(images, batch.seeds, strict=True):
        own = {**meta, "seed": seed, "batch_size": len(batch.seeds)}
        batch.assets.append(image_asset(image, output_format, own))
    return batch.assets[0]


def run_batch(
    backend: Any, requests: Sequence[Any], control: GenerationControl | None
) -> list[Any]:
    """``VisionBackend.run_batch`` for Diffusers: text->image and image->image in chunks."""
    control = control if control is not None else GenerationControl()
    # image->image runs one call per image: a batched img2img call differs from single calls in
    # the last float bits (~1e-7 in the latents, one PNG level), so "image k = seed k" would not
    # hold byte for byte; text->image batches are exact.
    method = {"text_to_image": backend.generate_image}
    run = method.get(requests[0].task.value) if requests else None
    if run is None or len(requests) == 1 or backend.config.exact_batches:
        from ..base_backend import VisionBackend

        return VisionBackend.run_batch(backend, requests, control=control)  # one call per image
    size = max(backend.config.max_batch_size, DEFAULT_CHUNK)
    out: list[Any] = []
    for start in range(0, len(requests), size):
        chunk = list(requests[start : start + size])
        try:
            out += _one_call(run, chunk, control)
        except OutOfMemoryError:
            if len(chunk) == 1:
                raise
            out += [run(r, control=control) for r in chunk]  # the same images, less memory
    return out


def _one_call(run: Any, chunk: list[Any], control: GenerationControl) -> list[Any]:
    batch = _Batch([r.seed for r in chunk])
    token = _CURRENT.set(batch)
    try:
        run(chunk[0], control=control)
    finally:
        _CURRENT.reset(token)
    return batch.assets
