"""Upscaling helpers shared by the engines: output-size bounds and tiled upscaling.

``check_output`` refuses an upscale whose output would pass ``LIMITS.max_upscale_pixels``
(input pixels x scale^2) before any engine runs. ``tiled`` runs an engine's upscaler on
overlapping tiles of the input and feathers them together, so the engine only ever sees a
``tile`` x ``tile`` input and memory stays bounded however large the image is; the output canvas
(``width*scale x height*scale``, RGB) is the only full-size buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidRequestError
from .types import LIMITS

__all__ = ["DEFAULT_TILE", "check_output", "tile_starts", "tiled"]

DEFAULT_TILE = 512  # input pixels per tile side
_OVERLAP = 32  # input pixels shared by neighbouring tiles (blended linearly)


def check_output(width: int, height: int, scale: int, *, field: str = "scale") -> None:
    """Raise InvalidRequestError when ``width x height`` upscaled by ``scale`` is too large."""
    pixels = width * height * scale * scale
    if pixels > LIMITS.max_upscale_pixels:
        most = int((LIMITS.max_upscale_pixels / (width * height)) ** 0.5)
        hint = f"use scale <= {most}" if most >= 2 else "downscale the input first"
        raise InvalidRequestError(
            field,
            scale,
            f"{width}x{height} x{scale} gives {pixels} pixels; must be <= "
            f"{LIMITS.max_upscale_pixels} ({hint})",
        )


def tile_starts(size: int, tile: int, overlap: int = _OVERLAP) -> list[int]:
    """Left (or top) input offsets of the tiles covering ``size`` pixels."""
    overlap = min(overlap, tile // 4)
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


def tiled(
    image: Any,
    scale: int,
    upscale: Callable[[Any], Any],
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = _OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
) -> Any:
    """Upscale a PIL image tile by tile with ``upscale(tile_image) -> PIL image (x scale)``.

    An image no larger than ``tile`` is passed whole. Tiles overlap by ``overlap`` input pixels and
    are blended with linear ramps, so seams do not show. ``on_tile(done, total)`` reports progress.
    """
    import numpy as np
    from PIL import Image

    width, height = image.size
    if width <= tile and height <= tile:
        out = upscale(image)
        if on_tile is not None:
            on_tile(1, 1)
        return out
    overlap = min(overlap, tile // 4)
    xs, ys = tile_starts(width, tile, overlap), tile_starts(height, tile, overlap)
    canvas = np.zeros((height * scale, width * scale, 3), dtype=np.float32)
    weight = np.zeros((height * scale, width * scale, 1), dtype=np.float32)
    total, done = len(xs) * len(ys), 0
    ramp_len = overlap * scale
    for y in ys:
        for x in xs:
            box = (x, y, min(x + tile, width), min(y + tile, height))
            piece = upscale(image.crop(box))
            tw, th = (box[2] - box[0]) * scale, (box[3] - box[1]) * scale
            if piece.size != (tw, th):
                piece = piece.resize((tw, th), Image.Resampling.LANCZOS)
            wx = _ramp(tw, ramp_len, x > 0, box[2] < width)
            wy = _ramp(th, ramp_len, y > 0, box[3] < height)
            w = (wy[:, None] * wx[None, :])[..., None]
            sy, sx = y * scale, x * scale
            canvas[sy : sy + th, sx : sx + tw] += np.asarray(piece, dtype=np.float32) * w
            weight[sy : sy + th, sx : sx + tw] += w
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    pixels = (canvas / np.maximum(weight, 1e-6)).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _ramp(size: int, ramp: int, start: bool, end: bool) -> Any:
    """1 in the middle, rising over ``ramp`` pixels at a shared start edge, falling at the end."""
    import numpy as np

    w = np.ones(size, dtype=np.float32)
    ramp = min(ramp, size // 2)
    if ramp > 0:
        edge = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
        if start:
            w[:ramp] = edge
        if end:
            w[size - ramp :] = edge[::-1]
    return w
