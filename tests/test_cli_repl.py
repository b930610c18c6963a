"""``abstractvision cli`` / ``repl``: 0.3.x's interactive prompt over today's subcommands."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from abstractvision.cli_repl import Repl


def _prompt(lines: list[str], cwd: Path, command: str = "cli") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ABSTRACTVISION_DEVICE": "cpu"}
    env.pop("ABSTRACTVISION_BACKEND", None)
    return subprocess.run([sys.executable, "-m", "abstractvision", command], cwd=cwd, env=env,
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _config(stdout: str) -> dict:
    start = stdout.index("{\n")
    return json.JSONDecoder().raw_decode(stdout[start:])[0]


def test_backend_and_config_use_0_3_x_names(tmp_path: Path) -> None:
    done = _prompt(
        ["/backend sdcpp /models/sd-v1-5.gguf /opt/sd-cli", "/config", "/exit"], tmp_path
    )
    assert done.returncode == 0, done.stderr
    config = _config(done.stdout)
    assert config["backend_kind"] == "sdcpp" and config["model_id"] is None
    assert config["sdcpp_model"] == "/models/sd-v1-5.gguf" and config["sdcpp_bin"] == "/opt/sd-cli"
    assert config["sdcpp_diffusion_model"] is None and config["model_loaded"] is False
    assert "sd-cli is not used in 0.4" in done.stderr  # the binary is shown, not run

    parts = ["/backend sdcpp /m/qwen.gguf /m/vae.safetensors /m/llm.gguf", "/config"]
    split = _config(_prompt(parts, tmp_path, "repl").stdout)  # repl: the other name; EOF quits
    assert (
        split["sdcpp_diffusion_model"] == "/m/qwen.gguf"
        and split["sdcpp_vae"] == "/m/vae.safetensors"
    )
    assert split["sdcpp_llm"] == "/m/llm.gguf" and split["sdcpp_model"] is None


def test_bad_lines_print_an_error_and_the_prompt_goes_on(tmp_path: Path) -> None:
    lines = [
        "/nope",
        "/backend warp-drive",
        "/t2i a cube --width 7",
        '/t2i "unclosed',
        "/t2i x --bogus",
    ]
    done = _prompt([*lines, "/set width 64", "/defaults", "/exit"], tmp_path)
    assert done.returncode == 0
    err = done.stderr
    assert "/nope: unknown command" in err and "/backend warp-drive" in err
    assert "width" in err and "7" in err  # the request's own bound, before any model loads
    assert "No closing quotation" in err and "unrecognized arguments: --bogus" in err
    assert _config(done.stdout) == {"width": "64"}
    assert list(tmp_path.iterdir()) == []  # nothing written by the failed lines


def test_generations_share_one_warm_model(tiny_sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repl = Repl(out=io.StringIO())
    repl.handle(f"/backend diffusers {tiny_sd_dir} cpu")
    for line in ("/set steps 1", "/set width 64", "/set height 64", "/set fps 4"):
        repl.handle(line)  # fps: a video flag, left out of /t2i
    repl.handle("/t2i a red cube --seed 1 -o first.png")
    warm = repl.manager
    cache = warm.backend._cache  # the engine's loaded pipelines
    (key,) = cache.keys()
    loaded = cache.get(key)
    repl.handle("a red cube --seed 1 --width=72 --height 64 -o second.png")  # no /: a t2i prompt
    assert repl.manager is warm and cache.keys() == [key] and cache.get(key) is loaded
    assert Image.open("first.png").size == (64, 64) and Image.open("second.png").size == (72, 64)

    repl.handle(f"/store {tmp_path / 'store'}")  # another store: another manager
    assert repl.manager is None
    repl.handle("/t2i a red cube --seed 1")
    assert any((tmp_path / "store").rglob("*.png")) and repl.manager is not warm
    repl.handle("/t2i a red cube --seed 1 -o third.png")  # -o: a file, not the store
    assert Image.open("third.png").size == (64, 64)
    repl.handle("/backend off")
    assert repl.manager is None and repl.config()["backend_kind"] == ""


def test_openai_backend_form_reaches_a_real_service(tiny_sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """``/backend openai <base_url> [api_key] [model_id]``: our loopback OpenAI-compatible server."""
    from http_servers import serving

    from abstractvision import VisionManager
    from abstractvision.backends import HuggingFaceDiffusersVisionBackend
    from abstractvision.openai_server import create_app

    monkeypatch.chdir(tmp_path)
    local = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device="cpu")
    with serving(create_app(VisionManager(local))) as url:
        repl = Repl(out=io.StringIO())
        repl.handle(f"/backend openai {url}/v1 sk-test {tiny_sd_dir}")
        assert repl.config()["base_url"] == f"{url}/v1" and repl.config()["model_id"]
        repl.handle("/t2i a red cube --width 64 --height 64 --steps 1 --seed 3 -o remote.png")
    assert Image.open("remote.png").size == (64, 64)
