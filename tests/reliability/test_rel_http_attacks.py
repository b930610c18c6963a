"""HTTP attacks on a real uvicorn server on 127.0.0.1: tokens, Host/Origin, oversized bodies,
on streamable HTTP (/mcp), SSE (/sse, /messages/) and the OpenAI routes (/v1, with --openai)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_servers import serving
from rel_support import FaultBackend, config, snapshot

from mcp_server.engine import Engine
from mcp_server.http import build_app
from mcp_server.openai_api import openai_app
from mcp_server.server import create_server

TOKEN = "rel-token-5f2a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "attacker", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _serve(tmp_path: Path, *flags: str) -> Iterator[str]:
    cfg = config(tmp_path, "--transport", "streamable-http", "--openai", *flags)
    server = create_server(cfg, engine=Engine(cfg, backend=FaultBackend(step_s=0.0)))
    api = openai_app(server.abstractvision_state)  # type: ignore[attr-defined]
    with serving(build_app(server, cfg, api)) as url:
        yield url


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    yield from _serve(tmp_path, "--auth-token", TOKEN, "--max-input-bytes", "100000")


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[str]:
    yield from _serve(tmp_path, "--max-input-bytes", "100000")


PATHS = [
    ("POST", "/mcp"),
    ("GET", "/sse"),
    ("POST", "/messages/?session_id=00000000000000000000000000000000"),
    ("GET", "/v1/models"),
    ("POST", "/v1/images/generations"),
    ("GET", "/nope"),
]
BAD_TOKENS = [
    None,
    "",
    "Bearer",
    "Bearer wrong",
    f"Bearer {TOKEN}x",
    f"bearer {TOKEN}x",
    f"Basic {TOKEN}",
    TOKEN,
]  # "Bearer  TOKEN" (two spaces) and "bearer TOKEN" are valid credentials (RFC 7235: 1*SP, any case)


@pytest.mark.parametrize("method,path", PATHS)
def test_missing_or_wrong_token(guarded: str, method: str, path: str, tmp_path: Path) -> None:
    before = snapshot(tmp_path / "store")
    for token in BAD_TOKENS:
        headers = {**MCP_HEADERS, **({"Authorization": token} if token is not None else {})}
        response = httpx.request(method, guarded + path, headers=headers, json=INIT, timeout=5)
        assert response.status_code == 401, (path, token, response.status_code)
    assert snapshot(tmp_path / "store") == before


def test_right_token_is_accepted(guarded: str) -> None:
    ok = httpx.post(guarded + "/mcp", headers={**MCP_HEADERS, **AUTH}, json=INIT, timeout=5)
    assert ok.status_code == 200
    assert httpx.get(guarded + "/v1/models", headers=AUTH, timeout=5).status_code == 200


FOREIGN_HOSTS = ["evil.example", "127.0.0.1.evil.example", "attacker:80", "localhost.evil"]
FOREIGN_ORIGINS = ["http://evil.example", "null", "http://127.0.0.1.evil.example"]


@pytest.mark.parametrize("path", ["/mcp", "/sse", "/v1/models", "/v1/images/generations"])
def test_foreign_host_and_origin(open_server: str, path: str) -> None:
    method = "GET" if path in ("/sse", "/v1/models") else "POST"
    for host in FOREIGN_HOSTS:
        response = httpx.request(
            method, open_server + path, headers={**MCP_HEADERS, "Host": host}, json=INIT, timeout=5
        )
        assert response.status_code in (400, 403, 421), (path, host, response.status_code)
    for origin in FOREIGN_ORIGINS:
        response = httpx.request(
            method,
            open_server + path,
            headers={**MCP_HEADERS, "Origin": origin},
            json=INIT,
            timeout=5,
        )
        assert response.status_code in (400, 403), (path, origin, response.status_code)


def test_bodies_over_the_limit(open_server: str, tmp_path: Path) -> None:
    """The cap is --max-input-bytes x 4/3 + 1 MiB; 3 MB bodies are refused everywhere."""
    before = snapshot(tmp_path / "store")
    big = b'{"prompt": "' + b"x" * 3_000_000 + b'"}'

    def streamed() -> Iterator[bytes]:
        yield big[:1000]
        yield big[1000:]

    for path in ("/mcp", "/v1/images/generations"):
        for body in (big, streamed()):
            response = httpx.post(open_server + path, content=body, headers=MCP_HEADERS, timeout=10)
            assert response.status_code == 413, (path, response.status_code)
    assert snapshot(tmp_path / "store") == before
