"""abstractvision: generative vision for AI agents.

Text/image to image and video on local engines (Diffusers, stable-diffusion.cpp) or
OpenAI-compatible services, with results stored as small artifact refs. Engines are imported
lazily: importing this package loads no torch.
"""

from .artifacts import (
    LocalAssetStore,
    MediaStore,
    RuntimeArtifactStoreAdapter,
    is_artifact_ref,
    make_media_ref,
)
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
    "InvalidImageError",
    "InvalidRequestError",
    "LocalAssetStore",
    "MediaStore",
    "MultiAngleRequest",
    "OptionalDependencyMissingError",
    "OutOfMemoryError",
    "ProgressEvent",
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
