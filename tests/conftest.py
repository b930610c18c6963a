"""Shared fixtures: tiny random-weight Diffusers (and sd.cpp) models, built once per session.

Each ``tiny_*_dir`` fixture is a real model folder (``save_pretrained`` output) under one
session temp dir; load it exactly like a downloaded model. Tests that use them are skipped when
the ``diffusers`` extra (torch, diffusers, transformers, peft) is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Without this a mistyped hub id stalls for minutes on retries; no test may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _require_diffusers() -> None:
    """The tiny models need the diffusers extra; scripts/test installs it, so a miss fails."""
    import diffusers  # noqa: F401
    import peft  # noqa: F401


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session folder holding every tiny model."""
    return tmp_path_factory.mktemp("tiny_models")


def _build_once(root: Path, name: str, builder: Callable[[Path], Path]) -> Path:
    _require_diffusers()
    path = root / name
    if not (path / "model_index.json").exists() and not any(path.glob("*.safetensors")):
        builder(path)
    return path


@pytest.fixture(scope="session")
def build_model_once(tiny_models_root: Path) -> Callable[[str, Callable[[Path], Path]], Path]:
    """``build_model_once(name, builder)``: a tiny model folder, built on first use this session.
    (A fixture, not an import: ``from conftest import`` resolves to tests/mcp/conftest.py in a
    full run.)"""
    return lambda name, builder: _build_once(tiny_models_root, name, builder)


@pytest.fixture(scope="session")
def tiny_sd_dir(tiny_models_root: Path) -> Path:
    """Stable Diffusion (64x64 native, 4-channel UNet): text->image, image->image, inpaint."""
    from tiny_models import build_tiny_sd

    return _build_once(tiny_models_root, "tiny-sd", build_tiny_sd)


@pytest.fixture(scope="session")
def tiny_sd_inpaint_dir(tiny_models_root: Path) -> Path:
    """A dedicated inpainting model (9-channel UNet)."""
    from tiny_models import build_tiny_sd_inpaint

    return _build_once(tiny_models_root, "tiny-sd-inpaint", build_tiny_sd_inpaint)


@pytest.fixture(scope="session")
def tiny_animatediff_dir(tiny_models_root: Path) -> Path:
    """AnimateDiff (text->video) on the tiny SD parts plus a MotionAdapter."""
    from tiny_models import build_tiny_animatediff

    return _build_once(tiny_models_root, "tiny-animatediff", build_tiny_animatediff)


@pytest.fixture(scope="session")
def tiny_svd_dir(tiny_models_root: Path) -> Path:
    """Stable Video Diffusion (image->video)."""
    from tiny_models import build_tiny_svd

    return _build_once(tiny_models_root, "tiny-svd", build_tiny_svd)


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_models_root: Path, tiny_sd_dir: Path) -> Path:
    """A rank-4 UNet LoRA for ``tiny_sd_dir`` (folder holding pytorch_lora_weights.safetensors)."""
    from tiny_models import build_tiny_lora

    return _build_once(
        tiny_models_root, "tiny-lora", lambda path: build_tiny_lora(path, tiny_sd_dir, seed=7)
    )


@pytest.fixture(scope="session")
def tiny_lora_b_dir(tiny_models_root: Path, tiny_sd_dir: Path) -> Path:
    """A second, different LoRA for the same model (to test changing the adapter set)."""
    from tiny_models import build_tiny_lora

    return _build_once(
        tiny_models_root, "tiny-lora-b", lambda path: build_tiny_lora(path, tiny_sd_dir, seed=8)
    )


@pytest.fixture(scope="session")
def sdcpp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sdcpp_models")


@pytest.fixture(scope="session")
def klein_file(sdcpp_dir: Path) -> Path:
    """FLUX.2-klein-shaped sd.cpp model (+ a VAE encoder, for image_to_image), 120 MB f16."""
    from sdcpp_models import load_spec, write_safetensors

    spec = {**load_spec("klein_spec"), **load_spec("klein_vae_encoder_spec")}
    return write_safetensors(spec, sdcpp_dir / "klein.safetensors")
