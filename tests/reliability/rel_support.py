"""Shared helpers of the reliability tests: the MCP test backend, store snapshots, free ports."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from mcp import Client

_MCP_CONFTEST = Path(__file__).resolve().parent.parent / "mcp" / "conftest.py"
_spec = importlib.util.spec_from_file_location("rel_mcp_conftest", _MCP_CONFTEST)
assert _spec is not None and _spec.loader is not None
mcp_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mcp_conftest)

FaultBackend = mcp_conftest.FaultBackend
config = mcp_conftest.config
connect = mcp_conftest.connect
text = mcp_conftest.text

ENV = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "")}
PYTHON = sys.executable


def snapshot(folder: Path) -> dict[str, str]:
    """name -> sha256 of every file under ``folder`` (hidden temp files included)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def check_store(folder: Path) -> list[dict[str, Any]]:
    """Every visible artifact's bytes match its sha256 and size; returns their metadata."""
    metas = []
    for meta_path in folder.glob("*.json"):
        meta = json.loads(meta_path.read_text())
        data = (folder / meta["content_file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"], meta_path
        assert len(data) == meta["size_bytes"], meta_path
        assert meta["artifact_id"] == meta_path.stem == meta["sha256"][:32]
        metas.append(meta)
    return metas


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


REL_SERVER = Path(__file__).resolve().parent / "rel_server.py"


def start_server(
    store: Path, *flags: str, env: dict[str, str] | None = None, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The real HTTP server process (``rel_server.py``, a FaultBackend) on a free loopback port."""
    port = free_port()
    args = [PYTHON, str(REL_SERVER), "--transport", "streamable-http", "--port", str(port),
            "--store", str(store), "--log-level", "WARNING", *flags]  # fmt: skip
    out = (log or store.parent / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(args, env={**ENV, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/mcp", timeout=0.5)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"server did not start: {out.name}") from None
            time.sleep(0.05)


@asynccontextmanager
async def http_client(base: str, timeout: float = 60) -> AsyncIterator[Client]:
    """A real streamable-HTTP MCP client on ``base``/mcp."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(timeout=timeout) as http,
        Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
    ):
        yield client
