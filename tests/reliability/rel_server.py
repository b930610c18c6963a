"""``python rel_server.py <server flags>``: the real HTTP server process on a test backend.

Env: ``REL_STEP_S`` (seconds per engine step), ``REL_NOISE_SIDE`` (random-noise images of that
side, so the store writes megabytes), ``REL_SLOW_FSYNC_S`` (a slow disk: each fsync waits).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import anyio
from PIL import Image
from rel_support import FaultBackend

from abstractvision import GeneratedAsset, media
from mcp_server.config import load_config
from mcp_server.engine import Engine
from mcp_server.http import run_http
from mcp_server.server import create_server


class NoiseBackend(FaultBackend):
    """FaultBackend whose images are random noise (large, incompressible PNGs)."""

    def __init__(self, step_s: float, side: int) -> None:
        super().__init__(step_s)
        self.side = side

    def generate_image(self, request: Any, *, control: Any = None) -> Any:
        super().generate_image(request, control=control)
        noise = Image.frombytes("RGB", (self.side, self.side), os.urandom(self.side**2 * 3))
        data, mime = media.encode_image(noise, "png")
        meta = {"model": "fault/model", "seed": request.seed or 0, "width": self.side}
        return GeneratedAsset("image", data, mime, {**meta, "height": self.side})


def main() -> None:
    slow = float(os.environ.get("REL_SLOW_FSYNC_S", "0"))
    if slow:
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            time.sleep(slow)
            real_fsync(fd)

        os.fsync = fsync  # type: ignore[assignment]
    step_s = float(os.environ.get("REL_STEP_S", "0"))
    side = int(os.environ.get("REL_NOISE_SIDE", "0"))
    backend = NoiseBackend(step_s, side) if side else FaultBackend(step_s)
    cfg = load_config(sys.argv[1:])
    server = create_server(cfg, engine=Engine(cfg, backend=backend))
    anyio.run(run_http, server, cfg)


if __name__ == "__main__":
    main()
