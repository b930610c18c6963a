"""Speed options of the Diffusers backend: compile, quantisation, step caching, attention, offload.

Every option is a field of ``HuggingFaceDiffusersBackendConfig`` (so ``--backend-option KEY=VALUE``
reaches it), off by default, and reported under ``optimizations`` in a result's metadata:

- ``compile``: ``torch.compile`` of the denoiser with static shapes. ``"regional"`` (or ``true``)
  compiles only the repeated transformer blocks (Diffusers' ``compile_repeated_blocks``), so the
  first call compiles one block instead of the whole model; ``"full"`` compiles the denoiser.
  With ``preload`` the compile happens there (one warm-up call per ``compile_warmup`` size).
- ``quantize``: weight-only quantisation of the denoiser and the text encoders at load, through
  Diffusers' own quantisers: ``int8`` / ``fp8`` (torchao), ``nf4`` / ``bnb8`` (bitsandbytes,
  CUDA only). ``gguf_file``: the denoiser's weights from a ``.gguf`` file (Q8_0, Q4_K, ...),
  loaded into Diffusers' own transformer class with ``from_single_file``.
- ``step_cache``: a Diffusers cache hook on a DiT denoiser that reuses block outputs across
  steps: ``first_block``, ``taylorseer``, ``magcache`` (FLUX), ``pab``, ``faster``;
  ``step_cache_threshold`` tunes it.
- ``attention_backend``: ``set_attention_backend`` on the denoiser (``native``, ``flash``,
  ``sage``, ...); a backend whose package is missing is refused with its name.
- ``group_offload``: weights live in CPU memory and stream to the GPU group by group on a side
  CUDA stream (``enable_group_offload(use_stream=True)``), for models larger than the GPU.

torch and diffusers are imported only inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import (
    CapabilityNotSupportedError,
    InvalidRequestError,
    OptionalDependencyMissingError,
)

log = logging.getLogger(__name__)

__all__ = [
    "ATTENTION_PACKAGES",
    "COMPILE_MODES",
    "QUANTIZE_MODES",
    "STEP_CACHES",
    "Prepared",
    "applied",
    "before_call",
    "check_config",
    "compile_mode",
    "estimate_weights",
    "is_set",
    "key_suffix",
    "model_of_key",
    "optimize_pipeline",
    "place_group_offload",
    "prepare_load",
    "settings",
    "uses_group_offload",
    "warm_up",
    "warmup_sizes",
]

COMPILE_MODES = ("off", "regional", "full")
# quantize value -> (library, what it does, CUDA only)
QUANTIZE_MODES: dict[str, tuple[str, str, bool]] = {
    "int8": ("torchao", "int8 weight-only (torchao)", False),
    "fp8": ("torchao", "float8 weight-only (torchao; a GPU with compute capability >= 8.9)", True),
    "nf4": ("bitsandbytes", "4-bit NF4 (bitsandbytes)", True),
    "bnb8": ("bitsandbytes", "8-bit LLM.int8 (bitsandbytes)", True),
}
# step_cache value -> what its threshold means
STEP_CACHES: dict[str, str] = {
    "first_block": "threshold: relative change of the first block's residual below which the "
    "other blocks are skipped (default 0.05; higher = faster, lossier)",
    "taylorseer": "threshold: steps between full computations, as a number (default 5)",
    "magcache": "threshold: accumulated magnitude error allowed (default 0.06); FLUX ratios only",
    "pab": "threshold: attention is recomputed every N steps (default 2)",
    "faster": "threshold: attention is recomputed every N steps (default 2); for models run "
    "with classifier-free guidance",
}
# attention backend prefix -> the package it needs
ATTENTION_PACKAGES: dict[str, str] = {
    "flash": "flash-attn",
    "_flash_3": "flash-attn 3 (built from source)",
    "sage": "sageattention",
    "_sage": "sageattention",
    "xformers": "xformers",
    "flex": "torch>=2.5",
}
_DENOISERS = ("transformer", "unet", "prior", "decoder")
_TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3", "text_encoder_4")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_BYTES_PER_WEIGHT = {"int8": 1.0, "fp8": 1.0, "nf4": 0.5, "bnb8": 1.0}

# what was applied to a loaded pipeline, for the metadata (pipelines are not ours to add fields to)
_APPLIED: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_STATE: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


# --- configuration (no torch) ---------------------------------------------------------------------


def compile_mode(value: Any) -> str:
    """``compile`` as one of COMPILE_MODES (``true`` = regional, ``false`` = off)."""
    if value is True:
        return "regional"
    if value in (False, None):
        return "off"
    if isinstance(value, str) and value.lower() in (*COMPILE_MODES, "true", "false"):
        return {"true": "regional", "false": "off"}.get(value.lower(), value.lower())
    raise InvalidRequestError("compile", value, f"must be one of {', '.join(COMPILE_MODES)}")


def check_config(config: Any) -> None:
    """Refuse a bad speed option when the config is built, naming the field and the choices."""
    compile_mode(config.compile)
    if config.quantize is not None and config.quantize not in QUANTIZE_MODES:
        raise InvalidRequestError(
            "quantize", config.quantize, f"must be one of {', '.join(QUANTIZE_MODES)}"
        )
    for name in config.quantize_components:
        if name not in ("denoiser", "text_encoders", *_DENOISERS, *_TEXT_ENCODERS):
            raise InvalidRequestError(
                "quantize_components",
                name,
                "must name denoiser, text_encoders or a component (transformer, text_encoder_2, ...)",
            )
    if config.gguf_file is not None:
        if not str(config.gguf_file).endswith(".gguf"):
            raise InvalidRequestError("gguf_file", config.gguf_file, "must be a .gguf file")
        if config.quantize is not None:
            raise InvalidRequestError(
                "quantize",
                config.quantize,
                "gguf_file already gives a quantised denoiser; quantize would apply to it too: "
                "set one of them",
            )
    if config.step_cache is not None and config.step_cache not in STEP_CACHES:
        raise InvalidRequestError(
            "step_cache", config.step_cache, f"must be one of {', '.join(STEP_CACHES)}"
        )
    threshold = config.step_cache_threshold
    if threshold is not None:
        if config.step_cache is None:
            raise InvalidRequestError(
                "step_cache_threshold", threshold, "needs step_cache to be set"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
            raise InvalidRequestError("step_cache_threshold", threshold, "must be a number > 0")
        if config.step_cache in ("taylorseer", "pab", "faster") and threshold != int(threshold):
            raise InvalidRequestError(
                "step_cache_threshold",
                threshold,
                f"{config.step_cache} takes a whole number of steps",
            )
    backend = config.attention_backend
    if backend is not None and (not isinstance(backend, str) or not backend):
        raise InvalidRequestError("attention_backend", backend, "must be a backend name")
    if not isinstance(config.group_offload, bool):
        raise InvalidRequestError("group_offload", config.group_offload, "must be true or false")
    if config.group_offload and (  # "auto" (the default) gives way to group offload
        config.enable_model_cpu_offload is True or config.enable_sequential_cpu_offload
    ):
        raise InvalidRequestError(
            "group_offload", True, "replaces model/sequential CPU offload: enable only one"
        )
    for size in config.compile_warmup:
        if not isinstance(size, str) or not _SIZE.match(size):
            raise InvalidRequestError("compile_warmup", size, "sizes must be WIDTHxHEIGHT")


def settings(config: Any) -> dict[str, Any]:
    """The speed options that are on, as they appear in metadata."""
    out: dict[str, Any] = {}
    mode = compile_mode(config.compile)
    if mode != "off":
        out["compile"] = mode
    if config.quantize is not None:
        out["quantize"] = config.quantize
    if config.gguf_file is not None:
        out["gguf_file"] = Path(config.gguf_file).name
    if config.step_cache is not None:
        out["step_cache"] = config.step_cache
        if config.step_cache_threshold is not None:
            out["step_cache_threshold"] = config.step_cache_threshold
    if config.attention_backend is not None:
        out["attention_backend"] = config.attention_backend
    if config.group_offload:
        out["group_offload"] = True
    return out


def is_set(config: Any) -> bool:
    return bool(settings(config))


def key_suffix(config: Any) -> str:
    """Appended to the pipeline cache key: a compiled or quantised load is another entry."""
    on = settings(config)
    if config.gguf_file is not None:
        on["gguf_file"] = str(config.gguf_file)
    if config.quantize is not None and config.quantize_components:
        on["quantize_components"] = ",".join(config.quantize_components)
    return "#" + ",".join(f"{k}={v}" for k, v in on.items()) if on else ""


def model_of_key(key: str) -> str:
    """The model part of a cache key (what ``loaded_models`` lists)."""
    return key.split("#", 1)[0]


def uses_group_offload(config: Any) -> bool:
    return bool(config.group_offload)


def warmup_sizes(config: Any, pipe: Any) -> list[tuple[int, int]]:
    """The sizes a compiled pipeline is warmed up at: ``compile_warmup`` or the model's default."""
    sizes = []
    for size in config.compile_warmup:
        match = _SIZE.match(size)
        if match:
            sizes.append((int(match.group(1)), int(match.group(2))))
    if sizes:
        return sizes
    sample = getattr(pipe, "default_sample_size", None)
    scale = getattr(pipe, "vae_scale_factor", None)
    side = int(sample * scale) if sample and scale else 1024
    return [(side, side)]


