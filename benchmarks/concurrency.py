"""Concurrency: throughput of 1, 4 and 16 clients sending text_to_image, with and without
request coalescing (``max_batch_size``), in-process (threads through VisionManager) and over
streamable HTTP to an abstractvision-mcp subprocess; tools/list latency while it is busy.

    .venv/bin/python benchmarks/concurrency.py [--scale 1] [--side 256] [--steps 4] [--smoke]

Every client count sends the same total of requests; throughput is images per second.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _common as c

BATCH = 16  # max_batch_size with coalescing on; 1 = off


def manager(model: Path, batch: int) -> Any:
    """A warm VisionManager on a Diffusers backend with ``max_batch_size=batch``."""
    from abstractvision import VisionManager
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    backend = HuggingFaceDiffusersVisionBackend(
        model_id=str(model), device="cpu", max_batch_size=batch
    )
    return VisionManager(backend=backend)


def in_process(vm: Any, clients: int, total: int, req: dict[str, Any]) -> float:
    """Images per second from ``clients`` threads sharing one VisionManager."""

    def client(i: int) -> None:
        for k in range(total // clients):
            vm.generate_image(**req, seed=1 + i * total + k)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return total / (time.perf_counter() - start)


async def over_http(
    url: str, clients: int, total: int, req: dict[str, Any]
) -> tuple[float, list[float]]:
    """Images per second from ``clients`` MCP sessions, and tools/list latencies meanwhile."""
    done = asyncio.Event()
    latencies: list[float] = []

    async def client(i: int) -> None:
        async with c.http_client(url) as session:
            for k in range(total // clients):
                result = await session.call_tool(
                    "text_to_image", {**req, "seed": 1 + i * total + k}
                )
                assert not result.is_error, result

    async def probe() -> None:
        async with c.http_client(url) as session:
            while not done.is_set():
                latencies.extend(await c.atimed(session.list_tools, 1))
                await asyncio.sleep(0.05)

    watcher = asyncio.create_task(probe())
    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    rate = total / (time.perf_counter() - start)
    done.set()
    await watcher
    return rate, latencies


async def main() -> None:
    parser = c.parser(__doc__)
    parser.add_argument("--scale", type=int, default=1, help="width multiplier of the tiny SD")
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    counts = (1, 2) if args.smoke else (1, 4, 16)
    total = 2 if args.smoke else 16
    side, steps = (64, 1) if args.smoke else (args.side, args.steps)
    req = {"prompt": "a red cube", "width": side, "height": side, "steps": steps}
    print(c.machine())
    runs = 1 if args.smoke else min(args.runs, 3)
    samples: dict[str, list[float]] = {}
    busy: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="av-bench-") as tmp, ExitStack() as stack:
        model = c.tiny_sd(Path(tmp), args.scale)
        vms = {batch: manager(model, batch) for batch in (1, BATCH)}
        urls = {}
        for batch in (1, BATCH):
            flags = ("--preview", "none", "--max-concurrency", str(BATCH),
                     "--backend-option", f"max_batch_size={batch}")  # fmt: skip
            argv = c.server_argv(model, Path(tmp) / f"store{batch}", *flags)
            urls[batch] = stack.enter_context(c.http_server(argv))
        for batch in (1, BATCH):  # warm: load the model everywhere
            vms[batch].generate_image(**req, seed=0)
            await over_http(urls[batch], 1, 1, req)
        for _ in range(runs):  # rounds interleave on/off, so drift hits both alike
            for n in counts:
                for batch in (1, BATCH):
                    rate = in_process(vms[batch], n, total, req)
                    samples.setdefault(f"in-process, {n} clients, batch {batch}", []).append(rate)
                    rate, lat = await over_http(urls[batch], n, total, req)
                    samples.setdefault(f"HTTP, {n} clients, batch {batch}", []).append(rate)
                    busy.setdefault(f"batch {batch}, {n} clients", []).extend(lat)
    rates = {name: c.median(v) for name, v in samples.items()}
    print(
        f"\ntiny SD x{args.scale}, {side}px, {steps} steps, {total} requests per row, median of {runs}"
    )
    for where in ("in-process", "HTTP"):
        base = f"{where}, 1 clients, batch 1"
        rows = [(name, v) for name, v in rates.items() if name.startswith(where)]
        c.table(
            f"{where}: throughput (images/s), ratio to one client without coalescing",
            rows,
            base,
            "img/s",
        )
        for n in counts[1:]:
            gain = (
                rates[f"{where}, {n} clients, batch {BATCH}"]
                / rates[f"{where}, {n} clients, batch 1"]
            )
            print(f"  {where}, {n} clients: coalescing on / off = {gain:.2f}x (bar at 4: >= 1.3x)")
    print("\ntools/list latency while generating over HTTP (s)")
    for name, lat in busy.items():
        if lat:
            print(f"  {name:<24} median {c.median(lat):.4f}  p99 {c.p99(lat):.4f}  (n={len(lat)})")


if __name__ == "__main__":
    c.run(main)
