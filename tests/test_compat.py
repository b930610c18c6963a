"""abstractvision 0.3.x users keep working: import cost, old names, old configs, old backends."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from abstractvision import (
    CapabilityNotSupportedError,
    GeneratedAsset,
    InvalidRequestError,
    VisionManager,
)
from abstractvision.backends import VisionBackend

ROOT = Path(__file__).resolve().parents[1]
OLD_EXTRAS = (
    "openai openai-compatible diffusers sdcpp mlx-gen mflux apple gpu huggingface local all "
    "all-apple all-gpu diffusers-dev huggingface-dev abstractcore models test docs dev"
)
HEAVY = ("PIL", "pydantic", "torch", "diffusers", "transformers", "mcp", "numpy", "httpx")


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return out.stdout


def test_import_abstractvision_is_light_until_a_name_is_used() -> None:
    code = (
        "import sys, json, time\n"
        "t = time.perf_counter(); import abstractvision; dt = time.perf_counter() - t\n"
        f"heavy = lambda: sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "before = heavy(); abstractvision.VisionManager; after = heavy()\n"
        "print(json.dumps([before, after, abstractvision.__version__]))\n"
        "print(f'import abstractvision: {dt * 1000:.1f} ms', file=sys.stderr)\n"
    )
    before, after, version = json.loads(_run(code))
    assert before == []
    assert "PIL" in after and "pydantic" in after  # loaded on use
    assert version == "0.4.0"


def test_python_dash_m_abstractvision_and_the_mcp_extra_message() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "abstractvision", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == "abstractvision 0.4.0"
    code = (
        "import sys; sys.modules['mcp'] = None  # as if the extra were not installed\n"
        "from mcp_server.__main__ import main; sys.exit(main(['--help']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "pip install 'abstractvision[mcp]'" in out.stderr


def test_extras_of_0_3_34_are_kept_and_mcp_is_not_a_base_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(OLD_EXTRAS.split())  # abstractvision 0.3.34's pyproject
    assert wanted <= set(project["optional-dependencies"])
    assert not any(d.startswith(("mcp", "uvicorn", "starlette")) for d in project["dependencies"])
    assert any(d.startswith("mcp") for d in project["optional-dependencies"]["mcp"])
    plugins = project["entry-points"]["abstractcore.capabilities_plugins"]
    assert plugins == {"abstractvision": "abstractvision.integrations.abstractcore_plugin:register"}


def test_all_gpu_spells_out_the_sdcpp_extra_except_on_windows() -> None:
    """0.3.x's all-gpu names stable-diffusion-cpp-python itself, marked out on Windows (no wheel
    there); its lines must stay the sdcpp extra's, so the two cannot drift apart."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    windows_out = [f"{req}; sys_platform != 'win32'" for req in extras["sdcpp"]]
    assert extras["all-gpu"] == ["abstractvision[diffusers]", *windows_out]
    assert any(req.startswith("stable-diffusion-cpp-python") for req in extras["sdcpp"])


def test_removed_public_names_are_back_and_real() -> None:
    from abstractvision import LoRAAdapterSpec, ProviderModelInfo, VisionModelCapabilitiesRegistry
    from abstractvision.model_capabilities import PACKAGED_PATH, validate_capabilities_json
    from abstractvision.types import ImageGenerationRequest, ProviderAdapterInfo  # noqa: F401

    reg = VisionModelCapabilitiesRegistry()
    assert reg.schema_version() == "1"
    model = reg.models_for_task("text_to_image")[0]
    assert list(reg.iter_task_specs(model)) == list(reg.get(model).tasks.values())
    validate_capabilities_json(json.loads(PACKAGED_PATH.read_text()))
    with pytest.raises(ValueError, match="models"):
        validate_capabilities_json({"schema_version": 1, "tasks": {}})
    with pytest.warns(DeprecationWarning, match="use path"):
        assert VisionModelCapabilitiesRegistry(asset_path=str(PACKAGED_PATH)).list_models()

    # a LoRAAdapterSpec (0.3.x shape, scale) becomes an extra.loras entry (weight)
    with pytest.warns(DeprecationWarning, match="extra"):
        request = ImageGenerationRequest(
            prompt="x", lora_adapters=[LoRAAdapterSpec(source="/loras/a", scale=0.5)]
        )
    assert request.extra == {"loras": [{"source": "/loras/a", "weight": 0.5}]}
    info = ProviderModelInfo(id="m", capabilities=("text_to_image",))
    assert info.object == "model"


