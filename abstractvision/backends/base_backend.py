"""The interface every engine implements.

A backend turns a validated request into a ``GeneratedAsset``. It never stores anything and
never re-validates common bounds (``VisionManager`` did); it checks only what is specific to its
engine (frame rules, model limits). Every task method takes an optional ``GenerationControl``:
report progress through it and stop when it is cancelled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..control import GenerationControl
from ..errors import CapabilityNotSupportedError
from ..types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    MultiAngleRequest,
    Task,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)

__all__ = ["TASK_METHODS", "VisionBackend"]

# The backend method that runs each single-result task.
TASK_METHODS = {
    Task.TEXT_TO_IMAGE: "generate_image",
    Task.IMAGE_TO_IMAGE: "edit_image",
    Task.TEXT_TO_VIDEO: "generate_video",
    Task.IMAGE_TO_VIDEO: "image_to_video",
}


class VisionBackend(ABC):
    """Base class of the engines. Override the tasks the engine can run."""

    @abstractmethod
    def get_capabilities(self) -> VisionBackendCapabilities:
        """What this backend, as configured, will do: tasks, mask support, limits, extra keys."""

    def preload(self) -> None:
        """Load the default model now instead of on the first call."""

    def unload(self) -> None:
        """Release loaded models and the memory they hold."""

    def generate_image(
        self, request: ImageGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        raise self._unsupported("text_to_image")

    def edit_image(
        self, request: ImageEditRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        raise self._unsupported("image_to_image")

    def generate_angles(
        self, request: MultiAngleRequest, *, control: GenerationControl | None = None
    ) -> list[GeneratedAsset]:
        """Default: one edit of the reference per view (``abstractvision.multiview``).

        An engine with its own multi-view support overrides this; VisionManager then calls it.
        """
        from ..multiview import generate_views

        return generate_views(self, request, control=control)

    def generate_video(
        self, request: VideoGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        raise self._unsupported("text_to_video")

    def image_to_video(
        self, request: ImageToVideoRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        raise self._unsupported("image_to_video")

    def _unsupported(self, task: str) -> CapabilityNotSupportedError:
        return CapabilityNotSupportedError(f"{type(self).__name__} cannot run {task}")
