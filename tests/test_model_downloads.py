"""Real downloads with huggingface_hub from a loopback copy of the Hub (tests/hub_server.py).

What a pull fetches (only what the engine loads), resume, checksum mismatch, gated and missing
repos/files, concurrent pulls, the cache listing and removal, 0.3.34's ``find_model_preset``,
and the ``pull`` / ``rm`` / ``models --installed`` commands followed by generations with
downloads off.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_repos import KLEIN_ID, SD_ID, diffusers_repo, klein_sdcpp_repos, split_klein
from hub_server import HubRepo, HubServer

from abstractvision import model_downloads as md
from abstractvision.control import GenerationControl, ProgressEvent
from abstractvision.errors import GenerationCancelledError, UnknownModelError

SD_LOADED = {
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
}
GATED_ID = "black-forest-labs/FLUX.1-dev"


@pytest.fixture(scope="session")
def klein_split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("gguf")
    return split_klein(tmp_path_factory.mktemp("klein_split"))


@pytest.fixture
def hub(tiny_sd_dir: Path, klein_split: dict[str, Path]) -> Iterator[HubServer]:
    gated = diffusers_repo(tiny_sd_dir, GATED_ID, gated=True, tokens={"hf_accepted"})
    with HubServer([diffusers_repo(tiny_sd_dir), gated, *klein_sdcpp_repos(klein_split)]) as hub:
        yield hub


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """huggingface_hub allowed on the network (conftest sets offline), cache in tmp_path."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return cache


def _snapshot_files(folder: str) -> set[str]:
    root = Path(folder)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_diffusers_pull_fetches_only_what_the_pipeline_loads_then_loads_offline(
    hub: HubServer, online: Path
) -> None:
    events: list[ProgressEvent] = []
    pulled = md.pull(SD_ID, "diffusers", endpoint=hub.url, control=GenerationControl(events.append))
    assert _snapshot_files(pulled.paths["model"]) == SD_LOADED  # no fp16/.bin/ckpt/onnx copies
    cdn = {r.path for r in hub.served("GET")}
    assert len(cdn) == 3  # the three weight files, nothing else through the LFS route
    assert pulled.downloaded_bytes == pulled.total_bytes > 0
    steps = [e.step for e in events]
    assert steps == sorted(steps) and events[-1].step == events[-1].total == pulled.total_bytes
    assert events[-1].message.startswith("downloading stable-diffusion-v1-5: ")
    assert md.local_files(SD_ID, "diffusers") == {"model": pulled.paths["model"]}

    again = md.pull(SD_ID, "diffusers", endpoint=hub.url)  # on disk: nothing is fetched
    assert again.downloaded_bytes == 0 and len(hub.served("GET")) == 3

    from abstractvision import VisionManager
    from abstractvision.backends import create_backend

    backend = create_backend("diffusers", model_id=SD_ID, device="cpu", cache_dir=str(online))
    asset = VisionManager(backend=backend).generate_image(
        "a red cube", width=64, height=64, steps=1, seed=1
    )
    assert asset.data.startswith(b"\x89PNG")  # loaded with downloads off (local_files_only)
    backend.unload()


def test_interrupted_download_resumes_with_range(
    hub: HubServer, online: Path, klein_split: dict[str, Path]
) -> None:
    import hashlib

    control = GenerationControl(lambda event: control.cancel())
    with pytest.raises(GenerationCancelledError):  # Ctrl-C of a pull: the partial file stays
        md.pull(KLEIN_ID, "sdcpp", quant="Q4_0", endpoint=hub.url, control=control)
    assert len(list(online.rglob("*.incomplete"))) == 1

    # an earlier run got 5 MB of the text encoder: the next pull asks only for the rest
    llm = klein_split["llm"].read_bytes()
    blob = online / "models--unsloth--Qwen3-4B-GGUF" / "blobs" / hashlib.sha256(llm).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.with_name(blob.name + ".incomplete").write_bytes(llm[:5_000_000])
    hub.cut_after["flux-2-klein-4b-Q4_0.gguf"] = 1000  # and a connection drops mid-file
    pulled = md.pull(KLEIN_ID, "sdcpp", quant="Q4_0", endpoint=hub.url)
    assert "bytes=5000000-" in {r.range for r in hub.served("GET")}
    assert pulled.downloaded_bytes <= pulled.total_bytes - 5_000_000
    assert Path(pulled.paths["llm"]).read_bytes() == llm  # and the checksum held
    dit = Path(pulled.paths["diffusion_model"]).read_bytes()
    assert dit == klein_split["diffusion_model"].read_bytes()  # the dropped one was retried
    assert not list(online.rglob("*.incomplete"))


