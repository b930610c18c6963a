"""Payload sizes of the MCP server: tools/list bytes (and ~tokens) and a 512x512 text_to_image
result per ``--preview`` setting, vs the image inline as base64, through a real in-process client.

    .venv/bin/python benchmarks/mcp_payload.py [--model DIR] [--smoke]

Without ``--model`` it builds the tiny random-weight Stable Diffusion of the tests (no network).
Random weights give noise, the worst case for image compression, so previews here are upper bounds.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import _common as c


def _size(model: Any) -> int:
    return len(json.dumps(model.model_dump(by_alias=True, exclude_none=True, mode="json")))


async def measure(model: Path, store: Path, side: int) -> None:
    from mcp import Client

    from mcp_server.config import load_config
    from mcp_server.server import create_server

    rows: list[tuple[str, float]] = []
    lists: list[tuple[str, float]] = []
    png = 0
    for preview in ("none", "thumbnail", "full"):
        argv = ["--model", str(model), "--device", "cpu", "--store", str(store)]
        cfg = load_config([*argv, "--preview", preview], environ={})
        async with Client(create_server(cfg)) as client:
            if preview == "none":
                lists.append(("before the backend probe", _size(await client.list_tools())))
            args = {"prompt": "a lighthouse", "width": side, "height": side, "steps": 2, "seed": 1}
            result = await client.call_tool("text_to_image", args)
            png = result.structured_content.get("size_bytes", 0)
            rows.append((f"--preview {preview}", _size(result)))
            if preview == "none":
                lists.append(("once the backend is probed", _size(await client.list_tools())))
    inline = len(json.dumps({"type": "image", "mimeType": "image/png",
                             "data": base64.b64encode(b"\0" * png).decode()}))  # fmt: skip
    rows.append(("image inline as base64 (reference)", inline))
    print(f"PNG of the {side}x{side} image: {png} bytes")
    c.table(f"bytes of a text_to_image {side}x{side} tools/call result", rows,
            "image inline as base64 (reference)", "bytes")  # fmt: skip
    c.table("tools/list", lists, None, "bytes")
    for name, size in lists:
        print(f"  {name}: ~{size / 4:,.0f} tokens")


def main() -> None:
    parser = c.parser(__doc__)
    parser.add_argument("--model", type=Path, help="local model folder (default: tiny SD)")
    args = parser.parse_args()
    print(c.machine())
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or c.tiny_sd(Path(tmp))
        c.run(measure, model, Path(tmp) / "store", 64 if args.smoke else 512)


if __name__ == "__main__":
    main()
