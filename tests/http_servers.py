"""Test helpers: run an ASGI app with uvicorn on a free loopback port, in a thread; an MCP
streamable-HTTP client with a bearer token."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from PIL import Image
from starlette.types import ASGIApp


@contextlib.asynccontextmanager
async def mcp_http_client(base: str, token: str, timeout: float = 60) -> AsyncIterator[Any]:
    """A real MCP client over streamable HTTP (``base + "/mcp"``) that sends the token."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
    ):
        yield client


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Yield ``http://127.0.0.1:PORT`` while ``app`` runs (lifespan included)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def png(size: tuple[int, int] = (64, 64), color: tuple[int, ...] = (120, 40, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def half_mask(size: tuple[int, int] = (64, 64)) -> bytes:
    """White (change) on the left half, black (keep) on the right: our convention."""
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size
