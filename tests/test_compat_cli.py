"""0.3.x command lines read by ``cli.build_parser()`` itself, with 0.3.x's Namespace names."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_generate import read_terminal

from abstractvision.cli import COMMANDS, build_parser, main


def test_build_parser_gives_0_3_x_names_beside_today_s() -> None:
    parser = build_parser()
    args = parser.parse_args(["t2v", "hi", "--frames", "9", "--fps", "8", "--max-sequence-length", "256"])  # fmt: skip
    assert (args.cmd, args.prompt, args.num_frames, args.fps) == ("t2v", "hi", 9, 8)
    assert args.max_sequence_length == 256 and "max_sequence_length=256" in args.extra
    assert (args.steps, args.guidance_2, args.flow_shift) == (None, None, None)
    assert args.progress is True and args._fn is COMMANDS["t2v"].run  # video: on by default
    assert parser.parse_args(["t2v", "hi", "--no-progress"]).progress is False
    args = parser.parse_args(["t2i", "hello"])
    assert args.progress is False and args.show_progress is None  # images: on a terminal only
    assert (args.width, args.control_image, args.control_strength, args.lora_paths) == (None,) * 4
    args = parser.parse_args(["i2i", "--image", "in.png", "hello"])
    assert (args.reference_images, args.steps, args.progress) == ([], None, False)
    old = ["--reference-image", "s.png", "--reference-image", "l.png", "--progress"]
    args = parser.parse_args(["i2i", "--image", "in.png", *old, "combine them"])
    assert (args.prompt, args.reference_images, args.progress) == ("combine them", ["s.png", "l.png"], True)  # fmt: skip
    args = parser.parse_args(["t2v", "--flow-shift", "3", "--guidance-2", "1.5", "--count", "2",
                              "--seeds", "91", "--seeds", "92", "hello", "--provider", "hf"])  # fmt: skip
    assert (args.flow_shift, args.guidance_2, args.count) == (3, 1.5, 2)
    assert args.seeds == ["91", "92"] and args.prompt == "hello"
    assert (args.provider, args.backend) == ("hf", "diffusers")
    assert {"flow_shift=3", "guidance_scale_2=1.5"} <= set(args.extra)
    assert parser.parse_args(["t2i", "--seeds", "1", "2", "cat"]).seeds == [1, 2]  # 0.4 spelling
    assert not hasattr(parser.parse_args(["models", "--task", "text_to_image"]), "progress")


def test_0_3_x_lora_flags_become_extra_loras() -> None:
    argv = ["t2i", "--lora", "org/style", "--lora-weight-name", "a.safetensors"]
    argv += ["--lora-subfolder", "sub", "--lora-scale", "0.75", "--lora-adapter-name", "style"]
    argv += ["--lora-path", "/loras/b.safetensors", "--lora-target-role", "transformer", "cat"]
    args = build_parser().parse_args(argv)
    assert args.lora_paths == ["org/style", "/loras/b.safetensors"]
    assert (args.lora_scales, args.lora_adapter_name) == ([0.75], ["style"])
    assert args.lora_target_roles == ["transformer"]
    [loras] = [e for e in args.extra if e.startswith("loras=")]
    assert json.loads(loras.removeprefix("loras=")) == [
        {"source": "org/style", "weight": 0.75, "weight_name": "sub/a.safetensors"},
        {"source": "/loras/b.safetensors", "weight": 1.0},
    ]
    args = build_parser().parse_args(["t2v", "--lora", "o/r:f.safetensors", "--model-id", "m", "x"])
    assert args.model == "m" and '"weight_name": "f.safetensors"' in args.extra[0]


def test_a_bad_0_3_x_lora_scale_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["t2i", "--lora", "org/style", "--lora-scale", "strong", "cat"]) == 2
    err = capsys.readouterr().err
    assert "--lora-scale" in err and "strong" in err and "Traceback" not in err


def test_args_fn_runs_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``args._fn(args)`` (how 0.3.x's own main ran a command) runs today's command."""
    args = build_parser().parse_args(["model-catalog", "--task", "image_upscale", "--json"])
    assert (args.cmd, args.command) == ("model-catalog", "models")  # cmd: the name as typed
    assert args._fn(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all("image_upscale" in row["tasks"] for row in rows)


def test_0_3_x_seed_lists_run_one_image_per_seed(tmp_path: Path) -> None:
    """``--seeds 5,6 --seeds 7`` stays as typed in the Namespace; the run makes seeds 5, 6, 7."""
    from http_servers import png, serving
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seeds: list[int] = []

    async def images(request: Request) -> JSONResponse:
        seeds.append((await request.json())["seed"])
        return JSONResponse({"data": [{"b64_json": base64.b64encode(png()).decode()}]})

    route = Route("/v1/images/generations", images, methods=["POST"])
    with serving(Starlette(routes=[route])) as base:
        argv = ["t2i", "--provider", "openai-compatible", "--model", "local-sd", "--seeds", "5,6"]
        argv += ["--backend-option", f"base_url={base}/v1", "--seeds", "7", "a cat"]
        args = build_parser().parse_args([*argv, "-o", str(tmp_path / "cat.png")])
        assert args.seeds == ["5,6", "7"] and args.backend == "openai"
        assert args._fn(args) == 0
    assert seeds == [5, 6, 7]
    assert len(list(tmp_path.glob("cat-*-seed*.png"))) == 3


def test_no_progress_hides_the_bar_on_a_terminal(tiny_sd_dir: Path, tmp_path: Path) -> None:
    """0.3.x's --no-progress: no progress bar even when stderr is a terminal."""
    main_fd, follower = pty.openpty()  # stderr on a terminal: the bar would show steps
    argv = ["t2i", "--model", str(tiny_sd_dir), "x", "--steps", "2", "--width", "64"]
    argv += ["--height", "64", "-o", "p.png", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ABSTRACTVISION_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "abstractvision.cli", *argv], cwd=tmp_path,
                          env=env, stdout=subprocess.PIPE, stderr=follower, timeout=300)  # fmt: skip
    os.close(follower)
    err = read_terminal(main_fd)
    assert done.returncode == 0, err
    assert (tmp_path / "p.png").exists() and "ETA" not in err and "step" not in err, err


