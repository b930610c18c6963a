"""Control images on Diffusers: which pipelines take one, and the arguments that carry it.

A control model is a model folder whose pipeline class is a control pipeline: ControlNet on
SD 1.x / SDXL / SD3 / FLUX.1 / Qwen-Image / Z-Image (``StableDiffusionControlNetPipeline``,
``QwenImageControlNetPipeline``...: the control image goes through a ControlNet, scaled by
``controlnet_conditioning_scale`` = ``control_strength``), or FLUX.1 Canny/Depth
(``FluxControlPipeline``: the control image's latents are extra input channels of the
transformer, so there is no strength). Nothing here assumes a family: the argument names are
read from the pipeline's ``__call__``. A control model needs a control image on every call.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import CapabilityNotSupportedError, InvalidRequestError
from .families import T2I, ModelInfo

__all__ = ["control_inputs", "is_control_model", "supports_control"]


def _t2i_class(info: ModelInfo) -> str:
    return info.registry_classes.get(T2I, info.class_name)


def is_control_model(info: ModelInfo) -> bool:
    """Whether the model's text->image pipeline is a control pipeline (ControlNet or channels)."""
    return "Control" in _t2i_class(info) and "ControlNetXS" not in _t2i_class(info)


def supports_control(infos: Mapping[str, ModelInfo], sources: Iterable[str]) -> bool:
    """Whether any configured text->image model takes a control image."""
    return any(s in infos and is_control_model(infos[s]) for s in sources)


def control_inputs(info: ModelInfo, request: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(pipeline inputs, required names) for the request's control image on this model."""
    class_name = _t2i_class(info)
    if not is_control_model(info):
        if request.control_image is not None:
            raise CapabilityNotSupportedError(
                f"{info.source} ({class_name}) takes no control_image: configure a control model "
                "(a ControlNet pipeline folder, or FLUX.1 Canny/Depth)"
            )
        return {}, ()
    if request.control_image is None:
        raise InvalidRequestError(
            "control_image", None, f"is required by {class_name} (a control model)"
        )
    import diffusers

    from ... import media

    params = inspect.signature(getattr(diffusers, class_name).__call__).parameters
    image = media.decode_image(request.control_image, field="control_image")
    arg = "control_image" if "control_image" in params else "image"
    inputs: dict[str, Any] = {arg: image}
    if request.width is None and request.height is None:  # the control map sets the size
        inputs["width"], inputs["height"] = (max(64, side - side % 8) for side in image.size)
    if request.control_strength is not None:
        if "controlnet_conditioning_scale" not in params:
            raise InvalidRequestError(
                "control_strength",
                request.control_strength,
                f"{class_name} has no control strength (the control is part of its input)",
            )
        inputs["controlnet_conditioning_scale"] = request.control_strength
    return inputs, (arg,)
