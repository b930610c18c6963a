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
        guessed = {t.name for t in (await client.list_tools()).tools}
        assert guessed >= EXACT | VIDEO  # a local folder: every task until probed
        with anyio.fail_after(120):
            async for _ in changes:
                break
        exact = {t.name for t in (await client.list_tools()).tools}
    assert exact >= EXACT and not exact & VIDEO


async def test_handshake_client_gets_the_notification(tmp_path: Path, tiny_sd_dir: Path) -> None:
    server = create_server(config(tmp_path, "--model", str(tiny_sd_dir), "--device", "cpu"))
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            changed.set()

    async with Client(server, mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.tools.list_changed is True
        assert {t.name for t in (await client.list_tools()).tools} >= VIDEO
        with anyio.fail_after(120):
            await changed.wait()
        assert not VIDEO & {t.name for t in (await client.list_tools()).tools}


async def test_no_probe_keeps_the_guess(tmp_path: Path, tiny_sd_dir: Path) -> None:
    cfg = config(tmp_path, "--model", str(tiny_sd_dir), "--no-probe")
    server = create_server(cfg)
    async with Client(server) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= VIDEO
        await anyio.sleep(0.2)
        assert not server.abstractvision_state.engine.probed  # type: ignore[attr-defined]
