"""Control images on Diffusers: which pipelines take one, and the arguments that carry it.

A control model is a model folder whose pipeline class is a control pipeline: ControlNet on
SD 1.x / SDXL / SD3 / FLUX.1 / Qwen-Image / Z-Image (``StableDiffusionControlNetPipeline``,
``QwenImageControlNetPipeline``...: the control image goes through a ControlNet, scaled by
``controlnet_conditioning_scale`` = ``control_strength``), or FLUX.1 Canny/Depth
(``FluxControlPipeline``: the control image's latents are extra input channels of the
transformer, so there is no strength). Nothing here assumes a family: the argument names are
read from the pipeline's ``__call__``. A control model needs a control image on every call.

Or the backend's ``controlnet`` option names a ControlNet (a ``ControlNetModel`` /
``FluxControlNetModel`` / ``QwenImageControlNetModel``... folder or Hub id, e.g.
lllyasviel/sd-controlnet-canny) for the text->image model: a call with a control image runs the
ControlNet pipeline derived from the loaded one (``from_pipe``: shared weights, kind
``CONTROL``); a call without one runs the plain model.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import CapabilityNotSupportedError, InvalidRequestError
from .families import T2I, ModelInfo

__all__ = [
    "CONTROL",
    "control_inputs",
    "derive",
    "is_control_class",
    "is_control_model",
    "no_control",
    "registry_types",
    "supports_control",
]

CONTROL = "control"  # the derived-pipeline kind of a configured ControlNet


def _t2i_class(info: ModelInfo) -> str:
    return info.registry_classes.get(T2I, info.class_name)


def is_control_model(info: ModelInfo) -> bool:
    """Whether the model's text->image pipeline is a control pipeline (ControlNet or channels)."""
    return is_control_class(_t2i_class(info))


def is_control_class(class_name: str) -> bool:
    return "Control" in class_name and "ControlNetXS" not in class_name


def no_control(source: str, class_name: str) -> CapabilityNotSupportedError:
    """The refusal of a control image by a text->image model that takes none."""
    return CapabilityNotSupportedError(
        f"{source} ({class_name}) takes no control_image: configure a control model "
        "(a ControlNet pipeline folder, or FLUX.1 Canny/Depth) or the controlnet option"
    )


def supports_control(
    infos: Mapping[str, ModelInfo], sources: Iterable[str], controlnet: str | None = None
) -> bool:
    """Whether any configured text->image model takes a control image."""
    sources = list(sources)
    if controlnet and sources:
        return True
    return any(s in infos and is_control_model(infos[s]) for s in sources)


def control_inputs(
    info: ModelInfo, request: Any, controlnet: str | None = None
) -> tuple[dict[str, Any], tuple[str, ...], str]:
    """(pipeline inputs, required names, pipeline kind) for the request's control image."""
    class_name = _t2i_class(info)
    kind = T2I
    if controlnet and not is_control_model(info):
        if request.control_image is None:
            return {}, (), T2I  # the plain model
        class_name, kind = class_name.replace("Pipeline", "ControlNetPipeline"), CONTROL
    elif not is_control_model(info):
        if request.control_image is not None:
            raise no_control(info.source, class_name)
        return {}, (), T2I
    if request.control_image is None:
        raise InvalidRequestError(
            "control_image", None, f"is required by {class_name} (a control model)"
        )
    import diffusers

    from ... import media

    takes = registry_types(info.source, controlnet if kind == CONTROL else None)
    if request.control_type is not None and takes and request.control_type not in takes:
        raise InvalidRequestError(
            "control_type", request.control_type, f"{info.source} takes: {', '.join(takes)}"
        )
    cls = getattr(diffusers, class_name, None)
    if cls is None:
        raise CapabilityNotSupportedError(
            f"diffusers {diffusers.__version__} has no {class_name} for {info.source}"
        )
    params = inspect.signature(cls.__call__).parameters
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
    return inputs, (arg,), kind


def registry_types(source: str, controlnet: str | None) -> list[str]:
    """Control types the registry lists for ``source`` (built in, or via ``controlnet``)."""
    try:
        from ...model_capabilities import VisionModelCapabilitiesRegistry

        registry = VisionModelCapabilitiesRegistry()
        if source not in registry:
            return []
        controls = registry.get(source).controls
    except Exception:  # the registry is advice here
        return []
    return [c.type for c in controls if c.controlnet == controlnet]


def derive(base: Any, source: str, hub: Mapping[str, Any]) -> Any:
    """The ControlNet pipeline over ``base``'s modules, with the ControlNet at ``source``."""
    import json
    from pathlib import Path

    import diffusers

    from ...errors import UnknownModelError

    try:
        if Path(source).expanduser().is_dir():
            config = Path(source).expanduser() / "config.json"
        else:
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(source, "config.json", **hub))
        class_name = json.loads(config.read_text(encoding="utf-8"))["_class_name"]
        model_cls = getattr(diffusers, class_name)
        dtype = getattr(base, "dtype", None)
        model = model_cls.from_pretrained(source, torch_dtype=dtype, **hub)
    except Exception as exc:
        raise UnknownModelError(f"cannot load the controlnet {source!r}: {exc}") from None
    device = getattr(base, "device", None)
    if device is not None:
        model.to(device)
    pipe = diffusers.AutoPipelineForText2Image.from_pipe(base, controlnet=model)
    pipe.set_progress_bar_config(disable=True)
    return pipe
