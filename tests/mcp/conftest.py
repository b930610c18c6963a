"""Fixtures for the MCP server tests: configs, in-process clients, a scriptable fault backend."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from PIL import Image

from abstractvision import BackendError, GeneratedAsset, VisionBackendCapabilities, media
from abstractvision.backends import VisionBackend
from abstractvision.control import GenerationControl
from mcp_server.config import ServerConfig, load_config
from mcp_server.engine import Engine
from mcp_server.server import create_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FaultBackend(VisionBackend):
    """For fault cases only: slow steps (bounded wait, cancel) and an engine that raises."""

    def __init__(self, step_s: float = 0.05) -> None:
        self.step_s = step_s
        self.started = 0

    def get_capabilities(self) -> VisionBackendCapabilities:
        return VisionBackendCapabilities(
            supported_tasks=("text_to_image", "image_to_image"),
            models={"text_to_image": ("fault/model",), "image_to_image": ("fault/model",)},
        )

    def generate_image(self, request: Any, *, control: GenerationControl | None = None) -> Any:
        self.started += 1
        if request.prompt == "boom":
            raise BackendError("the engine exploded; try fewer steps")
        steps = request.steps or 4
        for step in range(1, steps + 1):
            time.sleep(self.step_s)
            if control is not None:
                control.check()
                control.report(step, steps)
        size = (request.width or 64, request.height or 64)
        data, mime = media.encode_image(Image.new("RGB", size, (200, 30, 30)), "png")
        meta = {
            "model": "fault/model",
            "seed": request.seed or 0,
            "width": size[0],
            "height": size[1],
        }
        return GeneratedAsset("image", data, mime, meta)

    edit_image = generate_image


def config(tmp_path: Path, *args: str) -> ServerConfig:
    return load_config(["--store", str(tmp_path / "store"), *args], environ={})


@asynccontextmanager
async def connect(cfg: ServerConfig, backend: VisionBackend | None = None) -> AsyncIterator[Client]:
    engine = Engine(cfg, backend=backend) if backend is not None else None
    async with Client(create_server(cfg, engine=engine)) as client:
        yield client


@pytest.fixture
def fault_client(tmp_path: Path) -> Callable[..., Any]:
    """``async with fault_client(*flags) as (client, backend)``."""

    @asynccontextmanager
    async def make(*flags: str, step_s: float = 0.05) -> AsyncIterator[tuple[Client, FaultBackend]]:
        backend = FaultBackend(step_s)
        async with connect(config(tmp_path, *flags), backend) as client:
            yield client, backend

    return make


@pytest.fixture
def sd_client(tmp_path: Path, tiny_sd_dir: Path) -> Callable[..., Any]:
    """``async with sd_client(*flags) as client``: the real Diffusers backend on the tiny SD."""

    @asynccontextmanager
    async def make(*flags: str) -> AsyncIterator[Client]:
        cfg = config(tmp_path, "--model", str(tiny_sd_dir), "--device", "cpu", *flags)
        async with connect(cfg) as client:
            yield client

    return make


def text(result: Any) -> str:
    return " ".join(c.text for c in result.content if c.type == "text")
