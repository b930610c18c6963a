"""StableDiffusionCppVisionBackend end to end on random-weight sd.cpp models (tests/sdcpp_models).

Every test runs the real bindings in the real worker process: a FLUX.2-klein-shaped image model
(text encoder, DiT, VAE) and a Wan 2.1 1.3B DiT (Q4_0) with the TAEHV decoder. Crashes are real
signals sent to the worker; nothing in the engine is stubbed. The bindings are imported hard:
CI installs the ``sdcpp`` extra, so a missing install fails here instead of skipping.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stable_diffusion_cpp  # noqa: F401  (hard import: the extra must be installed)
from PIL import Image
from sdcpp_models import load_spec, write_gguf_q4, write_safetensors

from abstractvision import VisionManager, media
from abstractvision.backends import create_backend
from abstractvision.backends.stable_diffusion_cpp import (
    StableDiffusionCppBackendConfig,
    StableDiffusionCppVisionBackend,
)
from abstractvision.control import GenerationControl, ProgressEvent
from abstractvision.errors import (
    BackendError,
    CapabilityNotSupportedError,
    GenerationCancelledError,
    InvalidRequestError,
    OptionalDependencyMissingError,
)
from abstractvision.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    VideoGenerationRequest,
)

THREADS = os.cpu_count() or 1


@pytest.fixture(scope="session")
def wan_files(sdcpp_dir: Path) -> tuple[Path, Path]:
    """Wan 2.1 T2V 1.3B DiT as 765 MiB Q4_0 GGUF, and the TAEHV decoder."""
    dit = write_gguf_q4(load_spec("wan_dit_spec"), sdcpp_dir / "wan-t2v-1.3b-q4_0.gguf")
    tae = write_safetensors(load_spec("wan_tae_spec"), sdcpp_dir / "taew2_1.safetensors")
    return dit, tae


@pytest.fixture(scope="module")
def klein(klein_file: Path) -> Iterator[StableDiffusionCppVisionBackend]:
    """One warm backend shared by the image tests (built through the public factory)."""
    backend = create_backend("sdcpp", model=str(klein_file), n_threads=THREADS)
    assert isinstance(backend, StableDiffusionCppVisionBackend)
    yield backend
    backend.unload()


def _t2i(**params: object) -> ImageGenerationRequest:
    return ImageGenerationRequest(
        **{
            "prompt": "a red fox",
            "width": 64,
            "height": 64,
            "steps": 2,
            "guidance_scale": 1.0,
            **params,
        }  # type: ignore[arg-type]
    )


def _png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _kill_on_first_step(backend: StableDiffusionCppVisionBackend, sig: int) -> GenerationControl:
    def on_progress(_event: ProgressEvent) -> None:
        pid = backend.worker_pid
        if pid is not None:
            os.kill(pid, sig)

    return GenerationControl(on_progress)


# --- capabilities ------------------------------------------------------------------------------


def test_capabilities_before_load_come_from_the_files(
    klein_file: Path, wan_files: tuple[Path, Path]
) -> None:
    image = StableDiffusionCppVisionBackend(model=str(klein_file))
    caps = image.get_capabilities()
    assert tuple(caps.supported_tasks or ()) == ("text_to_image", "image_to_image")
    assert caps.supports_mask and caps.models["text_to_image"] == ("klein",)
    assert {"sampler", "scheduler", "clip_skip", "vae_tiling", "loras"} <= set(caps.extra_keys)
    assert caps.loaded_models == () and image.worker_pid is None

    video = StableDiffusionCppVisionBackend(model=str(wan_files[0]), taesd=str(wan_files[1]))
    caps = video.get_capabilities()
    assert tuple(caps.supported_tasks or ()) == ("text_to_video", "image_to_video")
    assert caps.frame_rules == {"text_to_video": "4k+1", "image_to_video": "4k+1"}


def test_config_needs_a_model_file() -> None:
    with pytest.raises(InvalidRequestError, match="model"):
        StableDiffusionCppBackendConfig()


# --- image tasks on one warm worker ---------------------------------------------------------


def test_text_to_image_progress_warm_reuse_and_seed_determinism(
    klein: StableDiffusionCppVisionBackend,
) -> None:
    events: list[tuple[int, int | None]] = []
    control = GenerationControl(lambda e: events.append((e.step, e.total)))
    first = klein.generate_image(_t2i(seed=7), control=control)
    assert first.mime_type == "image/png"
    assert Image.open(io.BytesIO(first.data)).size == (64, 64)
    meta = first.metadata
    assert meta["seed"] == 7 and meta["steps"] == 2 and meta["width"] == meta["height"] == 64
    assert meta["load_s"] > 0 and meta["generate_s"] > 0
    assert meta["files"] == {"model": klein.config.model} and meta["sampler"] == "default"
    assert events == [(1, 2), (2, 2)]
    pid = klein.worker_pid
    assert pid is not None and klein.get_capabilities().loaded_models == ("klein",)

    # Two threads at once: the lock runs them one after the other on the same warm worker.
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(klein.generate_image(_t2i(seed=7))))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and klein.worker_pid == pid
    assert all(r.metadata["load_s"] == 0 for r in results)
    assert all(r.data == first.data for r in results)  # same seed, same bytes


def test_image_to_image_and_reference_edit(klein: StableDiffusionCppVisionBackend) -> None:
    init = _png((200, 40, 40))
    edited = klein.edit_image(  # no seed: a random one, reported
        ImageEditRequest(prompt="a fox", image=init, strength=0.5, steps=2, guidance_scale=1.0)
    )
    assert Image.open(io.BytesIO(edited.data)).size == (64, 64)
    assert edited.metadata["width"] == 64 and isinstance(edited.metadata["seed"], int)

    reference = klein.edit_image(  # FLUX.2 takes the image as a reference (edit_mode auto)
        ImageEditRequest(
            prompt="make it blue", image=init, steps=1, seed=1, guidance_scale=1.0,
            output_format="webp",
        )
    )  # fmt: skip
    assert reference.mime_type == "image/webp" and reference.data != edited.data


def test_reference_images_join_a_reference_edit_and_are_refused_otherwise(
    klein: StableDiffusionCppVisionBackend,
) -> None:
    """FLUX.2 edits from references: reference_images go in after the image and change the
    result; an init-image edit (strength) or an inpaint cannot use them and refuses them by name
    (the manager's pre-queue check too) instead of dropping them."""
    init, other = _png((200, 40, 40)), _png((20, 40, 220), (48, 80))

    def edit(**params: object) -> bytes:
        request = ImageEditRequest(
            **{"prompt": "mix them", "image": init, "steps": 1, "seed": 1, "guidance_scale": 1.0}
            | params  # type: ignore[arg-type]
        )
        return klein.edit_image(request).data

    alone, mixed = edit(), edit(reference_images=(other,))
    assert mixed != alone and edit(reference_images=(other,)) == mixed
    manager = VisionManager(backend=klein)
    for params in ({"strength": 0.5}, {"mask": _png((255, 255, 255))}):
        with pytest.raises(InvalidRequestError) as info:
            edit(reference_images=(other,), **params)
        assert info.value.field == "reference_images" and "init image" in str(info.value)
        with pytest.raises(InvalidRequestError, match="reference_images"):
            manager.check(
                "image_to_image",
                {"prompt": "x", "image": init, "reference_images": [other], **params},
            )


def test_inpaint_keeps_black_and_changes_white(klein: StableDiffusionCppVisionBackend) -> None:
    """Under a black mask the result barely depends on the seed; under a white one it does."""

    def run(fill: int, seed: int) -> list[int]:
        mask = io.BytesIO()
        Image.new("L", (64, 64), fill).save(mask, format="PNG")
        request = ImageEditRequest(
            prompt="a fox",
            image=_png((30, 160, 60)),
            mask=mask.getvalue(),
            strength=1.0,
            steps=1,
            guidance_scale=1.0,
            seed=seed,
        )
        return list(media.decode_image(klein.edit_image(request).data).tobytes())

    def mean_diff(a: list[int], b: list[int]) -> float:
        return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)

    kept_1, kept_2, changed_2 = run(0, 1), run(0, 2), run(255, 2)
    assert mean_diff(kept_1, kept_2) < 2.0  # measured 0.26 (VAE round trip of the same latent)
    assert mean_diff(kept_2, changed_2) > 10.0  # measured 80


