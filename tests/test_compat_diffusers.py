"""The 0.3.x ``extra`` keys on the real Diffusers backend: ``loras_json`` and ``rapid_aio_repo``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from abstractvision import VisionManager
from abstractvision.backends import HuggingFaceDiffusersVisionBackend

pytestmark = pytest.mark.slow


def test_loras_json_with_scale_is_the_same_call_as_extra_loras(
    tiny_sd_dir: Path, tiny_lora_dir: Path, tiny_models_root: Path
) -> None:
    backend = HuggingFaceDiffusersVisionBackend(
        model_id=str(tiny_sd_dir), device="cpu", lora_allowlist=[str(tiny_models_root)]
    )
    vm = VisionManager(backend=backend)
    args = {"width": 64, "height": 64, "steps": 2, "seed": 5}
    new = vm.generate_image(
        "a cube", extra={"loras": [{"source": str(tiny_lora_dir), "weight": 0.7}]}, **args
    )
    old = vm.generate_image(
        "a cube",
        extra={"loras_json": json.dumps([{"path": str(tiny_lora_dir), "scale": 0.7}])},
        **args,
    )
    plain = vm.generate_image("a cube", **args)
    assert [a.id for a in vm.list_provider_adapters()] == [str(tiny_models_root)]
    assert old.data == new.data != plain.data
    assert old.metadata["loras"] == [{"source": str(tiny_lora_dir), "weight": 0.7}]


@pytest.fixture(scope="module")
def flux_and_rapid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny FLUX model, a "rapid" repo holding another transformer, and the model with it."""
    import torch
    from diffusers import FluxTransformer2DModel
    from tiny_dit import build_tiny_flux

    root = tmp_path_factory.mktemp("rapid")
    base = build_tiny_flux(root / "flux")
    transformer = FluxTransformer2DModel.from_pretrained(base / "transformer")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in transformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rapid = root / "rapid"
    transformer.save_pretrained(rapid / "transformer")
    swapped = root / "flux-swapped"
    shutil.copytree(base, swapped)
    shutil.rmtree(swapped / "transformer")
    shutil.copytree(rapid / "transformer", swapped / "transformer")
    return base, rapid, swapped


def test_rapid_aio_repo_runs_one_call_with_that_transformer(flux_and_rapid) -> None:  # type: ignore[no-untyped-def]
    base, rapid, swapped = flux_and_rapid
    args = {"width": 64, "height": 64, "steps": 2, "seed": 3}
    vm = VisionManager(backend=HuggingFaceDiffusersVisionBackend(model_id=str(base), device="cpu"))
    before = vm.generate_image("a cube", **args).data
    fast = vm.generate_image("a cube", extra={"rapid_aio_repo": str(rapid)}, **args)
    after = vm.generate_image("a cube", **args).data
    reference = VisionManager(
        backend=HuggingFaceDiffusersVisionBackend(model_id=str(swapped), device="cpu")
    ).generate_image("a cube", **args)
    assert fast.data == reference.data != before
    assert after == before  # the model's own transformer is back
    from abstractvision import UnknownModelError

    with pytest.raises(UnknownModelError, match="rapid_aio_repo"):
        vm.generate_image("a cube", extra={"rapid_aio_repo": str(base / "nowhere")}, **args)