# --- memory figures before load ---------------------------------------------------------------------


def _components(index: Path) -> dict[str, tuple[str, str]]:
    """model_index.json's torch components: name -> (library, class)."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        name: (value[0], value[1])
        for name, value in data.items()
        if not name.startswith("_")
        and isinstance(value, list)
        and len(value) == 2
        and value[0] in ("diffusers", "transformers")
        and value[1] is not None
    }


def _selected(components: Mapping[str, Any], wanted: tuple[str, ...]) -> list[str]:
    """The component names ``quantize_components`` picks (default: denoiser and text encoders)."""
    wanted = wanted or ("denoiser", "text_encoders")
    out = []
    for name in components:
        if (
            name in wanted
            or ("denoiser" in wanted and name in _DENOISERS)
            or ("text_encoders" in wanted and name in _TEXT_ENCODERS)
        ):
            out.append(name)
    return out


def _safetensors_params(folder: Path) -> int | None:
    """Parameter count of a component folder, read from its safetensors headers (no weights)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        try:
            with file.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
        except (OSError, ValueError, struct.error):
            return None
        for name, spec in header.items():
            if name != "__metadata__":
                count = 1
                for dim in spec.get("shape", ()):
                    count *= int(dim)
                total += count
    return total


def _registry_params(source: str) -> dict[str, int]:
    """Per-component parameter counts the capability registry publishes (``parameters_b``)."""
    try:
        from ...model_capabilities import VisionModelCapabilitiesRegistry

        registry = VisionModelCapabilitiesRegistry()
        if source not in registry:
            return {}
        published = getattr(registry.get(source), "parameters_b", None) or {}
        return {name: int(float(b) * 1e9) for name, b in dict(published).items()}
    except Exception:  # the registry is a hint here; the folder's headers are the fallback
        return {}


