"""The interface every engine implements.

A backend turns a validated request into a ``GeneratedAsset``. It never stores anything and
never re-validates common bounds (``VisionManager`` did); it checks only what is specific to its
engine (frame rules, model limits). Every task method takes an optional ``GenerationControl``:
report progress through it and stop when it is cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..control import GenerationControl
from ..errors import CapabilityNotSupportedError
from ..types import (
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

if TYPE_CHECKING:
    from ..compat import ProviderAdapterInfo, ProviderModelInfo

__all__ = ["TASK_METHODS", "VisionBackend"]

# The backend method that runs each single-result task.
TASK_METHODS = {
    Task.TEXT_TO_IMAGE: "generate_image",
    Task.IMAGE_TO_IMAGE: "edit_image",
    Task.TEXT_TO_VIDEO: "generate_video",
    Task.IMAGE_TO_VIDEO: "image_to_video",
    Task.IMAGE_UPSCALE: "upscale_image",
}


class VisionBackend:
    """Base class of the engines. Override the tasks the engine can run."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from ..compat import adapt_legacy_backend

        adapt_legacy_backend(cls)  # a subclass written for 0.3.x (task methods without control=)

    def get_capabilities(self) -> VisionBackendCapabilities:
        """What this backend, as configured, will do: tasks, mask support, limits, extra keys.

        Engines override this. The default (kept for subclasses written for 0.3.x) lists the
        tasks the class implements and accepts any ``extra`` key.
        """
        from ..compat import permissive_capabilities

        return permissive_capabilities(self)

    def list_provider_models(self, *, task: str | None = None) -> list[ProviderModelInfo]:
        """The models this backend is configured with (for ``task``, or all).

        A backend that declares no capabilities (a 0.3.x-style subclass) has no catalogue to
        list: ``CapabilityNotSupportedError``, as in 0.3.x.
        """
        from ..compat import ProviderModelInfo

        if type(self).get_capabilities is VisionBackend.get_capabilities:
            from ..errors import CapabilityNotSupportedError

            raise CapabilityNotSupportedError(
                f"{type(self).__name__} does not support provider model catalogs: it declares "
                "no models (override get_capabilities or list_provider_models)"
            )

        by_model: dict[str, list[str]] = {}
        for t, ids in self.get_capabilities().models.items():
            if task is None or str(t) == str(task):
                for model in ids:
                    by_model.setdefault(model, []).append(str(t))
        return [ProviderModelInfo(id=m, capabilities=tuple(ts)) for m, ts in by_model.items()]

    def list_provider_adapters(
        self, *, model: str | None = None, task: str | None = None
    ) -> list[ProviderAdapterInfo]:
        """Adapters (LoRAs) this backend may load; none unless the engine has an allow-list."""
        return []

    def preload(self) -> None:
        """Load the default model now instead of on the first call."""

    def unload(self) -> None:
        """Release loaded models and the memory they hold."""

    def check_request(self, request: Any) -> None:
        """Refuse, before anything loads or runs, a request the engine would fail on.

        ``VisionManager`` calls it for every request (and for each request a multi-view call
        will make) before the first generation; the default checks nothing more.
        """

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

    def upscale_image(
        self, request: ImageUpscaleRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        raise self._unsupported("image_upscale")

    def run_batch(
        self,
        requests: Sequence[ImageGenerationRequest | ImageEditRequest],
        *,
        control: GenerationControl | None = None,
    ) -> list[GeneratedAsset]:
        """Several single-image requests of one task (same settings, own seeds), in order.

        Default: one call each, progress counted across the batch ("image 2/3: step 4/8").
        An engine that can batch (Diffusers) overrides this; image k must equal a single call
        with request k.
        """
        parent = control if control is not None else GenerationControl()
        out = []
        for index, request in enumerate(requests):
            child = _ImageProgress(parent, index, len(requests))
            unregister = parent.on_cancel(child.cancel)
            try:
                out.append(getattr(self, TASK_METHODS[request.task])(request, control=child))
            finally:
                unregister()
            parent.check()
        return out

    def _unsupported(self, task: str) -> CapabilityNotSupportedError:
        return CapabilityNotSupportedError(f"{type(self).__name__} cannot run {task}")


class _ImageProgress(GenerationControl):
    """Image ``index`` of ``count``: its steps reported as a share of the whole batch."""

    def __init__(self, parent: GenerationControl, index: int, count: int) -> None:
        super().__init__()
        self.parent, self.index, self.count = parent, index, count

    def report(self, step: int, total: int | None, message: str = "") -> None:
        super().report(step, total, message)
        text = f"image {self.index + 1}/{self.count}: step {step}" + (f"/{total}" if total else "")
        if total:
            self.parent.report(self.index * total + step, self.count * total, text)
        else:
            self.parent.report(step, None, text)
