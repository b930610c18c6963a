"""image_upscale on Diffusers: super-resolution pipelines, run tile by tile.

``UPSCALERS`` is the one table of upscaler pipeline classes: their native factor and whether they
take a prompt. A request for another factor runs the pipeline as many times as needed (x4 twice
for x8) and resizes the last result to the exact size (x2 from an x4 model); every pass is
tiled (``abstractvision.upscaling.tiled``), so the pipeline only sees ``tile`` x ``tile`` inputs
and device memory stays bounded whatever the image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ... import upscaling
from ...control import GenerationControl
from ...types import ImageUpscaleRequest
from . import outputs, run

__all__ = ["UPSCALE", "UPSCALERS", "Upscaler", "passes", "run_upscale", "upscale"]

UPSCALE = "image_upscale"


@dataclass(frozen=True)
class Upscaler:
    """One super-resolution pipeline class."""

    scale: int  # native factor of one pass
    prompt: bool  # takes a text prompt
    tile: int  # input pixels per tile side (bounded device memory)
    multiple: int = 8  # input sides the pipeline needs a multiple of (edge-padded, then cropped)


UPSCALERS: dict[str, Upscaler] = {
    "StableDiffusionUpscalePipeline": Upscaler(4, True, 256),
    "StableDiffusionLatentUpscalePipeline": Upscaler(2, True, 512),
    "LDMSuperResolutionPipeline": Upscaler(4, False, 256, 32),  # it floors sides to 32
}


def passes(native: int, wanted: int) -> int:
    """How many native passes reach ``wanted`` (the last result is resized down to it)."""
    return max(1, math.ceil(math.log(wanted, native) - 1e-9)) if native > 1 else 1


def upscale(
    pipe: Any,
    request: ImageUpscaleRequest,
    image: Any,
    control: GenerationControl,
    generator: Any,
    execute: Callable[[Callable[[], Any]], Any],
    model: str,
    *,
    tile: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run ``pipe`` over ``image`` (PIL, RGB); returns (PIL image, metadata)."""
    from PIL import Image

    spec = UPSCALERS[type(pipe).__name__]
    wanted = request.scale or spec.scale
    upscaling.check_output(image.width, image.height, wanted)
    count = passes(spec.scale, wanted)
    tile = tile or spec.tile
    per_pass = [
        len(upscaling.tile_starts(image.width * spec.scale**k, tile))
        * len(upscaling.tile_starts(image.height * spec.scale**k, tile))
        for k in range(count)
    ]
    total, done = sum(per_pass), 0
    steps = request.steps or run.default_of(pipe, "num_inference_steps")
    current = image
    for k in range(count):
        upscaling.check_output(current.width, current.height, spec.scale)

        def one_tile(piece: Any) -> Any:
            kwargs = _kwargs(pipe, spec, request, _padded(piece, spec.multiple), generator)
            result = execute(lambda: run.run_pipeline(pipe, kwargs, control))
            out = outputs.image_output(result, model)
            return out.crop((0, 0, piece.width * spec.scale, piece.height * spec.scale))

        def on_tile(n: int, _total: int, offset: int = done) -> None:
            control.report(offset + n, total, f"tile {offset + n}/{total}")
            control.check()

        current = upscaling.tiled(current, spec.scale, one_tile, tile=tile, on_tile=on_tile)
        done += per_pass[k]
    size = (image.width * wanted, image.height * wanted)
    if current.size != size:
        current = current.resize(size, Image.Resampling.LANCZOS)
    meta = {"scale": wanted, "native_scale": spec.scale, "passes": count, "tiles": total}
    if steps is not None:
        meta["steps"] = steps
    return current, meta


def _padded(piece: Any, multiple: int) -> Any:
    """``piece`` grown to sides that are multiples of ``multiple`` by repeating its edges."""
    import numpy as np
    from PIL import Image

    width, height = piece.size
    grown = [max(multiple, -(-side // multiple) * multiple) for side in (width, height)]
    if grown == [width, height]:
        return piece
    pad = ((0, grown[1] - height), (0, grown[0] - width), (0, 0))
    return Image.fromarray(np.pad(np.asarray(piece.convert("RGB")), pad, mode="edge"))


def _kwargs(
    pipe: Any, spec: Upscaler, request: ImageUpscaleRequest, piece: Any, generator: Any
) -> dict[str, Any]:
    wanted = {
        "image": piece,
        "prompt": (request.prompt or "") if spec.prompt else None,
        "negative_prompt": request.negative_prompt if spec.prompt else None,
        "num_inference_steps": request.steps,
        "generator": generator,
        "output_type": "np",
    }
    kwargs = run.filter_kwargs(pipe, wanted, required=("image",))
    kwargs.update(run.guidance_kwargs(pipe, request.guidance_scale))
    return kwargs


def run_upscale(backend: Any, request: ImageUpscaleRequest, control: Any) -> Any:
    """The Diffusers backend's ``upscale_image``: load (or reuse) the upscaler, run it, encode."""
    import time

    from ... import media
    from ...errors import InvalidRequestError
    from .._common import choose_seed, image_asset

    control = control if control is not None else GenerationControl()
    for key, value in request.extra.items():
        if key != "scheduler":
            raise InvalidRequestError(f"extra.{key}", value, "image_upscale accepts: scheduler")
    info = backend._model_for(UPSCALE, request.model)
    image = media.decode_image(request.image, field="image")
    seed = choose_seed(request.seed)
    control.check()
    entry, load_s = backend._entry(info)
    device = backend._device or "cpu"

    def execute(fn: Callable[[], Any]) -> Any:
        # the engine thread, as for every Diffusers call (torch's thread pool is per thread)
        return backend._engine.submit(fn).result()

    with entry.lock:
        pipe = entry.pipe
        pipe.set_progress_bar_config(disable=True)
        run.use_scheduler(entry, pipe, request.extra.get("scheduler"))
        started = time.perf_counter()
        generator = run.make_generator(device, seed)
        result, meta = upscale(pipe, request, image, control, generator, execute, info.source)
    meta = {
        "model": info.source,
        "pipeline": type(pipe).__name__,
        **meta,
        "seed": seed,
        "load_s": round(load_s, 4),
        "generate_s": round(time.perf_counter() - started, 4),
        "device": backend._device,
    }
    return image_asset(result, request.output_format, meta)