def test_loras_json_and_repo_file_sources_map_onto_extra_loras() -> None:
    from http_servers import png

    from abstractvision.types import ImageEditRequest

    extra = {"loras_json": json.dumps([{"source": "org/repo:file.safetensors", "scale": 0.8}])}
    request = ImageEditRequest(prompt="x", image=png(), extra=extra)
    assert request.extra == {
        "loras": [{"source": "org/repo", "weight": 0.8, "weight_name": "file.safetensors"}]
    }
    with pytest.raises(InvalidRequestError) as info:
        ImageEditRequest(prompt="x", image=png(), extra={"loras_json": "[{oops"})
    assert info.value.field == "extra.loras_json"


class OldStyleBackend(VisionBackend):
    """Written for 0.3.x: no get_capabilities, no control= keyword, NotImplementedError stubs."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    def generate_image(self, request):  # type: ignore[no-untyped-def]
        self.seen.append(request)
        return GeneratedAsset("image", b"PNG!" + request.prompt.encode(), "image/png")

    def generate_video(self, request):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_old_style_backend_runs_with_permissive_capabilities() -> None:
    backend = OldStyleBackend()
    caps = backend.get_capabilities()
    assert set(caps.supported_tasks) == {"text_to_image", "text_to_video"}
    vm = VisionManager(backend=backend)
    asset = vm.generate_image("cat", extra={"anything": 1})
    assert asset.data == b"PNG!cat" and backend.seen[0].extra == {"anything": 1}
    with pytest.raises(CapabilityNotSupportedError, match="text_to_video"):
        vm.generate_video("cat")
    with pytest.raises(CapabilityNotSupportedError):
        vm.edit_image("cat", b"x")


def test_old_diffusers_config_names_warn_and_keep_their_behaviour() -> None:
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig
    from abstractvision.backends._diffusers.loading import offload_for

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = HuggingFaceDiffusersBackendConfig(
            model_id="m",
            cpu_offload="auto",
            auto_retry_fp32=True,
            use_safetensors=True,
            low_cpu_mem_usage=True,
            torch_dtype=None,
        )
    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
    assert len(messages) == 5
    assert any("enable_model_cpu_offload='auto'" in m for m in messages)
    assert any("torch_dtype='auto'" in m for m in messages)
    assert cfg.enable_model_cpu_offload == "auto" and cfg.torch_dtype == "auto"
    with pytest.warns(DeprecationWarning, match="enable_sequential_cpu_offload=True"):
        sequential = HuggingFaceDiffusersBackendConfig(model_id="m", cpu_offload="sequential")
    assert sequential.enable_sequential_cpu_offload
    with pytest.raises(InvalidRequestError) as info:
        HuggingFaceDiffusersBackendConfig(model_id="m", cpu_offload="fast")
    assert info.value.field == "cpu_offload"
    # "auto" decides by free GPU memory (a reserve of max(1.5 GiB, 10% of the card) kept free)
    gib = 2**30
    assert offload_for([4 * gib, 2 * gib], free=20 * gib, total=24 * gib) == ""
    assert offload_for([8 * gib, 7 * gib], free=10 * gib, total=16 * gib) == "model"
    assert offload_for([8 * gib, 7 * gib], free=8 * gib, total=16 * gib) == "sequential"


def test_old_openai_and_sdcpp_config_names() -> None:
    from abstractvision.backends import (
        OpenAICompatibleBackendConfig,
        StableDiffusionCppBackendConfig,
    )

    with pytest.warns(DeprecationWarning, match="sync_video_paths"):
        cfg = OpenAICompatibleBackendConfig(
            base_url="http://127.0.0.1:9/v1",
            image_generations_path="/gen",
            text_to_video_path="/vid",
            image_to_video_mode="json_b64",
        )
    assert cfg.images_generations_path == "/gen"
    assert dict(cfg.sync_video_paths) == {"text_to_video": "/vid"}
    assert cfg.sync_image_to_video_mode == "json_b64"
    kept = OpenAICompatibleBackendConfig(base_url="http://127.0.0.1:9", models_path="/v1/models")
    assert kept.models_path == "/v1/models"  # a real option (test_seed_examples.py runs it)
    with pytest.warns(DeprecationWarning, match="sampler, vae_tiling, n_threads"):
        sd = StableDiffusionCppBackendConfig(
            model="m.gguf",
            sd_cli_path="sd-cli",
            extra_args=["--sampling-method", "euler", "--vae-tiling", "-t", "2"],
        )
    assert (sd.sampler, sd.vae_tiling, sd.n_threads) == ("euler", True, 2)
    with pytest.raises(InvalidRequestError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        StableDiffusionCppBackendConfig(model="m.gguf", extra_args="--rm-rf /")
    assert info.value.field == "extra_args" and info.value.value == "--rm-rf"


def test_runtime_adapter_takes_the_old_keyword() -> None:
    from abstractruntime.storage.artifacts import InMemoryArtifactStore

    from abstractvision import RuntimeArtifactStoreAdapter

    store = InMemoryArtifactStore()
    with pytest.warns(DeprecationWarning, match="use store"):
        adapter = RuntimeArtifactStoreAdapter(artifact_store=store)
    assert adapter.store is store


def test_mlx_names_exist_and_say_the_backend_is_gone() -> None:
    from abstractvision import OptionalDependencyMissingError
    from abstractvision.backends import MFluxBackendConfig, MFluxVisionBackend

    with pytest.raises(OptionalDependencyMissingError, match="MLX-Gen"):
        MFluxVisionBackend(config=MFluxBackendConfig(model="z-image-turbo"))


def test_the_seed_examples_registry_ids() -> None:
    from abstractvision import VisionModelCapabilitiesRegistry

    reg = VisionModelCapabilitiesRegistry()
    reg.require_support("Qwen/Qwen-Image-2512", "text_to_image")
    assert reg.supports("runwayml/stable-diffusion-v1-5", "text_to_image")


def test_runtime_store_written_for_0_3_x() -> None:
    """store(content, content_type, run_id, tags) without metadata=, and no get_metadata."""
    from http_servers import png

    from abstractvision import RuntimeArtifactStoreAdapter

    class OldStore:
        def __init__(self) -> None:
            self.blobs: dict[str, bytes] = {}

        def store(self, content, *, content_type, run_id=None, tags=None):  # type: ignore[no-untyped-def]
            self.blobs[f"a{len(self.blobs)}"] = content
            return {"artifact_id": f"a{len(self.blobs) - 1}"}

        def load(self, artifact_id):  # type: ignore[no-untyped-def]
            return self.blobs.get(artifact_id)

    adapter = RuntimeArtifactStoreAdapter(OldStore(), run_id="r")
    ref = adapter.store_bytes(png(), content_type="image/png", metadata={"seed": 1})
    assert ref["metadata"]["seed"] == 1  # kept in the ref
    assert adapter.load_bytes(ref["$artifact"]) == png()
    assert adapter.get_metadata(ref["$artifact"])["content_type"] == "image/png"


def test_0_3_x_synchronous_video_endpoints_on_a_real_server() -> None:
    """text_to_video_path / image_to_video_path (+ json_b64): one POST, the video in the answer."""
    import base64

    from http_servers import png, serving
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from abstractvision.backends import OpenAICompatibleVisionBackend

    mp4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 32
    seen: list[dict] = []

    async def video(request: Request) -> JSONResponse:
        if request.headers["content-type"].startswith("multipart/"):
            form = await request.form()
            seen.append({"form": dict(form), "image": await form["image"].read()})
        else:
            seen.append(await request.json())
        return JSONResponse({"data": [{"b64_json": base64.b64encode(mp4).decode()}]})

    app = Starlette(routes=[Route(p, video, methods=["POST"]) for p in ("/v1/t2v", "/v1/i2v")])
    with serving(app) as base, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for mode in ("multipart", "json_b64"):
            backend = OpenAICompatibleVisionBackend(
                base_url=base + "/v1",
                model_id="wan",
                text_to_video_path="/t2v",
                image_to_video_path="/i2v",
                image_to_video_mode=mode,
            )
            vm = VisionManager(backend=backend)
            out = vm.generate_video("waves", width=64, height=64, num_frames=9, seed=2)
            assert out.data == mp4 and out.mime_type == "video/mp4"
            assert vm.image_to_video(png(), prompt="move").data == mp4
    t2v, i2v_form, _, i2v_json = seen
    assert (t2v["prompt"], t2v["model"], t2v["width"], t2v["num_frames"]) == ("waves", "wan", 64, 9)
    assert i2v_form["image"] == png() and i2v_form["form"]["prompt"] == "move"
    assert base64.b64decode(i2v_json["image_b64"]) == png()


def test_0_3_x_command_line_runs(
    tiny_sd_dir: Path,
    tiny_lora_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--provider / --lora / --lora-scale / --progress as 0.3.x wrote them, on a real model;
    --progress shows step progress on stderr even when it is not a terminal."""
    from abstractvision.cli import main

    monkeypatch.setenv("ABSTRACTVISION_DEVICE", "cpu")
    out = tmp_path / "cube.png"
    argv = ["t2i", "--provider", "huggingface", "--model", str(tiny_sd_dir)]
    argv += ["--backend-option", f'lora_allowlist=["{tiny_lora_dir}"]']
    argv += ["--lora", str(tiny_lora_dir), "--lora-scale", "0.5", "--progress"]
    argv += ["--width", "64", "--height", "64", "--steps", "2", "--seed", "1", "-o", str(out)]
    assert main([*argv, "a cube"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    err = capsys.readouterr().err
    assert "0.3.x usage rewritten (--provider, --lora, --lora-scale)" in err
    assert "100% ETA" in err, err  # the last step's progress line


def test_vision_manager_takes_0_3_x_keywords() -> None:
    from http_servers import png

    class Old(VisionBackend):
        def __init__(self) -> None:
            self.seen: list[object] = []

        def upscale_image(self, request):  # type: ignore[no-untyped-def]
            self.seen.append(request)
            return GeneratedAsset("image", png((128, 128)), "image/png")

        def generate_video(self, request):  # type: ignore[no-untyped-def]
            self.seen.append(request)
            return GeneratedAsset("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4")

    backend = Old()
    vm = VisionManager(backend=backend)
    with pytest.warns(DeprecationWarning, match="use scale"):
        vm.upscale_image(png(), resolution="2x", softness=0.25)
    with pytest.warns(DeprecationWarning, match="guidance_scale_2"):
        vm.generate_video("waves", guidance_2=3.0, lora_adapters=[{"source": "/l", "scale": 0.5}])
    up, video = backend.seen
    assert up.scale == 2 and up.extra == {"softness": 0.25}
    assert video.extra == {"guidance_scale_2": 3.0, "loras": [{"source": "/l", "weight": 0.5}]}
    # resolution=3 is a factor too; a number of pixels (0.3.x SeedVR2's shortest edge) is refused
    # by its own name, saying what to pass, before the backend runs
    with pytest.warns(DeprecationWarning, match="use scale"):
        assert vm.upscale_image(png(), resolution=3).media_type == "image"
    assert backend.seen[-1].scale == 3
    with pytest.raises(InvalidRequestError) as info:
        vm.upscale_image(png(), resolution=384)
    assert (info.value.field, info.value.value) == ("resolution", 384)
    assert "pass scale=2..8" in str(info.value) and len(backend.seen) == 3


def test_0_3_x_normalize_hooks_and_video_batches(tmp_path: Path) -> None:
    """A 0.3.x backend's normalize_*_request rewrites the request (then validated as usual);
    generate_video_batch / image_to_video_batch make one video per seed, stored only when all ran."""
    import dataclasses

    from http_servers import png

    from abstractvision.artifacts import LocalAssetStore

    class Old(VisionBackend):
        def __init__(self) -> None:
            self.seen: list[object] = []

        def normalize_image_generation_request(self, request):  # type: ignore[no-untyped-def]
            return dataclasses.replace(request, steps=2, negative_prompt=None)

        def normalize_video_generation_request(self, request):  # type: ignore[no-untyped-def]
            return dataclasses.replace(request, num_frames=9)

        def generate_image(self, request):  # type: ignore[no-untyped-def]
            self.seen.append(request)
            return GeneratedAsset("image", png(), "image/png")

        def generate_video(self, request):  # type: ignore[no-untyped-def]
            self.seen.append(request)
            if request.seed == 13:
                raise RuntimeError("engine failed")
            return GeneratedAsset("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4")

        def image_to_video(self, request):  # type: ignore[no-untyped-def]
            self.seen.append(request)
            return GeneratedAsset("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4")

    backend = Old()
    vm = VisionManager(backend=backend)
    vm.generate_image("cat", steps=30, negative_prompt="blur")
    assert (backend.seen[0].steps, backend.seen[0].negative_prompt) == (2, None)
    backend.seen.clear()
    assert len(vm.generate_video_batch("waves", seeds=[11, 12])) == 2
    assert [(r.seed, r.num_frames) for r in backend.seen] == [(11, 9), (12, 9)]
    backend.seen.clear()
    assert len(vm.image_to_video_batch(png(), count=3, seed=5, prompt="move")) == 3
    assert [r.seed for r in backend.seen] == [5, 6, 7]
    with pytest.raises(InvalidRequestError) as info:
        vm.generate_video_batch("waves", count=0)
    assert info.value.field == "count"
    with pytest.raises(InvalidRequestError):
        vm.generate_video_batch("waves", count=3, seeds=[1, 2])

    store = LocalAssetStore(tmp_path)
    stored = VisionManager(backend=backend, store=store)
    with pytest.raises(RuntimeError, match="engine failed"):
        stored.generate_video_batch("waves", seeds=[12, 13])
    assert not any(tmp_path.iterdir())  # nothing kept when one video of the batch failed


def test_0_3_x_list_flags_and_command_names_parse(capsys: pytest.CaptureFixture[str]) -> None:
    """Repeated --reference-image / --seeds 1,2 become one list placed after the prompt;
    --max-sequence-length goes to extra; old catalogue/download command names still run.
    build_parser() reads them itself (one rewrite: compat.legacy_args)."""
    from abstractvision.cli import build_parser

    def parse(*argv: str) -> dict[str, object]:
        return vars(build_parser().parse_args(list(argv)))

    old = "i2i --image a.png --reference-image s.png --reference-image l.png --progress"
    args = parse(*old.split(), "combine them")
    assert (args["prompt"], args["reference_images"]) == ("combine them", ["s.png", "l.png"])
    args = parse("t2i", "--count", "3", "--seeds", "11,12", "--seeds", "13", "hello")
    assert (args["prompt"], args["count"]) == ("hello", 3)
    assert args["seeds"] == ["11,12", "13"]  # as 0.3.x's Namespace kept them; t2i runs 11, 12, 13
    assert parse("t2i", "--seeds", "1", "2", "cat")["seeds"] == [1, 2]  # 0.4 spelling untouched
    old = "t2v waves --frames 9 --max-sequence-length 256 --lora o/r:f.st --lora-adapter-name s"
    args = parse(*old.split())
    assert args["num_frames"] == 9 and "max_sequence_length=256" in args["extra"]
    old = "model-catalog --task image_to_image --all-targets"
    assert parse(*old.split())["command"] == "models"
    assert parse("download-model", "org/model")["command"] == "pull"
    err = capsys.readouterr().err
    assert "0.3.x usage rewritten (--reference-image)" in err
    assert "(--seeds)" in err and "(download-model)" in err


def test_openai_own_image_models_get_the_body_they_accept() -> None:
    """gpt-image-* / dall-e-* refuse unknown fields (400 "Unknown parameter"): no seed, steps,
    guidance_scale or negative_prompt, and gpt-image no response_format; other models keep them."""
    import base64

    from http_servers import png, serving
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from abstractvision.backends import OpenAICompatibleVisionBackend
    from abstractvision.types import ImageGenerationRequest

    seen: list[dict] = []

    async def images(request: Request) -> JSONResponse:
        if request.headers["content-type"].startswith("multipart/"):
            seen.append({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
        else:
            seen.append(await request.json())
        return JSONResponse({"data": [{"b64_json": base64.b64encode(png()).decode()}]})

    routes = [Route(f"/v1/images/{p}", images, methods=["POST"]) for p in ("generations", "edits")]
    asked = {"seed": 3, "steps": 4, "guidance_scale": 2.0, "negative_prompt": "blur"}
    with serving(Starlette(routes=routes)) as base:
        for model in ("gpt-image-1", "dall-e-3", "local-sd"):
            vm = VisionManager(backend=OpenAICompatibleVisionBackend(base_url=base + "/v1"))
            vm.generate_image("cat", model=model, width=64, height=64, **asked)
            vm.edit_image("hat", png(), model=model, **asked)
        # a host calling the backend itself with 0.3.x progress hooks in extra (AbstractCore)
        hooks = {"on_progress": print, "progress_callback": print}
        request = ImageGenerationRequest(prompt="x", model="m", extra={**hooks, "quality": "low"})
        assert vm.backend.generate_image(request).mime_type == "image/png"
    gpt_t2i, gpt_i2i, dalle_t2i, _, local_t2i, local_i2i, hooked = seen
    assert hooked["quality"] == "low" and not set(hooks) & set(hooked)
    assert set(gpt_t2i) == {"model", "prompt", "n", "size"} and "response_format" not in gpt_i2i
    assert dalle_t2i["response_format"] == "b64_json" and "seed" not in dalle_t2i
    assert {k: local_t2i[k] for k in asked} == asked and local_i2i["seed"] == "3"


def test_0_3_x_batch_tools_of_make_vision_tools(tmp_path: Path) -> None:
    """vision_*_batch tools (0.3.x names) return a list of refs; a video batch stops at the
    first failure and names the videos already made."""
    import base64

    import abstractcore  # noqa: F401  (scripts/test installs it)
    from http_servers import png

    from abstractvision.artifacts import LocalAssetStore
    from abstractvision.integrations import make_vision_tools

    mp4 = b"\x00\x00\x00\x18ftypmp42"

    class Old(VisionBackend):
        def __init__(self) -> None:
            self.seeds: list[int] = []
            self.edits: list[object] = []

        def generate_image(self, request):  # type: ignore[no-untyped-def]
            self.seeds.append(request.seed)
            return GeneratedAsset("image", png(color=(request.seed % 256, 0, 0)), "image/png")

        def edit_image(self, request):  # type: ignore[no-untyped-def]
            self.seeds.append(request.seed)
            self.edits.append(request)
            return GeneratedAsset("image", png(color=(0, request.seed % 256, 0)), "image/png")

        def generate_video(self, request):  # type: ignore[no-untyped-def]
            if request.seed == 9:
                raise InvalidRequestError("seed", 9, "not this one")
            self.seeds.append(request.seed)
            return GeneratedAsset("video", mp4 + bytes([request.seed]), "video/mp4")

        def image_to_video(self, request):  # type: ignore[no-untyped-def]
            self.seeds.append(request.seed)
            return GeneratedAsset("video", mp4 + bytes([request.seed]), "video/mp4")

    backend = Old()
    vm = VisionManager(backend=backend, store=LocalAssetStore(tmp_path))
    tools = {t._tool_definition.name: t for t in make_vision_tools(vision_manager=vm)}
    refs = tools["vision_text_to_image_batch"](prompt="cat", seeds=[4, 5])
    assert [vm.store.load_bytes(r["$artifact"]) for r in refs] == [
        png(color=(4, 0, 0)),
        png(color=(5, 0, 0)),
    ]
    edits = tools["vision_image_to_image_batch"](
        prompt="hat",
        image_artifact=refs[0],
        count=2,
        reference_images=[refs[1], {"b64": base64.b64encode(png()).decode()}],
        lora_adapters=[{"source": "org/style", "scale": 0.7}],
    )
    assert len(edits) == 2 and all("$artifact" in r for r in edits)
    edit = backend.edits[0]
    assert edit.reference_images == (png(color=(5, 0, 0)), png())  # type: ignore[attr-defined]
    assert edit.extra == {"loras": [{"source": "org/style", "weight": 0.7}]}  # type: ignore[attr-defined]
    backend.seeds.clear()
    videos = tools["vision_image_to_video_batch"](image_artifact=refs[0], count=2, seed=20)
    assert len(videos) == 2 and backend.seeds == [20, 21]
    failed = tools["vision_text_to_video_batch"](prompt="waves", seeds=[7, 9, 11])
    assert failed["field"] == "seed" and len(failed["completed"]) == 1
    assert tools["vision_text_to_video_batch"](prompt="w", count=99)["field"] == "count"


def test_0_3_x_video_batch_on_the_command_line(tmp_path: Path) -> None:
    """t2v --count / --seeds (0.3.x) make one video per seed, each written to its own file."""
    import base64

    from http_servers import serving
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from abstractvision.cli import main

    seeds: list[int] = []

    async def video(request: Request) -> JSONResponse:
        seeds.append((await request.json())["seed"])
        mp4 = b"\x00\x00\x00\x18ftypmp42" + bytes([seeds[-1]])
        return JSONResponse({"data": [{"b64_json": base64.b64encode(mp4).decode()}]})

    with serving(Starlette(routes=[Route("/v1/t2v", video, methods=["POST"])])) as base:
        argv = ["t2v", "waves", "--backend", "openai", "--model", "wan"]
        argv += ["--backend-option", f"base_url={base}/v1"]
        argv += ["--backend-option", 'sync_video_paths={"text_to_video": "/t2v"}']
        assert main([*argv, "--seeds", "5,6", "-o", str(tmp_path / "a" / "w.mp4")]) == 0
        assert main([*argv, "--count", "2", "--seed", "8", "-o", str(tmp_path / "b.mp4")]) == 0
    assert seeds == [5, 6, 8, 9]
    written = sorted((tmp_path / "a").iterdir())
    assert [p.read_bytes()[-1] for p in written] == [5, 6]
    assert len(list(tmp_path.glob("b-*.mp4"))) == 2


def test_0_3_x_backend_reads_old_request_fields_back() -> None:
    """A 0.3.x custom backend reads request.guidance_2 / flow_shift / lora_adapters (kept in extra)."""
    read: dict[str, object] = {}

    class Old(VisionBackend):
        def generate_video(self, request):  # type: ignore[no-untyped-def]
            read.update(g2=request.guidance_2, shift=request.flow_shift)
            read["loras"] = [(a.source, a.scale) for a in request.lora_adapters]
            return GeneratedAsset("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4")

    vm = VisionManager(backend=Old())
    with pytest.warns(DeprecationWarning):
        vm.generate_video("waves", guidance_2=3.0, flow_shift=4.5, lora_adapters=["/a.safetensors"])
    assert read == {"g2": 3.0, "shift": 4.5, "loras": [("/a.safetensors", 1.0)]}
    vm.generate_video("waves", extra={"loras": [{"source": "/b", "weight": 0.5}]})
    assert read == {"g2": None, "shift": None, "loras": [("/b", 0.5)]}


def test_registry_get_takes_0_3_x_names() -> None:
    """get/supports as in 0.3.x: an id in other letter case and a 0.3.x preset key resolve."""
    from abstractvision import VisionModelCapabilitiesRegistry
    from abstractvision.errors import UnknownModelError

    reg = VisionModelCapabilitiesRegistry()
    klein = reg.get("black-forest-labs/FLUX.2-klein-4B")
    assert reg.get("flux2-klein-4b") is klein
    assert reg.get("black-forest-labs/flux.2-klein-4b") is klein
    assert reg.supports("qwen-image-edit-2511", "image_to_image")
    assert reg.canonical_id("flux2-klein-4b") == "flux2-klein-4b"  # loading paths unchanged
    assert not reg.supports("someone/not-a-model", "text_to_image")
    with pytest.raises(UnknownModelError):
        reg.get("seedvr2-3b")  # an MLX-Gen package key: MLX is not part of 0.4


def test_model_cache_answers_0_3_x_questions_about_the_hub_cache(tmp_path: Path) -> None:
    """0.3.x's model_cache: usable snapshot (weights, no .incomplete, every indexed shard)."""
    from abstractvision import model_cache as mc

    repo, legacy = "org/tiny", tmp_path / "old" / "tiny"
    (legacy / "unet").mkdir(parents=True)
    (legacy / "model_index.json").write_text("{}")
    (legacy / "unet" / "w.safetensors").write_bytes(b"x")
    cache = str(tmp_path / "hub")
    snap = mc.ensure_hf_repo_snapshot(repo, source_dir=legacy, cache_dir=cache)
    assert snap is not None and not legacy.exists()
    repo_dir = mc.hf_repo_dir(repo, cache_dir=cache)
    assert (repo_dir / "refs" / "main").read_text() == snap.name
    ask = {
        "cache_dir": cache,
        "required_files": ("model_index.json",),
        "require_weight_files": True,
    }
    assert mc.resolve_hf_repo_snapshot(repo, **ask) == snap
    assert mc.cached_hf_model_sources(repo, **ask) == ["configured cache"]
    (snap / "unet" / "w.safetensors.index.json").write_text(
        '{"weight_map": {"a": "w2.safetensors"}}'
    )
    assert mc.hf_snapshot_missing_indexed_weight_files(snap) == ["unet/w2.safetensors"]
    assert mc.resolve_hf_repo_snapshot(repo, **ask) is None
    assert mc.incomplete_hf_model_sources(repo, **ask) == ["configured cache"]
    (snap / "unet" / "w2.safetensors").write_bytes(b"y")
    (repo_dir / "blobs").mkdir()
    (repo_dir / "blobs" / "abc.incomplete").write_bytes(b"")
    assert not mc.hf_snapshot_is_usable(snap, require_weight_files=True)
    (repo_dir / "blobs" / "abc.incomplete").unlink()
    assert mc.hf_snapshot_is_usable(
        snap, required_files=("model_index.json",), require_weight_files=True
    )


def test_model_presets_and_downloads_come_from_the_registry() -> None:
    """0.3.x's preset catalogue: model_presets / ModelCapabilities.downloads, one source."""
    from abstractvision import VisionModelCapabilitiesRegistry
    from abstractvision.model_downloads import find_model_preset, model_presets

    reg = VisionModelCapabilitiesRegistry()
    eight = model_presets(engine="sdcpp")
    assert eight and all(p.target == "gguf" and p.quantization_bits == 8 for p in eight)
    every = model_presets(include_non_8bit=True, include_all_targets=True)
    assert {p.target for p in every} == {"diffusers", "gguf"}
    for preset in every:
        assert preset in reg.get(preset.upstream_repo_id).downloads
    ernie = find_model_preset(
        "ernie-image-turbo", target="diffusers", engine="diffusers", require_8bit=False
    )
    assert (ernie.repo_id, ernie.target, ernie.bits) == ("baidu/ERNIE-Image-Turbo", "diffusers", 16)
    assert "*.jinja" in ernie.allow_patterns  # chat templates travel with the tokenizer
    with pytest.raises(ValueError, match="MLX"):
        model_presets(target="mlx")


def test_a_0_3_x_backend_without_capabilities_has_no_catalogue() -> None:
    """0.3.x: list_provider_models of a backend that declares nothing is an error, not []."""

    class Old(VisionBackend):
        def generate_image(self, request):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    with pytest.raises(
        CapabilityNotSupportedError, match="does not support provider model catalogs"
    ):
        VisionManager(backend=Old()).list_provider_models(task="text_to_image")


def test_model_catalog_provider_lists_one_engines_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """0.3.x `model-catalog --provider sdcpp --json`: the models sd.cpp runs, with their GGUF repos."""
    from abstractvision.cli import main

    assert main(["model-catalog", "--task", "text_to_image", "--provider", "sdcpp", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    klein = next(r for r in rows if r["id"] == "black-forest-labs/FLUX.2-klein-4B")
    repos = {(d["repo_id"], d["target"], d["engine"]) for d in klein["downloads"]}
    assert repos == {("leejet/FLUX.2-klein-4B-GGUF", "gguf", "stable-diffusion.cpp")}
    assert main(["models", "--backend", "diffusers", "--json"]) == 0
    ids = {r["id"] for r in json.loads(capsys.readouterr().out)}
    assert klein["id"] in ids and len(ids) > len(rows)  # some models run on Diffusers only


def test_0_3_x_video_tool_arguments(tmp_path: Path) -> None:
    """make_vision_tools' video tools take 0.3.x guidance_2 / flow_shift / lora_adapters
    (kept in extra, as the request constructors keep them); a 0.3.x backend reads them back."""
    import abstractcore  # noqa: F401  (scripts/test installs it)
    from http_servers import png

    from abstractvision.artifacts import LocalAssetStore
    from abstractvision.integrations import make_vision_tools

    seen: list[tuple[object, ...]] = []

    class Old(VisionBackend):
        def generate_video(self, request):  # type: ignore[no-untyped-def]
            scales = [a.scale for a in request.lora_adapters]
            seen.append((request.guidance_2, request.flow_shift, scales))
            return GeneratedAsset("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4")

        image_to_video = generate_video

    vm = VisionManager(backend=Old(), store=LocalAssetStore(tmp_path))
    tools = {t._tool_definition.name: t for t in make_vision_tools(vision_manager=vm)}
    loras = [{"source": "org/cinematic", "scale": 0.8}]
    out = tools["vision_text_to_video_batch"](
        prompt="waves", seeds=[1, 2], guidance_2=3.0, flow_shift=4.5, lora_adapters=loras
    )
    assert len(out) == 2
    image = vm.store.store_bytes(png(), content_type="image/png")
    assert "$artifact" in tools["vision_image_to_video"](image_artifact=image, guidance_2=3.5)
    assert seen == [(3.0, 4.5, [0.8]), (3.0, 4.5, [0.8]), (3.5, None, [])]
