"""The first five minutes, for real: a server started with no model and downloads allowed pulls
the machine's recommended model from the (loopback) Hub with progress, then answers; without
downloads it says which pull to run; Ctrl-C during a CLI generation exits 130 with no output."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from hub_repos import diffusers_repo, klein_sdcpp_repos, split_klein
from hub_server import HubServer
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent


def _text(result: object) -> str:
    return " ".join(getattr(c, "text", "") for c in getattr(result, "content", []))


@pytest.fixture
def hub(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """Every recommended default (sd.cpp klein, SD 1.5 on Diffusers) as tiny repos."""
    pytest.importorskip("gguf")
    split = split_klein(tmp_path_factory.getbasetemp() / "klein_split_first_run")
    with HubServer([diffusers_repo(tiny_sd_dir), *klein_sdcpp_repos(split)]) as hub:
        yield hub


def _env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    return hub.cli_env(tmp_path / "cache")


@pytest.mark.anyio
async def test_server_without_a_model_refuses_naming_the_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as constants

    from mcp_server.config import load_config
    from mcp_server.defaults import prepare
    from mcp_server.server import create_server

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = load_config(["--store", str(tmp_path / "store")], environ={})
    lines = prepare(config)  # what abstractvision-mcp prints at start
    assert config.model and f"model {config.model}" in lines[0]
    assert (
        "recommended for this machine" in lines[0]
        and "not on disk; run `abstractvision pull" in lines[0]
    )
    async with Client(create_server(config)) as client:
        refused = await client.call_tool("text_to_image", {"prompt": "x", "steps": 1})
    assert refused.is_error and f"abstractvision pull {config.model}" in _text(refused)


@pytest.mark.anyio
async def test_missing_extra_is_said_at_start_and_no_task_tool_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from mcp_server.config import load_config
    from mcp_server.defaults import prepare
    from mcp_server.server import create_server

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "stable_diffusion_cpp" else real(name, *a),
    )
    argv = ["--backend", "sdcpp", "--model", "black-forest-labs/FLUX.2-klein-4B"]
    config = load_config([*argv, "--store", str(tmp_path / "store")], environ={})
    lines = prepare(config)
    assert any("pip install 'abstractvision[sdcpp]'" in line for line in lines), lines
    async with Client(create_server(config)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        await anyio.sleep(0.2)  # let the background probe run: it must not add them back
        names |= {t.name for t in (await client.list_tools()).tools}
    assert "list_models" in names and not names & {"text_to_image", "image_to_image"}


@pytest.mark.anyio
async def test_server_without_a_model_pulls_the_default_with_progress_then_answers(
    hub: HubServer, tmp_path: Path
) -> None:
    # the engine scripts/setup installs by default; the model is the machine's recommended one
    args = ["-m", "mcp_server", "--backend", "diffusers", "--device", "cpu", "--allow-download",
            "--store", str(tmp_path / "store")]  # fmt: skip
    params = StdioServerParameters(command=sys.executable, args=args, env=_env(hub, tmp_path))
    events: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        events.append((done, total, message))

    log = tmp_path / "stderr.txt"
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            made = await client.call_tool(
                "text_to_image",
                {"prompt": "a fox", "width": 64, "height": 64, "steps": 1, "seed": 3},
                progress_callback=progress,
            )
    assert not made.is_error, _text(made)
    assert made.structured_content["content_type"] == "image/png"
    messages = [m or "" for _, _, m in events]
    downloads = [i for i, m in enumerate(messages) if m.startswith("downloading ")]
    assert downloads and downloads[0] == 0, messages  # the download is reported first
    assert len(downloads) < len(messages)  # then the generation's steps
    values = [done for done, _, _ in events]
    assert values == sorted(values) and len(set(values)) == len(values)  # MCP: only increasing
    last = messages[downloads[-1]]
    assert " / " in last and last.endswith((" MB", " GB"))
    started = log.read_text()
    assert "backend diffusers, model stable-diffusion-v1-5/stable-diffusion-v1-5" in started
    assert "downloads are allowed, the first call downloads it" in started


def test_ctrl_c_cancels_the_generation_exits_130_and_writes_nothing(
    tiny_sd_dir: Path, tmp_path: Path
) -> None:
    master, slave = pty.openpty()  # stderr on a terminal: the progress bar shows steps
    out = tmp_path / "cube.png"
    proc = subprocess.Popen(
        [sys.executable, "-m", "abstractvision.cli", "t2i", "a cube", "--model", str(tiny_sd_dir),
         "--steps", "200", "--width", "256", "--height", "256", "-o", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 240
    while b"step " not in seen and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    assert b"step " in seen, seen.decode(errors="replace")
    proc.send_signal(signal.SIGINT)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
    except OSError:
        pass
    assert proc.wait(120) == 130, seen.decode(errors="replace")
    os.close(master)
    text = seen.decode(errors="replace")
    assert "cancelled; nothing was written" in text and "Traceback" not in text
    assert "step 200/200" not in text  # it stopped early
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_recommended_default_follows_device_memory_engine_and_task() -> None:
    from abstractvision.startup import Machine, recommend

    klein, sd = "black-forest-labs/FLUX.2-klein-4B", "stable-diffusion-v1-5/stable-diffusion-v1-5"
    gpu = recommend(host=Machine("cuda", 40.0))
    assert (gpu.engine, gpu.model) == ("diffusers", klein)  # type: ignore[union-attr]
    laptop = recommend("sdcpp", host=Machine("cpu", 12.0))
    assert (laptop.engine, laptop.model, laptop.quant) == ("sdcpp", klein, "Q4_0")  # type: ignore[union-attr]
    assert recommend("diffusers", host=Machine("cpu", 12.0)).model == sd  # type: ignore[union-attr]
    small = recommend("diffusers", host=Machine("cpu", 1.0))
    assert small is not None and small.model == sd and "needs about 4 GB" in small.reason
    assert recommend(host=Machine("cpu", 12.0), task="text_to_video") is None
