"""Start-up: process start until tools/list is answered over stdio, for abstractvision-mcp
(``--no-probe`` and default) against a minimal ``mcp`` server with one tool (the floor).

    .venv/bin/python benchmarks/startup.py [--runs 5] [--smoke]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import _common as c

HERE = Path(__file__).resolve().parent


async def to_tools_list(argv: Sequence[str]) -> float:
    """Seconds from spawning ``python *argv`` until its tools/list answer arrives."""
    start = time.perf_counter()
    async with c.stdio_client(argv) as client:
        assert (await client.list_tools()).tools
        return time.perf_counter() - start


async def main() -> None:
    args = c.parser(__doc__).parse_args()
    runs = 1 if args.smoke else args.runs
    print(c.machine())
    with tempfile.TemporaryDirectory(prefix="av-bench-") as tmp:
        model = c.tiny_sd(Path(tmp))
        store = Path(tmp) / "store"
        ways = {
            "minimal mcp server (floor)": [str(HERE / "minimal_server.py")],
            "abstractvision-mcp --no-probe": c.server_argv(model, store, "--no-probe"),
            "abstractvision-mcp (default)": c.server_argv(model, store),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(runs):  # interleaved, so drift hits every way alike
            for name, argv in ways.items():
                times[name].append(await to_tools_list(argv))
    rows = [(name, c.median(v)) for name, v in times.items()]
    c.table(f"process start -> tools/list answered, stdio (median of {runs})", rows,
            "minimal mcp server (floor)")  # fmt: skip
    print("bar: abstractvision-mcp within 1.5x the floor")


if __name__ == "__main__":
    c.run(main)
