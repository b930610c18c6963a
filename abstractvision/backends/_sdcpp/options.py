"""Request ``extra`` keys -> binding arguments, LoRA allow-listing, and model-file inspection.

Only the keys in ``EXTRA_KEYS`` are accepted, each mapped by hand to one binding argument, so an
agent cannot reach options that read files or change the process (paths, upscalers, ...).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ...errors import InvalidRequestError

EXTRA_KEYS: dict[str, str] = {
    "sampler": "Sampling method, e.g. euler, euler_a, dpm++2m, lcm (default: the model's).",
    "scheduler": "Noise schedule, e.g. discrete, karras, simple, sgm_uniform (default: the model's).",
    "clip_skip": "Skip the last N text-encoder layers (integer 1..12).",
    "vae_tiling": "Decode in tiles to save memory on large images (true/false).",
    "guidance": "Distilled guidance of FLUX-type models (number 0..30).",
    "flow_shift": "Flow-matching timestep shift, e.g. for Wan (number 0..100).",
    "edit_mode": "image_to_image: 'init' (image + strength) or 'reference' (edit models).",
    "loras": "LoRAs from the configured lora_dir: [{'name': 'file', 'weight': 0.8}] or ['file'].",
}
FLOW_SHIFT_RANGE = (0, 100)  # extra.flow_shift and the config's default
_LORA_TAG = re.compile(r"<lora:", re.IGNORECASE)
_LORA_SUFFIXES = (".safetensors", ".gguf", ".pt")
_MAX_LORAS = 8


def check_prompt(field: str, text: str | None) -> None:
    """The bindings load any file named in a ``<lora:path:w>`` prompt tag: refuse such tags."""
    if text and _LORA_TAG.search(text):
        raise InvalidRequestError(
            field, text, "must not contain <lora:...> tags; pass extra.loras (names in lora_dir)"
        )


def _number(key: str, value: Any, low: float, high: float, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise InvalidRequestError(f"extra.{key}", value, "must be a number")
    if not low <= value <= high:
        raise InvalidRequestError(f"extra.{key}", value, f"must be in {low:g}..{high:g}")
    return value


def binding_options(extra: Mapping[str, Any]) -> dict[str, Any]:
    """Binding keyword arguments for the engine options in ``extra`` (LoRAs handled apart)."""
    out: dict[str, Any] = {}
    for key, value in extra.items():
        if key not in EXTRA_KEYS:
            raise InvalidRequestError(
                f"extra.{key}", value, f"accepted: {', '.join(sorted(EXTRA_KEYS))}"
            )
        if key in ("sampler", "scheduler"):
            if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9_+]{1,32}", value):
                raise InvalidRequestError(f"extra.{key}", value, "must be a method name")
            out["sample_method" if key == "sampler" else "scheduler"] = value
        elif key == "clip_skip":
            out["clip_skip"] = _number(key, value, 1, 12, integer=True)
        elif key == "vae_tiling":
            if not isinstance(value, bool):
                raise InvalidRequestError("extra.vae_tiling", value, "must be true or false")
            out["vae_tiling"] = value
        elif key == "guidance":
            out["guidance"] = float(_number(key, value, 0, 30))
        elif key == "flow_shift":
            out["flow_shift"] = float(_number(key, value, *FLOW_SHIFT_RANGE))
        elif key == "edit_mode" and value not in ("init", "reference"):
            raise InvalidRequestError("extra.edit_mode", value, "must be 'init' or 'reference'")
    return out


def resolve_loras(value: Any, lora_dir: str | None) -> list[tuple[str, float]]:
    """``extra.loras`` -> [(absolute path, weight)], every file inside ``lora_dir``."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > _MAX_LORAS:
        raise InvalidRequestError("extra.loras", value, f"must be a list of at most {_MAX_LORAS}")
    if value and not lora_dir:
        raise InvalidRequestError("extra.loras", value, "no lora_dir is configured")
    root = Path(lora_dir or ".").resolve()
    out = []
    for i, item in enumerate(value):
        name, weight = (item, 1.0) if isinstance(item, str) else _lora_item(i, item)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,127}", name) or ".." in name:
            raise InvalidRequestError(f"extra.loras[{i}].name", name, "must be a plain file name")
        candidates = [root / name, *(root / (name + s) for s in _LORA_SUFFIXES)]
        path = next((p.resolve() for p in candidates if p.is_file()), None)
        if path is None or path.parent != root or path.suffix not in _LORA_SUFFIXES:
            known = sorted(p.name for p in root.iterdir() if p.suffix in _LORA_SUFFIXES)
            raise InvalidRequestError(
                f"extra.loras[{i}].name", name, f"not in lora_dir; available: {known or 'none'}"
            )
        out.append((str(path), weight))
    return out


