"""Configuration of the stable-diffusion.cpp backend: model files, engine options, defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from ... import compat
from ...errors import InvalidRequestError
from .options import FLOW_SHIFT_RANGE

__all__ = ["FILE_ROLES", "StableDiffusionCppBackendConfig"]

FILE_ROLES = (  # config field -> binding argument "<role>_path"
    "model",
    "diffusion_model",
    "high_noise_diffusion_model",
    "vae",
    "taesd",
    "llm",
    "llm_vision",
    "clip_l",
    "clip_g",
    "clip_vision",
    "t5xxl",
)


@compat.old_config_names(compat.SDCPP_CONFIG)
@dataclass(frozen=True)
class StableDiffusionCppBackendConfig:
    """Model files (one ``model`` or split components), engine options and request defaults."""

    model: str | None = None
    diffusion_model: str | None = None
    high_noise_diffusion_model: str | None = None
    vae: str | None = None
    taesd: str | None = None
    llm: str | None = None
    llm_vision: str | None = None
    clip_l: str | None = None
    clip_g: str | None = None
    clip_vision: str | None = None
    t5xxl: str | None = None
    control_net: str | None = None  # a ControlNet file: text_to_image takes control_image
    upscale_model: str | None = None  # an ESRGAN file: image_upscale (alone or beside a model)
    upscale_tile_size: int = 128  # the ESRGAN upscaler's own tile (bounded memory)
    model_name: str | None = None  # the id callers pass as ``model``; default: the file's stem
    n_threads: int | None = None  # default: every core this process may use
    offload_params_to_cpu: bool = False
    keep_clip_on_cpu: bool = False
    keep_vae_on_cpu: bool = False
    flash_attn: bool = False
    vae_tiling: bool = False
    sampler: str | None = None
    scheduler: str | None = None
    steps: int = 20
    guidance_scale: float | None = None
    flow_shift: float | None = None  # flow models (Wan, SD3): the default of extra.flow_shift
    width: int = 512
    height: int = 512
    num_frames: int = 33
    fps: int = 16
    edit_mode: Literal["auto", "init", "reference"] = "auto"
    qwen_image_zero_cond_t: bool | None = None  # None: the registry's fact for model_name
    lora_dir: str | None = None
    load_timeout_s: float = 600.0
    generate_timeout_s: float | None = None
    verbose: bool = False  # echo the engine's log on stderr

    def __post_init__(self) -> None:
        if not (self.model or self.diffusion_model or self.upscale_model):
            raise InvalidRequestError(
                "model", None, "set model, diffusion_model or upscale_model (a file path)"
            )
        if self.upscale_tile_size < 16:
            raise InvalidRequestError("upscale_tile_size", self.upscale_tile_size, "must be >= 16")
        for role in FILE_ROLES:
            path = getattr(self, role)
            if path is not None and not isinstance(path, str):
                raise InvalidRequestError(role, path, "must be a file path")
        if self.n_threads is not None and self.n_threads < 1:
            raise InvalidRequestError("n_threads", self.n_threads, "must be >= 1")
        if self.edit_mode not in ("auto", "init", "reference"):
            raise InvalidRequestError(
                "edit_mode", self.edit_mode, "must be auto, init or reference"
            )
        if self.load_timeout_s <= 0:
            raise InvalidRequestError("load_timeout_s", self.load_timeout_s, "must be > 0")
        if self.flow_shift is not None:
            low, high = FLOW_SHIFT_RANGE
            value = self.flow_shift
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not low <= value <= high
            ):
                raise InvalidRequestError("flow_shift", value, f"must be a number in {low}..{high}")
        if self.fps < 1 or self.num_frames < 1 or self.steps < 1:
            raise InvalidRequestError("fps/num_frames/steps", None, "must be >= 1")

    def files(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in FILE_ROLES if getattr(self, role)}

    def load_kwargs(self) -> dict[str, Any]:
        """Arguments of the bindings' ``StableDiffusion(...)``, mapped one by one."""
        kwargs: dict[str, Any] = {f"{role}_path": path for role, path in self.files().items()}
        kwargs.update(
            n_threads=self.n_threads or _cores(),
            vae_decode_only=False,  # image_to_image and video encode through the VAE
            offload_params_to_cpu=self.offload_params_to_cpu,
            keep_clip_on_cpu=self.keep_clip_on_cpu,
            keep_vae_on_cpu=self.keep_vae_on_cpu,
            flash_attn=self.flash_attn,
        )
        if self.qwen_image_zero_cond_t:
            kwargs["qwen_image_zero_cond_t"] = True
        if self.lora_dir:
            kwargs["lora_model_dir"] = self.lora_dir
        if self.control_net:
            kwargs["control_net_path"] = self.control_net
        if self.upscale_model:
            kwargs.update(
                upscaler_path=self.upscale_model, upscale_tile_size=self.upscale_tile_size
            )
        return kwargs


def _cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1
