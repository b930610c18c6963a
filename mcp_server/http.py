"""HTTP transports: streamable HTTP on /mcp and SSE on /sse (+ /messages/) from one app.

Bearer-token auth wraps every route when a token is configured; the SDK's Host/Origin
(DNS-rebinding) checks stay on, and POST bodies are capped by the SDK transports.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import uvicorn
from mcp.server import Server
from mcp.server.sse import SseServerTransport
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import LOOPBACK_HOSTS, ServerConfig
from .openai_api import mount, openai_app

log = logging.getLogger(__name__)


class BearerAuth:
    """Pure ASGI middleware: HTTP requests need ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"error": "unauthorized", "error_description": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="abstractvision"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RebindingGuard:
    """Pure ASGI middleware: the SDK's Host/Origin check for routes it does not guard (``/v1``)."""

    def __init__(self, app: ASGIApp, settings: TransportSecuritySettings) -> None:
        self.app = app
        self.check = TransportSecurityMiddleware(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = await self.check.validate_request(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def security_settings(config: ServerConfig) -> TransportSecuritySettings:
    """Host/Origin allow-lists: loopback names (or the bind host) plus configured extras."""
    if config.host in LOOPBACK_HOSTS:
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    else:
        hosts = [f"{config.host}:*"]
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts + list(config.allowed_host),
        allowed_origins=origins + list(config.allowed_origin),
    )


def build_app(
    server: Server[Any], config: ServerConfig, openai: Starlette | None = None
) -> ASGIApp:
    """One Starlette app serving both HTTP transports (and ``openai``'s routes when given),
    wrapped in auth when configured."""
    security = security_settings(config)
    sse = SseServerTransport(
        "/messages/", security_settings=security, max_request_body_size=config.max_body_bytes
    )

    async def sse_endpoint(request: Request) -> Response:
        async with sse.connect_sse(request.scope, request.receive, request._send) as streams:
            await server.run(streams[0], streams[1], server.create_initialization_options())
        return Response()

    routes: list[Any] = [
        Route("/sse", endpoint=sse_endpoint, methods=["GET"]),
        Mount("/messages/", app=sse.handle_post_message),
    ]
    wrap_lifespan = None
    if openai is not None:
        route, wrap_lifespan = mount(openai, lambda app: RebindingGuard(app, security))
        routes.append(route)
    app: Starlette = server.streamable_http_app(
        streamable_http_path="/mcp",
        max_request_body_size=config.max_body_bytes,
        transport_security=security,
        host=config.host,
        custom_starlette_routes=routes,
    )
    if wrap_lifespan is not None:
        app.router.lifespan_context = wrap_lifespan(app.router.lifespan_context)
    return BearerAuth(app, config.auth_token) if config.auth_token else app


async def run_http(server: Server[Any], config: ServerConfig) -> None:
    openai = openai_app(server.abstractvision_state) if config.openai else None  # type: ignore[attr-defined]
    app = build_app(server, config, openai)
    log.info(
        "abstractvision MCP on http://%s:%s (streamable HTTP /mcp, SSE /sse%s)%s",
        config.host,
        config.port,
        ", OpenAI-compatible /v1" if openai is not None else "",
        "" if config.auth_token else " without auth",
    )
    uv = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level.lower())
    )
    await uv.serve()
