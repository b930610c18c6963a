"""Local generation with Hugging Face Diffusers: every task, warm models, no network by default.

One backend can hold an image model and video models (``models={"text_to_video": ...}``).
text->image, image->image and inpainting share one set of weights (``from_pipe``); loaded
pipelines stay warm in an LRU cache bounded by ``memory_budget_bytes``. torch and diffusers are
imported on first use, so importing this module is cheap. Environment variables are not read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from .. import compat
from ..control import GenerationControl
from ..errors import (
    AbstractVisionError,
    BackendError,
    CapabilityNotSupportedError,
    InvalidRequestError,
    UnknownModelError,
)
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
from ._diffusers import (
    batching,
    explicit_batch,
    families,
    loading,
    loras,
    optimize,
    outputs,
    rapid,
    run,
)
from ._diffusers import control as diffusers_control
from ._diffusers import defaults as registry_defaults
from ._diffusers.cache import Entry, PipelineCache
from .base_backend import VisionBackend

__all__ = ["HuggingFaceDiffusersBackendConfig", "HuggingFaceDiffusersVisionBackend"]

log = logging.getLogger(__name__)

_TASKS = (*families.IMAGE_TASKS, *families.VIDEO_TASKS, "image_upscale")
_DTYPES = ("auto", "float32", "float16", "bfloat16")


@compat.old_config_names(compat.DIFFUSERS_CONFIG)
@dataclass(frozen=True)
class HuggingFaceDiffusersBackendConfig:
    """Keyword options of the Diffusers backend; ``models`` maps a task to one or more model ids."""

    model_id: str | None = None
    models: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    device: str = "auto"
    torch_dtype: str = "auto"
    allow_download: bool = False
    cache_dir: str | None = None
    revision: str | None = None
    variant: str | None = None
    # "auto" (as 0.3.x): at load, by free GPU memory: whole on the GPU when it fits, else model
    # CPU offload, else sequential; on CPU / MPS nothing is offloaded. True / False: always / never
    enable_model_cpu_offload: bool | Literal["auto"] = "auto"
    enable_sequential_cpu_offload: bool = False
    enable_vae_tiling: bool = False
    enable_vae_slicing: bool = False
    enable_attention_slicing: bool = False
    lora_allowlist: Sequence[str] = ()
    memory_budget_bytes: int | None = None
    max_batch_size: int = 1  # > 1: coalesce concurrent text->image calls into one pipeline call
    batch_window_ms: float = 20.0  # how long an idle pipeline waits for a batch to fill
    # count/seeds batches: True = one pipeline call per image, so image k is byte-identical to a
    # single call with seed k; False = one call per chunk (faster on a GPU; equal up to float
    # rounding, since batched matmuls round differently). See _diffusers/explicit_batch.py.
    exact_batches: bool = True
    # a ControlNet (folder or Hub id) for the text->image model: control_image selects it
    controlnet: str | None = None
    # speed options (backends/_diffusers/optimize.py; docs/benchmarks.md says when to use each)
    compile: bool | str = False  # "regional" (= true) | "full"
    compile_warmup: Sequence[str] = ()  # "WxH" sizes compiled at preload (default: model's own)
    quantize: str | None = None  # int8 | fp8 (torchao) | nf4 | bnb8 (bitsandbytes, CUDA)
    quantize_components: Sequence[str] = ()  # default: denoiser + text encoders
    gguf_file: str | None = None  # the denoiser's weights from a .gguf file
    step_cache: str | None = None  # first_block | taylorseer | magcache | pab | faster
    step_cache_threshold: float | None = None
    attention_backend: str | None = None  # native | flash | sage | ...
    group_offload: bool = False  # stream weights to the GPU group by group (CUDA)

    def __post_init__(self) -> None:
        models: dict[str, tuple[str, ...]] = {}
        for task, ids in dict(self.models).items():
            if task not in _TASKS:
                raise InvalidRequestError(
                    "models", task, f"task must be one of {', '.join(_TASKS)}"
                )
            models[task] = (ids,) if isinstance(ids, str) else tuple(ids)
            if not models[task] or not all(isinstance(i, str) and i for i in models[task]):
                raise InvalidRequestError(f"models.{task}", ids, "must be model ids")
        object.__setattr__(self, "models", MappingProxyType(models))
        object.__setattr__(self, "lora_allowlist", tuple(self.lora_allowlist))
        for name in ("compile_warmup", "quantize_components"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        optimize.check_config(self)
        if self.torch_dtype not in _DTYPES:
            raise InvalidRequestError("torch_dtype", self.torch_dtype, f"must be one of {_DTYPES}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise InvalidRequestError(
                "device", self.device, "must be auto, cpu, cuda, cuda:N or mps"
            )
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise InvalidRequestError("max_batch_size", self.max_batch_size, "must be >= 1")
        if self.batch_window_ms < 0:
            raise InvalidRequestError("batch_window_ms", self.batch_window_ms, "must be >= 0")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes < 0:
            raise InvalidRequestError(
                "memory_budget_bytes", self.memory_budget_bytes, "must be >= 0"
            )
        if self.enable_model_cpu_offload not in (True, False, "auto"):
            raise InvalidRequestError(
                "enable_model_cpu_offload",
                self.enable_model_cpu_offload,
                "must be true, false or 'auto'",
            )

    @property
    def cpu_offload(self) -> str:
        """0.3.x name, read back: auto | model | sequential | none (from the two flags)."""
        if self.enable_sequential_cpu_offload:
            return "sequential"
        mode = self.enable_model_cpu_offload
        return "auto" if mode == "auto" else "model" if mode else "none"


class HuggingFaceDiffusersVisionBackend(VisionBackend):
    """Runs text/image -> image/video on local Diffusers pipelines (thread-safe, warm cache)."""

    def __init__(
        self, config: HuggingFaceDiffusersBackendConfig | None = None, **options: Any
    ) -> None:
        self.config = config if config is not None else HuggingFaceDiffusersBackendConfig(**options)
        self._cache = PipelineCache(self.config.memory_budget_bytes)
        self._infos: dict[str, families.ModelInfo] = {}
        self._device: str | None = None
        self._engine = ThreadPoolExecutor(1, thread_name_prefix="diffusers-engine")
        self._coalescer = (
            batching.Coalescer(self.config.max_batch_size, self.config.batch_window_ms / 1000)
            if self.config.max_batch_size > 1
            else None
        )

    # --- configuration and capabilities ------------------------------------------------------

    def _info(self, source: str) -> families.ModelInfo:
        info = self._infos.get(source)
        if info is None:
            loading.import_torch()  # OptionalDependencyMissingError names the extra
            index = families.find_model_index(
                source,
                allow_download=self.config.allow_download,
                cache_dir=self.config.cache_dir,
                revision=self.config.revision,
            )
            info = self._infos[source] = families.read_model_info(index, source)
        return info

    def _models_by_task(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {task: list(ids) for task, ids in self.config.models.items()}
        candidates = [self.config.model_id] if self.config.model_id else []
        candidates += [i for ids in self.config.models.values() for i in ids]
        for source in dict.fromkeys(candidates):
            try:
                info = self._info(source)
                tasks = info.tasks if info.installed else ()
            except (UnknownModelError, BackendError, ImportError):  # not here (yet): what the
                known = families.registry_classes(families.canonical_source(source))
                runs = (*families.IMAGE_TASKS, *families.VIDEO_TASKS)  # as read_model_info
                tasks = tuple(t for t in runs if t in known)  # registry says it will run
            if not tasks and source == self.config.model_id:
                tasks = families.IMAGE_TASKS  # unknown until it loads; the call says why not
            for task in tasks:
                if source not in out.setdefault(task, []):
                    out[task].append(source)
        return {task: ids for task, ids in out.items() if ids}

    def get_capabilities(self) -> VisionBackendCapabilities:
        by_task = self._models_by_task()
        mask = False
        for source in by_task.get(families.I2I, []):
            info = self._infos.get(source)
            mask = mask or info is None or info.supports_mask
        return VisionBackendCapabilities(
            supported_tasks=tuple(t for t in _TASKS if t in by_task),
            supports_mask=mask,
            supports_control_image=diffusers_control.supports_control(
                self._infos, by_task.get(families.T2I, []), self.config.controlnet
            ),
            max_width=LIMITS.max_side,
            max_height=LIMITS.max_side,
            extra_keys={**run.EXTRA_KEYS, **rapid.EXTRA_KEYS},
            models={task: tuple(ids) for task, ids in by_task.items()},
            loaded_models=tuple(map(optimize.model_of_key, self._cache.keys())),
            frame_rules=self._frame_rules(by_task),
        )

    def check_request(self, request: Any) -> None:
        from ._diffusers.prechecks import check_request

        check_request(self, request)

    def _frame_rules(self, by_task: dict[str, list[str]]) -> dict[str, str]:
        rules = {}
        for task in families.VIDEO_TASKS:
            info = self._infos.get(by_task.get(task, [None])[0] or "")
            if info is not None and info.installed:
                with contextlib.suppress(AbstractVisionError):
                    rules[task] = _video_family(info, task)[1].rule
        return rules

    def _model_for(self, task: str, requested: str | None) -> families.ModelInfo:
        configured = self._models_by_task().get(task, [])
        if requested is not None and requested not in configured:
            raise UnknownModelError(
                f"model {requested!r} is not configured for {task}; configured: {', '.join(configured) or 'none'}"
            )
        source = requested or (configured[0] if configured else None)
        if source is None:
            raise CapabilityNotSupportedError(
                f"no model configured for {task}: set models={{{task!r}: ...}}"
            )
        info = self._info(source)
        if not info.installed:
            raise BackendError(
                f"{source} needs the pipeline class {info.class_name}, which the installed "
                "diffusers lacks: upgrade it (pip install -U diffusers) or pick another model"
            )
        if task not in info.tasks:
            raise CapabilityNotSupportedError(
                f"{source} ({info.class_name}) cannot run {task}; it can run: {', '.join(info.tasks)}"
            )
        return info

    # --- loading ---------------------------------------------------------------------------------

    def _entry(self, info: families.ModelInfo) -> tuple[Entry, float]:
        key = (
            str(Path(info.source).expanduser().resolve())
            if families.is_local_path(info.source)
            else info.source
        )
        key += optimize.key_suffix(self.config)  # a compiled/quantised load is its own entry
        if self._device is None:
            self._device = loading.resolve_device(self.config.device)
        device = self._device
        entry, loaded = self._cache.get_or_load(
            key, lambda: loading.load_pipeline(info, self.config, device)
        )
        return entry, entry.load_s if loaded else 0.0

    def _task_pipe(self, entry: Entry, info: families.ModelInfo, kind: str) -> tuple[Any, float]:
        """The pipeline for t2i / i2i / inpaint / video, derived from the loaded one (shared weights)."""
        pipe = entry.derived.get(kind)
        if pipe is not None:
            return pipe, 0.0
        started = time.perf_counter()
        if kind == diffusers_control.CONTROL:  # the configured ControlNet over these weights
            pipe = diffusers_control.derive(entry.pipe, self.config.controlnet, self._hub_options())
        else:
            pipe = loading.derive(entry.pipe, kind, info.registry_classes.get(kind))
        pipe.set_progress_bar_config(disable=True)
        entry.derived[kind] = pipe
        return pipe, 0.0 if pipe is entry.pipe else time.perf_counter() - started

    def list_provider_adapters(
        self, *, model: str | None = None, task: str | None = None
    ) -> list[Any]:
        """The LoRAs ``lora_allowlist`` names one by one (prefix entries allow many, list none)."""
        from ..compat import ProviderAdapterInfo

        return [
            ProviderAdapterInfo(
                id=entry,
                repo_id=None if families.is_local_path(entry) else entry,
                raw={"source": entry},
            )
            for entry in self.config.lora_allowlist
            if not entry.endswith(("/", "*"))
        ]

    def preload(self, model: str | None = None) -> None:
        """Load ``model`` (default: the first configured one) so the first call pays no load."""
        by_task = self._models_by_task()
        source = model or self.config.model_id or next((i[0] for i in by_task.values()), None)
        if source is None:
            raise CapabilityNotSupportedError("no model configured: set model_id or models")
        entry, _ = self._entry(self._info(source))
        if optimize.compile_mode(self.config.compile) != "off":  # compile now, not in a call
            with entry.lock:
                self._engine.submit(optimize.warm_up, entry.pipe, self.config).result()

    def unload(self, model: str | None = None) -> None:
        """Drop one model (or all) from the cache and free device memory."""
        if model is not None and families.is_local_path(model):
            model = str(Path(model).expanduser().resolve())
        if model is not None:
            model += optimize.key_suffix(self.config)
        self._cache.drop(model)

    def get_pipeline(self, task: str, model: str | None = None, *, masked: bool = False) -> Any:
        """The (loaded) pipeline object that runs ``task``: for inspection and tests."""
        info = self._model_for(task, model)
        entry, _ = self._entry(info)
        with entry.lock:
            return self._task_pipe(entry, info, loading.kind_of(task, masked, info))[0]

    # --- tasks -----------------------------------------------------------------------------------

    def generate_image(
        self, request: ImageGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        info = self._model_for(families.T2I, request.model)
        request = self._filled(request, info, families.T2I)
        inputs = {"prompt": request.prompt, "width": request.width, "height": request.height}
        more, required, kind = diffusers_control.control_inputs(
            info, request, self.config.controlnet
        )  # a control image, for a control model or the configured ControlNet
        inputs.update(more)
        return self._image(info, kind, request, inputs, control, required=required)

    def edit_image(
        self, request: ImageEditRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        from PIL import Image

        from .. import media

        info = self._model_for(families.I2I, request.model)
        request = self._filled(request, info, families.I2I)
        image = media.decode_image(request.image, field="image")
        kind = loading.kind_of(families.I2I, request.mask is not None, info)
        mask = None
        if kind == loading.INPAINT:
            mask = (
                media.decode_mask(request.mask, size=image.size, field="mask")
                if request.mask is not None
                else Image.new("L", image.size, 255)  # inpaint-only model, no mask: change all
            )
        size = (request.width or _floor8(image.width), request.height or _floor8(image.height))
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
            mask = mask.resize(size, Image.Resampling.LANCZOS) if mask is not None else None
        inputs = {
            "prompt": request.prompt,
            "image": image,
            "mask_image": mask,
            "strength": request.strength,
            "width": size[0],
            "height": size[1],
        }
        return self._image(info, kind, request, inputs, control, required=("image",))

    def generate_video(
        self, request: VideoGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        info = self._model_for(families.T2V, request.model)
        request = self._filled(request, info, families.T2V)
        return self._video(info, families.T2V, request, {"prompt": request.prompt}, control)

    def image_to_video(
        self, request: ImageToVideoRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        from .. import media

        info = self._model_for(families.I2V, request.model)
        request = self._filled(request, info, families.I2V)
        image = media.decode_image(request.image, field="image")
        inputs = {"image": image, "prompt": request.prompt}
        return self._video(info, families.I2V, request, inputs, control, required=("image",))

    def upscale_image(
        self, request: Any, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        from ._diffusers.upscale import run_upscale

        return run_upscale(self, request, control)

    def run_batch(
        self, requests: Sequence[Any], *, control: GenerationControl | None = None
    ) -> list[GeneratedAsset]:
        from ._diffusers.explicit_batch import run_batch

        return run_batch(self, requests, control)

    # --- the request the engine runs (0.3.x normalize_*_request) ----------------------------------

    def normalize_image_generation_request(
        self, request: ImageGenerationRequest
    ) -> ImageGenerationRequest:
        """``request`` as ``generate_image`` runs it: the model's registry defaults filled in,
        sizes rounded to its multiple, a guidance it ignores fixed, a control image it cannot
        take refused (``CapabilityNotSupportedError``). Nothing is loaded."""
        return self._normalized(request, families.T2I)

    def normalize_image_edit_request(self, request: ImageEditRequest) -> ImageEditRequest:
        """``request`` as ``edit_image`` runs it (see ``normalize_image_generation_request``)."""
        return self._normalized(request, families.I2I)

    def normalize_video_generation_request(
        self, request: VideoGenerationRequest
    ) -> VideoGenerationRequest:
        """``request`` as ``generate_video`` runs it (fps, frames, size, steps, guidance)."""
        return self._normalized(request, families.T2V)

    def normalize_image_to_video_request(self, request: ImageToVideoRequest) -> ImageToVideoRequest:
        """``request`` as ``image_to_video`` runs it."""
        return self._normalized(request, families.I2V)

    def _normalized(self, request: Any, task: str) -> Any:
        configured = self.config.models.get(task) or (self.config.model_id,)
        source = request.model or configured[0]
        if source is None:
            return request  # no model: the call itself says so
        try:  # the model's folder when it is here (no download), else the registry alone
            info: families.ModelInfo | None = self._info(source)
        except (AbstractVisionError, ImportError):
            info = None
        if info is not None:
            source, class_name = info.source, info.registry_classes.get(task, info.class_name)
        else:
            source = families.canonical_source(source)
            class_name = families.registry_classes(source).get(task)
        takes_control = class_name is None or diffusers_control.is_control_class(class_name)
        takes_control = takes_control or bool(self.config.controlnet)
        if getattr(request, "control_image", None) is not None and not takes_control:
            raise diffusers_control.no_control(source, str(class_name))  # the run's refusal
        return registry_defaults.fill(request, source, task, class_name)

    def _filled(self, request: Any, info: families.ModelInfo, task: str) -> Any:
        """The request with the model's registry defaults (same as ``normalize_*_request``)."""
        class_name = info.registry_classes.get(task, info.class_name)
        return registry_defaults.fill(request, info.source, task, class_name)

    # --- the shared call path --------------------------------------------------------------------

    def _image(
        self,
        info: families.ModelInfo,
        kind: str,
        request: Any,
        inputs: dict[str, Any],
        control: GenerationControl | None,
        required: tuple[str, ...] = (),
    ) -> GeneratedAsset:
        result, meta = self._call(info, kind, request, inputs, control, required)
        if explicit_batch.active():  # run_batch: every image of the call, each its own asset
            return explicit_batch.collect(result, meta, info.source, request.output_format)
        return image_asset(outputs.image_output(result, info.source), request.output_format, meta)

    def _video(
        self,
        info: families.ModelInfo,
        task: str,
        request: Any,
        inputs: dict[str, Any],
        control: GenerationControl | None,
        required: tuple[str, ...] = (),
    ) -> GeneratedAsset:
        class_name, family = _video_family(info, task)
        if request.num_frames is not None:
            family.check_frames(request.num_frames, class_name)
        fps = request.fps or family.default_fps
        inputs = {
            **inputs,
            "num_frames": request.num_frames,
            "width": request.width,
            "height": request.height,
            "fps": fps,  # micro-conditioning where the pipeline takes it (SVD)
            "frame_rate": fps,  # LTX
        }
        result, meta = self._call(info, task, request, inputs, control, required)
        frames = outputs.video_output(result, info.source)
        return video_asset(frames, fps, request.output_format, meta)

    def _call(
        self,
        info: families.ModelInfo,
        kind: str,
        request: Any,
        inputs: dict[str, Any],
        control: GenerationControl | None,
        required: tuple[str, ...],
    ) -> tuple[Any, dict[str, Any]]:
        """Load (or reuse), switch LoRAs/scheduler, run with hooks; returns (output, metadata)."""
        control = control if control is not None else GenerationControl()
        extra = dict(request.extra)
        for key in extra:
            if key not in run.EXTRA_KEYS and key not in rapid.EXTRA_KEYS:
                accepted = ", ".join([*run.EXTRA_KEYS, *rapid.EXTRA_KEYS])
                raise InvalidRequestError(f"extra.{key}", extra[key], f"accepted: {accepted}")
        wanted_loras = loras.parse_loras(extra.get("loras", []), self.config.lora_allowlist)
        seed = choose_seed(request.seed)
        control.check()
        entry, load_s = self._entry(info)
        scheduler = extra.get("scheduler")
        args = (entry, info, kind, request, inputs, required, wanted_loras, scheduler)
        items = explicit_batch.items(request.prompt, seed, control)  # >1 inside run_batch
        alone = len(items) > 1 or getattr(request, "control_image", None) is not None
        alone = alone or "rapid_aio_repo" in extra  # a swapped denoiser never shares a batch
        if self._coalescer is None or kind != families.T2I or alone:
            with entry.lock:
                result, meta = self._run(*args, items)
        else:
            key = (entry.key, kind, inputs["width"], inputs["height"], request.steps)
            key += (request.guidance_scale, request.negative_prompt, wanted_loras, scheduler)
            item = batching.Item(request.prompt, seed, control)
            result, meta = self._coalescer.submit(
                key, item, entry.lock, lambda items: self._run_batch(*args, items)
            )
        meta = {"model": info.source, **meta, "seed": seed}
        meta["load_s"] = round(load_s + meta["load_s"], 4)
        if request.guidance_scale is not None:
            meta["guidance_scale"] = request.guidance_scale
        if wanted_loras:
            meta["loras"] = [
                {k: v for k, v in lora._asdict().items() if v is not None} for lora in wanted_loras
            ]
        if scheduler is not None:
            meta["scheduler"] = scheduler
        return result, meta

    def _run_batch(self, *args: Any) -> list[tuple[Any, dict[str, Any]]]:
        """One pipeline call for a batch; splits the output into one result per request."""
        result, meta = self._run(*args)
        images = getattr(result, "images", result)
        return [(images[i : i + 1], meta) for i in range(len(images))]

    def _run(
        self,
        entry: Entry,
        info: families.ModelInfo,
        kind: str,
        request: Any,
        inputs: dict[str, Any],
        required: tuple[str, ...],
        wanted_loras: loras.LoraSet,
        scheduler: str | None,
        items: list[batching.Item],
    ) -> tuple[Any, dict[str, Any]]:
        """Run the pipeline for ``items`` (same settings, own prompt and seed); lock held."""
        pipe, derive_s = self._task_pipe(entry, info, kind)
        lora_s = loras.apply_loras(entry, wanted_loras, load_options=self._hub_options())
        run.use_scheduler(entry, pipe, scheduler)
        steps = request.steps or run.default_of(pipe, "num_inference_steps")
        steps = run.denoise_steps(pipe, steps, inputs.get("strength"))
        device = self._device or "cpu"
        generators = [run.make_generator(device, item.seed) for item in items]
        single = len(items) == 1
        control = items[0].control if single else batching.BatchControl([i.control for i in items])
        wanted = {
            **inputs,
            "negative_prompt": request.negative_prompt,
            "num_inference_steps": request.steps,
            "generator": generators[0] if single else generators,
            "output_type": "np",
        }
        if not single:
            wanted["prompt"] = [item.prompt for item in items]
        kwargs = run.filter_kwargs(pipe, wanted, required=required)
        kwargs.update(families.family_kwargs(pipe, kwargs, request))
        kwargs.update(run.guidance_kwargs(pipe, request.guidance_scale))
        kwargs.update(run.progress_kwargs(pipe, control, steps))
        optimize.before_call(entry.pipe, pipe, self.config, steps)
        swap = rapid.swapped(entry, pipe, request.extra, self._hub_options())
        with swap as rapid_s, contextlib.nullcontext() if single else run.decode_one_by_one(pipe):
            started = time.perf_counter()
            # always from one thread: torch's OpenMP pool is per calling thread, and a new
            # thread per call (one per MCP job) made every call ~1.7x slower on CPU
            result = self._engine.submit(run.run_pipeline, pipe, kwargs, control).result()
        meta = {
            "pipeline": type(pipe).__name__,
            "steps": steps,
            "load_s": derive_s + lora_s + rapid_s,
            "generate_s": round(time.perf_counter() - started, 4),
            "device": self._device,
            **optimize.applied(entry.pipe),
        }
        if not single:
            meta["batch_size"] = len(items)
        return result, meta

    def _hub_options(self) -> dict[str, Any]:
        options = {
            "local_files_only": not self.config.allow_download,
            "cache_dir": self.config.cache_dir,
        }
        return {k: v for k, v in options.items() if v is not None}


def _floor8(side: int) -> int:
    return max(LIMITS.min_side, min(LIMITS.max_side, side - side % LIMITS.side_multiple))


def _video_family(info: families.ModelInfo, task: str) -> tuple[str, families.VideoFamily]:
    """The video pipeline class and its frame rule; the registry's rule wins where it has one."""
    class_name, family = info.video_family(task)
    rule = families.registry_frame_rule(info.source, task)
    if rule is not None:
        family = dataclasses.replace(family, frame_step=rule[0], frame_offset=rule[1])
    return class_name, family
