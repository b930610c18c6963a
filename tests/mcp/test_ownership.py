"""Jobs and tasks belong to their caller: two real sessions in-process and over HTTP with tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tasks_client as tc
from conftest import config, text
from http_servers import mcp_http_client, serving
from mcp import Client
from mcp.shared.exceptions import MCPError
from test_tasks_ext import VideoBackend

from mcp_server.engine import Engine
from mcp_server.http import build_app
from mcp_server.server import create_server

pytestmark = pytest.mark.anyio
TOKEN_A, TOKEN_B = "token-of-a-123", "token-of-b-456"


async def _refused(client: Client, job_id: str) -> None:
    """What another owner gets for ``job_id``: no listing, no result, no progress, no cancel."""
    assert (await client.call_tool("list_jobs", {})).structured_content["jobs"] == []
    events: list[float] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        events.append(done)

    for tool, args in (("get_job", {"job_id": job_id, "wait_s": 0.1}),
                       ("cancel_job", {"job_id": job_id})):  # fmt: skip
        result = await client.call_tool(tool, args, progress_callback=progress)
        assert result.is_error and "no such job" in text(result), text(result)
        assert not events


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_two_in_process_sessions(tmp_path: Path, mode: str) -> None:
    backend = VideoBackend(0.02)
    cfg = config(tmp_path, "--preview", "none")
    server = create_server(cfg, engine=Engine(cfg, backend=backend))
    async with Client(server, mode=mode) as a, Client(server, mode=mode) as b:
        started = await a.call_tool("text_to_image", {"prompt": "a", "steps": 40, "wait_s": 0})
        job_id = started.structured_content["job_id"]
        await _refused(b, job_id)
        mine = await a.call_tool("get_job", {"job_id": job_id, "wait_s": 30})
        assert mine.structured_content["status"] == "succeeded", text(mine)
        assert [j["job_id"] for j in (await a.call_tool("list_jobs", {})).structured_content[
            "jobs"]] == [job_id]  # fmt: skip
        # the artifact is a capability: whoever holds its ref may read it
        assert (await b.read_resource(mine.structured_content["uri"])).contents


@pytest.fixture
def two_token_server(tmp_path: Path) -> Iterator[str]:
    backend = VideoBackend(0.02)
    cfg = config(tmp_path, "--transport", "streamable-http", "--preview", "none",
                 "--auth-token", f"{TOKEN_A},{TOKEN_B}")  # fmt: skip
    server = create_server(cfg, engine=Engine(cfg, backend=backend))
    with serving(build_app(server, cfg)) as base:
        yield base


async def test_http_token_owns_jobs_and_tasks_across_reconnects(two_token_server: str) -> None:
    base = two_token_server
    async with mcp_http_client(base, TOKEN_A) as a:
        started = await a.call_tool("text_to_image", {"prompt": "a", "steps": 60, "wait_s": 0})
        job_id = started.structured_content["job_id"]
    async with mcp_http_client(base, TOKEN_B) as b:
        await _refused(b, job_id)
    async with mcp_http_client(base, TOKEN_A) as again:  # A reconnects: its job is there
        listed = (await again.call_tool("list_jobs", {})).structured_content["jobs"]
        assert [j["job_id"] for j in listed] == [job_id]
        done = await again.call_tool("get_job", {"job_id": job_id, "wait_s": 30})
        assert done.structured_content["status"] == "succeeded", text(done)


async def test_http_tasks_survive_disconnect_and_stay_private(two_token_server: str) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    def client(token: str) -> Client:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        return Client(streamable_http_client(two_token_server + "/mcp", http_client=http),
                      extensions=[tc.TasksExtension()])  # fmt: skip

    async with client(TOKEN_A) as a:  # 2026-07-28 over HTTP: stateless single-exchange POSTs
        made = await tc.call(a, "text_to_video", {"prompt": "x", "steps": 20})
        assert isinstance(made, tc.CreateTaskResult), made
    async with client(TOKEN_B) as b:
        with pytest.raises(MCPError) as refused:
            await tc.get(b.session, made.task_id)
        assert refused.value.error.code == -32602
        with pytest.raises(MCPError):
            await tc.cancel(b.session, made.task_id)
    async with client(TOKEN_A) as a:
        done = await tc.poll(a.session, made.task_id, 60)
    assert done.status == "completed", done
    assert done.result["structuredContent"]["content_type"] == "video/webp"


def test_bearer_scheme_and_invalid_token_challenge(two_token_server: str) -> None:
    url = two_token_server + "/mcp"
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    lower = httpx.post(url, json=body, headers={**accept, "Authorization": f"bearer {TOKEN_A}"})
    assert lower.status_code != 401
    wrong = httpx.post(url, json=body, headers={**accept, "Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    missing = httpx.post(url, json=body, headers=accept)
    assert missing.status_code == 401 and "error=" not in missing.headers["www-authenticate"]
