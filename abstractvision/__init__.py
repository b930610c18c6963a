"""abstractvision: generative vision for AI agents.

Text/image to image and video on local engines (Diffusers, stable-diffusion.cpp) or
OpenAI-compatible services, with results stored as small artifact refs. Engines are imported
lazily: importing this package loads no torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

# name -> submodule. Nothing below is imported until first used, so ``import abstractvision``
# loads no pydantic, PIL, torch or mcp (tests/test_compat_imports.py checks it).
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "LocalAssetStore",
            "MediaStore",
            "RuntimeArtifactStoreAdapter",
            "is_artifact_ref",
            "make_media_ref",
        ),
        "artifacts",
    ),
    **dict.fromkeys(("GenerationControl", "ProgressEvent"), "control"),
    **dict.fromkeys(
        (
            "AbstractVisionError",
            "ArtifactNotFoundError",
            "BackendError",
            "BackendNotConfiguredError",
            "BusyError",
            "CapabilityNotSupportedError",
            "GenerationCancelledError",
            "InvalidImageError",
            "InvalidRequestError",
            "OptionalDependencyMissingError",
            "OutOfMemoryError",
            "RegistryError",
            "ReplicaLostError",
            "UnknownModelError",
        ),
        "errors",
    ),
    "VisionModelCapabilitiesRegistry": "model_capabilities",
    "FsspecAssetStore": "object_store",
    **dict.fromkeys(
        (
            "LIMITS",
            "GeneratedAsset",
            "ImageEditRequest",
            "ImageGenerationRequest",
            "ImageToVideoRequest",
            "ImageUpscaleRequest",
            "MultiAngleRequest",
            "Task",
            "VideoGenerationRequest",
            "VisionBackendCapabilities",
        ),
        "types",
    ),
    "VisionManager": "vision_manager",
    # names of abstractvision 0.3.x (abstractvision/compat.py)
    **dict.fromkeys(("LoRAAdapterSpec", "ProviderAdapterInfo", "ProviderModelInfo"), "compat"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from .artifacts import (
        LocalAssetStore,
        MediaStore,
        RuntimeArtifactStoreAdapter,
        is_artifact_ref,
        make_media_ref,
    )
    from .compat import LoRAAdapterSpec, ProviderAdapterInfo, ProviderModelInfo
    from .control import GenerationControl, ProgressEvent
    from .errors import (
        AbstractVisionError,
        ArtifactNotFoundError,
        BackendError,
        BackendNotConfiguredError,
        BusyError,
        CapabilityNotSupportedError,
        GenerationCancelledError,
        InvalidImageError,
        InvalidRequestError,
        OptionalDependencyMissingError,
        OutOfMemoryError,
        RegistryError,
        ReplicaLostError,
        UnknownModelError,
    )
    from .model_capabilities import VisionModelCapabilitiesRegistry
    from .object_store import FsspecAssetStore
    from .types import (
        LIMITS,
        GeneratedAsset,
        ImageEditRequest,
        ImageGenerationRequest,
        ImageToVideoRequest,
        ImageUpscaleRequest,
        MultiAngleRequest,
        Task,
        VideoGenerationRequest,
        VisionBackendCapabilities,
    )
    from .vision_manager import VisionManager

__version__ = "0.4.0"

__all__ = [
    "LIMITS",
    "AbstractVisionError",
    "ArtifactNotFoundError",
    "BackendError",
    "BackendNotConfiguredError",
    "BusyError",
    "CapabilityNotSupportedError",
    "FsspecAssetStore",
    "GeneratedAsset",
    "GenerationCancelledError",
    "GenerationControl",
    "ImageEditRequest",
    "ImageGenerationRequest",
    "ImageToVideoRequest",
    "ImageUpscaleRequest",
    "InvalidImageError",
    "InvalidRequestError",
    "LoRAAdapterSpec",
    "LocalAssetStore",
    "MediaStore",
    "MultiAngleRequest",
    "OptionalDependencyMissingError",
    "OutOfMemoryError",
    "ProgressEvent",
    "ProviderAdapterInfo",
    "ProviderModelInfo",
    "RegistryError",
    "ReplicaLostError",
    "RuntimeArtifactStoreAdapter",
    "Task",
    "UnknownModelError",
    "VideoGenerationRequest",
    "VisionBackendCapabilities",
    "VisionManager",
    "VisionModelCapabilitiesRegistry",
    "__version__",
    "is_artifact_ref",
    "make_media_ref",
]
