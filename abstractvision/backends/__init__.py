"""Engines, imported lazily: ``import abstractvision.backends`` loads no torch.

``BACKENDS`` is the one table that maps a short name (what ``--backend`` takes) to the module and
the backend/config classes; ``create_backend`` builds one from plain keyword options.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base_backend import VisionBackend

__all__ = [
    "BACKENDS",
    "HuggingFaceDiffusersBackendConfig",
    "HuggingFaceDiffusersVisionBackend",
    "OpenAICompatibleBackendConfig",
    "OpenAICompatibleVisionBackend",
    "StableDiffusionCppBackendConfig",
    "StableDiffusionCppVisionBackend",
    "VisionBackend",
    "create_backend",
]

# short name -> (module, backend class, config class)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "diffusers": (
        "huggingface_diffusers",
        "HuggingFaceDiffusersVisionBackend",
        "HuggingFaceDiffusersBackendConfig",
    ),
    "sdcpp": (
        "stable_diffusion_cpp",
        "StableDiffusionCppVisionBackend",
        "StableDiffusionCppBackendConfig",
    ),
    "openai": (
        "openai_compatible",
        "OpenAICompatibleVisionBackend",
        "OpenAICompatibleBackendConfig",
    ),
}

_LAZY = {cls: module for module, *classes in BACKENDS.values() for cls in classes}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def create_backend(name: str, **options: Any) -> VisionBackend:
    """``create_backend("diffusers", model_id="...")``: config from keyword options."""
    from ..errors import InvalidRequestError

    if name not in BACKENDS:
        raise InvalidRequestError("backend", name, f"must be one of {', '.join(BACKENDS)}")
    module_name, backend_cls, config_cls = BACKENDS[name]
    module = importlib.import_module(f".{module_name}", __name__)
    config = getattr(module, config_cls)(**options)
    return getattr(module, backend_cls)(config=config)