def estimate_weights(
    source: str, index: Path | None, config: Any, dtype_bytes: int
) -> dict[str, Any] | None:
    """Bytes the weights will take, before loading: parameter counts x bytes per weight.

    Counts come from the registry where it has them, else from the model folder's safetensors
    headers. The quantised figure counts the selected components at the mode's bytes per weight
    (a GGUF denoiser at its file size). ``index`` is None for a model not on disk yet.
    """
    counts = _registry_params(source)
    components = _components(index) if index is not None else dict.fromkeys(counts, ("", ""))
    for name in components:
        if name not in counts and index is not None:
            found = _safetensors_params(index.parent / name)
            if found is not None:
                counts[name] = found
    if not counts:
        return None
    plain = sum(counts.values()) * dtype_bytes
    chosen = set(_selected(components, tuple(config.quantize_components)))
    quant_bytes = _BYTES_PER_WEIGHT.get(config.quantize or "")
    estimate = 0.0
    for name, count in counts.items():
        if config.gguf_file is not None and name in _DENOISERS:
            try:
                estimate += Path(config.gguf_file).expanduser().stat().st_size
                continue
            except OSError:
                pass
        per = quant_bytes if quant_bytes is not None and name in chosen else dtype_bytes
        estimate += count * per
    return {
        "parameters": sum(counts.values()),
        "weights_bytes": int(estimate),
        "weights_bytes_unquantized": int(plain),
    }


# --- load -----------------------------------------------------------------------------------------


def _need(module: str, package: str, feature: str, extra: str | None = "speed") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OptionalDependencyMissingError(package, extra, feature=feature) from None


