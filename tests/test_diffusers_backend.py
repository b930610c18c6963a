"""HuggingFaceDiffusersVisionBackend end to end on tiny random-weight models (see conftest).

Every test loads real pipelines from model folders on disk, exactly like a downloaded model.
The only stand-ins are faults that cannot be produced on a CPU (an out-of-memory error).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from abstractvision.backends.huggingface_diffusers import (
    HuggingFaceDiffusersBackendConfig,
    HuggingFaceDiffusersVisionBackend,
)
from abstractvision.control import GenerationControl, ProgressEvent
from abstractvision.errors import (
    BackendError,
    CapabilityNotSupportedError,
    GenerationCancelledError,
    InvalidRequestError,
    OutOfMemoryError,
    UnknownModelError,
)
from abstractvision.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    VideoGenerationRequest,
)

pytestmark = pytest.mark.slow

SIZE = {"width": 64, "height": 64}


# CUDA runs of this file: ABSTRACTVISION_TEST_DEVICE=cuda (CI has no GPU and uses the CPU).
DEVICE = os.environ.get("ABSTRACTVISION_TEST_DEVICE", "cpu")


def t2i(seed: int | None = 1, steps: int = 2, **extra: Any) -> ImageGenerationRequest:
    return ImageGenerationRequest(prompt="a red cube", seed=seed, steps=steps, extra=extra, **SIZE)


def png(color: tuple[int, ...] = (120, 40, 200), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (64, 64), color).save(buf, format="PNG")
    return buf.getvalue()


def half_mask() -> bytes:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # white = change the left half
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    return buf.getvalue()


def decoded_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def video_frames(data: bytes, extension: str) -> int:
    if extension == ".mp4":
        import imageio.v3 as iio

        return int(iio.imread(data, extension=".mp4", index=None).shape[0])
    with Image.open(io.BytesIO(data)) as image:
        return int(getattr(image, "n_frames", 1))


@pytest.fixture(scope="module")
def backend(
    tiny_models_root: Path, tiny_sd_dir: Path, tiny_animatediff_dir: Path, tiny_svd_dir: Path
) -> HuggingFaceDiffusersVisionBackend:
    config = HuggingFaceDiffusersBackendConfig(
        model_id=str(tiny_sd_dir),
        models={"text_to_video": str(tiny_animatediff_dir), "image_to_video": str(tiny_svd_dir)},
        device=DEVICE,
        lora_allowlist=[str(tiny_models_root)],
    )
    return HuggingFaceDiffusersVisionBackend(config=config)


# --- the four tasks produce valid files -------------------------------------------------------


def test_text_to_image_png_at_size_with_timings(backend: HuggingFaceDiffusersVisionBackend) -> None:
    backend.unload()
    first = backend.generate_image(t2i())
    second = backend.generate_image(t2i())
    assert first.mime_type == "image/png" and decoded_size(first.data) == (64, 64)
    meta = first.metadata
    assert meta["seed"] == 1 and meta["steps"] == 2 and (meta["width"], meta["height"]) == (64, 64)
    assert meta["pipeline"] == "StableDiffusionPipeline" and meta["load_s"] > 0
    assert meta["generate_s"] > 0
    assert second.metadata["load_s"] == 0 and second.data == first.data


def test_seed_determinism(backend: HuggingFaceDiffusersVisionBackend) -> None:
    a, b, c = (backend.generate_image(t2i(seed=s)) for s in (5, 5, 6))
    assert a.data == b.data and a.data != c.data
    random_seed = backend.generate_image(t2i(seed=None))
    chosen = random_seed.metadata["seed"]
    assert (
        isinstance(chosen, int)
        and backend.generate_image(t2i(seed=chosen)).data == random_seed.data
    )


def test_image_to_image_and_inpaint_share_weights(
    backend: HuggingFaceDiffusersVisionBackend,
) -> None:
    source = backend.generate_image(t2i()).data
    edit = backend.edit_image(
        ImageEditRequest(prompt="blue", image=source, strength=0.7, steps=3, seed=2)
    )
    painted = backend.edit_image(
        ImageEditRequest(prompt="blue", image=source, mask=half_mask(), steps=3, seed=2)
    )
    assert decoded_size(edit.data) == decoded_size(painted.data) == (64, 64)
    assert edit.metadata["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert painted.metadata["pipeline"] == "StableDiffusionInpaintPipeline"
    pipes = [
        backend.get_pipeline("text_to_image"),
        backend.get_pipeline("image_to_image"),
        backend.get_pipeline("image_to_image", masked=True),
    ]
    assert len({id(p) for p in pipes}) == 3
    for name in ("unet", "vae", "text_encoder"):
        assert len({id(getattr(p, name)) for p in pipes}) == 1, name


def test_edit_resizes_to_requested_size(backend: HuggingFaceDiffusersVisionBackend) -> None:
    request = ImageEditRequest(
        prompt="x", image=png(), width=96, height=64, steps=2, seed=3, output_format="webp"
    )
    asset = backend.edit_image(request)
    assert asset.mime_type == "image/webp" and decoded_size(asset.data) == (96, 64)


def test_dedicated_inpaint_model(tiny_sd_inpaint_dir: Path) -> None:
    backend = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_inpaint_dir), device=DEVICE)
    caps = backend.get_capabilities()
    assert caps.supported_tasks == ("image_to_image",) and caps.supports_mask
    asset = backend.edit_image(ImageEditRequest(prompt="x", image=png(), mask=half_mask(), steps=2))
    assert decoded_size(asset.data) == (64, 64)
    with pytest.raises(CapabilityNotSupportedError, match="text_to_image"):
        backend.generate_image(t2i())


@pytest.mark.parametrize(("fmt", "ext"), [(None, ".mp4"), ("webp", ".webp"), ("gif", ".gif")])
def test_text_to_video_frames(
    backend: HuggingFaceDiffusersVisionBackend, fmt: str | None, ext: str
) -> None:
    request = VideoGenerationRequest(
        prompt="a cube", num_frames=5, fps=6, steps=2, seed=1, output_format=fmt, **SIZE
    )
    asset = backend.generate_video(request)
    assert asset.media_type == "video" and asset.mime_type.endswith(
        ext.lstrip(".").replace("mp4", "mp4")
    )
    assert video_frames(asset.data, ext) == 5
    assert asset.metadata["num_frames"] == 5 and asset.metadata["fps"] == 6
    assert asset.metadata["pipeline"] == "AnimateDiffPipeline"
    assert asset.preview_mime_type == "image/webp" and video_frames(asset.preview, ".webp") == 5


def test_video_preview_is_stored_beside_the_video(
    backend: HuggingFaceDiffusersVisionBackend, tmp_path: Path
) -> None:
    from abstractvision import LocalAssetStore, VisionManager
    from abstractvision.media import video_info

    store = LocalAssetStore(tmp_path)
    ref = VisionManager(backend=backend, store=store).generate_video(
        "a cube", num_frames=5, fps=6, steps=2, seed=1, **SIZE
    )
    assert ref["content_type"] == "video/mp4"
    preview = ref["metadata"]["preview"]
    info = video_info(store.load_bytes(preview["$artifact"]))
    assert (info.format, info.n_frames) == ("webp", 5) and max(info.width, info.height) <= 256
    assert len(store.list_artifacts()) == 2


def test_image_to_video_frames(backend: HuggingFaceDiffusersVisionBackend) -> None:
    request = ImageToVideoRequest(image=png(), num_frames=4, steps=2, seed=1, **SIZE)
    asset = backend.image_to_video(request)
    assert asset.mime_type == "video/mp4" and video_frames(asset.data, ".mp4") == 4
    meta = asset.metadata
    assert meta["pipeline"] == "StableVideoDiffusionPipeline" and meta["fps"] == 7
    assert (meta["width"], meta["height"], meta["num_frames"]) == (64, 64, 4)


def test_frame_rule_checked_before_loading(tmp_path: Path) -> None:
    folder = tmp_path / "wan-shaped"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    backend = HuggingFaceDiffusersVisionBackend(
        models={"text_to_video": str(folder)}, device=DEVICE
    )
    caps = backend.get_capabilities()
    assert caps.supported_tasks == ("text_to_video",)
    assert caps.frame_rules == {"text_to_video": "4k+1"}
    with pytest.raises(InvalidRequestError, match=r"4k\+1 \(e\.g\. 9 or 13\)"):
        backend.generate_video(VideoGenerationRequest(prompt="x", num_frames=10))


# --- capabilities and configuration ------------------------------------------------------------


def test_capabilities_from_model_classes(backend: HuggingFaceDiffusersVisionBackend) -> None:
    caps = backend.get_capabilities()
    assert caps.supported_tasks == (
        "text_to_image",
        "image_to_image",
        "text_to_video",
        "image_to_video",
    )
    assert caps.supports_mask and {
        "scheduler",
        "loras",
        "guidance_scale_2",
        "max_sequence_length",
    } <= set(caps.extra_keys)
    assert caps.models["text_to_video"] == (backend.config.models["text_to_video"][0],)
    assert caps.models["text_to_image"] == (backend.config.model_id,)
    assert caps.supports("multi_view_image") is False


def test_extra_keys_scheduler(backend: HuggingFaceDiffusersVisionBackend) -> None:
    base = backend.generate_image(t2i())
    euler = backend.generate_image(t2i(scheduler="euler"))
    assert euler.metadata["scheduler"] == "euler" and euler.data != base.data
    assert backend.generate_image(t2i()).data == base.data  # model's own scheduler again
    with pytest.raises(InvalidRequestError, match=r"extra.bogus"):
        backend.generate_image(t2i(bogus=1))
    with pytest.raises(CapabilityNotSupportedError, match="does not suit"):
        backend.generate_image(t2i(scheduler="flow_euler"))


def test_config_validation() -> None:
    with pytest.raises(InvalidRequestError, match="models"):
        HuggingFaceDiffusersBackendConfig(models={"paint": "x/y"})
    with pytest.raises(InvalidRequestError, match="torch_dtype"):
        HuggingFaceDiffusersBackendConfig(torch_dtype="float8")


def test_import_loads_no_torch() -> None:
    code = (
        "import sys, abstractvision.backends as b; "
        "b.HuggingFaceDiffusersVisionBackend(model_id='x/y'); "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- LoRA ----------------------------------------------------------------------------------------


def test_lora_apply_change_and_remove(
    backend: HuggingFaceDiffusersVisionBackend, tiny_lora_dir: Path, tiny_lora_b_dir: Path
) -> None:
    base = backend.generate_image(t2i()).data
    lora_a = [{"source": str(tiny_lora_dir), "weight": 1.0}]
    with_a = backend.generate_image(t2i(loras=lora_a))
    assert with_a.data != base and with_a.metadata["loras"] == lora_a
    half_a = backend.generate_image(t2i(loras=[{"source": str(tiny_lora_dir), "weight": 0.5}]))
    assert half_a.data not in (base, with_a.data)
    weights_file = tiny_lora_b_dir / "pytorch_lora_weights.safetensors"
    with_b = backend.generate_image(t2i(loras=[{"source": str(weights_file), "weight": 1.0}]))
    assert with_b.data not in (base, with_a.data)
    again_a = backend.generate_image(t2i(loras=lora_a))
    assert again_a.data == with_a.data and again_a.metadata["load_s"] == 0  # cached adapter
    assert backend.generate_image(t2i()).data == base  # removed: base model bytes again


def test_lora_weight_name_picks_one_file_of_several(
    backend: HuggingFaceDiffusersVisionBackend,
    tiny_models_root: Path,
    tiny_lora_dir: Path,
    tiny_lora_b_dir: Path,
) -> None:
    """A repo/folder holding several LoRA files: ``weight_name`` says which (as hub repos need)."""
    both = tiny_models_root / "two-loras"
    both.mkdir(exist_ok=True)
    name = "pytorch_lora_weights.safetensors"
    for label, folder in (("a", tiny_lora_dir), ("b", tiny_lora_b_dir)):
        (both / f"{label}.safetensors").write_bytes((folder / name).read_bytes())
    by_name = {
        label: backend.generate_image(
            t2i(loras=[{"source": str(both), "weight": 1.0, "weight_name": f"{label}.safetensors"}])
        ).data
        for label in ("a", "b")
    }
    direct_a = backend.generate_image(t2i(loras=[{"source": str(tiny_lora_dir), "weight": 1.0}]))
    assert by_name["a"] == direct_a.data and by_name["b"] != by_name["a"]
    with pytest.raises(InvalidRequestError, match="weight_name"):
        backend.generate_image(
            t2i(loras=[{"source": str(both), "weight": 1.0, "weight_name": "../x.safetensors"}])
        )


def test_lora_outside_allowlist_is_refused(
    backend: HuggingFaceDiffusersVisionBackend, tmp_path: Path
) -> None:
    with pytest.raises(CapabilityNotSupportedError, match="lora_allowlist"):
        backend.generate_image(t2i(loras=[{"source": str(tmp_path), "weight": 1.0}]))
    with pytest.raises(CapabilityNotSupportedError, match="not allowed"):
        backend.generate_image(t2i(loras=[{"source": "someone/style-lora", "weight": 1.0}]))
    with pytest.raises(InvalidRequestError, match="weight"):
        backend.generate_image(t2i(loras=[{"source": str(tmp_path), "weight": "high"}]))


# --- progress, cancellation, thread safety --------------------------------------------------------


def test_progress_reports_every_step(backend: HuggingFaceDiffusersVisionBackend) -> None:
    events: list[ProgressEvent] = []
    backend.generate_image(t2i(steps=4), control=GenerationControl(events.append))
    assert [(e.step, e.total) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_mid_run_stores_nothing(
    backend: HuggingFaceDiffusersVisionBackend, tmp_path: Path
) -> None:
    from abstractvision import LocalAssetStore, VisionManager

    store = LocalAssetStore(tmp_path / "assets")
    manager = VisionManager(backend=backend, store=store)
    steps: list[int] = []

    def on_progress(event: ProgressEvent) -> None:
        steps.append(event.step)
        if event.step == 2:
            control.cancel()

    control = GenerationControl(on_progress)
    with pytest.raises(GenerationCancelledError):
        manager.generate_image("a red cube", steps=5, seed=1, control=control, **SIZE)
    assert steps == [1, 2] and store.list_artifacts() == []
    ref = manager.generate_image("a red cube", steps=2, seed=1, **SIZE)
    assert isinstance(ref, dict) and len(store.list_artifacts()) == 1


def test_cancel_video_pipeline_without_interrupt_flag(
    backend: HuggingFaceDiffusersVisionBackend,
) -> None:
    control = GenerationControl(lambda e: control.cancel())
    with pytest.raises(GenerationCancelledError):
        backend.image_to_video(
            ImageToVideoRequest(image=png(), num_frames=4, steps=3, **SIZE), control=control
        )


def test_threads_share_one_backend(backend: HuggingFaceDiffusersVisionBackend) -> None:
    expected = backend.generate_image(t2i(seed=9)).data
    results: list[bytes] = []

    def work() -> None:
        results.append(backend.generate_image(t2i(seed=9)).data)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [expected] * 3


# --- failures leave the backend usable -----------------------------------------------------------


def test_missing_hub_model_fails_fast_without_network() -> None:
    backend = HuggingFaceDiffusersVisionBackend(
        model_id="nobody-here/not-a-model-xyz", device=DEVICE
    )
    with pytest.raises(UnknownModelError, match=r"not in the local cache.*allow_download"):
        backend.generate_image(t2i())


def test_missing_local_folder(tmp_path: Path) -> None:
    backend = HuggingFaceDiffusersVisionBackend(model_id=str(tmp_path / "nope"), device=DEVICE)
    with pytest.raises(UnknownModelError, match=r"model_index.json"):
        backend.generate_image(t2i())


def test_pipeline_class_missing_from_diffusers(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FutureVisionPipeline"}))
    backend = HuggingFaceDiffusersVisionBackend(model_id=str(tmp_path), device=DEVICE)
    with pytest.raises(BackendError, match=r"FutureVisionPipeline.*pip install -U diffusers"):
        backend.generate_image(t2i())


def test_out_of_memory_is_typed_and_recoverable(
    backend: HuggingFaceDiffusersVisionBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    unet = backend.get_pipeline("text_to_image").unet

    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated: no GPU here)")

    monkeypatch.setattr(unet, "forward", no_memory)
    with pytest.raises(OutOfMemoryError, match="smaller width/height"):
        backend.generate_image(t2i())
    monkeypatch.undo()
    assert decoded_size(backend.generate_image(t2i()).data) == (64, 64)


def test_all_nan_output_is_an_error(tiny_sd_dir: Path) -> None:
    import torch

    backend = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device=DEVICE)
    vae = backend.get_pipeline("text_to_image").vae
    with torch.no_grad():
        vae.decoder.conv_out.bias.fill_(float("nan"))
    with pytest.raises(BackendError, match=r"NaN.*float32"):
        backend.generate_image(t2i())
    backend.unload()  # reloads clean weights from disk
    assert decoded_size(backend.generate_image(t2i()).data) == (64, 64)


def test_eviction_under_memory_budget(tiny_sd_dir: Path, tiny_animatediff_dir: Path) -> None:
    backend = HuggingFaceDiffusersVisionBackend(
        model_id=str(tiny_sd_dir),
        models={"text_to_video": str(tiny_animatediff_dir)},
        device=DEVICE,
        memory_budget_bytes=1,
    )
    backend.preload()
    assert backend.get_capabilities().loaded_models == (str(tiny_sd_dir.resolve()),)
    backend.generate_video(VideoGenerationRequest(prompt="x", num_frames=2, steps=1, **SIZE))
    assert backend.get_capabilities().loaded_models == (str(tiny_animatediff_dir.resolve()),)
    again = backend.generate_image(t2i())
    assert again.metadata["load_s"] > 0  # evicted, so loaded again
    backend.unload()
    assert backend.get_capabilities().loaded_models == ()


def test_missing_diffusers_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['diffusers'] = None\n"  # as if the extra were not installed
        "from abstractvision.backends import create_backend\n"
        "from abstractvision.errors import OptionalDependencyMissingError\n"
        "from abstractvision.types import ImageGenerationRequest\n"
        "backend = create_backend('diffusers', model_id='a/b')\n"
        "try:\n"
        "    backend.generate_image(ImageGenerationRequest(prompt='x'))\n"
        "except OptionalDependencyMissingError as exc:\n"
        "    assert 'abstractvision[diffusers]' in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_edit_steps_that_leave_no_denoising_step_are_refused_up_front(
    backend: HuggingFaceDiffusersVisionBackend,
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        backend.edit_image(ImageEditRequest(prompt="x", image=png(), steps=1, strength=0.5))
    assert info.value.field == "steps" and "steps >= 2" in info.value.limit
    events: list[ProgressEvent] = []
    asset = backend.edit_image(
        ImageEditRequest(prompt="x", image=png(), steps=4, strength=0.5, seed=1),
        control=GenerationControl(events.append),
    )
    assert asset.metadata["steps"] == 2  # what ran: the last half of a 4-step schedule
    assert [(e.step, e.total) for e in events] == [(1, 2), (2, 2)]
