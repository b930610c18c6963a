"""``python rel_server.py <server flags>``: the real HTTP server process on a test backend.

Env: ``REL_STEP_S`` (seconds per engine step), ``REL_NOISE_SIDE`` (random-noise images of that
side, so the store writes megabytes), ``REL_SLOW_FSYNC_S`` (a slow disk: each fsync waits),
``REL_LOAD_S`` (the first generation or ``--preload`` first spends that long "loading the model"
in one uninterruptible call, as a real first load does). ``--transport stdio`` serves on stdio.
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


class SlowLoadBackend(FaultBackend):
    """FaultBackend whose model load takes ``load_s`` in one call no cancellation reaches."""

    def __init__(self, step_s: float, load_s: float) -> None:
        super().__init__(step_s)
        self.load_s = load_s
        self._loaded = False

    def preload(self) -> None:
        if not self._loaded:
            sys.stderr.write("rel_server: model load started\n")
            sys.stderr.flush()
            time.sleep(self.load_s)
            self._loaded = True

    def generate_image(self, request: Any, *, control: Any = None) -> Any:
        self.preload()
        return super().generate_image(request, control=control)

    edit_image = generate_image


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
    load_s = float(os.environ.get("REL_LOAD_S", "0"))
    backend = NoiseBackend(step_s, side) if side else FaultBackend(step_s)
    if load_s:
        backend = SlowLoadBackend(step_s, load_s)
    cfg = load_config(sys.argv[1:])
    server = create_server(cfg, engine=Engine(cfg, backend=backend))
    if cfg.transport == "stdio":
        from mcp_server.stdio import serve_stdio

        serve_stdio(server)
        return
    anyio.run(run_http, server, cfg)


if __name__ == "__main__":
    main()
