"""The MCP Inspector CLI (npm @modelcontextprotocol/inspector) as a third-party client.

``scripts/test`` installs it into .ci/node (``scripts/install-inspector``); skipped only on a
machine without Node.js, and a failure when Node is there but the Inspector is not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_transports import ENV, server_args, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ROOT / ".ci/node/node_modules/.bin/mcp-inspector"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")


def test_inspector_is_installed() -> None:
    assert INSPECTOR.exists(), "MCP Inspector missing: run scripts/install-inspector"


def inspect(target: list[str], *args: str, env: bool = True) -> Any:
    cmd = ["node", str(INSPECTOR), "--cli", *target, *args]
    if env:  # -e is variadic: it goes last
        cmd += ["-e", "HF_HUB_OFFLINE=1"]
    done = subprocess.run(cmd, capture_output=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()[-3000:]
    return json.loads(done.stdout)


def _round_trip(target: list[str], env: bool) -> None:
    tools = inspect(target, "--method", "tools/list", env=env)
    assert "text_to_image" in {t["name"] for t in tools["tools"]}
    made = inspect(
        target, "--method", "tools/call", "--tool-name", "text_to_image",
        "--tool-arg", "prompt=a cat", "steps=2", "seed=5", env=env,
    )  # fmt: skip
    assert not made.get("isError"), made
    uri = made["structuredContent"]["uri"]
    read = inspect(target, "--method", "resources/read", "--uri", uri, env=env)
    assert read["contents"][0]["mimeType"] == "image/png"


def test_inspector_over_stdio(tmp_path: Path, tiny_sd_dir: Path) -> None:
    _round_trip([sys.executable, *server_args(tmp_path, tiny_sd_dir)], env=True)


@pytest.fixture
def open_http(tmp_path: Path, tiny_sd_dir: Path) -> Iterator[str]:
    from test_transports import _free_port

    port = _free_port()
    args = server_args(tmp_path, tiny_sd_dir, "--transport", "streamable-http", "--port", str(port))
    proc = subprocess.Popen([sys.executable, *args], env=ENV, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_for_http(base)
    yield base
    proc.terminate()
    proc.wait(10)


def test_inspector_over_streamable_http(open_http: str) -> None:
    _round_trip([open_http + "/mcp", "--transport", "http"], env=False)
