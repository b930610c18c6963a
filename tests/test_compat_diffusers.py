"""The 0.3.x ``extra`` keys on the real Diffusers backend: ``loras_json`` and ``rapid_aio_repo``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
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


# --- normalize_*_request: the request the engine runs, from the registry --------------------


@pytest.fixture(scope="module")
def sd_turbo_cache(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny SD model in a Hub cache under a registry id (stabilityai/sd-turbo: 1 step,
    guidance fixed at 0)."""
    from abstractvision import model_cache

    root = tmp_path_factory.mktemp("turbo")
    shutil.copytree(tiny_sd_dir, root / "legacy")
    cache = str(root / "hub")
    model_cache.ensure_hf_repo_snapshot(
        "stabilityai/sd-turbo", source_dir=root / "legacy", cache_dir=cache
    )
    return cache


def test_engine_runs_the_registry_defaults_that_normalize_returns(
    sd_turbo_cache: str, tiny_sd_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from abstractvision.types import ImageGenerationRequest

    backend = HuggingFaceDiffusersVisionBackend(
        model_id="stabilityai/sd-turbo", device="cpu", cache_dir=sd_turbo_cache
    )
    asked = ImageGenerationRequest(prompt="a cube", width=64, height=64, guidance_scale=7.0, seed=4)
    # on our logger itself: importing abstractcore (an earlier test) sets the root logger to ERROR
    caplog.set_level(logging.WARNING, logger="abstractvision")
    normalized = backend.normalize_image_generation_request(asked)
    assert (normalized.steps, normalized.guidance_scale) == (1, 0.0)  # registry: 1 step, cfg 0
    assert "guidance_scale=7.0 is not used: stabilityai/sd-turbo is step-distilled" in caplog.text
    assert (normalized.width, normalized.height, normalized.seed) == (64, 64, 4)
    assert backend.normalize_image_generation_request(normalized) == normalized  # idempotent

    direct = backend.generate_image(asked)  # the engine fills the same values itself
    via_manager = VisionManager(backend=backend).generate_image(
        "a cube", width=64, height=64, guidance_scale=7.0, seed=4
    )
    assert direct.metadata["steps"] == 1 and direct.metadata["guidance_scale"] == 0.0
    assert via_manager.data == direct.data  # normalized first, then filled again: same run
    same_weights = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device="cpu")
    explicit = same_weights.generate_image(
        ImageGenerationRequest(
            prompt="a cube", width=64, height=64, steps=1, guidance_scale=0.0, seed=4
        )
    )
    assert explicit.data == direct.data
    # a folder the registry does not know: nothing to fill, the pipeline's own defaults run
    plain = ImageGenerationRequest(prompt="a cube", width=64, height=64)
    assert same_weights.normalize_image_generation_request(plain) == plain


