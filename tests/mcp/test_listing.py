"""tools/list before and after the background probe: guessed at once, exact later, clients told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import config
from mcp import Client
from mcp_types import ToolListChangedNotification

from mcp_server.server import create_server

pytestmark = pytest.mark.anyio
EXACT = {"text_to_image", "image_to_image", "multi_view_image"}
VIDEO = {"text_to_video", "image_to_video"}


async def test_listen_stream_gets_tools_list_changed(tmp_path: Path, tiny_sd_dir: Path) -> None:
    server = create_server(config(tmp_path, "--model", str(tiny_sd_dir), "--device", "cpu"))
    async with Client(server) as client, client.listen(tools_list_changed=True) as changes:
        guessed = {t.name: t for t in (await client.list_tools()).tools}
        # a local folder: its pipeline class names the image tasks; engine options unknown
        assert set(guessed) >= EXACT and not set(guessed) & VIDEO
        assert "extra" not in guessed["text_to_image"].input_schema["properties"]
        with anyio.fail_after(120):
            async for _ in changes:
                break
        exact = {t.name: t for t in (await client.list_tools()).tools}
    assert set(exact) >= EXACT and not set(exact) & VIDEO
    assert "extra" in exact["text_to_image"].input_schema["properties"]


async def test_handshake_client_gets_the_notification(tmp_path: Path, tiny_sd_dir: Path) -> None:
    server = create_server(config(tmp_path, "--model", str(tiny_sd_dir), "--device", "cpu"))
    changed = anyio.Event()
    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            seen.append(message)
            changed.set()

    async with Client(server, mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.tools.list_changed is True
        for _ in range(3):  # several lists before the probe ends: still one notification
            assert {t.name for t in (await client.list_tools()).tools} >= EXACT
        with anyio.fail_after(120):
            await changed.wait()
        assert not VIDEO & {t.name for t in (await client.list_tools()).tools}
        await anyio.sleep(0.2)
    assert len(seen) == 1


async def test_no_probe_keeps_the_guess(tmp_path: Path, tiny_sd_dir: Path) -> None:
    cfg = config(tmp_path, "--model", str(tiny_sd_dir), "--no-probe")
    server = create_server(cfg)
    async with Client(server) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= EXACT
        await anyio.sleep(0.2)
        assert not server.abstractvision_state.engine.probed  # type: ignore[attr-defined]
