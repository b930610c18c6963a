"""A request with its model's registry defaults filled in: what the Diffusers engine runs.

The backend applies ``fill`` to every request before the pipeline runs, and its 0.3.x
``normalize_*_request`` methods return the same request, so the two always agree:

- an unset field takes the registry's default for the model and task; when the call loads a LoRA
  the task lists under ``loras`` (a Lightning LoRA: 4 or 8 steps), that LoRA's defaults first;
- a guidance the registry fixes (``min == max``: a step-distilled model) is that value (another
  value given is logged as not used);
- width and height round up to the model's ``multiple_of``;
- ``negative_prompt`` is dropped when the task's pipeline class takes none (it would not be passed).

A model the registry does not know runs on its pipeline's own defaults: nothing is filled.
The registry file is the only source of these facts.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

# registry parameter -> request field (true_cfg_scale is what guidance_scale sets on Qwen-Image)
_FIELD = {
    "width": "width",
    "height": "height",
    "steps": "steps",
    "guidance_scale": "guidance_scale",
    "true_cfg_scale": "guidance_scale",
    "strength": "strength",
    "num_frames": "num_frames",
    "fps": "fps",
}
_GUIDANCE = ("guidance_scale", "true_cfg_scale")


def task_spec(source: str, task: str) -> Any:
    """The registry's ``TaskSpec`` of ``source`` for ``task``; None when it has none."""
    from ...model_capabilities import VisionModelCapabilitiesRegistry

    try:
        registry = VisionModelCapabilitiesRegistry()
        if source not in registry:
            return None
        return registry.get(source).tasks.get(task)  # type: ignore[call-overload]
    except Exception:  # the registry is advice here; the pipeline's defaults still apply
        log.debug("registry lookup failed for %s", source, exc_info=True)
        return None


def lora_defaults(spec: Any, extra: Mapping[str, Any]) -> dict[str, float]:
    """Defaults of the first registry ``loras`` row matching each LoRA the call loads."""
    out: dict[str, float] = {}
    loras = extra.get("loras")
    for lora in loras if isinstance(loras, (list, tuple)) else ():
        if not isinstance(lora, Mapping):
            continue
        source, weight_name = lora.get("source"), lora.get("weight_name") or ""
        for row in spec.loras:
            if row.source == source and (
                row.weight_name is None or fnmatch.fnmatch(str(weight_name), row.weight_name)
            ):
                for name, value in row.defaults.items():
                    out.setdefault(name, value)
                break
    return out


def takes(class_name: str | None, argument: str) -> bool | None:
    """Whether the Diffusers pipeline ``class_name`` takes ``argument``; None when unknown."""
    if not class_name:
        return None
    try:
        import diffusers
    except ImportError:  # the call itself names the missing extra
        return None
    cls = getattr(diffusers, class_name, None)
    return None if cls is None else argument in inspect.signature(cls.__call__).parameters


def fill(request: Any, source: str, task: str, class_name: str | None = None) -> Any:
    """``request`` as the engine runs it for model ``source`` (see the module's docstring)."""
    fields = {f.name for f in dataclasses.fields(request)}
    changes: dict[str, Any] = {}
    if (
        getattr(request, "negative_prompt", None) is not None
        and takes(class_name, "negative_prompt") is False
    ):
        changes["negative_prompt"] = None
    spec = task_spec(source, task)
    if spec is None:
        return dataclasses.replace(request, **changes) if changes else request
    by_lora = lora_defaults(spec, request.extra or {})
    for name, param in spec.params.items():
        field = _FIELD.get(name)
        if field not in fields or field in changes:
            continue
        value = getattr(request, field)
        fixed = param.min is not None and param.min == param.max
        if name in _GUIDANCE and fixed:
            if value is not None and value != param.min:
                log.warning(
                    "%s=%s is not used: %s is step-distilled and runs at %s=%s",
                    field, value, source, field, param.min,
                )  # fmt: skip
            value = param.min  # the model ignores any other value
        elif value is None:
            value = by_lora.get(name, param.default)
        elif name in ("width", "height") and param.multiple_of and value % param.multiple_of:
            value += param.multiple_of - value % param.multiple_of
        if value is not None and value != getattr(request, field):
            changes[field] = float(value) if field in ("guidance_scale", "strength") else value
    return dataclasses.replace(request, **changes) if changes else request