def _quant_configs(mode: str, dtype: Any) -> tuple[Any, Any]:
    """(diffusers config, transformers config) for one quantize mode."""
    import diffusers
    import transformers

    library = QUANTIZE_MODES[mode][0]
    if library == "torchao":
        ao = _need("torchao.quantization", "torchao", f"quantize={mode}")
        kind = ao.Int8WeightOnlyConfig if mode == "int8" else ao.Float8WeightOnlyConfig
        return diffusers.TorchAoConfig(kind()), transformers.TorchAoConfig(kind())
    _need("bitsandbytes", "bitsandbytes", f"quantize={mode}", extra=None)
    if mode == "nf4":
        options = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": dtype,
        }
    else:
        options = {"load_in_8bit": True}
    return diffusers.BitsAndBytesConfig(**options), transformers.BitsAndBytesConfig(**options)


@dataclass
class Prepared:
    """What ``prepare_load`` decided: extra ``from_pretrained`` arguments, the memory estimate."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None


def prepare_load(info: Any, config: Any, device: str, dtype: Any) -> Prepared:
    """Extra ``from_pretrained`` arguments (a quantisation config, a GGUF denoiser).

    Refuses what cannot work on ``device`` before anything loads (CUDA-only quantisers, group
    offload without CUDA), and logs the weights' memory estimate.
    """
    if not is_set(config):
        return Prepared()
    cuda = device.startswith("cuda")
    if config.group_offload and not cuda:
        raise CapabilityNotSupportedError(
            f"group_offload streams weights to a CUDA GPU; this backend runs on {device}: "
            "drop group_offload (on CPU the weights are in memory already)"
        )
    if config.quantize is not None and QUANTIZE_MODES[config.quantize][2] and not cuda:
        raise CapabilityNotSupportedError(
            f"quantize={config.quantize} ({QUANTIZE_MODES[config.quantize][1]}) runs on CUDA "
            f"only; this backend runs on {device}: use quantize=int8 or a gguf_file"
        )
    if config.attention_backend is not None:
        _check_attention(config.attention_backend, config, device)
    index = _model_index(info.source, config)
    components = _components(index) if index is not None else {}
    prepared = Prepared()
    import torch

    size = torch.tensor([], dtype=dtype).element_size()
    prepared.estimate = estimate_weights(info.source, index, config, size)
    if prepared.estimate is not None:
        log.info(
            "%s: %s parameters; weights ~%s (%s unquantised, %s), estimated before load",
            info.source,
            _count(prepared.estimate["parameters"]),
            _gb(prepared.estimate["weights_bytes"]),
            _gb(prepared.estimate["weights_bytes_unquantized"]),
            str(dtype).replace("torch.", ""),
        )
    if config.quantize is not None:
        import diffusers

        chosen = _selected(components, tuple(config.quantize_components))
        if not chosen:
            raise CapabilityNotSupportedError(
                f"quantize: {info.source} has none of the components "
                f"{', '.join(config.quantize_components or ('denoiser', 'text_encoders'))}"
            )
        for_diffusers, for_transformers = _quant_configs(config.quantize, dtype)
        mapping = {
            name: for_diffusers if components[name][0] == "diffusers" else for_transformers
            for name in chosen
        }
        prepared.kwargs["quantization_config"] = diffusers.PipelineQuantizationConfig(
            quant_mapping=mapping
        )
    if config.gguf_file is not None:
        prepared.kwargs.update(_gguf_denoiser(info, config, components, dtype))
    return prepared


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.2f} MiB"


def _model_index(source: str, config: Any) -> Path | None:
    from .families import find_model_index

    try:
        return find_model_index(
            source, allow_download=False, cache_dir=config.cache_dir, revision=config.revision
        )
    except Exception:
        return None


def _gguf_denoiser(
    info: Any, config: Any, components: Mapping[str, tuple[str, str]], dtype: Any
) -> dict[str, Any]:
    """``{denoiser name: model}`` loaded from ``gguf_file`` into Diffusers' own class."""
    import diffusers

    _need("gguf", "gguf", "gguf_file")
    name = next((n for n in _DENOISERS if n in components), None)
    if name is None:
        raise CapabilityNotSupportedError(f"gguf_file: {info.source} has no denoiser component")
    cls = getattr(diffusers, components[name][1], None)
    if cls is None or not hasattr(cls, "from_single_file"):
        raise CapabilityNotSupportedError(
            f"gguf_file: diffusers {diffusers.__version__} cannot load a single file into "
            f"{components[name][1]}"
        )
    path = Path(config.gguf_file).expanduser()
    if not path.is_file():
        raise InvalidRequestError("gguf_file", config.gguf_file, "no such file")
    kwargs = {
        "config": info.source,
        "subfolder": name,
        "quantization_config": diffusers.GGUFQuantizationConfig(compute_dtype=dtype),
        "torch_dtype": dtype,
        "local_files_only": not config.allow_download,
        "cache_dir": config.cache_dir,
        "revision": config.revision,
    }
    try:
        model = cls.from_single_file(
            str(path), **{k: v for k, v in kwargs.items() if v is not None}
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InvalidRequestError(
            "gguf_file",
            path.name,
            f"could not be loaded into {cls.__name__}: {exc}",
        ) from None
    return {name: model}


def place_group_offload(pipe: Any, device: str) -> None:
    """Weights stay in CPU memory; each group streams in on a side CUDA stream before it runs."""
    import torch

    pipe.enable_group_offload(
        onload_device=torch.device(device),
        offload_device=torch.device("cpu"),
        offload_type="leaf_level",
        use_stream=True,
    )


def _denoiser(pipe: Any) -> tuple[str, Any]:
    for name in _DENOISERS:
        module = getattr(pipe, name, None)
        if module is not None and hasattr(module, "parameters"):
            return name, module
    raise CapabilityNotSupportedError(f"{type(pipe).__name__} has no denoiser (transformer/unet)")


def optimize_pipeline(pipe: Any, config: Any, device: str, prepared: Prepared) -> None:
    """After placement: attention backend, step cache, then compile (in that order)."""
    if not is_set(config):
        return
    record: dict[str, Any] = settings(config)
    _, denoiser = _denoiser(pipe)
    if config.attention_backend is not None:
        _set_attention(denoiser, config.attention_backend)
    if config.step_cache is not None:
        state = _STATE.setdefault(pipe, {})
        state["current"] = pipe
        _enable_cache(pipe, denoiser, config, state, steps=None)
    mode = compile_mode(config.compile)
    if mode != "off":
        record["compile"] = _compile(denoiser, mode)
    if prepared.estimate is not None:
        record["weights_estimate_bytes"] = prepared.estimate["weights_bytes"]
    _APPLIED[pipe] = record


def _check_attention(backend: str, config: Any, device: str) -> None:
    """Refuse an unknown, download-only, uninstalled or CUDA-only backend before loading."""
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    names = sorted(m.value for m in AttentionBackendName)
    if backend not in names:
        raise InvalidRequestError(
            "attention_backend", backend, f"must be one of {', '.join(names)}"
        )
    if backend.endswith("_hub") and not config.allow_download:
        raise InvalidRequestError(
            "attention_backend",
            backend,
            "hub kernels are downloaded at load; allow_download is off: use a locally "
            "installed backend (native, flash, sage) or allow downloads",
        )
    try:
        _check_attention_backend_requirements(AttentionBackendName(backend))
    except (RuntimeError, ImportError) as exc:
        package = next(
            (p for prefix, p in ATTENTION_PACKAGES.items() if backend.startswith(prefix)),
            None,
        )
        if package is None:
            raise CapabilityNotSupportedError(f"attention_backend={backend}: {exc}") from None
        raise OptionalDependencyMissingError(
            package, None, feature=f"attention_backend={backend}"
        ) from None
    if backend not in ("native", "flex", "_native_math") and not device.startswith("cuda"):
        raise CapabilityNotSupportedError(
            f"attention_backend={backend} runs on CUDA only; this backend runs on {device}: "
            "use attention_backend=native"
        )


def _set_attention(denoiser: Any, backend: str) -> None:
    reached = [
        m
        for m in denoiser.modules()
        if hasattr(getattr(m, "processor", None), "_attention_backend")
    ]
    if not reached:
        raise CapabilityNotSupportedError(
            f"attention_backend: {type(denoiser).__name__} uses attention processors that "
            "set_attention_backend does not reach (it is for DiT models: FLUX, SD3, Wan, ...)"
        )
    denoiser.set_attention_backend(backend)


def _enable_cache(
    pipe: Any, denoiser: Any, config: Any, state: dict[str, Any], steps: int | None
) -> None:
    """Install the ``step_cache`` hook on the denoiser (again when MagCache's steps change)."""
    import diffusers.hooks as hooks

    kind = config.step_cache
    threshold = config.step_cache_threshold
    if not hasattr(denoiser, "enable_cache"):
        raise CapabilityNotSupportedError(
            f"step_cache={kind}: {type(denoiser).__name__} takes no cache hooks "
            "(they are for DiT models: FLUX, SD3, Wan, ...)"
        )

    def current_timestep() -> Any:
        running = state.get("current", pipe)
        return getattr(running, "_current_timestep", None)

    if kind == "first_block":
        cache = hooks.FirstBlockCacheConfig(threshold=threshold or 0.05)
    elif kind == "taylorseer":
        import torch

        cache = hooks.TaylorSeerCacheConfig(
            cache_interval=int(threshold or 5),
            taylor_factors_dtype=torch.float32 if pipe.dtype == torch.float32 else torch.bfloat16,
        )
    elif kind == "magcache":
        from diffusers.hooks import mag_cache

        if type(denoiser).__name__ != "FluxTransformer2DModel":
            raise CapabilityNotSupportedError(
                f"step_cache=magcache needs per-model magnitude ratios; Diffusers ships FLUX.1's, "
                f"not {type(denoiser).__name__}'s: use first_block or taylorseer"
            )
        steps = steps or state.get("steps") or 28
        cache = hooks.MagCacheConfig(
            threshold=threshold or 0.06,
            mag_ratios=mag_cache.FLUX_MAG_RATIOS,
            num_inference_steps=steps,
        )
        state["steps"] = steps
    elif kind == "pab":
        cache = hooks.PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=int(threshold or 2),
            spatial_attention_timestep_skip_range=(-1, 1001),
            current_timestep_callback=current_timestep,
        )
    else:
        cache = hooks.FasterCacheConfig(
            spatial_attention_block_skip_range=int(threshold or 2),
            spatial_attention_timestep_skip_range=(-1, 1001),
            is_guidance_distilled=bool(getattr(denoiser.config, "guidance_embeds", False)),
            current_timestep_callback=current_timestep,
        )
    if getattr(denoiser, "is_cache_enabled", False):
        denoiser.disable_cache()
    try:
        denoiser.enable_cache(cache)
    except (ValueError, TypeError, IndexError) as exc:
        raise CapabilityNotSupportedError(
            f"step_cache={kind} does not fit {type(denoiser).__name__}: {exc}"
        ) from None