def test_normalize_reads_lora_defaults_sizes_and_refusals_from_the_registry() -> None:
    from abstractvision import CapabilityNotSupportedError
    from abstractvision.compat import LoRAAdapterSpec
    from abstractvision.model_capabilities import VisionModelCapabilitiesRegistry
    from abstractvision.types import ImageEditRequest, ImageGenerationRequest

    qwen = HuggingFaceDiffusersVisionBackend(model_id="Qwen/Qwen-Image-2512", device="cpu")
    norm = qwen.normalize_image_generation_request
    lightning = LoRAAdapterSpec(source="lightx2v/Qwen-Image-2512-Lightning")
    eight = LoRAAdapterSpec(
        source="lightx2v/Qwen-Image-2512-Lightning:Qwen-Image-2512-Lightning-8steps-V1.0.safetensors"
    )
    spec = VisionModelCapabilitiesRegistry().param_spec("Qwen/Qwen-Image-2512", "text_to_image")
    plain = norm(ImageGenerationRequest(prompt="fox"))
    assert (plain.steps, plain.guidance_scale) == (spec["steps"].default, 4.0)
    assert (plain.width, plain.height) == (spec["width"].default, spec["height"].default)
    fast = norm(ImageGenerationRequest(prompt="fox", lora_adapters=(lightning,)))
    assert (fast.steps, fast.guidance_scale) == (4, 1.0)
    assert norm(ImageGenerationRequest(prompt="fox", lora_adapters=(eight,))).steps == 8
    mine = norm(ImageGenerationRequest(prompt="fox", lora_adapters=(lightning,), steps=6))
    assert (mine.steps, mine.guidance_scale) == (6, 1.0)  # what the caller set stays
    assert norm(ImageGenerationRequest(prompt="fox", width=520, height=1000)).width == 528

    edit = HuggingFaceDiffusersVisionBackend(model_id="Qwen/Qwen-Image-Edit-2511", device="cpu")
    request = ImageEditRequest(
        prompt="watercolor",
        image=b"\x89PNG not decoded here",
        lora_adapters=(LoRAAdapterSpec(source="lightx2v/Qwen-Image-Edit-2511-Lightning"),),
    )
    assert edit.normalize_image_edit_request(request).steps == 4

    klein = HuggingFaceDiffusersVisionBackend(
        model_id="black-forest-labs/FLUX.2-klein-9B", device="cpu"
    )
    distilled = klein.normalize_image_generation_request(
        ImageGenerationRequest(prompt="fox", negative_prompt="blur", guidance_scale=7.0)
    )
    assert distilled.negative_prompt is None  # Flux2KleinPipeline takes none
    assert (distilled.steps, distilled.guidance_scale) == (4, 1.0)  # fixed: ignored by the model

    glm = HuggingFaceDiffusersVisionBackend(model_id="zai-org/GLM-Image", device="cpu")
    with pytest.raises(CapabilityNotSupportedError, match="takes no control_image"):
        glm.normalize_image_generation_request(
            ImageGenerationRequest(prompt="fox", control_image=b"\x89PNG")
        )
    with_controlnet = HuggingFaceDiffusersVisionBackend(
        model_id="Qwen/Qwen-Image-2512", device="cpu", controlnet="org/a-controlnet"
    )
    kept = with_controlnet.normalize_image_generation_request(
        ImageGenerationRequest(prompt="fox", control_image=b"\x89PNG")
    )
    assert kept.control_image == b"\x89PNG"


def test_normalize_video_request_fills_the_fixed_size_models_defaults() -> None:
    from abstractvision.types import VideoGenerationRequest

    backend = HuggingFaceDiffusersVisionBackend(model_id="zai-org/CogVideoX-2b", device="cpu")
    video = backend.normalize_video_generation_request(VideoGenerationRequest(prompt="fox"))
    got = (video.width, video.height, video.fps, video.num_frames, video.steps)
    assert got == (720, 480, 8, 49, 50) and video.guidance_scale == 6.0


# --- cpu_offload: "auto" by default, as in 0.3.x ------------------------------------------------


def test_cpu_offload_defaults_to_auto_reads_back_and_keeps_a_cpu_model_whole(
    tiny_sd_dir: Path,
) -> None:
    import torch

    from abstractvision import InvalidRequestError
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersBackendConfig

    config = HuggingFaceDiffusersBackendConfig(model_id="m")
    assert (config.enable_model_cpu_offload, config.cpu_offload) == ("auto", "auto")
    for options, mode in (
        ({"enable_model_cpu_offload": False}, "none"),
        ({"enable_model_cpu_offload": True}, "model"),
        ({"enable_sequential_cpu_offload": True}, "sequential"),
    ):
        assert HuggingFaceDiffusersBackendConfig(model_id="m", **options).cpu_offload == mode
    with pytest.warns(DeprecationWarning):
        assert HuggingFaceDiffusersBackendConfig(model_id="m", cpu_offload="none").cpu_offload == (
            "none"
        )
    with pytest.raises(InvalidRequestError, match="enable_model_cpu_offload"):
        HuggingFaceDiffusersBackendConfig(model_id="m", enable_model_cpu_offload="Auto")
    assert HuggingFaceDiffusersBackendConfig(model_id="m", group_offload=True).group_offload

    backend = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device="cpu")
    pipe = backend.get_pipeline("text_to_image")
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    assert modules and all(getattr(m, "_hf_hook", None) is None for m in modules)  # no offload
    assert {p.device.type for m in modules for p in m.parameters()} == {"cpu"}
    backend.unload()


