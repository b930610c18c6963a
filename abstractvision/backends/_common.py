"""What every engine does with its output: pick the seed, encode images and videos as asked.

One place, so an image from Diffusers and one from stable-diffusion.cpp come back the same way:
the request's ``output_format``, width/height (and frames/fps) in metadata, and for a video an
animated WebP preview at most 256 px a side.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .. import media
from ..types import LIMITS, GeneratedAsset

__all__ = ["choose_seed", "image_asset", "video_asset"]

PREVIEW_MAX_SIDE = 256


def choose_seed(seed: int | None) -> int:
    """The caller's seed, or a random one (reported in metadata so the result can be redone)."""
    return seed if seed is not None else random.SystemRandom().randint(0, LIMITS.max_seed)


def image_asset(image: Any, output_format: str | None, metadata: dict[str, Any]) -> GeneratedAsset:
    data, mime = media.encode_image(image, format=output_format or "png")
    metadata.update(width=image.width, height=image.height)
    return GeneratedAsset("image", data, mime, metadata)


def video_asset(
    frames: Sequence[Any], fps: int, output_format: str | None, metadata: dict[str, Any]
) -> GeneratedAsset:
    data, mime = media.encode_video(frames, fps=fps, format=output_format or "mp4")
    small = []
    for frame in frames:
        frame = frame.copy()
        frame.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
        small.append(frame)
    preview, preview_mime = media.encode_video(small, fps=fps, format="webp")
    first = frames[0]
    metadata.update(width=first.width, height=first.height, num_frames=len(frames), fps=fps)
    return GeneratedAsset("video", data, mime, metadata, preview, preview_mime)
