"""Payload sizes of the MCP server: tools/list bytes and a 512x512 text_to_image result per
``--preview`` setting, measured through a real in-process MCP client.

    .venv/bin/python benchmarks/mcp_payload.py [--model DIR]

Without ``--model`` it builds the tiny random-weight Stable Diffusion of the tests (no network).
Random weights give noise, the worst case for image compression, so previews here are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def _tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny_sd

    return build_tiny_sd(folder / "tiny-sd")


def _size(model: Any) -> int:
    return len(json.dumps(model.model_dump(by_alias=True, exclude_none=True, mode="json")))


async def measure(model: Path, store: Path) -> None:
    from mcp import Client

    from mcp_server.config import load_config
    from mcp_server.server import create_server

    for preview in ("none", "thumbnail", "full"):
        argv = ["--model", str(model), "--device", "cpu", "--store", str(store)]
        cfg = load_config([*argv, "--preview", preview], environ={})
        async with Client(create_server(cfg)) as client:
            tools = await client.list_tools()
            if preview == "none":
                print(f"tools/list: {len(tools.tools)} tools, {_size(tools)} bytes")
            start = time.perf_counter()
            result = await client.call_tool(
                "text_to_image", {"prompt": "a lighthouse", "width": 512, "height": 512,
                                  "steps": 2, "seed": 1},
            )  # fmt: skip
            took = time.perf_counter() - start
            artifact = result.structured_content.get("size_bytes", 0)
            print(
                f"text_to_image 512x512, --preview {preview}: result {_size(result)} bytes "
                f"(artifact {artifact} bytes, {took:.1f} s)"
            )
            if preview == "none":
                tools = await client.list_tools()
                print(
                    f"tools/list once the backend is probed: {len(tools.tools)} tools, "
                    f"{_size(tools)} bytes"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="local model folder (default: tiny SD)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or _tiny_model(Path(tmp))
        anyio.run(measure, model, Path(tmp) / "store")


if __name__ == "__main__":
    main()
