"""The registry's model facts checked against the installed Diffusers, 0.3.34's ids, and memory.

- every Diffusers pipeline class the registry names exists and takes the arguments we pass for
  the parameters the registry documents (its ``__call__`` signature);
- video frame rules agree with the backend's table for the class;
- every id of 0.3.34's registry resolves (as an id or an alias of a renamed repo);
- memory figures are computed from published parameter counts, printed by ``show-model``, and
  the backend refuses up front, with the figure, a model that cannot fit.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from abstractvision.errors import OutOfMemoryError
from abstractvision.model_capabilities import VisionModelCapabilitiesRegistry

REGISTRY = VisionModelCapabilitiesRegistry()
OLD_IDS = [
    line.strip()
    for line in (Path(__file__).parent / "data" / "registry_ids_0_3_34.txt")
    .read_text()
    .splitlines()
    if line.strip() and not line.startswith("#")
]
# registry parameter -> the pipeline __call__ argument(s) the backend passes it as
ARGUMENT = {
    "width": "width",
    "height": "height",
    "steps": "num_inference_steps",
    # SVD ramps guidance up to max_guidance_scale; Stable Cascade guides its prior
    "guidance_scale": ("guidance_scale", "max_guidance_scale", "prior_guidance_scale"),
    "true_cfg_scale": "true_cfg_scale",
    "strength": "strength",
    "num_frames": "num_frames",
    "guidance_scale_2": "guidance_scale_2",
}
DIFFUSERS_MODELS = [m for m in REGISTRY.list_models() if REGISTRY.get(m).engines.diffusers]


def test_registry_is_a_superset_of_0_3_34() -> None:
    assert len(OLD_IDS) == 68
    missing = [i for i in OLD_IDS if i not in REGISTRY]
    assert not missing
    # a renamed repo resolves to its entry without a second copy of its facts
    assert REGISTRY.get("runwayml/stable-diffusion-v1-5").id == (
        "stable-diffusion-v1-5/stable-diffusion-v1-5"
    )
    assert "runwayml/stable-diffusion-v1-5" not in REGISTRY.list_models()
    assert REGISTRY.supports("zai-org/CogVideoX-2b", "text_to_video")
    assert REGISTRY.get("Qwen/Qwen-Image-2512").family == "qwen-image"


def test_the_frontier_families_are_listed() -> None:
    families = {REGISTRY.get(m).family for m in REGISTRY.list_models()}
    wanted = {
        "sdxl", "sd3", "flux1", "flux2", "qwen-image", "z-image", "wan", "ltx-video", "ltx-2",
        "cogvideox", "hunyuanvideo", "hunyuanvideo-1.5", "glm-image", "hunyuan-image",
        "cogview4", "lumina2", "hidream", "kolors", "pixart-sigma", "stable-cascade", "mochi",
        "instruct-pix2pix",
    }  # fmt: skip
    assert wanted <= families, wanted - families
    for model_id in (
        "black-forest-labs/FLUX.1-Fill-dev",
        "black-forest-labs/FLUX.1-Canny-dev",
        "black-forest-labs/FLUX.1-Depth-dev",
        "black-forest-labs/FLUX.1-Krea-dev",
        "black-forest-labs/FLUX.2-klein-9B",
        "black-forest-labs/FLUX.2-klein-base-4B",
        "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        "Lightricks/LTX-2",
    ):
        assert model_id in REGISTRY


@pytest.mark.parametrize("model_id", DIFFUSERS_MODELS)
def test_pipeline_classes_exist_and_take_our_arguments(model_id: str) -> None:
    diffusers = pytest.importorskip("diffusers")
    model = REGISTRY.get(model_id)
    engine = model.engines.diffusers
    assert engine is not None
    classes = dict(engine.pipelines)
    for task, class_name in classes.items():
        cls = getattr(diffusers, class_name, None)
        assert cls is not None, f"{model_id}: diffusers {diffusers.__version__} lacks {class_name}"
        if type(cls).__name__ == "DummyObject":  # exported, but an optional module is missing
            pytest.skip(f"{class_name} needs {', '.join(cls._backends)} (not installed)")
        params = inspect.signature(cls.__call__).parameters
        for name in model.tasks[task].params:
            if name in ("fps", "scale"):  # fps: metadata / micro-conditioning; scale: upscalers
                continue
            if name == "guidance_scale" and "guider" in inspect.signature(cls).parameters:
                continue
            wanted = ARGUMENT[name] if isinstance(ARGUMENT[name], tuple) else (ARGUMENT[name],)
            assert set(wanted) & set(params), f"{model_id} {task}: {class_name} takes no {name}"
        assert "generator" in params  # seeds reach it
        assert "prompt" in params or "image" in params  # SVD / LDM-SR: the image is the prompt
    if engine.inpaint_pipeline:
        assert (
            "mask_image"
            in inspect.signature(getattr(diffusers, engine.inpaint_pipeline).__call__).parameters
        )


@pytest.mark.parametrize("model_id", DIFFUSERS_MODELS)
def test_video_frame_rules_agree_with_the_backend(model_id: str) -> None:
    from abstractvision.backends._diffusers.families import VIDEO_PIPELINES

    model = REGISTRY.get(model_id)
    for task, class_name in model.engines.diffusers.pipelines.items():
        if str(task) not in ("text_to_video", "image_to_video"):
            continue
        family = VIDEO_PIPELINES[class_name]
        assert family.task == str(task)
        frames = model.tasks[task].params.get("num_frames")
        if frames is not None and frames.frame_rule:
            step, offset = frames.frame_step()
            # the registry may be stricter (CogVideoX 1.5: 16k+1) but never looser
            assert step % family.frame_step == 0 and offset == family.frame_offset, model_id
            assert frames.allows(frames.default)


def test_memory_is_computed_from_published_parameter_counts() -> None:
    qwen = REGISTRY.get("Qwen/Qwen-Image-2512")
    assert qwen.total_parameters_b == pytest.approx(20.4 + 8.29 + 0.127)
    assert qwen.memory_bytes() == pytest.approx(qwen.total_parameters_b * 1e9 * 2)  # bf16
    assert qwen.memory_bytes("float32") == pytest.approx(2 * qwen.memory_bytes())
    with_counts = [m for m in DIFFUSERS_MODELS if REGISTRY.get(m).parameters_b]
    assert len(with_counts) >= len(DIFFUSERS_MODELS) - 6  # all but a few unpublished ones


def test_show_model_prints_memory() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "abstractvision", "show-model", "black-forest-labs/FLUX.2-dev"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "memory:  104.5 GiB of weights at bfloat16 (56.084B parameters" in out
    data = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "abstractvision",
                "show-model",
                "--json",
                "runwayml/stable-diffusion-v1-5",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert data["id"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert data["memory"]["default_dtype"] == "float16"
    assert data["memory"]["weights_gib"]["float32"] == round(1.067e9 * 4 / 2**30, 1)


def _options(**kw: object) -> SimpleNamespace:
    base = {"enable_model_cpu_offload": False, "enable_sequential_cpu_offload": False}
    return SimpleNamespace(**{**base, **kw})


def test_a_model_that_cannot_fit_is_refused_with_its_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry model in the Hub cache (model_index.json only) is refused before any weight."""
    pytest.importorskip("diffusers")
    from abstractvision.backends._diffusers import memory
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    need = REGISTRY.get("black-forest-labs/FLUX.2-dev").memory_bytes("float32")
    system = memory.system_memory_bytes()
    if system is None or system >= need:
        pytest.skip("this machine could hold FLUX.2 [dev] in float32")
    snapshot = tmp_path / "models--black-forest-labs--FLUX.2-dev"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("a" * 40)
    folder = snapshot / "snapshots" / ("a" * 40)
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "Flux2Pipeline"}))
    backend = HuggingFaceDiffusersVisionBackend(
        model_id="black-forest-labs/FLUX.2-dev", device="cpu", cache_dir=str(tmp_path)
    )
    with pytest.raises(OutOfMemoryError, match=r"needs 208\.9 GiB for its weights at float32"):
        backend.preload()
    # on a GPU (none here: only its size is stood in) the same figures decide with offload
    gpu = {"gib": 80}
    monkeypatch.setattr(memory, "device_memory_bytes", lambda device: gpu["gib"] * 2**30)
    monkeypatch.setattr(memory, "system_memory_bytes", lambda: 256 * 2**30)
    qwen = "Qwen/Qwen-Image-2512"  # 53.7 GiB in bfloat16, its transformer 38 GiB
    memory.check_fits(qwen, "torch.bfloat16", "cuda", _options())
    gpu["gib"] = 24
    with pytest.raises(OutOfMemoryError, match="Enable model CPU offload"):
        memory.check_fits(qwen, "torch.bfloat16", "cuda", _options())
    with pytest.raises(OutOfMemoryError, match="sequential CPU offload"):
        memory.check_fits(qwen, "torch.bfloat16", "cuda", _options(enable_model_cpu_offload=True))
    memory.check_fits(qwen, "torch.bfloat16", "cuda", _options(enable_sequential_cpu_offload=True))


def test_small_and_unknown_models_pass_the_check() -> None:
    from abstractvision.backends._diffusers import memory

    memory.check_fits(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", "torch.float32", "cpu", _options()
    )
    memory.check_fits("/some/local/folder", "torch.float32", "cpu", _options())
    memory.check_fits("Qwen/Qwen-Image", "torch.float32", "cpu", _options(quantize="int8"))


def test_aliases_resolve_to_loadable_diffusers_repos() -> None:
    """An alias names the original-format repo; the entry it resolves to is the Diffusers one
    the backend loads (canonical_source), never the other way round."""
    from abstractvision.backends._diffusers.families import canonical_source

    for model_id in REGISTRY.list_models():
        model = REGISTRY.get(model_id)
        for alias in model.aliases:
            assert canonical_source(alias) == model_id
            assert not alias.endswith("-Diffusers"), f"{alias} should be the entry, not an alias"
    assert canonical_source("tencent/HunyuanVideo-1.5").startswith("hunyuanvideo-community/")
    assert canonical_source("Wan-AI/Wan2.2-T2V-A14B") == "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