def test_0_3_x_download_and_catalogue_command_lines(tiny_sd_dir: Path, tmp_path: Path) -> None:
    """download-model NAME --provider huggingface --max-workers N (0.3.x) pulls the Diffusers
    files from the Hub; --target gguf on a catalogue command lists the models sd.cpp runs."""
    from hub_repos import SD_ID, diffusers_repo
    from hub_server import HubServer

    def cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "abstractvision.cli", *argv], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip

    with HubServer([diffusers_repo(tiny_sd_dir)]) as hub:
        env = hub.cli_env(tmp_path / "cache")
        old = ["download-model", SD_ID, "--provider", "huggingface", "--max-workers", "2"]
        pulled = cli(*old, "--allow-non-8bit", "--json", env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert "0.3.x usage rewritten (download-model, --provider, --max-workers" in pulled.stderr
        row = json.loads(pulled.stdout)
        assert (row["engine"], row["files"]) == ("diffusers", 10) and row["downloaded_bytes"] > 0
        again = cli("download-vision-model", SD_ID, "--target", "diffusers", "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["downloaded_bytes"] == 0  # on disk already
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    listed = cli("vision-models", "--target", "gguf", "--all", "--json", env=offline)
    assert listed.returncode == 0, listed.stderr
    assert any(row["downloads"] for row in json.loads(listed.stdout))  # the GGUF repos
    assert json.loads(listed.stdout) == json.loads(cli("models", "--backend", "sdcpp", "--json", env=offline).stdout)  # fmt: skip
    refused = cli("model-presets", "--target", "mlx", env=offline)
    assert refused.returncode == 2 and "--target mlx" in refused.stderr


def test_0_3_x_backend_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--base-url alone meant the OpenAI-compatible API; --api-key / --timeout-s / --store-dir /
    --images-generations-path are today's backend options and --store."""
    from http_servers import png, serving
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[tuple[str, str]] = []

    async def images(request: Request) -> JSONResponse:
        seen.append((request.url.path, request.headers.get("authorization", "")))
        return JSONResponse({"data": [{"b64_json": base64.b64encode(png()).decode()}]})

    with serving(Starlette(routes=[Route("/v1/gen", images, methods=["POST"])])) as base:
        argv = ["t2i", "--base-url", f"{base}/v1", "--api-key", "sk-old", "--timeout-s", "30"]
        argv += ["--images-generations-path", "/gen", "--store-dir", str(tmp_path / "st")]
        assert main([*argv, "--model", "local-sd", "a cat", "--open"]) == 0
    assert seen == [("/v1/gen", "Bearer sk-old")]
    out, err = capsys.readouterr()
    assert out.strip() and any((tmp_path / "st").rglob("*"))  # stored; the ref is printed
    assert "sk-old" not in err and "(--base-url, --api-key, --timeout-s" in err

    args = build_parser().parse_args(
        ["t2v", "--provider", "sdcpp", "--sdcpp-model", "m.gguf", "--sdcpp-vae", "v.safetensors",
         "--sdcpp-bin", "/opt/sd-cli", "--diffusers-device", "cpu", "--no-vae-tiling", "waves",
         "--text-to-video-path", "/t2v", "--diffusers-no-auto-retry-fp32"]
    )  # fmt: skip
    assert (args.backend, args.model, args.device, args.prompt) == ("sdcpp", "m.gguf", "cpu", "waves")  # fmt: skip
    assert args.backend_option == ["vae=v.safetensors", 'sync_video_paths={"text_to_video": "/t2v"}']  # fmt: skip


def test_0_3_x_model_presets_text_names_the_engine_and_its_repos(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """model-presets --provider sdcpp (0.3.x): the engine, and each model's GGUF repo."""
    assert main(["model-presets", "--provider", "sdcpp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "provider/engine: stable-diffusion.cpp"
    [klein] = [line for line in lines if line.startswith("black-forest-labs/FLUX.2-klein-4B ")]
    assert klein.endswith("(gguf: leejet/FLUX.2-klein-4B-GGUF)")
    assert main(["models"]) == 0  # without an engine: ids and tasks only
    assert "gguf:" not in capsys.readouterr().out


def test_0_3_x_playground_command_serves_the_playground(tmp_path: Path) -> None:
    """``abstractvision playground --host H --port P`` (0.3.x) runs the server; its page is /."""
    import socket
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = build_parser().parse_args(["playground", "--host", "127.0.0.1", "--port", str(port)])
    assert (args.cmd, args.command, args.host, args.port) == ("playground", "serve", "127.0.0.1", port)  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    argv = [sys.executable, "-m", "abstractvision.cli", "playground", "--host", "127.0.0.1"]
    proc = subprocess.Popen([*argv, "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
                time.sleep(0.2)
        assert page.status_code == 200 and "<title>abstractvision playground</title>" in page.text
    finally:
        proc.terminate()
        proc.wait(10)
