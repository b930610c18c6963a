"""Pipeline outputs to PIL images, checked for NaN, and encoded through ``abstractvision.media``."""

from __future__ import annotations

import logging
from typing import Any

from ...errors import BackendError

log = logging.getLogger(__name__)

_NAN_HINT = (
    "the model produced NaN (an all-black result): run it in float32 or bfloat16 "
    "(torch_dtype), or use a VAE that is stable in float16"
)


def to_images(output: Any, model: str) -> list[Any]:
    """``np``/tensor/PIL pipeline output (images, or one clip's frames) -> list of RGB PIL images."""
    import numpy as np
    from PIL import Image

    if isinstance(output, list) and output and isinstance(output[0], Image.Image):
        return [im.convert("RGB") for im in output]
    if hasattr(output, "detach"):  # torch tensor, channels first
        output = output.detach().float().cpu().numpy()
        output = np.moveaxis(output, -3, -1)
    array = np.asarray(output, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise BackendError(f"{model} returned an output of unexpected shape {array.shape}")
    nan = np.isnan(array)
    if nan.all():
        raise BackendError(f"{model}: {_NAN_HINT}")
    if nan.any():
        log.warning("%s: %.1f%% of output values are NaN", model, 100 * nan.mean())
        array = np.nan_to_num(array)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    pixels = (array.clip(0.0, 1.0) * 255.0).round().astype(np.uint8)
    return [Image.fromarray(frame) for frame in pixels]


def image_output(result: Any, model: str) -> Any:
    images = to_images(getattr(result, "images", result), model)
    return images[0]


def video_output(result: Any, model: str) -> list[Any]:
    frames = getattr(result, "frames", result)
    if isinstance(frames, list) and frames and isinstance(frames[0], list):
        frames = frames[0]  # a batch of PIL frame lists
    elif hasattr(frames, "ndim") and frames.ndim == 5:
        frames = frames[0]
    return to_images(frames, model)
