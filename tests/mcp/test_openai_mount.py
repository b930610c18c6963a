"""--openai: the OpenAI-compatible routes in the MCP HTTP app: one backend, one token, one device."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import FaultBackend, config, text
from http_servers import serving

from mcp_server.engine import Engine
from mcp_server.http import build_app
from mcp_server.openai_api import openai_app
from mcp_server.server import create_server

pytestmark = pytest.mark.anyio
TOKEN = "mount-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class CountingBackend(FaultBackend):
    """Records how many generations ran at once."""

    def __init__(self) -> None:
        super().__init__(step_s=0.05)
        self.active = self.most = 0
        self._lock = threading.Lock()

    def generate_image(self, request: Any, *, control: Any = None) -> Any:
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            return super().generate_image(request, control=control)
        finally:
            with self._lock:
                self.active -= 1


async def test_both_protocols_share_backend_token_and_device(tmp_path: Path) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    backend = CountingBackend()
    cfg = config(tmp_path, "--transport", "streamable-http", "--openai", "--auth-token", TOKEN)
    server = create_server(cfg, engine=Engine(cfg, backend=backend))
    state = server.abstractvision_state  # type: ignore[attr-defined]
    api = openai_app(state)
    assert api.state.ctx.manager.backend is backend and api.state.ctx.device is state.jobs.device
    with serving(build_app(server, cfg, api)) as url:
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.post(url + "/mcp", json={}).status_code == 401
        async with (
            httpx2.AsyncClient(headers=AUTH, timeout=30) as http,
            Client(streamable_http_client(url + "/mcp", http_client=http)) as mcp,
            httpx.AsyncClient(headers=AUTH, timeout=30) as plain,
        ):
            job = await mcp.call_tool("text_to_image", {"prompt": "x", "steps": 20, "wait_s": 0})
            assert job.structured_content["status"] in ("queued", "running"), text(job)
            answer = await plain.post(url + "/v1/images/generations", json={"prompt": "y"})
            assert answer.status_code == 200 and answer.json()["data"][0]["b64_json"]
            done = await mcp.call_tool("get_job", {"job_id": job.structured_content["job_id"]})
            with anyio.fail_after(10):
                while done.structured_content["status"] != "succeeded":
                    done = await mcp.call_tool(
                        "get_job", {"job_id": job.structured_content["job_id"], "wait_s": 1}
                    )
    assert backend.started == 2 and backend.most == 1  # never two generations on the device


def test_openai_needs_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--openai needs an HTTP transport"):
        config(tmp_path, "--openai")
