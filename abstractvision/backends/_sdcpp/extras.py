"""stable-diffusion.cpp beyond generation: the ESRGAN upscaler and ControlNet inputs.

The upscaler is the engine's own (``upscaler_path``): it runs at the model file's factor (x4 for
RealESRGAN_x4plus, x2 for an x2 model) and tiles internally (``upscale_tile_size``), so memory
stays bounded. Another factor runs the upscaler again (x4 twice for x8) and resizes the last
result to the exact size. A backend configured with only ``upscale_model`` runs image_upscale
alone; beside a diffusion model, it adds the task.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ... import upscaling
from ...control import GenerationControl
from ...errors import CapabilityNotSupportedError, InvalidRequestError
from .._common import image_asset

__all__ = ["control_inputs", "extra_files", "upscale", "with_upscale"]

UPSCALE = "image_upscale"


def with_upscale(config: Any, tasks: Sequence[str]) -> tuple[str, ...]:
    """The backend's tasks with image_upscale added (alone when no diffusion model is set)."""
    if not config.upscale_model:
        return tuple(tasks)
    if not (config.model or config.diffusion_model):
        return (UPSCALE,)
    return (*tasks, UPSCALE)


def extra_files(config: Any) -> dict[str, str]:
    """Files beyond the diffusion model's that must exist before the worker starts."""
    return {
        role: path
        for role, path in (
            ("control_net", config.control_net),
            ("upscale_model", config.upscale_model),
        )
        if path
    }


def control_inputs(request: Any) -> dict[str, Any]:
    """``control_image``/``control_strength`` binding arguments (the config's ControlNet)."""
    if request.control_image is None:
        return {}
    from ... import media

    image = media.decode_image(request.control_image, field="control_image")
    strength = 0.9 if request.control_strength is None else request.control_strength
    return {"control_image": image, "control_strength": strength}


def _native_scale(backend: Any) -> int:
    """The ESRGAN file's factor, read from its tensor names (conv_up2: x4, conv_up1 only: x2)."""
    from .options import tensor_names

    names = tensor_names(backend.config.upscale_model) or set()
    if any(n.startswith("conv_up2.") for n in names):
        return 4
    if any(n.startswith("conv_up1.") for n in names):
        return 2
    return 4  # the usual RealESRGAN_x4plus; the result's size is checked anyway


def upscale(backend: Any, request: Any, control: GenerationControl | None) -> Any:
    """image_upscale on the warm worker: ESRGAN passes, then an exact resize."""
    from PIL import Image

    from ... import media
    from ..base_backend import VisionBackend

    control = control if control is not None else GenerationControl()
    if not backend.config.upscale_model:
        raise VisionBackend._unsupported(backend, UPSCALE)
    if request.model is not None and request.model != backend.model_name:
        raise CapabilityNotSupportedError(
            f"model {request.model!r} is not loaded here; this backend runs {backend.model_name!r}"
        )
    for key, value in request.extra.items():
        raise InvalidRequestError(f"extra.{key}", value, "image_upscale takes no extra options")
    image = media.decode_image(request.image, field="image")
    native = _native_scale(backend)
    wanted = request.scale or native
    upscaling.check_output(image.width, image.height, wanted)
    passes = 1
    while native**passes < wanted:
        passes += 1
    current, load_total, started = image, 0.0, None
    with backend._lock:
        worker, load_s = backend._guarded(backend._ensure_worker, control, "loading")
        started = time.perf_counter()
        for k in range(passes):
            upscaling.check_output(current.width, current.height, native)
            base = k

            def progress(step: int, total: int, base: int = base) -> None:
                if total:
                    control.report(base * total + step, passes * total, f"pass {base + 1}/{passes}")

            frames = backend._guarded(
                lambda current=current: worker.images(
                    "upscale",
                    {"images": [current]},
                    timeout_s=backend.config.generate_timeout_s,
                    on_progress=progress,
                ),
                control,
                "upscaling",
            )
            current = frames[0]
        load_total = load_s
    size = (image.width * wanted, image.height * wanted)
    if current.size != size:
        current = current.resize(size, Image.Resampling.LANCZOS)
    meta = {
        "model": backend.model_name,
        "engine": "stable-diffusion.cpp",
        "upscaler": backend.config.upscale_model.rsplit("/", 1)[-1],
        "scale": wanted,
        "native_scale": native,
        "passes": passes,
        "load_s": round(load_total, 4),
        "generate_s": round(time.perf_counter() - started, 4),
    }
    return image_asset(current, request.output_format, meta)
