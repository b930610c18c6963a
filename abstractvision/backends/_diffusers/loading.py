"""Loading a model folder into a placed pipeline, and deriving task pipelines from it.

``from_pretrained`` runs with ``local_files_only=True`` unless downloads are allowed, so a model
missing from the cache fails at once instead of reaching for the network.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ...errors import (
    BackendError,
    InvalidRequestError,
    OptionalDependencyMissingError,
    OutOfMemoryError,
    UnknownModelError,
)
from . import memory, optimize, qwen_vl
from .cache import empty_device_cache
from .families import I2I, IMAGE_PIPELINES, T2I, VIDEO_TASKS, ModelInfo, inpaint_only

log = logging.getLogger(__name__)

INPAINT = "inpaint"


class LoadOptions(Protocol):
    """The config fields loading reads (HuggingFaceDiffusersBackendConfig has them all)."""

    device: str
    torch_dtype: str
    allow_download: bool
    cache_dir: str | None
    revision: str | None
    variant: str | None
    enable_model_cpu_offload: bool | str  # "auto": by free GPU memory at load
    enable_sequential_cpu_offload: bool
    enable_vae_tiling: bool
    enable_vae_slicing: bool
    enable_attention_slicing: bool


def import_torch() -> Any:
    """torch, after checking diffusers is importable too: the backend's optional extra."""
    try:
        import diffusers  # noqa: F401
        import torch
    except ImportError as exc:
        raise OptionalDependencyMissingError(
            exc.name or "diffusers", "diffusers", feature="the Diffusers backend"
        ) from None
    return torch


def resolve_device(requested: str) -> str:
    """'auto' -> cuda, then mps, then cpu; a named device this machine lacks is refused."""
    torch = import_torch()
    if requested == "mps" and not _mps_available(torch):
        raise InvalidRequestError(
            "device", requested, "MPS is not available here (Apple silicon only): use auto or cpu"
        )
    if requested.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = torch.device(requested).index or 0
        if index >= count:
            raise InvalidRequestError(
                "device", requested, f"this machine has {count} CUDA device(s): use auto or cpu"
            )
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if _mps_available(torch) else "cpu"


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_dtype(requested: str, device: str, source: str) -> Any:
    """'auto' -> float32 on CPU; the registry's dtype, else bf16 (or fp16) on a GPU."""
    torch = import_torch()
    name = requested
    if name == "auto":
        if device == "cpu":
            name = "float32"
        else:
            bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
            name = _registry_dtype(source) or ("bfloat16" if bf16 else "float16")
    return getattr(torch, name)


def _registry_dtype(source: str) -> str | None:
    try:
        from ...model_capabilities import VisionModelCapabilitiesRegistry

        registry = VisionModelCapabilitiesRegistry()
        engine = registry.get(source).engines.diffusers if source in registry else None
        return engine.torch_dtype if engine is not None else None
    except Exception:
        return None


def load_pipeline(info: ModelInfo, options: LoadOptions, device: str) -> Any:
    """``<model_index class>.from_pretrained`` with the config's cache rules, then placed."""
    torch = import_torch()
    import diffusers

    cls = getattr(diffusers, info.class_name, None)
    if cls is None:
        raise BackendError(
            f"{info.source} needs {info.class_name}, which the installed diffusers "
            f"{diffusers.__version__} lacks: pip install -U diffusers"
        )
    deprecations = getattr(diffusers.utils, "deprecation_utils", None)
    renamed = hasattr(deprecations, "_TORCH_DTYPE_DEPRECATION_MESSAGE")  # diffusers >= 0.42
    dtype_key = "dtype" if renamed else "torch_dtype"
    kwargs = {
        dtype_key: resolve_dtype(options.torch_dtype, device, info.source),
        "local_files_only": not options.allow_download,
        "cache_dir": options.cache_dir,
        "revision": options.revision,
        "variant": options.variant,
    }
    memory.check_fits(info.source, kwargs[dtype_key], device, options)  # before any download
    speed = optimize.prepare_load(info, options, device, kwargs[dtype_key])
    try:
        extra = qwen_vl.processor_components(cls, info.source, kwargs)  # no torchvision needed
        pipe = cls.from_pretrained(
            info.source,
            **{k: v for k, v in kwargs.items() if v is not None},
            **speed.kwargs,
            **extra,
        )
        place(pipe, options, device)
    except torch.cuda.OutOfMemoryError:
        empty_device_cache()
        raise OutOfMemoryError(
            f"{info.source} does not fit in device memory: enable model CPU offload, "
            "lower memory_budget_bytes, or unload other models"
        ) from None
    except OptionalDependencyMissingError:
        raise
    except ImportError as exc:  # a component's library needs a package we do not pull in
        package = _missing_package(str(exc))
        raise OptionalDependencyMissingError(
            package, None, feature=f"{info.source} ({info.class_name})"
        ) from None
    except (OSError, ValueError) as exc:
        raise UnknownModelError(
            f"cannot load {info.source} ({info.class_name}): {exc}. Check that every component "
            "is present (variant, revision), or allow downloads."
        ) from None
    optimize.optimize_pipeline(pipe, options, device, speed)  # its errors name the option
    return pipe


