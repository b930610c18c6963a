"""Tiny random-weight control pipelines, built locally (no download).

- ``build_tiny_sd_controlnet``: StableDiffusionControlNetPipeline = the tiny SD parts plus a
  ControlNetModel mirroring the UNet's channels. A fresh ControlNet's output convolutions are
  zero (it starts as a no-op), so they get random weights here: the control must matter.
- ``build_tiny_flux_control``: FluxControlPipeline (FLUX.1 Canny/Depth shape): the control
  image's packed latents are extra transformer input channels (in_channels 8 = 4 + 4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiny_models import SD_NO_SAFETY, _sd_parts, save, sd_unet_down, seed

__all__ = [
    "build_tiny_controlnet",
    "build_tiny_flux_control",
    "build_tiny_qwen_controlnet",
    "build_tiny_sd_controlnet",
]


def _controlnet() -> Any:
    import torch
    from diffusers import ControlNetModel

    seed(5)
    controlnet = ControlNetModel(
        in_channels=4, conditioning_embedding_out_channels=(4, 4, 8, 8), **sd_unet_down()
    )
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            module.weight.normal_(0, 0.5)
            module.bias.normal_(0, 0.1)
        last = controlnet.controlnet_cond_embedding.conv_out
        last.weight.normal_(0, 0.5)
    return controlnet


def build_tiny_controlnet(path: Path) -> Path:
    """The ControlNetModel alone (for the backend's ``controlnet`` option over the tiny SD)."""
    return save(_controlnet(), path)


def build_tiny_sd_controlnet(path: Path) -> Path:
    """A saved StableDiffusionControlNetPipeline: the tiny SD parts + the same ControlNet."""
    from diffusers import StableDiffusionControlNetPipeline

    pipe = StableDiffusionControlNetPipeline(
        **_sd_parts(), controlnet=_controlnet(), **SD_NO_SAFETY
    )
    return save(pipe, path)


def build_tiny_flux_control(path: Path) -> Path:
    from diffusers import FluxControlPipeline
    from tiny_families import _flux  # the shared FLUX.1 parts (tests/tiny_families.py)

    return save(FluxControlPipeline(**_flux(in_channels=8, out_channels=4)()), path)


def build_tiny_qwen_controlnet(path: Path) -> Path:
    """A QwenImageControlNetModel matching the tiny Qwen-Image transformer (tests/tiny_families),
    its output projections given random weights (a fresh ControlNet starts as a no-op)."""
    import torch
    from diffusers import QwenImageControlNetModel
    from tiny_families import QWEN_IMAGE_DIT

    seed(6)
    model = QwenImageControlNetModel(**QWEN_IMAGE_DIT)
    with torch.no_grad():
        for module in [*model.controlnet_blocks, model.controlnet_x_embedder]:
            module.weight.normal_(0, 0.5)
    return save(model, path)
