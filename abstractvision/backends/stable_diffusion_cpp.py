"""Local generation with stable-diffusion.cpp (GGUF / safetensors) in a warm, isolated worker.

The model lives in a long-lived worker process (multiprocessing 'spawn'), started on first use
and kept loaded between calls. The native library can crash and cannot be interrupted, so a
crash ends only the worker (the call gets a ``BackendError`` naming the exit signal) and a
cancellation ends the worker on purpose; either way the next call starts a fresh one.
One generation runs at a time per backend. Environment variables are not read.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..control import GenerationControl
from ..errors import (
    BackendError,
    CapabilityNotSupportedError,
    GenerationCancelledError,
    InvalidRequestError,
    OptionalDependencyMissingError,
)
from ..model_downloads import sdcpp_hub_config
from ..types import (
    LIMITS,
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)
from ._common import choose_seed, image_asset, video_asset
from ._sdcpp import extras as sdcpp_extras
from ._sdcpp import options
from ._sdcpp.config import StableDiffusionCppBackendConfig
from ._sdcpp.process import EngineError, Worker, WorkerDied, WorkerTimeout
from .base_backend import VisionBackend

__all__ = ["StableDiffusionCppBackendConfig", "StableDiffusionCppVisionBackend"]

log = logging.getLogger(__name__)

IMAGE_TASKS = ("text_to_image", "image_to_image")
VIDEO_TASKS = ("text_to_video", "image_to_video")
_WAN_FRAME_RULE = "4k+1"
_T = TypeVar("_T")


class StableDiffusionCppVisionBackend(VisionBackend):
    """text/image -> image and Wan text/image -> video through stable-diffusion-cpp-python."""

    def __init__(
        self, config: StableDiffusionCppBackendConfig | None = None, **kwargs: Any
    ) -> None:
        self.config = config if config is not None else StableDiffusionCppBackendConfig(**kwargs)
        self.config = sdcpp_hub_config(self.config)  # a Hub id -> its pulled role files
        files = self.config.files()
        main = files.get("diffusion_model") or files.get("model") or self.config.upscale_model
        self.model_name = self.config.model_name or Path(main).stem
        if self.config.qwen_image_zero_cond_t is None:
            sdcpp = options.registry_engine(self.model_name)
            zero_cond_t = sdcpp is not None and sdcpp.zero_cond_t
            self.config = dataclasses.replace(self.config, qwen_image_zero_cond_t=zero_cond_t)
        self._lock = threading.Lock()
        self._worker: Worker | None = None
        self._kind: str | None = None  # "image" | "video" once known
        self._references: bool | None = None

    # --- capabilities ----------------------------------------------------------------------

    def _model_kind(self) -> str:
        if self._kind is None:
            self._kind = options.guess_kind(self.config.files())
        return self._kind or "image"  # unreadable files: the first call says why

    def get_capabilities(self) -> VisionBackendCapabilities:
        tasks = VIDEO_TASKS if self._model_kind() == "video" else IMAGE_TASKS
        tasks = sdcpp_extras.with_upscale(self.config, tasks)
        worker = self._worker
        return VisionBackendCapabilities(
            supported_tasks=tasks,
            supports_mask="image_to_image" in tasks,
            supports_control_image=bool(self.config.control_net) and "text_to_image" in tasks,
            max_width=LIMITS.max_side,
            max_height=LIMITS.max_side,
            extra_keys=dict(options.EXTRA_KEYS),
            models={task: (self.model_name,) for task in tasks},
            loaded_models=(self.model_name,) if worker is not None and worker.alive else (),
            frame_rules={task: _WAN_FRAME_RULE for task in tasks if task in VIDEO_TASKS},
        )

    def _takes_references(self) -> bool:
        if self._references is None:
            self._references = options.takes_references(self.config.files(), self.model_name)
        return self._references

    @property
    def worker_pid(self) -> int | None:
        """PID of the warm worker process, None when none runs (for monitoring and tests)."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive else None

    # --- worker lifecycle --------------------------------------------------------------------

    def _ensure_worker(self) -> tuple[Worker, float]:
        """The warm worker, or a new one with the model loaded; returns (worker, load seconds)."""
        if self._worker is not None and self._worker.alive:
            return self._worker, 0.0
        self._drop_worker()
        self.config = sdcpp_hub_config(self.config, required=True)
        files = {**self.config.files(), **sdcpp_extras.extra_files(self.config)}
        missing = [f"{r}={p}" for r, p in files.items() if not os.path.isfile(p)]
        if missing:
            raise BackendError(f"model file not found: {', '.join(missing)}")
        if importlib.util.find_spec("stable_diffusion_cpp") is None:
            raise OptionalDependencyMissingError(
                "stable-diffusion-cpp-python", "sdcpp", feature="the stable-diffusion.cpp backend"
            )
        worker = Worker(self.config.load_kwargs(), verbose=self.config.verbose)
        self._worker = worker
        started = time.perf_counter()
        info = worker.start(self.config.load_timeout_s)
        self._kind = "video" if info["video"] and not info["image"] else "image"
        load_s = time.perf_counter() - started
        log.info(
            "stable-diffusion.cpp worker %s loaded %s in %.2f s",
            worker.pid,
            self.model_name,
            load_s,
        )
        return worker, load_s

    def _drop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def preload(self) -> None:
        """Start the worker and load the model now, so the first call pays no load."""
        with self._lock:
            self._guarded(self._ensure_worker, GenerationControl(), "loading")

    def unload(self) -> None:
        """End the worker process; its memory goes back to the system."""
        with self._lock:
            self._drop_worker()

    def _kill_current(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.kill()

    def _guarded(self, action: Callable[[], _T], control: GenerationControl, what: str) -> _T:
        """Run ``action`` with cancellation wired to killing the worker; type every failure."""
        control.check()
        unregister = control.on_cancel(self._kill_current)
        try:
            return action()
        except (WorkerDied, WorkerTimeout, EngineError) as exc:
            if not (isinstance(exc, EngineError) and exc.kind == "engine"):
                self._drop_worker()  # a refused generation leaves the worker warm; the rest not
            if control.cancelled:
                raise GenerationCancelledError("generation cancelled by the caller") from None
            raise self._backend_error(exc, what) from None
        finally:
            unregister()

    def _backend_error(self, exc: Exception, what: str) -> BackendError:
        files = ", ".join(f"{role}={path}" for role, path in self.config.files().items())
        if isinstance(exc, EngineError) and exc.kind == "load":
            return BackendError(f"stable-diffusion.cpp could not load the model ({files}): {exc}")
        if isinstance(exc, WorkerTimeout):
            return BackendError(
                f"the stable-diffusion.cpp worker gave {what} no answer ({exc}) and was stopped; "
                f"check the model files ({files}) or raise the timeout"
            )
        if isinstance(exc, WorkerDied):
            return BackendError(
                f"the stable-diffusion.cpp worker ended while {what} ({exc}); "
                "the next call starts a fresh worker"
            )
        return BackendError(f"stable-diffusion.cpp failed while {what}: {exc}")

    # --- tasks ----------------------------------------------------------------------------------

    def generate_image(
        self, request: ImageGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._image("text_to_image", request, sdcpp_extras.control_inputs(request), control)

    def edit_image(
        self, request: ImageEditRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        from .. import media

        self.check_request(request)
        image = media.decode_image(request.image, field="image")
        size = (request.width or _floor8(image.width), request.height or _floor8(image.height))
        inputs: dict[str, Any] = {"width": size[0], "height": size[1]}
        if request.mask is not None or self._edit_mode(request) == "init":
            inputs["init_image"] = image.resize(size) if image.size != size else image
            inputs["strength"] = 0.75 if request.strength is None else request.strength
            if request.mask is not None:
                mask = media.decode_mask(request.mask, size=image.size, field="mask")
                inputs["mask_image"] = mask.resize(size) if mask.size != size else mask
        else:  # the image first, then the other references in their order
            refs = enumerate(request.reference_images)
            inputs["ref_images"] = [
                image,
                *(media.decode_image(d, field=f"reference_images.{i}") for i, d in refs),
            ]
        return self._image("image_to_image", request, inputs, control)

    def _edit_mode(self, request: ImageEditRequest) -> str:
        mode = str(request.extra.get("edit_mode") or self.config.edit_mode)
        if mode == "auto":  # edit models (FLUX.2, Qwen edit) take the image as a reference
            plain = request.strength is None and request.mask is None
            mode = "reference" if plain and self._takes_references() else "init"
        return mode

    def check_request(self, request: Any) -> None:
        """More images (``reference_images``) go only into a reference edit; an init-image edit
        or an inpaint would drop them, so it refuses them."""
        if not isinstance(request, ImageEditRequest) or not request.reference_images:
            return
        if request.mask is not None or self._edit_mode(request) != "reference":
            raise InvalidRequestError(
                "reference_images",
                f"{len(request.reference_images)} image(s)",
                f"{self.model_name} edits this call from an init image, which takes no more "
                "images: use a model that edits from references (FLUX.2, Qwen-Image-Edit) with "
                "no mask and no strength, or extra.edit_mode='reference'",
            )

    def generate_video(
        self, request: VideoGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._video("text_to_video", request, {}, control)

    def image_to_video(
        self, request: ImageToVideoRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        from .. import media

        image = media.decode_image(request.image, field="image")
        return self._video("image_to_video", request, {"init_image": image}, control)

    def upscale_image(
        self, request: Any, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return sdcpp_extras.upscale(self, request, control)

    # --- the shared call path ----------------------------------------------------------------------

    def _image(
        self, task: str, request: Any, inputs: dict[str, Any], control: GenerationControl | None
    ) -> GeneratedAsset:
        frames, meta = self._call("image", task, request, inputs, control)
        return image_asset(frames[0], request.output_format, meta)

    def _video(
        self, task: str, request: Any, inputs: dict[str, Any], control: GenerationControl | None
    ) -> GeneratedAsset:
        num_frames = request.num_frames or self.config.num_frames
        if num_frames % 4 != 1:
            raise InvalidRequestError(
                "num_frames", num_frames, f"must follow {_WAN_FRAME_RULE} (1, 5, 9, ... 81)"
            )
        fps = request.fps or self.config.fps
        inputs = {**inputs, "video_frames": num_frames}
        frames, meta = self._call("video", task, request, inputs, control)
        return video_asset(frames, fps, request.output_format, meta)

    def _call(
        self,
        op: str,
        task: str,
        request: Any,
        inputs: dict[str, Any],
        control: GenerationControl | None,
    ) -> tuple[list[Any], dict[str, Any]]:
        """Map the request to binding arguments, run it on the worker, collect metadata."""
        control = control if control is not None else GenerationControl()
        if request.model is not None and request.model != self.model_name:
            raise CapabilityNotSupportedError(
                f"model {request.model!r} is not loaded here; this backend runs {self.model_name!r}"
            )
        if task not in (self.get_capabilities().supported_tasks or ()):
            can = ", ".join(self.get_capabilities().supported_tasks or ())
            raise CapabilityNotSupportedError(f"{self.model_name} cannot run {task}; it runs {can}")
        cfg = self.config
        seed = choose_seed(request.seed)
        kwargs, loras = options.generation_kwargs(request, cfg, seed)
        kwargs.update(inputs)
        guidance = kwargs.get("cfg_scale")
        steps = kwargs["sample_steps"]
        expected = steps if cfg.high_noise_diffusion_model else 0
        phase = {"offset": 0, "last": 0}

        def progress(step: int, total: int) -> None:
            # The engine counts each sampling phase from step 0 (two Wan 2.2 experts: the
            # high-noise steps, then the low-noise ones); the count goes on across phases.
            if step == 0 and phase["last"]:
                phase["offset"], phase["last"] = phase["offset"] + phase["last"], 0
            if step > phase["last"]:
                phase["last"] = step
                done = phase["offset"] + step
                control.report(done, max(phase["offset"] + total, expected))

        with self._lock:
            worker, load_s = self._guarded(self._ensure_worker, control, "loading")
            started = time.perf_counter()
            frames = self._guarded(
                lambda: worker.images(
                    op, kwargs, timeout_s=cfg.generate_timeout_s, on_progress=progress
                ),
                control,
                "generating",
            )
            generate_s = time.perf_counter() - started
        meta: dict[str, Any] = {
            "model": self.model_name,
            "engine": "stable-diffusion.cpp",
            "files": cfg.files(),
            "seed": seed,
            "steps": steps,
            "sampler": kwargs.get("sample_method", "default"),
            "scheduler": kwargs.get("scheduler", "default"),
            "load_s": round(load_s, 4),
            "generate_s": round(generate_s, 4),
        }
        if guidance is not None:
            meta["guidance_scale"] = guidance
        if loras:
            meta["loras"] = [{"name": Path(p).name, "weight": w} for p, w in loras]
        return frames, meta


def _floor8(side: int) -> int:
    return max(LIMITS.min_side, min(LIMITS.max_side, side - side % LIMITS.side_multiple))
