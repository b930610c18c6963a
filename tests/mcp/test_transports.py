"""Real processes: stdio (the bar), start-up without torch, streamable HTTP and SSE + auth.

How fast tools/list answers after start is measured in benchmarks/, not asserted here."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import text
from http_servers import mcp_http_client
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client

pytestmark = pytest.mark.anyio
ENV = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "")}
TOKEN = "test-token-123"


def server_args(tmp_path: Path, model: Path, *flags: str) -> list[str]:
    return ["-m", "mcp_server", "--model", str(model), "--device", "cpu",
            "--store", str(tmp_path / "store"), *flags]  # fmt: skip


async def test_stdio_generate_read_edit(tmp_path: Path, tiny_sd_dir: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=server_args(tmp_path, tiny_sd_dir), env=ENV
    )
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"text_to_image", "image_to_image"} <= names
        made = await client.call_tool("text_to_image", {"prompt": "a cat", "steps": 2, "seed": 1})
        assert not made.is_error, text(made)
        png = base64.b64decode(
            (await client.read_resource(made.structured_content["uri"])).contents[0].blob
        )
        assert png.startswith(b"\x89PNG")
        edited = await client.call_tool(
            "image_to_image", {"prompt": "a dog", "image": made.structured_content, "steps": 2}
        )
        assert not edited.is_error, text(edited)
        out = await client.read_resource(edited.structured_content["uri"])
        assert base64.b64decode(out.contents[0].blob).startswith(b"\x89PNG")


def test_start_and_tools_list_import_no_torch(tmp_path: Path, tiny_sd_dir: Path) -> None:
    # --no-probe: the background probe that follows a guessed tools/list imports the engine
    # (tests/mcp/test_listing.py); start-up and tools/list themselves must not.
    script = f"""
import sys, anyio
from mcp import Client
from mcp_server.config import load_config
from mcp_server.server import create_server
argv = ["--model", {str(tiny_sd_dir)!r}, "--store", {str(tmp_path)!r}, "--no-probe"]
cfg = load_config(argv, environ={{}})
async def main():
    async with Client(create_server(cfg)) as client:
        assert (await client.list_tools()).tools
anyio.run(main)
heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
assert not heavy, heavy
"""
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(base: str) -> None:
    for _ in range(300):
        try:
            httpx.get(base + "/mcp", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(f"no server at {base}")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("http")
    port = _free_port()
    args = server_args(tmp, tiny_sd_dir, "--transport", "streamable-http", "--port", str(port))
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, *args], env={**ENV, "ABSTRACTVISION_AUTH_TOKEN": TOKEN},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for_http(base)
    yield base
    proc.terminate()
    proc.wait(10)


def test_http_needs_the_token(http_server: str) -> None:
    assert httpx.post(http_server + "/mcp", json={}).status_code == 401
    assert httpx.get(http_server + "/sse").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(http_server + "/mcp", json={}, headers=wrong).status_code == 401
    evil = {"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"}
    assert httpx.post(http_server + "/mcp", json={}, headers=evil).status_code in (400, 403, 421)


async def _exercise(client: Client) -> None:
    assert "text_to_image" in {t.name for t in (await client.list_tools()).tools}
    made = await client.call_tool("text_to_image", {"prompt": "x", "steps": 1})
    assert not made.is_error, text(made)
    read = await client.read_resource(made.structured_content["uri"])
    assert read.contents[0].mime_type == "image/png"


def http_client(base: str) -> Any:
    """A real streamable-HTTP client that sends the bearer token."""
    return mcp_http_client(base, TOKEN)


async def test_streamable_http_client(http_server: str) -> None:
    async with http_client(http_server) as client:
        await _exercise(client)


async def test_sse_client(http_server: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with Client(sse_client(http_server + "/sse", headers=headers, timeout=60)) as client:
        await _exercise(client)


def test_public_bind_needs_token() -> None:
    args = [sys.executable, "-m", "mcp_server", "--transport", "sse", "--host", "0.0.0.0"]
    done = subprocess.run(args, env=ENV, capture_output=True, timeout=30)
    assert done.returncode == 2 and b"--auth-token" in done.stderr


async def test_http_keeps_serving_while_a_job_runs(http_server: str) -> None:
    async with http_client(http_server) as client:
        started = await client.call_tool("text_to_image", {"prompt": "x", "steps": 60, "wait_s": 0})
        job = started.structured_content
        assert job["status"] in ("queued", "running"), job
        with anyio.fail_after(2):
            await client.list_tools()
            await client.read_resource("abstractvision://capabilities")
        done: Any = await client.call_tool("get_job", {"job_id": job["job_id"], "wait_s": 120})
        assert done.structured_content["status"] == "succeeded"