def test_engine_options_are_checked(klein: StableDiffusionCppVisionBackend, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match=r"extra\.sampler"):
        klein.generate_image(_t2i(extra={"sampler": "no_such_sampler"}))  # the worker says so
    assert klein.worker_pid is not None  # a refused option does not cost the warm worker
    with pytest.raises(InvalidRequestError, match=r"extra\.steps_please"):
        klein.generate_image(_t2i(extra={"steps_please": 3}))
    with pytest.raises(InvalidRequestError, match="lora"):
        klein.generate_image(_t2i(prompt="a fox <lora:/etc/passwd:1>"))
    with pytest.raises(InvalidRequestError, match="no lora_dir"):
        klein.generate_image(_t2i(extra={"loras": ["style"]}))
    (tmp_path / "style.safetensors").write_bytes(b"x")
    allowed = StableDiffusionCppVisionBackend(model=klein.config.model, lora_dir=str(tmp_path))
    for bad in ("../style", "/etc/passwd", "missing"):
        with pytest.raises(InvalidRequestError, match="loras"):
            allowed.generate_image(_t2i(extra={"loras": [bad]}))
    with pytest.raises(CapabilityNotSupportedError):
        klein.generate_video(VideoGenerationRequest(prompt="a fox"))


def test_preload_loads_once_and_the_first_call_pays_no_load(klein_file: Path) -> None:
    """0.3.x's preload semantics: the model loads once however often preload is called, nothing
    is generated, and the first generation finds it warm."""
    backend = StableDiffusionCppVisionBackend(model=str(klein_file), n_threads=THREADS)
    try:
        assert backend.worker_pid is None
        backend.preload()
        pid = backend.worker_pid
        assert pid is not None and backend.get_capabilities().loaded_models == ("klein",)
        backend.preload()
        assert backend.worker_pid == pid
        first = backend.generate_image(_t2i(seed=3))
        assert first.metadata["load_s"] == 0 and backend.worker_pid == pid
    finally:
        backend.unload()
    assert backend.worker_pid is None and backend.get_capabilities().loaded_models == ()