def test_auto_offload_refuses_only_a_model_system_memory_cannot_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from abstractvision import OutOfMemoryError
    from abstractvision.backends._diffusers import memory
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersBackendConfig

    qwen = "Qwen/Qwen-Image-2512"  # 53.7 GiB in bfloat16, its transformer 38 GiB
    auto = HuggingFaceDiffusersBackendConfig(model_id=qwen)
    never = HuggingFaceDiffusersBackendConfig(model_id=qwen, enable_model_cpu_offload=False)
    # no GPU here: only the sizes of one are stood in (the check reads nothing else)
    monkeypatch.setattr(memory, "device_memory_bytes", lambda device: 24 * 2**30)
    monkeypatch.setattr(memory, "system_memory_bytes", lambda: 256 * 2**30)
    memory.check_fits(qwen, "torch.bfloat16", "cuda", auto)  # offloaded (even sequentially)
    with pytest.raises(OutOfMemoryError, match="Enable model CPU offload"):
        memory.check_fits(qwen, "torch.bfloat16", "cuda", never)
    monkeypatch.setattr(memory, "system_memory_bytes", lambda: 32 * 2**30)
    with pytest.raises(OutOfMemoryError, match=r"system memory \(offloaded weights\)"):
        memory.check_fits(qwen, "torch.bfloat16", "cuda", auto)
    monkeypatch.setattr(memory, "device_memory_bytes", lambda device: 80 * 2**30)
    memory.check_fits(qwen, "torch.bfloat16", "cuda", auto)  # fits the card whole


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_unload_gives_the_freed_heap_back_to_the_os(tiny_sd_dir: Path) -> None:
    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    backend = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device="cpu")
    backend.get_pipeline("text_to_image")
    # what freed weights leave: heap blocks below one still in use, which free() cannot return
    blocks = [bytes(4000) for _ in range(50_000)]
    kept = blocks[-1]
    del blocks
    before = rss()
    backend.unload()
    assert rss() < before - 100 * 2**20 and kept


def test_a_registry_model_not_pulled_yet_reports_the_registrys_tasks(tmp_path: Path) -> None:
    from abstractvision import UnknownModelError

    ernie = HuggingFaceDiffusersVisionBackend(
        model_id="baidu/ERNIE-Image-Turbo", device="cpu", cache_dir=str(tmp_path)
    )
    caps = ernie.get_capabilities()
    assert caps.supported_tasks == ("text_to_image",)  # not the image tasks of any folder
    assert not caps.supports_mask and not caps.supports_control_image
    cog = HuggingFaceDiffusersVisionBackend(
        model_id="zai-org/CogVideoX-2b", device="cpu", cache_dir=str(tmp_path)
    )
    assert cog.get_capabilities().supported_tasks == ("text_to_video",)
    with pytest.raises(UnknownModelError, match="abstractvision pull zai-org/CogVideoX-2b"):
        VisionManager(backend=cog).generate_video("a fox", num_frames=9)  # what to do, by name


def test_a_device_this_machine_lacks_is_refused_by_name(tiny_sd_dir: Path) -> None:
    import torch

    from abstractvision import InvalidRequestError
    from abstractvision.types import ImageGenerationRequest

    has = {"mps": torch.backends.mps.is_available(), "cuda:7": torch.cuda.device_count() > 7}
    missing = [device for device, here in has.items() if not here]
    assert missing
    for device in missing:
        backend = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device=device)
        with pytest.raises(InvalidRequestError, match="use auto or cpu") as info:
            backend.generate_image(ImageGenerationRequest(prompt="a cube", width=64, height=64))
        assert info.value.field == "device" and not backend.get_capabilities().loaded_models
