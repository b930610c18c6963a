"""VisionManager: the thin orchestrator between a caller and a backend.

For every call: build and validate the request, gate it on the registry (when a model id is
set) and on what the backend says it can do, check image inputs, run the backend with the
caller's ``GenerationControl``, then store the result (or hand back the ``GeneratedAsset``).
Nothing is stored unless the whole call succeeded and was not cancelled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import compat, media, multiview, upscaling
from .artifacts import MediaStore
from .backends.base_backend import TASK_METHODS, VisionBackend
from .control import GenerationControl, ProgressEvent
from .errors import (
    BackendNotConfiguredError,
    CapabilityNotSupportedError,
    InvalidRequestError,
    UnknownModelError,
)
from .model_capabilities import VisionModelCapabilitiesRegistry
from .types import (
    LIMITS,
    REQUEST_TYPES,
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ImageUpscaleRequest,
    MultiAngleRequest,
    Task,
    VideoGenerationRequest,
    VisionBackendCapabilities,
    VisionRequest,
)

__all__ = ["VisionManager"]

Result = GeneratedAsset | dict[str, Any]
ProgressCallback = Callable[[ProgressEvent], None]


class VisionManager:
    """One method per task. Returns a ``GeneratedAsset``, or an artifact ref when a store is set."""

    def __init__(
        self,
        backend: VisionBackend | None = None,
        store: MediaStore | None = None,
        model_id: str | None = None,
        registry: VisionModelCapabilitiesRegistry | None = None,
    ) -> None:
        self.backend = backend
        self.store = store
        self.model_id = model_id
        self.registry = registry if registry is not None or not model_id else None
        if model_id and self.registry is None:
            self.registry = VisionModelCapabilitiesRegistry()

    # --- public task methods -------------------------------------------------------------

    def generate_image(
        self,
        prompt: str | ImageGenerationRequest,
        *,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> Result:
        request = self._request(ImageGenerationRequest, prompt, "prompt", params)
        return self._run_single(_one(request, "generate_image_batch"), control, on_progress)

    def generate_image_batch(
        self,
        prompt: str | ImageGenerationRequest,
        *,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> list[Result]:
        """``count`` images (or one per ``seeds`` entry); image k is what a single call with
        seed k gives. Without ``seeds``: seed, seed+1, ... (a random start when no seed).
        Nothing is stored unless every image succeeded."""
        request = self._request(ImageGenerationRequest, prompt, "prompt", params)
        return self._run_batch(request, control, on_progress)

    def edit_image(
        self,
        prompt: str | ImageEditRequest,
        image: bytes | None = None,
        *,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> Result:
        if image is not None:
            params["image"] = image
        request = self._request(ImageEditRequest, prompt, "prompt", params)
        return self._run_single(_one(request, "edit_image_batch"), control, on_progress)

    def edit_image_batch(
        self,
        prompt: str | ImageEditRequest,
        image: bytes | None = None,
        *,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> list[Result]:
        """Several edits of one image (``count`` or ``seeds``), as ``generate_image_batch``."""
        if image is not None:
            params["image"] = image
        request = self._request(ImageEditRequest, prompt, "prompt", params)
        return self._run_batch(request, control, on_progress)

    def upscale_image(
        self,
        image: bytes | ImageUpscaleRequest,
        *,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> Result:
        """A larger image: ``scale`` x (default: the model's factor), ``prompt`` for
        text-guided upscalers. Output pixels are bounded by ``LIMITS.max_upscale_pixels``."""
        request = self._request(ImageUpscaleRequest, image, "image", params)
        return self._run_single(request, control, on_progress)

    def generate_video(
        self,
        prompt: str | VideoGenerationRequest,
        *,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> Result:
        request = self._request(VideoGenerationRequest, prompt, "prompt", params)
        return self._run_single(request, control, on_progress)

    def image_to_video(
        self,
        image: bytes | ImageToVideoRequest,
        *,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> Result:
        request = self._request(ImageToVideoRequest, image, "image", params)
        return self._run_single(request, control, on_progress)

    def generate_video_batch(
        self,
        prompt: str,
        *,
        count: int | None = None,
        seeds: Sequence[int] | None = None,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> list[Result]:
        """Several videos of one prompt (0.3.x name): one per ``seeds`` entry, or ``count`` from
        ``seed`` on, made one after another; nothing is stored unless every video succeeded."""
        singles = [
            self._request(VideoGenerationRequest, prompt, "prompt", {**params, "seed": s})
            for s in compat.batch_seeds(count, seeds, params.get("seed"))
        ]
        return self._run_each(singles, control, on_progress)

    def image_to_video_batch(
        self,
        image: bytes,
        *,
        count: int | None = None,
        seeds: Sequence[int] | None = None,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> list[Result]:
        """Several videos from one image (0.3.x name), as ``generate_video_batch``."""
        singles = [
            self._request(ImageToVideoRequest, image, "image", {**params, "seed": s})
            for s in compat.batch_seeds(count, seeds, params.get("seed"))
        ]
        return self._run_each(singles, control, on_progress)

    def generate_angles(
        self,
        prompt: str | MultiAngleRequest,
        *,
        control: GenerationControl | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> list[Result]:
        """Consistent views of one subject, on any backend that can edit (see docs/multiview.md).

        Returns, in order: the reference image when none was given (it is generated first),
        one result per view, then a contact sheet of all views labelled by angle. Each result's
        metadata has ``role`` = reference | view | contact_sheet; a view also carries
        ``view_index`` (0-based), ``angle``, ``azimuth``, ``elevation``, ``zoom``, ``route``
        (dedicated | generic) and ``seed``. Progress counts across every image ("view 2/4:
        step 3/8"). Nothing is stored when a view fails or the call is cancelled, unless
        ``partial_results=True``: then the finished views and their sheet are stored and
        returned, and the sheet's ``failed`` metadata names the view that failed.
        """
        request = self._request(MultiAngleRequest, prompt, "prompt", params)
        backend = self._backend()
        caps = backend.get_capabilities()
        native = type(backend).generate_angles is not VisionBackend.generate_angles
        plan = None if native else multiview.plan(request, caps, self.registry, self.model_id)
        # the generic route runs text->image and edits: gate those, not a multi_view task
        samples = plan.sample_requests() if plan is not None else (request,)
        control = self._prepare(request, caps, control, on_progress, gated=samples)
        if plan is None:
            assets = backend.generate_angles(request, control=control)
        else:
            assets = multiview.render(backend, plan, control)
        control.check()
        return self._store_angles(assets, request)

    def _store_angles(
        self, assets: list[GeneratedAsset], request: MultiAngleRequest
    ) -> list[Result]:
        """Store in order; each view names the reference, the sheet names reference and views."""
        results: list[Result] = []
        links: dict[str, Any] = {}
        view_ids: list[str] = []
        for asset in assets:
            role = asset.metadata.get("role")
            if view_ids and role == "contact_sheet":
                links["views"] = view_ids
            if links and role in ("view", "contact_sheet"):
                asset = dataclasses.replace(asset, metadata={**asset.metadata, **links})
            result = self._store(asset, request)
            if isinstance(result, dict) and role in ("reference", "view"):
                if role == "reference":
                    links["reference"] = result["$artifact"]
                else:
                    view_ids.append(result["$artifact"])
            results.append(result)
        return results

    def run(
        self,
        task: str | Task,
        params: Mapping[str, Any],
        *,
        control: GenerationControl | None = None,
    ) -> Result | list[Result]:
        """Run a task by name with plain arguments (what the MCP and tool-calling layers use)."""
        try:
            request_type = REQUEST_TYPES[Task(str(task))]
        except ValueError:
            known = ", ".join(t.value for t in Task)
            raise InvalidRequestError("task", task, f"unknown task; known: {known}") from None
        request = request_type.from_dict(params)
        if isinstance(request, MultiAngleRequest):
            return self.generate_angles(request, control=control)
        if not hasattr(request, "count"):
            return self._run_single(request, control, None)
        if (request.count or 1) > 1:
            return self._run_batch(request, control, None)
        return self._run_single(_one(request, "count"), control, None)

    def check(self, task: str | Task, params: Mapping[str, Any]) -> VisionRequest:
        """Every check ``run`` makes before the engine starts, without running anything.

        Front ends call it before they queue a job, so a call the engine would refuse (a bound,
        a task the model lacks, steps x strength of an edit, an unknown scheduler, for
        multi-view the reference and the edits) fails at once. Returns the request.
        """
        try:
            request_type = REQUEST_TYPES[Task(str(task))]
        except ValueError:
            known = ", ".join(t.value for t in Task)
            raise InvalidRequestError("task", task, f"unknown task; known: {known}") from None
        request = request_type.from_dict(params)  # its own errors name the field, not the task
        backend = self._backend()
        caps = backend.get_capabilities()
        samples: Sequence[VisionRequest] = (request,)
        native = type(backend).generate_angles is not VisionBackend.generate_angles
        if isinstance(request, MultiAngleRequest) and not native:
            samples = multiview.plan(request, caps, self.registry, self.model_id).sample_requests()
        self._prepare(request, caps, None, None, gated=samples)
        return request

    def capabilities(self) -> VisionBackendCapabilities:
        return self._backend().get_capabilities()

    def list_provider_models(self, *, task: str | None = None) -> list[Any]:
        """``ProviderModelInfo`` of the models the backend is configured with."""
        return list(self._backend().list_provider_models(task=task))

    def list_provider_adapters(
        self, *, model: str | None = None, task: str | None = None
    ) -> list[Any]:
        """``ProviderAdapterInfo`` of the adapters (LoRAs) the backend may load."""
        return list(self._backend().list_provider_adapters(model=model, task=task))

    # --- the pipeline ----------------------------------------------------------------------

    def _request(
        self, cls: type[VisionRequest], first: Any, first_name: str, params: dict[str, Any]
    ) -> Any:
        if isinstance(first, cls):
            if params:
                raise InvalidRequestError(
                    next(iter(params)), "...", "pass parameters in the request object, not both"
                )
            return first
        params = compat.legacy_params(cls, params)  # 0.3.x keywords (lora_adapters, ...)
        return cls.from_dict({first_name: first, **params})

    def _backend(self) -> VisionBackend:
        if self.backend is None:
            raise BackendNotConfiguredError(
                "VisionManager has no backend: pass backend=... (e.g. HuggingFaceDiffusersVisionBackend)"
            )
        return self.backend

    def _prepare(
        self,
        request: VisionRequest,
        caps: VisionBackendCapabilities,
        control: GenerationControl | None,
        on_progress: ProgressCallback | None,
        *,
        gated: Sequence[VisionRequest] | None = None,
    ) -> GenerationControl:
        """Every check before the engine runs; returns the control the engine will see."""
        model = getattr(request, "model", None) or self.model_id
        if self.registry is not None and model and self.model_id:
            if isinstance(request, MultiAngleRequest):
                self.registry.get(model)  # any editing model can render views
            else:
                self.registry.require_support(model, request.task.value)
        for sample in gated or (request,):
            self._gate_on_backend(caps, sample)
            self._backend().check_request(sample)  # e.g. steps x strength, scheduler
        _check_images(request)
        if control is None:
            control = GenerationControl(on_progress)
        elif on_progress is not None:
            raise InvalidRequestError("on_progress", on_progress, "give it to the control instead")
        control.check()
        return control

    def _run_single(
        self,
        request: VisionRequest,
        control: GenerationControl | None,
        on_progress: ProgressCallback | None,
    ) -> Result:
        backend = self._backend()
        request = compat.normalized(backend, request)  # a 0.3.x backend's normalize_*_request
        control = self._prepare(request, backend.get_capabilities(), control, on_progress)
        method = TASK_METHODS[request.task]
        asset: GeneratedAsset = getattr(backend, method)(request, control=control)
        control.check()  # cancelled while the engine finished: store nothing
        return self._store(asset, request)

    def _run_batch(
        self,
        request: ImageGenerationRequest | ImageEditRequest,
        control: GenerationControl | None,
        on_progress: ProgressCallback | None,
    ) -> list[Result]:
        backend = self._backend()
        singles = [compat.normalized(backend, r) for r in _split(request)]
        control = self._prepare(request, backend.get_capabilities(), control, on_progress)
        assets = backend.run_batch(singles, control=control)
        control.check()  # cancelled while the engine finished: store nothing
        if len(assets) != len(singles):
            raise InvalidRequestError("count", len(singles), f"the backend made {len(assets)}")
        return [self._store(a, r) for a, r in zip(assets, singles, strict=True)]

    def _run_each(
        self,
        requests: list[VisionRequest],
        control: GenerationControl | None,
        on_progress: ProgressCallback | None,
    ) -> list[Result]:
        """Requests run one after another with one control; stored only once all succeeded."""
        backend = self._backend()
        requests = [compat.normalized(backend, r) for r in requests]
        caps = backend.get_capabilities()
        for request in requests:
            control = self._prepare(request, caps, control, on_progress)
            on_progress = None  # given to the control above
        assets = [getattr(backend, TASK_METHODS[r.task])(r, control=control) for r in requests]
        assert control is not None
        control.check()  # cancelled while the engine finished: store nothing
        return [self._store(a, r) for a, r in zip(assets, requests, strict=True)]

    def _store(self, asset: GeneratedAsset, request: VisionRequest) -> Result:
        if self.store is None:
            return asset
        metadata = {**asset.metadata, "task": request.task.value, "params": request.to_params()}
        if asset.preview is not None:
            preview = self.store.store_bytes(
                asset.preview,
                content_type=asset.preview_mime_type or "application/octet-stream",
                tags={"task": request.task.value, "role": "preview"},
            )
            metadata["preview"] = {k: preview[k] for k in ("$artifact", "uri", "content_type")}
        return self.store.store_bytes(
            asset.data,
            content_type=asset.mime_type,
            metadata=metadata,
            tags={"task": request.task.value, "media_type": asset.media_type},
        )

    @staticmethod
    def _gate_on_backend(caps: VisionBackendCapabilities, request: VisionRequest) -> None:
        task = request.task.value
        if not caps.supports(task):
            can = ", ".join(str(t) for t in caps.supported_tasks or ())
            raise CapabilityNotSupportedError(f"the backend cannot run {task}; it can run: {can}")
        if getattr(request, "mask", None) is not None and caps.supports_mask is False:
            raise CapabilityNotSupportedError("the backend cannot use a mask (inpainting)")
        if getattr(request, "control_image", None) is not None and not caps.supports_control_image:
            raise CapabilityNotSupportedError(
                "the backend's model takes no control_image: configure a ControlNet or a "
                "control model (see `abstractvision models --control`)"
            )
        for name, limit in (
            ("width", caps.max_width),
            ("height", caps.max_height),
            ("num_frames", caps.max_frames),
            ("fps", caps.max_fps),
        ):
            value = getattr(request, name, None)
            if value is not None and limit is not None and value > limit:
                raise InvalidRequestError(name, value, f"must be <= {limit} on this backend")
        extra = getattr(request, "extra", None) or {}
        for key in extra:
            if key not in caps.extra_keys:
                accepted = ", ".join(sorted(caps.extra_keys)) or "none"
                raise InvalidRequestError(
                    f"extra.{key}",
                    extra[key],
                    f"not accepted by this backend; accepted: {accepted}",
                )
        model = getattr(request, "model", None)
        configured = caps.models.get(task)
        if model is not None and configured is not None and model not in configured:
            raise UnknownModelError(
                f"model {model!r} is not configured for {task}; configured: {', '.join(configured)}"
            )


def _check_images(request: VisionRequest) -> None:
    """Every image input must be a safe, decodable image; a mask must match its image's size."""
    infos = {}
    for name in type(request).image_fields:
        data = getattr(request, name)
        if data is not None:
            infos[name] = media.inspect_image(data, field=name)
    for name in type(request).image_list_fields:
        for i, data in enumerate(getattr(request, name)):
            media.inspect_image(data, field=f"{name}.{i}")
    if isinstance(request, ImageUpscaleRequest) and request.scale is not None:
        info = infos["image"]
        upscaling.check_output(info.width, info.height, request.scale)
    if "mask" in infos and "image" in infos:
        mask, image = infos["mask"], infos["image"]
        if (mask.width, mask.height) != (image.width, image.height):
            raise InvalidRequestError(
                "mask",
                f"{mask.width}x{mask.height}",
                f"must be the same size as image ({image.width}x{image.height})",
            )


def _one(request: Any, batch_method: str) -> Any:
    """A single-image request; more than one image needs the batch method."""
    if (request.count or 1) > 1:
        raise InvalidRequestError(
            "count", request.count, f"must be 1 here; use {batch_method} for several images"
        )
    if request.seeds:
        return dataclasses.replace(request, seeds=(), count=None, seed=request.seeds[0])
    return request


def _split(request: Any) -> list[Any]:
    """One single-image request per seed: seeds[k], else seed+k (random start when unset)."""
    from .backends._common import choose_seed

    seeds = list(request.seeds)
    if not seeds:
        start = choose_seed(request.seed)
        seeds = [(start + k) % (LIMITS.max_seed + 1) for k in range(request.count or 1)]
    return [dataclasses.replace(request, seed=s, seeds=(), count=None) for s in seeds]
