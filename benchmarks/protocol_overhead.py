"""Protocol overhead: one text_to_image request as a raw Diffusers call, through VisionManager
in-process, and as an MCP tools/call to an abstractvision-mcp subprocess (stdio, streamable HTTP).

    .venv/bin/python benchmarks/protocol_overhead.py [--runs 5] [--smoke]

Tiny random-weight SD, fixed seed, server run with ``--preview none``. Ratios are to the raw call.
"""

from __future__ import annotations

import asyncio
import inspect
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import _common as c

PROMPT = "a lighthouse at dusk"
PAUSE_S = 0.25  # between calls: lets the last caller's OpenMP threads stop spinning


def raw_pipeline(model: Path) -> Callable[[int, int], Any]:
    """The bare Diffusers call: PIL image out, nothing encoded or stored."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)

    def call(side: int, steps: int) -> Any:
        generator = torch.Generator("cpu").manual_seed(1)
        return pipe(PROMPT, width=side, height=side, num_inference_steps=steps,
                    generator=generator).images[0]  # fmt: skip

    return call


def manager(model: Path, store: Path) -> Callable[[int, int], Any]:
    """VisionManager in-process: validate, generate, encode PNG, store."""
    from abstractvision import LocalAssetStore, VisionManager
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    backend = HuggingFaceDiffusersVisionBackend(model_id=str(model), device="cpu")
    vm = VisionManager(backend=backend, store=LocalAssetStore(store))
    return lambda side, steps: vm.generate_image(
        PROMPT, width=side, height=side, steps=steps, seed=1
    )


def _mcp_call(client: Any) -> Callable[[int, int], Awaitable[Any]]:
    def call(side: int, steps: int) -> Awaitable[Any]:
        req = {"prompt": PROMPT, "width": side, "height": side, "steps": steps, "seed": 1}
        return client.call_tool("text_to_image", req)

    return call


async def main() -> None:
    args = c.parser(__doc__).parse_args()
    sizes, step_counts = ((64,), (1,)) if args.smoke else ((64, 256, 512), (1, 4))
    runs = 1 if args.smoke else args.runs
    cells = [(side, steps) for side in sizes for steps in step_counts]
    times: dict[tuple[int, int], dict[str, list[float]]] = {cell: {} for cell in cells}
    print(c.machine())
    async with AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="av-bench-"))
        model = c.tiny_sd(Path(tmp))
        argv = c.server_argv(model, Path(tmp) / "store", "--preview", "none")
        url = stack.enter_context(c.http_server(argv))
        ways: dict[str, Callable[[int, int], Any]] = {
            "raw pipeline": raw_pipeline(model),
            "VisionManager": manager(model, Path(tmp) / "vm"),
            "MCP stdio": _mcp_call(await stack.enter_async_context(c.stdio_client(argv))),
            "MCP streamable HTTP": _mcp_call(await stack.enter_async_context(c.http_client(url))),
        }
        for side, steps in cells:
            for _ in range(runs + 1):  # round-robin, so drift hits every way alike; 1st = warm-up
                for name, call in ways.items():
                    await asyncio.sleep(PAUSE_S)
                    started = time.perf_counter()
                    done = call(side, steps)
                    if inspect.isawaitable(done):
                        await done
                    times[(side, steps)].setdefault(name, []).append(time.perf_counter() - started)
        for by_way in times.values():
            for values in by_way.values():
                del values[0]
    for (side, steps), by_way in times.items():
        rows = [(name, c.median(v)) for name, v in by_way.items()]
        c.table(f"text_to_image {side}px, {steps} steps (median of {runs})", rows, "raw pipeline")
    key = (256, 4) if (256, 4) in times else cells[0]
    row = {name: c.median(v) for name, v in times[key].items()}
    ratio = row["MCP stdio"] / row["VisionManager"]
    print(f"\nheadline {key[0]}px {key[1]} steps: MCP stdio / VisionManager = {ratio:.3f} "
          "(bar <= 1.05)")  # fmt: skip


if __name__ == "__main__":
    c.run(main)