# --- crashes, cancellation, bad files -------------------------------------------------------


def test_worker_killed_between_calls_is_replaced(klein: StableDiffusionCppVisionBackend) -> None:
    klein.preload()
    pid = klein.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert klein.worker_pid is None and klein.get_capabilities().loaded_models == ()
    klein.preload()  # a fresh worker loads; the next tests generate on it
    assert klein.worker_pid not in (None, pid)


def test_worker_crash_mid_generation_is_a_typed_error(
    klein: StableDiffusionCppVisionBackend,
) -> None:
    klein.preload()
    with pytest.raises(BackendError, match="SIGSEGV") as info:
        klein.generate_image(_t2i(steps=4), control=_kill_on_first_step(klein, signal.SIGSEGV))
    assert "next call" in str(info.value)
    started = time.perf_counter()
    asset = klein.generate_image(_t2i(steps=1, seed=5))
    recovery_s = time.perf_counter() - started
    assert asset.metadata["load_s"] > 0
    print(f"recovery after crash: {recovery_s:.2f} s (load {asset.metadata['load_s']:.2f} s)")


def test_cancel_mid_run_ends_the_worker(klein: StableDiffusionCppVisionBackend) -> None:
    klein.preload()
    pid = klein.worker_pid
    control = GenerationControl()
    timer = threading.Timer(0.5, control.cancel)  # during text encoding, inside native code
    timer.start()
    started = time.perf_counter()
    with pytest.raises(GenerationCancelledError):
        klein.generate_image(_t2i(steps=8), control=control)
    assert time.perf_counter() - started < 5.0
    assert klein.worker_pid is None
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    klein.preload()
    assert klein.worker_pid not in (None, pid)


