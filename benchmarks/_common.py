"""Shared bits of the benchmark scripts: machine line, median tables, tiny model, MCP clients.

Every script prints the machine it ran on, then small tables of medians and ratios to stdout;
logs go to stderr. ``--smoke`` runs a script at its smallest setting (the test suite does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
ENV = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}


def machine() -> str:
    """One line naming the hardware and library versions a figure came from."""
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") if Path("/proc/cpuinfo").exists() else open(os.devnull) as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else cpu
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"GPU {torch.cuda.get_device_name(0)}"
        versions = f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    except ImportError:
        versions = "no torch"
    return f"machine: {cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, {versions}"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--smoke`` (smallest setting) and ``--runs``."""
    out = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    out.add_argument("--smoke", action="store_true", help="smallest setting, one run")
    out.add_argument("--runs", type=int, default=5, help="timed runs per cell (median)")
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def table(title: str, rows: Sequence[tuple[str, float]], base: str | None, unit: str = "s") -> None:
    """Print ``name  value  ratio-to-base`` rows under a title."""
    ref = dict(rows).get(base) if base else None
    print(f"\n{title}")
    print(f"  {'':<34}{unit:>12}{'ratio' if ref else '':>10}")
    for name, value in rows:
        ratio = f"{value / ref:>10.3f}" if ref else ""
        print(f"  {name:<34}{value:>12.4f}{ratio}")


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    """Wall times of ``runs`` calls of ``fn``."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


async def atimed(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


def tiny_sd(folder: Path, scale: int = 1) -> Path:
    """The tests' random-weight Stable Diffusion (``scale`` widens it), built once in ``folder``."""
    path = folder / f"tiny-sd-x{scale}"
    if not (path / "model_index.json").exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_models import build_tiny_sd

        build_tiny_sd(path, scale=scale)
    return path


def server_argv(model: Path, store: Path, *flags: str) -> list[str]:
    """``python -m mcp_server`` arguments for a CPU server on ``model``."""
    return ["-m", "mcp_server", "--model", str(model), "--device", "cpu",
            "--store", str(store), *flags]  # fmt: skip


@asynccontextmanager
async def stdio_client(args: Sequence[str]) -> AsyncIterator[Any]:
    """A real MCP client talking to ``python *args`` over stdio (server stderr silenced)."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client as transport

    params = StdioServerParameters(command=sys.executable, args=list(args), env=ENV)
    with open(os.devnull, "w") as quiet:
        async with Client(transport(params, errlog=quiet)) as client:
            yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(args: Sequence[str]) -> Iterator[str]:
    """``python *args --transport streamable-http`` in a subprocess; yields its /mcp URL."""
    port = free_port()
    cmd = [sys.executable, *args, "--transport", "streamable-http", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@asynccontextmanager
async def http_client(url: str) -> AsyncIterator[Any]:
    """A real MCP client over streamable HTTP."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(timeout=300) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def run(main: Callable[..., Awaitable[None]], *args: Any) -> None:
    asyncio.run(main(*args))