def _compile(denoiser: Any, mode: str) -> str:
    """Regional where the model declares its repeated blocks; else (or for 'full') the whole.

    ``fullgraph`` stays off: a graph break (a cache hook, an offload hook) then costs speed
    instead of failing a user's call.
    """
    if mode == "regional" and getattr(denoiser, "_repeated_blocks", None):
        denoiser.compile_repeated_blocks(dynamic=False, fullgraph=False)
        return "regional"
    if mode == "regional":
        log.info(
            "%s declares no repeated blocks; compiling the whole denoiser",
            type(denoiser).__name__,
        )
    denoiser.compile(dynamic=False, fullgraph=False)
    return "full"


# --- calls ----------------------------------------------------------------------------------------


def before_call(base: Any, pipe: Any, config: Any, steps: int | None) -> None:
    """Per call: the cache hooks read the running pipeline's timestep; MagCache its step count."""
    if config.step_cache is None:
        return
    state = _STATE.get(base)
    if state is None:
        return
    state["current"] = pipe
    if config.step_cache == "magcache" and steps and steps != state.get("steps"):
        with _LOCK:
            _enable_cache(base, _denoiser(base)[1], config, state, steps)


def warm_up(pipe: Any, config: Any) -> float:
    """One short call per warm-up size, so torch.compile runs now rather than in a user's call."""
    import time

    import torch

    record = _APPLIED.setdefault(pipe, {})
    if compile_mode(config.compile) == "off" or "compile_warmup_s" in record:
        return 0.0
    from .run import call_params

    started = time.perf_counter()
    params = call_params(pipe)
    before_call(pipe, pipe, config, 2)
    for width, height in warmup_sizes(config, pipe):
        kwargs: dict[str, Any] = {"prompt": "warm-up", "num_inference_steps": 2}
        if "width" in params:
            kwargs.update(width=width, height=height)
        if "output_type" in params:
            kwargs["output_type"] = "latent"
        with torch.inference_mode():
            pipe(**kwargs)
    took = time.perf_counter() - started
    record["compile_warmup_s"] = round(took, 2)
    log.info("compiled and warmed up in %.1fs", took)
    return took


def applied(pipe: Any) -> dict[str, Any]:
    """``{"optimizations": {...}}`` for a result's metadata, or ``{}`` when none is on."""
    record = _APPLIED.get(pipe) if pipe is not None else None
    return {"optimizations": dict(record)} if record else {}
