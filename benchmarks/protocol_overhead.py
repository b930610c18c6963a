"""Protocol overhead: one text_to_image request as a raw Diffusers call, through VisionManager
in-process, and as an MCP tools/call to an abstractvision-mcp subprocess (stdio, streamable HTTP).

    .venv/bin/python benchmarks/protocol_overhead.py [--runs 5] [--smoke]

Tiny random-weight SD, fixed seed, server run with ``--preview none``. Ratios are to the raw call.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c

PROMPT = "a lighthouse at dusk"


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


async def _measure(
    client: Any, name: str, cells: list[tuple[int, int]], runs: int, times: dict[Any, Any]
) -> None:
    await client.call_tool("text_to_image", {"prompt": PROMPT, "steps": 1})  # warm
    for side, steps in cells:
        req = {"prompt": PROMPT, "width": side, "height": side, "steps": steps, "seed": 1}
        call = lambda: client.call_tool("text_to_image", req)  # noqa: B023, E731
        times[(side, steps)][name] = await c.atimed(call, runs)


async def main() -> None:
    args = c.parser(__doc__).parse_args()
    sizes, step_counts = ((64,), (1,)) if args.smoke else ((64, 256, 512), (1, 4))
    runs = 1 if args.smoke else args.runs
    cells = [(side, steps) for side in sizes for steps in step_counts]
    times: dict[tuple[int, int], dict[str, list[float]]] = {cell: {} for cell in cells}
    print(c.machine())
    with tempfile.TemporaryDirectory(prefix="av-bench-") as tmp:
        model = c.tiny_sd(Path(tmp))
        for name, make in (("raw pipeline", raw_pipeline), ("VisionManager", None)):
            call = make(model) if make else manager(model, Path(tmp) / "vm")
            call(64, 1)  # warm: load + first run
            for side, steps in cells:
                times[(side, steps)][name] = c.timed(lambda: call(side, steps), runs)  # noqa: B023
        argv = c.server_argv(model, Path(tmp) / "store", "--preview", "none")
        async with c.stdio_client(argv) as client:
            await _measure(client, "MCP stdio", cells, runs, times)
        with c.http_server(argv) as url:
            async with c.http_client(url) as client:
                await _measure(client, "MCP streamable HTTP", cells, runs, times)
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