def test_checksum_mismatch_is_refused_and_nothing_is_kept(hub: HubServer, online: Path) -> None:
    hub.corrupt.add("unet/diffusion_pytorch_model.safetensors")
    with pytest.raises(md.ModelDownloadError, match=r"checksum mismatch .*unet/diffusion_pytorch"):
        md.pull(SD_ID, "diffusers", endpoint=hub.url)
    assert not list(online.rglob("*.incomplete"))
    assert md.local_files(SD_ID, "diffusers") is None
    hub.corrupt.clear()
    assert md.pull(SD_ID, "diffusers", endpoint=hub.url).paths["model"]


def test_gated_repo_names_its_licence_page_and_honours_hf_token(
    hub: HubServer, online: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(md.ModelAccessError) as refused:
        md.pull(GATED_ID, "diffusers", endpoint=hub.url)
    assert f"{hub.url}/{GATED_ID}" in str(refused.value) and "HF_TOKEN" in str(refused.value)
    monkeypatch.setenv("HF_TOKEN", "hf_accepted")
    assert md.pull(GATED_ID, "diffusers", endpoint=hub.url).total_bytes > 0
    assert any(r.authorized for r in hub.requests if "/resolve/" in r.path)


def test_missing_repo_file_and_quant_say_what_exists(hub: HubServer, online: Path) -> None:
    with pytest.raises(UnknownModelError, match="nobody/nothing was not found on the Hub"):
        md.pull("nobody/nothing", "diffusers", endpoint=hub.url)
    hub.missing.add("vae/config.json")
    with pytest.raises(UnknownModelError, match="file not found on the Hub"):
        md.pull(SD_ID, "diffusers", endpoint=hub.url)
    with pytest.raises(UnknownModelError, match=r"Q2_K.*it has: Q4_0, Q8_0"):
        md.pull(KLEIN_ID, "sdcpp", quant="Q2_K", endpoint=hub.url)
    with pytest.raises(UnknownModelError, match=r"not on disk and downloads are off.*pull"):
        md.ensure_model(SD_ID, "diffusers", allow_download=False)


def test_concurrent_pulls_share_one_download(hub: HubServer, online: Path) -> None:
    seen: list[list[ProgressEvent]] = [[], []]
    results: list[md.PulledModel] = []
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        control = GenerationControl(seen[i].append)
        results.append(md.pull(SD_ID, "diffusers", endpoint=hub.url, control=control))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2 and results[0].paths == results[1].paths
    assert len(hub.served("GET")) == 3  # each weight file fetched once
    assert all(events and events[-1].step == events[-1].total for events in seen)


def test_installed_list_and_remove(hub: HubServer, online: Path) -> None:
    md.pull(SD_ID, "diffusers", endpoint=hub.url)
    md.pull(KLEIN_ID, "sdcpp", endpoint=hub.url)  # the registry's default quant (Q8_0)
    rows = {r.repo_id: r for r in md.installed_models()}
    assert set(rows) == {SD_ID, KLEIN_ID, "leejet/FLUX.2-klein-4B-GGUF", "unsloth/Qwen3-4B-GGUF"}
    klein_base = "black-forest-labs/FLUX.2-klein-base-4B"  # same text encoder, not on disk
    assert rows["unsloth/Qwen3-4B-GGUF"].used_by == (KLEIN_ID, klein_base)
    assert rows[SD_ID].size_bytes == sum(
        p.stat().st_size for p in (Path(rows[SD_ID].path) / "blobs").iterdir()
    )
    gone = md.remove_model(KLEIN_ID)
    assert set(gone.removed) == {KLEIN_ID, "leejet/FLUX.2-klein-4B-GGUF", "unsloth/Qwen3-4B-GGUF"}
    assert gone.freed_bytes > 100_000_000 and [r.repo_id for r in md.installed_models()] == [SD_ID]
    with pytest.raises(UnknownModelError, match="not on disk"):
        md.remove_model(KLEIN_ID)


def test_find_model_preset_keeps_the_0_3_34_lookup() -> None:
    gguf = md.find_model_preset(
        "flux2-klein-4b", target="gguf", engine="stable-diffusion.cpp", require_8bit=False
    )
    assert gguf.repo_id == "leejet/FLUX.2-klein-4B-GGUF" and gguf.upstream_repo_id == KLEIN_ID
    assert md.find_model_preset("z-image-turbo", engine="sdcpp").quantization_bits == 8
    assert md.find_model_preset(KLEIN_ID, target="hf-snapshot").repo_id == KLEIN_ID
    with pytest.raises(ValueError, match="MLX"):
        md.find_model_preset("flux2-klein-4b", target="mlx", engine="mlx-gen")
    with pytest.raises(ValueError, match="Unknown"):
        md.find_model_preset("no-such-model", engine="sdcpp")


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "abstractvision.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_cli_pull_both_engines_then_generate_with_downloads_off(
    hub: HubServer, tmp_path: Path
) -> None:
    env = hub.cli_env(tmp_path / "cache")
    pulled = _cli("pull", SD_ID, "--json", env=env, cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    row = json.loads(pulled.stdout)
    assert row["size_bytes"] > 0 and "downloading" in pulled.stderr
    assert (row["files"], row["repo_files"]) == (10, 19)  # fp16/.bin/ckpt/onnx/README skipped
    sd = _cli("pull", KLEIN_ID, "--engine", "sdcpp", "--quant", "Q4_0", env=env, cwd=tmp_path)
    assert sd.returncode == 0, sd.stderr
    assert "flux-2-klein-4b-Q4_0.gguf" in sd.stdout and "Qwen3-4B-Q4_0.gguf" in sd.stdout

    listed = _cli("models", "--installed", "--json", env=env, cwd=tmp_path)
    assert {r["id"] for r in json.loads(listed.stdout)} >= {SD_ID, "unsloth/Qwen3-4B-GGUF"}

    offline = {**env, "HF_HUB_OFFLINE": "1", "ABSTRACTVISION_BACKEND": "sdcpp"}
    offline["ABSTRACTVISION_MODEL"] = KLEIN_ID  # the CLI reads the server's settings
    made = _cli(
        "t2i", "a fox", "--width", "64", "--height", "64", "--steps", "1",
        "--backend-option", "n_threads=2", "-o", "fox.png", env=offline, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "fox.png").read_bytes().startswith(b"\x89PNG")
    assert "W1201" not in made.stderr and "Warning" not in made.stderr  # third-party noise off
    assert "|==" not in made.stderr  # nor the engine's loading bar

    removed = _cli("rm", KLEIN_ID, env=env, cwd=tmp_path)
    assert removed.returncode == 0 and "freed" in removed.stdout
    refused = _cli("t2i", "x", "--backend", "sdcpp", "--model", KLEIN_ID, env=offline, cwd=tmp_path)
    assert refused.returncode == 2
    assert f"abstractvision pull {KLEIN_ID} --engine sdcpp" in refused.stderr


def test_one_set_of_weights_per_component() -> None:
    from abstractvision.model_downloads import _pick_weights

    sharded = [
        "config.json",
        "diffusion_pytorch_model-00001-of-00002.safetensors",
        "diffusion_pytorch_model-00002-of-00002.safetensors",
        "diffusion_pytorch_model.safetensors.index.json",
        "diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "diffusion_pytorch_model.safetensors.index.fp16.json",
        "diffusion_pytorch_model.bin",
    ]
    plain, variant = _pick_weights(sharded, None)
    assert variant is None and plain == sorted(sharded[1:4])
    fp16, variant = _pick_weights(sharded, "fp16")
    assert variant == "fp16" and fp16 == sorted(sharded[4:7])
    only_fp16 = ["model.fp16.safetensors", "model.fp16.bin", "tokenizer.json"]
    assert _pick_weights(only_fp16, None) == (["model.fp16.safetensors"], "fp16")


def test_eta_waits_for_the_first_steps() -> None:
    import io

    from abstractvision.cli_models import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ProgressBar(stream)
    bar(ProgressEvent(1, 10, "step 1/10"))  # loading time is not in any estimate
    assert stream.getvalue().endswith("ETA ...\x1b[K")
    bar(ProgressEvent(2, 10, "step 2/10"))
    assert re.search(r"ETA \d+s\x1b\[K$", stream.getvalue())
    bar(ProgressEvent(10, 100, "downloading x: 0.1 / 1.0 GB"))  # a new series starts over
    assert stream.getvalue().endswith("ETA ...\x1b[K")


def test_an_adapter_pulls_its_config_one_weight_file_and_its_base_model(
    hub: HubServer, online: Path
) -> None:
    adapter = "guoyww/animatediff-motion-adapter-v1-5-2"  # registry: base_model is SD 1.5
    hub.add(
        HubRepo(
            adapter,
            {
                "config.json": b'{"_class_name": "MotionAdapter"}',
                "diffusion_pytorch_model.safetensors": b"motion " * 100,
                "diffusion_pytorch_model.fp16.safetensors": b"half " * 100,
                "README.md": b"# adapter\n",
            },
        )
    )
    pulled = md.pull(adapter, "diffusers", endpoint=hub.url)
    assert _snapshot_files(pulled.paths["model"]) == {
        "config.json",
        "diffusion_pytorch_model.safetensors",
    }
    assert md.local_files(SD_ID, "diffusers") is not None  # the base model came too
    assert md.local_files(adapter, "diffusers") == {"model": pulled.paths["model"]}


def _select_with_downloads(name: str, hub: HubServer, cache: Path) -> md.SdcppModelSelection:
    """resolve_sdcpp_model_selection(allow_download=True) in a process whose huggingface_hub
    reads this Hub's address and ``cache`` from its environment (as a user's would)."""
    code = (
        "import json, sys; from abstractvision import model_downloads as md\n"
        "got = md.resolve_sdcpp_model_selection(sys.argv[1], allow_download=True)\n"
        "print(json.dumps(got.to_dict()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, name],
        capture_output=True,
        text=True,
        env=hub.cli_env(cache),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return md.SdcppModelSelection(**json.loads(done.stdout))


def test_0_3_x_sdcpp_selection_resolves_preset_keys_to_the_pulled_files(
    hub: HubServer, online: Path, klein_split: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.3.34's resolve_sdcpp_model_selection: a preset key -> the files ``pull`` put on disk."""
    import shutil

    monkeypatch.setenv("HF_HUB_CACHE", str(online))  # 0.3.x read the cache when called
    with pytest.raises(md.SdcppFilesMissingError) as missing:
        md.resolve_sdcpp_model_selection("flux2-klein-4b")
    text = str(missing.value)
    assert isinstance(missing.value, RuntimeError) and isinstance(missing.value, UnknownModelError)
    for role in (
        "diffusion_model (leejet/FLUX.2-klein-4B-GGUF",
        f"vae ({KLEIN_ID}",
        "llm (unsloth",
    ):
        assert role in text
    assert f"`abstractvision pull {KLEIN_ID} --engine sdcpp`" in text
    assert not hub.served("GET")  # nothing is fetched unless asked

    got = _select_with_downloads("flux2-klein-4b", hub, online)
    assert got.files == md.local_files(KLEIN_ID, "sdcpp") and got.model is None
    assert (got.repo_id, got.capabilities_model_id) == ("leejet/FLUX.2-klein-4B-GGUF", KLEIN_ID)
    assert got.diffusion_model and got.diffusion_model.endswith("flux-2-klein-4b-Q8_0.gguf")
    assert got.llm and got.llm.endswith("Qwen3-4B-Q4_K_M.gguf")  # the registry's default quant
    assert got.vae and Path(got.vae).read_bytes() == klein_split["vae"].read_bytes()
    fetched = len(hub.served("GET"))
    for name in (
        KLEIN_ID,
        "FLUX.2-klein-4B",
        "leejet/FLUX.2-klein-4B-GGUF",
        "sdcpp/flux2-klein-4b",
    ):
        assert md.resolve_sdcpp_model_selection(name, allow_download=True) == got
    assert len(hub.served("GET")) == fetched  # on disk: no second download

    # an sd.cpp backend configured with the 0.3.x key (AbstractCore's vision_sdcpp_model) loads
    # the same files; a key whose files are not on disk names the pull that fetches them
    from abstractvision import ImageGenerationRequest
    from abstractvision.backends import StableDiffusionCppVisionBackend

    backend = StableDiffusionCppVisionBackend(model="flux2-klein-4b")
    assert backend.config.files() == got.files and backend.model_name == KLEIN_ID
    base = StableDiffusionCppVisionBackend(model="flux2-klein-base-4b")
    with pytest.raises(UnknownModelError) as absent:
        base.generate_image(ImageGenerationRequest(prompt="x", width=64, height=64))
    pull = "abstractvision pull black-forest-labs/FLUX.2-klein-base-4B --engine sdcpp"
    assert pull in str(absent.value)

    shutil.rmtree(online / "models--unsloth--Qwen3-4B-GGUF")  # a companion gone: named alone
    with pytest.raises(
        md.SdcppFilesMissingError, match=r"missing llm \(unsloth/Qwen3-4B-GGUF"
    ) as gone:
        md.resolve_sdcpp_model_selection("flux2-klein-4b")
    assert "diffusion_model" not in str(gone.value) and "vae (" not in str(gone.value)
    with pytest.raises(ValueError, match=r"Unknown stable-diffusion\.cpp"):
        md.resolve_sdcpp_model_selection("sdxl-turbo")  # the registry names no sd.cpp files
    with pytest.raises(ValueError, match="name"):
        md.resolve_sdcpp_model_selection("  ")


def test_0_3_x_qwen_edit_gguf_key_pulls_the_registry_bundle(
    hub: HubServer, online: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``qwen-image-edit-2511-gguf`` (a 0.3.x preset key): the registry's sd.cpp sources match
    the files 0.3.x used (the Q8_0 GGUF, Comfy's VAE and full Qwen2.5-VL encoder, not fp8)."""
    hub.add(
        HubRepo(
            "unsloth/Qwen-Image-Edit-2511-GGUF",
            {f"qwen-image-edit-2511-{q}.gguf": q.encode() * 1000 for q in ("Q4_K_M", "Q8_0")},
        )
    )
    comfy = {
        "split_files/vae/qwen_image_vae.safetensors": b"vae" * 1000,
        "split_files/text_encoders/qwen_2.5_vl_7b.safetensors": b"llm" * 1000,
        "split_files/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors": b"fp8" * 1000,
        "split_files/diffusion_models/qwen_image_bf16.safetensors": b"dit" * 1000,
    }
    hub.add(HubRepo("Comfy-Org/Qwen-Image_ComfyUI", comfy))
    monkeypatch.setenv("HF_HUB_CACHE", str(online))
    preset = md.find_model_preset("qwen-image-edit-2511-gguf", engine="stable-diffusion.cpp")
    assert (preset.repo_id, preset.target) == ("unsloth/Qwen-Image-Edit-2511-GGUF", "gguf")
    assert preset.upstream_repo_id == "Qwen/Qwen-Image-Edit-2511"
    got = _select_with_downloads("qwen-image-edit-2511-gguf", hub, online)
    assert got == md.resolve_sdcpp_model_selection("qwen-image-edit-2511-gguf")
    assert Path(got.diffusion_model or "").read_bytes() == b"Q8_0" * 1000
    assert Path(got.vae or "").read_bytes() == comfy["split_files/vae/qwen_image_vae.safetensors"]
    assert got.llm and got.llm.endswith("split_files/text_encoders/qwen_2.5_vl_7b.safetensors")
    assert len(hub.served("GET")) == 3  # not the fp8 encoder, nor Comfy's bf16 model

    from abstractvision.backends import StableDiffusionCppVisionBackend

    backend = StableDiffusionCppVisionBackend(model="qwen-image-edit-2511-gguf")
    assert backend.config.files() == got.files
    assert backend._takes_references()  # Qwen edits go in as reference images (as in 0.3.34)


def test_0_3_x_access_error_name_and_host_kind(hub: HubServer, online: Path) -> None:
    """0.3.34 callers catch HuggingFaceAccessError and read local_model_profile()."""
    from abstractvision.startup import machine

    with pytest.raises(md.HuggingFaceAccessError, match="gated"):
        md.pull(GATED_ID, "diffusers", endpoint=hub.url)
    kind = md.local_model_profile()
    assert kind in ("cuda", "apple-silicon", "macos", "cpu")
    assert (kind == "cuda") == (machine().device == "cuda")
    assert (kind == "apple-silicon") == (machine().device == "mps")