def _lora_item(i: int, item: Any) -> tuple[str, float]:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("name"), str)
        or set(item)
        - {
            "name",
            "weight",
        }
    ):
        raise InvalidRequestError(f"extra.loras[{i}]", item, "must be {'name': str, 'weight': n}")
    return item["name"], float(_number(f"loras[{i}].weight", item.get("weight", 1.0), -4, 4))


def generation_kwargs(request: Any, cfg: Any, seed: int) -> tuple[dict[str, Any], list[Any]]:
    """Binding arguments of ``generate_image``/``generate_video`` from a request and the config
    defaults, and the allow-listed LoRAs; None values are left to the engine's defaults."""
    check_prompt("prompt", request.prompt)
    check_prompt("negative_prompt", request.negative_prompt)
    extra = dict(request.extra)
    loras = resolve_loras(extra.pop("loras", None), cfg.lora_dir)
    guidance = request.guidance_scale
    kwargs: dict[str, Any] = {
        "prompt": lora_prompt(request.prompt or "", loras),
        "negative_prompt": request.negative_prompt or "",
        "width": request.width or cfg.width,
        "height": request.height or cfg.height,
        "sample_steps": request.steps or cfg.steps,
        "seed": seed,
        "cfg_scale": guidance if guidance is not None else cfg.guidance_scale,
        "sample_method": cfg.sampler,
        "scheduler": cfg.scheduler,
        "vae_tiling": cfg.vae_tiling,
        "flow_shift": cfg.flow_shift,
        **binding_options(extra),
    }
    return {k: v for k, v in kwargs.items() if v is not None}, loras


def lora_prompt(prompt: str, loras: Iterable[tuple[str, float]]) -> str:
    """The prompt with the bindings' LoRA tags appended (paths already allow-listed)."""
    tags = "".join(f"<lora:{path}:{weight:g}>" for path, weight in loras)
    return prompt + tags


# --- what a model file holds (capabilities before load) -------------------------------------


def tensor_names(path: str) -> set[str] | None:
    """Tensor names from a ``.safetensors`` or ``.gguf`` header; None when unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head[:4] == b"GGUF":
                return _gguf_names(path)
            (size,) = struct.unpack("<Q", head)
            if size > 100 * 1024 * 1024:
                return None
            return set(json.loads(fh.read(size))) - {"__metadata__"}
    except (OSError, ValueError, struct.error, ImportError):
        return None


def _gguf_names(path: str) -> set[str] | None:
    import gguf

    return {t.name for t in gguf.GGUFReader(path, "r").tensors}


def guess_kind(files: Mapping[str, str]) -> str | None:
    """'video' for Wan-type models, 'image' otherwise; None when the files cannot be read."""
    if files.get("high_noise_diffusion_model") or files.get("clip_vision"):
        return "video"
    main = files.get("diffusion_model") or files.get("model")
    names = tensor_names(main) if main and os.path.isfile(main) else None
    if names is None:
        return None
    video = any("patch_embedding" in n or ".blocks.0.self_attn." in n for n in names)
    return "video" if video else "image"


def takes_references(files: Mapping[str, str], model_name: str | None = None) -> bool:
    """Edit models that condition on reference images: FLUX.2, Qwen-Image-Edit (vision LLM), and
    models the registry marks (FLUX.1 Kontext: its files have the FLUX.1 [dev] layout)."""
    if files.get("llm_vision") or _registry_says_reference(model_name):
        return True
    main = files.get("diffusion_model") or files.get("model")
    names = tensor_names(main) if main and os.path.isfile(main) else None
    return bool(names) and any("double_stream_modulation_img" in n for n in names)


def _registry_says_reference(model_name: str | None) -> bool:
    sdcpp = registry_engine(model_name)
    return sdcpp is not None and sdcpp.edit_mode == "reference"


def registry_engine(model_name: str | None) -> Any:
    """The registry's sd.cpp facts (``SdcppEngine``) of a model name, None for other names."""
    from ...model_capabilities import VisionModelCapabilitiesRegistry

    registry = VisionModelCapabilitiesRegistry()
    if not model_name or model_name not in registry:
        return None
    return registry.get(model_name).engines.sdcpp
