"""Generation CLI through a subprocess on tiny models: files, progress bar on a pty, exit codes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.slow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def cli(*args: str, cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "abstractvision.cli", *args],
        cwd=cwd,
        env=ENV,
        text=True,
        capture_output=kwargs.pop("capture_output", True),
        timeout=300,
        **kwargs,
    )


def test_t2i_writes_a_png_of_the_asked_size(tiny_sd_dir: Path, tmp_path: Path) -> None:
    done = cli("t2i", "--model", str(tiny_sd_dir), "a red cube", "-o", "out.png",
               "--width", "64", "--height", "96", "--steps", "2", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "out.png"
    with Image.open(tmp_path / "out.png") as image:
        assert (image.format, image.size) == ("PNG", (64, 96))


def read_terminal(main_fd: int) -> str:
    """Everything written to a pty's follower side, once the writer has exited."""
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_only_on_a_terminal(tiny_sd_dir: Path, tmp_path: Path) -> None:
    args = ("t2i", "--model", str(tiny_sd_dir), "x", "--steps", "3", "--width", "64")
    for json_mode in (False, True):
        main, follower = pty.openpty()
        flags = ("--json",) if json_mode else ()
        done = cli(*args, "--height", "64", "-o", "p.png", *flags, cwd=tmp_path,
                   capture_output=False, stdout=subprocess.PIPE, stderr=follower)  # fmt: skip
        os.close(follower)
        tty_err = read_terminal(main)
        assert done.returncode == 0, tty_err
        assert ("ETA" in tty_err and "step 3/3" in tty_err) is not json_mode, tty_err
    assert json.loads(done.stdout)[0]["width"] == 64
    piped = cli(*args, "--height", "64", "-o", "p.png", cwd=tmp_path)
    assert "ETA" not in piped.stderr


def test_edit_with_mask_video_and_store(
    tiny_sd_dir: Path, tiny_animatediff_dir: Path, tmp_path: Path
) -> None:
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "in.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "mask.png")
    edit = cli("i2i", "--model", str(tiny_sd_dir), "blue", "--image", "in.png", "--mask",
               "mask.png", "--steps", "2", "-o", "e.webp", "--json", cwd=tmp_path)  # fmt: skip
    assert edit.returncode == 0, edit.stderr
    assert json.loads(edit.stdout)[0]["content_type"] == "image/webp"
    video = cli("t2v", "--model", str(tiny_animatediff_dir), "x", "--steps", "1",
                "--num-frames", "4", "--store", "st", "--json", cwd=tmp_path)  # fmt: skip
    assert video.returncode == 0, video.stderr
    ref = json.loads(video.stdout)
    assert ref["content_type"] == "video/mp4" and (tmp_path / "st").is_dir()


def test_exit_codes(tiny_sd_dir: Path, tmp_path: Path) -> None:
    usage = cli("t2i", "--model", str(tiny_sd_dir), cwd=tmp_path)  # no prompt
    assert usage.returncode == 2 and "prompt" in usage.stderr
    invalid = cli("t2i", "--model", str(tiny_sd_dir), "x", "--width", "65", cwd=tmp_path)
    assert invalid.returncode == 2 and "width=65" in invalid.stderr
    missing = cli("t2i", "--model", "nobody/not-downloaded", "x", "--json", cwd=tmp_path)
    assert missing.returncode == 2
    assert "abstractvision pull nobody/not-downloaded" in json.loads(missing.stdout)["error"]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{")
    failed = cli("t2i", "--model", "broken", "x", cwd=tmp_path)
    assert failed.returncode == 1 and "model_index.json" in failed.stderr


def test_tools_prints_specs_the_openai_sdk_accepts(tmp_path: Path) -> None:
    from openai.types.chat import ChatCompletionToolUnionParam
    from pydantic import TypeAdapter

    done = cli("tools", "--format", "openai", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    specs = json.loads(done.stdout)
    assert len(specs) == 6  # one per task
    adapter: TypeAdapter[Any] = TypeAdapter(ChatCompletionToolUnionParam)
    for spec in specs:
        adapter.validate_python(spec, strict=True)
    anthropic = json.loads(cli("tools", "--format", "anthropic", cwd=tmp_path).stdout)
    assert [s["name"] for s in anthropic] == [s["function"]["name"] for s in specs]


def test_doctor_reports_this_machine(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--stabilityai--sdxl-turbo"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    (repo / "snapshots" / "abc" / "model_index.json").write_text("{}")
    done = cli("doctor", "--json", "--cache-dir", str(tmp_path / "hub"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    import torch

    assert doc["packages"]["torch"] == torch.__version__
    assert doc["devices"]["cuda"] is torch.cuda.is_available()
    assert doc["ffmpeg"] and Path(doc["ffmpeg"]).exists()
    assert [m["id"] for m in doc["models"]] == ["stabilityai/sdxl-turbo"]
    assert doc["backends"]["diffusers"]["ready"] is True
    assert (
        "text_to_image" in doc["backends"]["diffusers"]["cached_models"]["stabilityai/sdxl-turbo"]
    )
    text = cli("doctor", "--cache-dir", str(tmp_path / "hub"), cwd=tmp_path).stdout
    assert "backend diffusers: ready" in text and "stabilityai/sdxl-turbo" in text
