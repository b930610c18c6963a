"""Fixed cost per MCP call: one 64 px, 1-step text_to_image in-process (VisionManager) and as a
tools/call over the in-memory client, stdio and streamable HTTP, measured side by side.

    .venv/bin/python benchmarks/fixed_cost.py [--runs 20] [--smoke]

Calls go round-robin (so drift hits every way alike); the first round is a warm-up. The fixed
cost of a way is its median minus the in-process median. ``list_jobs`` (no generation) shows
the bare protocol round trip of each transport. Servers run with ``--preview none``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import _common as c

# One torch thread in every process: on a shared machine, OpenMP pools of several processes
# fight for the cores and the spread swamps a few milliseconds of protocol cost.
os.environ["OMP_NUM_THREADS"] = c.ENV["OMP_NUM_THREADS"] = "1"

PROMPT = "a lighthouse at dusk"
ARGS = {"prompt": PROMPT, "width": 64, "height": 64, "steps": 1, "seed": 1}


async def main() -> None:
    args = c.parser(__doc__).parse_args()
    runs = 2 if args.smoke else max(args.runs, 20)
    print(c.machine())
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="av-fixed-")))
        model = c.tiny_sd(tmp)
        argv = c.server_argv(model, tmp / "store", "--preview", "none")

        from mcp import Client

        from abstractvision import LocalAssetStore, VisionManager
        from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend
        from mcp_server.config import load_config
        from mcp_server.server import create_server

        backend = HuggingFaceDiffusersVisionBackend(model_id=str(model), device="cpu")
        vm = VisionManager(backend=backend, store=LocalAssetStore(tmp / "vm"))
        cfg = load_config(["--model", str(model), "--device", "cpu", "--store",
                           str(tmp / "mem"), "--preview", "none"], environ={})  # fmt: skip
        clients = {
            "MCP in-memory": await stack.enter_async_context(Client(create_server(cfg))),
            "MCP stdio": await stack.enter_async_context(c.stdio_client(argv)),
            "MCP streamable HTTP": await stack.enter_async_context(
                c.http_client(stack.enter_context(c.http_server(argv)))
            ),
        }
        for client in clients.values():  # tool schemas cached, model loaded
            await client.list_tools()

        async def in_process() -> Any:
            return await asyncio.to_thread(vm.generate_image, **ARGS)

        ways: dict[str, Callable[[], Awaitable[Any]]] = {"VisionManager": in_process}
        for name, client in clients.items():
            ways[name] = lambda client=client: client.call_tool("text_to_image", ARGS)
        bare = {
            n: (lambda client=cl: client.call_tool("list_jobs", {})) for n, cl in clients.items()
        }
        gen: dict[str, list[float]] = {n: [] for n in ways}
        rtt: dict[str, list[float]] = {n: [] for n in bare}
        for round_ in range(runs + 1):
            for name, call in [*ways.items()]:
                await asyncio.sleep(0.05)
                started = time.perf_counter()
                await call()
                if round_:
                    gen[name].append(time.perf_counter() - started)
            for name, call in bare.items():
                started = time.perf_counter()
                await call()
                if round_:
                    rtt[name].append(time.perf_counter() - started)
    base = c.median(gen["VisionManager"])
    print(f"\ntext_to_image 64 px, 1 step: median of {runs}, ms")
    print(f"{'way':24s} {'call':>8s} {'fixed cost':>11s} {'list_jobs':>10s}")
    for name, values in gen.items():
        fixed = "" if name == "VisionManager" else f"{(c.median(values) - base) * 1000:+11.1f}"
        bare_ms = f"{c.median(rtt[name]) * 1000:10.2f}" if name in rtt else ""
        print(f"{name:24s} {c.median(values) * 1000:8.1f} {fixed:>11s} {bare_ms}")


if __name__ == "__main__":
    c.run(main)
