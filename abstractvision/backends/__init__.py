"""Engines, imported lazily: ``import abstractvision.backends`` loads no torch.

``BACKENDS`` is the one table that maps a short name (what ``--backend`` takes) to the module,
the backend/config classes and the config field that names the model; ``create_backend`` builds
one from plain keyword options, and ``backend_options`` turns ``KEY=VALUE`` flags into them.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..errors import InvalidRequestError
from .base_backend import VisionBackend

__all__ = [
    "BACKENDS",
    "HuggingFaceDiffusersBackendConfig",
    "HuggingFaceDiffusersVisionBackend",
    "MFluxBackendConfig",
    "MFluxVisionBackend",
    "OpenAICompatibleBackendConfig",
    "OpenAICompatibleVisionBackend",
    "RayServeBackendConfig",
    "RayServeVisionBackend",
    "StableDiffusionCppBackendConfig",
    "StableDiffusionCppVisionBackend",
    "VisionBackend",
    "backend_options",
    "create_backend",
    "parse_key_values",
    "parse_value",
]


class Engine(NamedTuple):
    module: str
    backend_class: str
    config_class: str
    model_option: str  # the config field ``--model`` fills
    # generations a server lets through at once by default; a remote pool queues for itself
    default_concurrency: int = 1


BACKENDS: dict[str, Engine] = {
    "diffusers": Engine(
        "huggingface_diffusers",
        "HuggingFaceDiffusersVisionBackend",
        "HuggingFaceDiffusersBackendConfig",
        "model_id",
    ),
    "sdcpp": Engine(
        "stable_diffusion_cpp",
        "StableDiffusionCppVisionBackend",
        "StableDiffusionCppBackendConfig",
        "model",
    ),
    "openai": Engine(
        "openai_compatible",
        "OpenAICompatibleVisionBackend",
        "OpenAICompatibleBackendConfig",
        "model_id",
    ),
    "ray": Engine("ray_serve", "RayServeVisionBackend", "RayServeBackendConfig", "model_id", 64),
}

_LAZY = {cls: e.module for e in BACKENDS.values() for cls in (e.backend_class, e.config_class)}
# 0.3.x names: its MLX-Gen backend (gone; constructing it says so), in ..compat
_LAZY.update(MFluxBackendConfig="..compat", MFluxVisionBackend="..compat")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    path = module if module.startswith(".") else f".{module}"
    return getattr(importlib.import_module(path, __name__), name)


def _engine(name: str) -> Engine:
    if name not in BACKENDS:
        raise InvalidRequestError("backend", name, f"must be one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def parse_key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` command-line items; a value is JSON when it parses, else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidRequestError(flag, item, "must be KEY=VALUE")
        out[key] = parse_value(raw)
    return out


def parse_value(raw: str) -> Any:
    """A command-line value: JSON when it parses (``2``, ``true``, ``{...}``), else the text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def backend_options(
    name: str,
    items: Sequence[str] = (),
    *,
    model: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """``--backend-option KEY=VALUE`` items plus ``--model``/``--device``, as config options.

    ``model`` goes to the field that names the model in that engine's config (``model_id`` for
    Diffusers and OpenAI-compatible services, ``model`` for a stable-diffusion.cpp file).
    """
    options = parse_key_values(items, "--backend-option")
    if model:
        options.setdefault(_engine(name).model_option, model)
    if device:
        options.setdefault("device", device)
    return options


def create_backend(name: str, **options: Any) -> VisionBackend:
    """``create_backend("diffusers", model_id="...")``: config from keyword options."""
    engine = _engine(name)
    module = importlib.import_module(f".{engine.module}", __name__)
    config_cls = getattr(module, engine.config_class)
    known = {f.name for f in dataclasses.fields(config_cls)}
    for key in options:
        if key not in known:
            raise InvalidRequestError(
                key,
                options[key],
                f"not an option of the {name} backend; known: {', '.join(sorted(known))}",
            )
    return getattr(module, engine.backend_class)(config=config_cls(**options))