def test_corrupt_and_missing_files_give_typed_errors(klein_file: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(klein_file.read_bytes()[: 1024 * 1024])
    for path in (garbage, truncated):
        backend = StableDiffusionCppVisionBackend(model=str(path), load_timeout_s=60)
        started = time.perf_counter()
        with pytest.raises(BackendError, match=path.name):
            backend.generate_image(_t2i(steps=1))
        assert time.perf_counter() - started < 30 and backend.worker_pid is None
    with pytest.raises(BackendError, match=r"not found.*nope\.gguf"):
        StableDiffusionCppVisionBackend(model=str(tmp_path / "nope.gguf")).preload()
    slow = StableDiffusionCppVisionBackend(model=str(klein_file), load_timeout_s=0.05)
    with pytest.raises(BackendError, match="no answer"):
        slow.preload()
    assert slow.worker_pid is None


def test_missing_bindings_name_the_extra(klein_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "stable_diffusion_cpp" else real(name, *a),
    )
    with pytest.raises(OptionalDependencyMissingError, match=r"abstractvision\[sdcpp\]"):
        StableDiffusionCppVisionBackend(model=str(klein_file)).preload()


def test_worker_never_writes_to_stdout(klein_file: Path) -> None:
    """stdout may be the MCP stdio stream: the worker and the engine must stay off fd 1."""
    script = textwrap.dedent(f"""
        from abstractvision import VisionManager
        from abstractvision.backends import create_backend
        backend = create_backend("sdcpp", model={str(klein_file)!r}, n_threads={THREADS})
        asset = VisionManager(backend=backend).generate_image(
            "a fox", width=64, height=64, steps=1, seed=1, guidance_scale=1.0)
        assert asset.data[:4] == b"\\x89PNG"
        backend.unload()
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == b""


def test_worker_ends_when_its_parent_dies_mid_generation(klein_file: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from abstractvision.backends import create_backend
        from abstractvision.control import GenerationControl
        from abstractvision.types import ImageGenerationRequest
        backend = create_backend("sdcpp", model={str(klein_file)!r}, n_threads={THREADS})
        def started(_event):
            sys.stderr.write(f"WORKER {{backend.worker_pid}}\\n")
            sys.stderr.flush()
        request = ImageGenerationRequest(prompt="a fox", width=64, height=64, steps=200)
        backend.generate_image(request, control=GenerationControl(started))
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        assert parent.stderr is not None
        line = next(line for line in parent.stderr if line.startswith("WORKER "))
        worker_pid = int(line.split()[1])
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker_pid, signal.SIGKILL)
        pytest.fail("the worker outlived its parent")


# --- video (Wan 2.1 + TAEHV) ----------------------------------------------------------------


def test_wan_text_to_video_with_taehv(wan_files: tuple[Path, Path]) -> None:
    dit, tae = wan_files
    backend = StableDiffusionCppVisionBackend(
        model=str(dit), taesd=str(tae), n_threads=THREADS, fps=8
    )
    manager = VisionManager(backend=backend)
    try:
        with pytest.raises(InvalidRequestError, match="4k\\+1"):
            manager.generate_video("a fox running", num_frames=4, width=64, height=64)
        events: list[ProgressEvent] = []
        asset = manager.generate_video(
            "a fox running", num_frames=5, width=64, height=64, steps=2, seed=1,
            on_progress=events.append,
        )  # fmt: skip
    finally:
        backend.unload()
    assert asset.mime_type == "video/mp4"
    info = media.video_info(asset.data)
    assert (info.width, info.height, info.n_frames, info.fps) == (64, 64, 5, 8.0)
    assert asset.preview_mime_type == "image/webp" and asset.preview is not None
    assert media.video_info(asset.preview).n_frames == 5
    meta = asset.metadata
    assert meta["num_frames"] == 5 and meta["fps"] == 8 and meta["steps"] == 2
    assert [e.step for e in events] == [1, 2]


def test_flow_shift_default_from_the_config_and_0_3_extra_args(
    wan_files: tuple[Path, Path],
) -> None:
    """``flow_shift`` (also 0.3.x's ``extra_args=["--flow-shift", "3"]``) is the default of
    ``extra.flow_shift``: the engine samples with 3 unless a request says otherwise."""
    dit, tae = wan_files
    with pytest.warns(DeprecationWarning, match="use flow_shift"):
        config = StableDiffusionCppBackendConfig(
            model=str(dit), taesd=str(tae), n_threads=THREADS, extra_args=["--flow-shift", "3"]
        )
    assert config.flow_shift == 3.0
    backend = StableDiffusionCppVisionBackend(config=config)

    def video(**extra: float) -> bytes:
        request = VideoGenerationRequest(
            prompt="a fox", num_frames=1, width=64, height=64, steps=2, seed=1, extra=extra
        )
        return backend.generate_video(request).data

    try:
        configured, explicit, other = video(), video(flow_shift=3.0), video(flow_shift=12.0)
    finally:
        backend.unload()
    assert configured == explicit  # the config's 3 reached the engine (its own default is not 3)
    assert other != configured  # the shift changes the sampling, and a request's value wins
    for bad in (-1, 101, float("nan"), True):
        with pytest.raises(InvalidRequestError) as info:
            StableDiffusionCppBackendConfig(model=str(dit), flow_shift=bad)  # type: ignore[arg-type]
        assert info.value.field == "flow_shift"


# --- over MCP ------------------------------------------------------------------------------------


def test_mcp_server_serves_sdcpp_and_survives_a_killed_worker(
    klein_file: Path, tmp_path: Path
) -> None:
    """``--backend sdcpp``: text_to_image end to end; the worker killed mid-call is an isError
    result, the server keeps serving, and the next call succeeds on a fresh worker."""
    import anyio
    from mcp import Client

    from mcp_server.config import load_config
    from mcp_server.server import create_server

    flags = ["--backend", "sdcpp", "--store", str(tmp_path / "store"), "--preview", "none"]
    flags += ["--backend-option", f"model={klein_file}", "--backend-option", f"n_threads={THREADS}"]
    server = create_server(load_config(flags, environ={}))
    args = {"prompt": "a red cube", "width": 64, "height": 64, "steps": 2, "seed": 3}

    async def scenario() -> None:
        async with Client(server) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "text_to_image" in tools
            first = await client.call_tool("text_to_image", args)
            assert not first.is_error, first.content
            ref = first.structured_content
            read = await client.read_resource(ref["uri"])
            png = base64.b64decode(read.contents[0].blob)
            assert Image.open(io.BytesIO(png)).size == (64, 64)

            backend = server.abstractvision_state.engine.manager.backend  # type: ignore[attr-defined]
            killed: list[int] = []

            async def kill_worker(
                progress: float, total: float | None, message: str | None
            ) -> None:
                pid = backend.worker_pid
                if pid is not None and not killed:
                    killed.append(pid)
                    os.kill(pid, signal.SIGKILL)

            crashed = await client.call_tool(
                "text_to_image", {**args, "seed": 4}, progress_callback=kill_worker
            )
            assert killed and crashed.is_error
            assert "SIGKILL" in " ".join(c.text for c in crashed.content if c.type == "text")
            again = await client.call_tool("text_to_image", {**args, "seed": 4})
            assert not again.is_error and backend.worker_pid not in (None, killed[0])

    try:
        anyio.run(scenario)
    finally:
        server.abstractvision_state.engine.manager.backend.unload()  # type: ignore[attr-defined]


def test_qwen_image_zero_cond_t_comes_from_the_registry_and_reaches_the_engine(
    klein_file: Path,
) -> None:
    """Qwen-Image-Edit-2511 is loaded with ``qwen_image_zero_cond_t`` (the registry says so);
    other models are not, an explicit setting wins, and the real bindings take the argument."""
    edit_2511 = StableDiffusionCppVisionBackend(
        model=str(klein_file), model_name="Qwen/Qwen-Image-Edit-2511", n_threads=THREADS
    )
    assert edit_2511.config.qwen_image_zero_cond_t is True
    assert edit_2511.config.load_kwargs()["qwen_image_zero_cond_t"] is True
    plain = StableDiffusionCppVisionBackend(model=str(klein_file), n_threads=THREADS)
    assert plain.config.qwen_image_zero_cond_t is False
    assert "qwen_image_zero_cond_t" not in plain.config.load_kwargs()
    off = StableDiffusionCppVisionBackend(
        model=str(klein_file),
        model_name="Qwen/Qwen-Image-Edit-2511",
        qwen_image_zero_cond_t=False,
        n_threads=THREADS,
    )
    assert "qwen_image_zero_cond_t" not in off.config.load_kwargs()
    try:  # the real StableDiffusion(...) accepts the argument (a wrong name is a TypeError)
        edit_2511.preload()
        assert edit_2511.worker_pid is not None
    finally:
        edit_2511.unload()
