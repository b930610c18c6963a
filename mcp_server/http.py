"""HTTP transports: streamable HTTP on /mcp and SSE on /sse (+ /messages/) from one app.

Bearer-token auth wraps every route and every scope type (WebSocket included) when a token is
configured. One guard (``abstractvision.http_guard.HttpGuard``) fronts every route, ``/v1`` and
the pages mounted beside them: Host must name this server, Origin must be this server's own
origin (scheme, name, port) or an ``--allowed-origin``, JSON endpoints refuse form bodies and
WebSocket upgrades are refused. The SDK's own Host/Origin checks stay on, and POST bodies are
capped by the SDK transports.
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from mcp.server import Server
from mcp.server.sse import SseServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from abstractvision.http_guard import BearerAuth, HttpGuard

from . import playground
from .config import LOOPBACK_HOSTS, ServerConfig
from .openai_api import mount, openai_app

log = logging.getLogger(__name__)


# Endpoints that take JSON only: a form or text/plain body there is a cross-site request.
JSON_PATHS = ("/mcp", "/messages/", "/v1/images/generations", "/playground/api/")


class RebindingGuard(HttpGuard):
    """``HttpGuard`` from the SDK settings ``security_settings`` made: its Host list, and as
    allowed origins only the configured ``--allowed-origin`` values (the SDK's own list allows
    every loopback port; this guard allows only the server's own origin)."""

    def __init__(self, app: ASGIApp, settings: TransportSecuritySettings) -> None:
        defaults = {f"{scheme}://{h}" for h in _default_hosts(settings) for scheme in _SCHEMES}
        super().__init__(
            app,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=[o for o in settings.allowed_origins if o not in defaults],
            json_paths=JSON_PATHS,
        )


_SCHEMES = ("http", "https")


def _default_hosts(settings: TransportSecuritySettings) -> list[str]:
    return [h for h in settings.allowed_hosts if h.endswith(":*")]


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
    if config.playground:  # the page's API: same token, same Host/Origin guard
        api = playground.api_app(server.abstractvision_state)  # type: ignore[attr-defined]
        routes.append(Mount(playground.API_PREFIX, app=RebindingGuard(api, security)))
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
    guarded: ASGIApp = RebindingGuard(app, security)  # every route, every scope type
    if config.auth_token:
        guarded = BearerAuth(guarded, config.auth_token)
    if not config.playground:
        return guarded
    return playground.PlaygroundPages(guarded, lambda page: RebindingGuard(page, security))


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