def offload_for(sizes: list[int], free: int, total: int) -> str:
    """``enable_model_cpu_offload="auto"``: the fastest placement that fits the free memory.

    Keeps a working reserve (the larger of 1.5 GiB and 10% of the card): the whole pipeline
    fits -> "" (move it whole); its largest component fits -> "model" (model CPU offload);
    else "sequential" (sequential CPU offload: far lower peak, slower steps).
    """
    reserve = max(int(1.5 * 2**30), total // 10)
    if sum(sizes) + reserve <= free:
        return ""
    return "model" if max(sizes, default=0) + reserve <= free else "sequential"


def _auto_offload(pipe: Any, device: str) -> str:
    torch = import_torch()
    if not device.startswith("cuda"):
        return ""
    index = torch.device(device).index
    free, total = torch.cuda.mem_get_info(index if index is not None else 0)
    sizes = [
        sum(p.numel() * p.element_size() for p in module.parameters())
        for module in pipe.components.values()
        if isinstance(module, torch.nn.Module)
    ]
    choice = offload_for(sizes, free, total)
    log.info("cpu offload auto: %s (%d MiB free)", choice or "whole on device", free >> 20)
    return choice


def _missing_package(message: str) -> str:
    """The package an ImportError asks for (transformers words it "requires the X library")."""
    import re

    found = re.search(r"requires the (\w+) library", message) or re.search(
        r"No module named '([\w.]+)'", message
    )
    return found.group(1).lower() if found else message.strip().splitlines()[0][:200]


def place(pipe: Any, options: LoadOptions, device: str) -> None:
    """Move to the device (or install offload hooks) and apply the memory options."""
    auto = _auto_offload(pipe, device) if options.enable_model_cpu_offload == "auto" else None
    if device != "cpu" and optimize.uses_group_offload(options):
        optimize.place_group_offload(pipe, device)
    elif device != "cpu" and (options.enable_sequential_cpu_offload or auto == "sequential"):
        pipe.enable_sequential_cpu_offload(device=device)
    elif device != "cpu" and (options.enable_model_cpu_offload is True or auto == "model"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if options.enable_vae_tiling and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if options.enable_vae_slicing and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if options.enable_attention_slicing and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    pipe.set_progress_bar_config(disable=True)


def kind_of(task: str, masked: bool, info: ModelInfo) -> str:
    """Which derived pipeline a call needs: t2i, i2i, inpaint, or the video task itself."""
    if task == I2I and (masked or inpaint_only(info.class_name)):
        return INPAINT
    return task


def derive(base: Any, kind: str, registry_class: str | None) -> Any:
    """The pipeline for ``kind`` sharing ``base``'s modules (``from_pipe``), or ``base`` itself."""
    import diffusers
    from diffusers.pipelines import auto_pipeline as auto

    name = type(base).__name__
    if kind in VIDEO_TASKS:
        if registry_class is None or registry_class == name:
            return base
        target = getattr(diffusers, registry_class, None)
    elif kind in IMAGE_PIPELINES.get(name, {}):
        target = getattr(diffusers, IMAGE_PIPELINES[name][kind], None)
    else:
        mapping = {
            T2I: auto.AUTO_TEXT2IMAGE_PIPELINES_MAPPING,
            I2I: auto.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
            INPAINT: auto.AUTO_INPAINT_PIPELINES_MAPPING,
        }[kind]
        target = auto._get_task_class(mapping, name, False)
    if target is None:
        raise BackendError(f"{name} has no {kind} counterpart in diffusers {diffusers.__version__}")
    if target is type(base):
        return base
    log.info("deriving %s from %s (shared weights)", target.__name__, name)
    return target.from_pipe(base)
