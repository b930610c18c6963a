"""The app factory: OpenAI-compatible routes over one VisionManager, optionally with MCP beside it.

``create_app(manager, mcp_app=...)`` serves ``/v1/...`` and hands ``/mcp`` (and the MCP app's
SSE paths) to the given ASGI app unchanged, running that app's lifespan with ours, so one process
and one warm backend serve both protocols. A bearer token, when set, guards every path.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidRequestError
from ..vision_manager import VisionManager
from .errors import ApiError, error_response, exception_handlers
from .jobs import VideoJobs
from .routes import ServerContext, generate, routes

__all__ = ["MCP_PATHS", "check_bind", "create_app", "serve"]

log = logging.getLogger(__name__)

MCP_PATHS = ("/mcp", "/sse", "/messages")
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


class BearerAuth:
    """Every HTTP/WebSocket request needs ``Authorization: Bearer <token>`` (constant-time check)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                error = ApiError(401, "missing or wrong bearer token", code="invalid_api_key")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse bodies over ``max_bytes``: by Content-Length at once, else while they stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = ApiError(413, f"the request body is over {self.max_bytes} bytes")
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large  # raised inside the route: the exception handler answers 413
            return message

        await self.app(scope, counted, send)


class _Dispatch:
    """Paths under ``prefixes`` go to ``other`` untouched; everything else (and lifespan) to ``main``."""

    def __init__(self, main: ASGIApp, other: ASGIApp, prefixes: Sequence[str]) -> None:
        self.main, self.other, self.prefixes = main, other, tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "lifespan" and any(
            path == p or path.startswith(p.rstrip("/") + "/") for p in self.prefixes
        ):
            await self.other(scope, receive, send)
        else:
            await self.main(scope, receive, send)


@contextlib.asynccontextmanager
async def run_lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Drive another ASGI app's lifespan (startup now, shutdown on exit); tolerate apps without one."""
    to_app, app_inbox = anyio.create_memory_object_stream[Message](2)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](2)

    async def call() -> None:
        async with app_outbox:
            with contextlib.suppress(Exception):  # an app without lifespan support may raise
                scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
                await app(scope, app_inbox.receive, app_outbox.send)

    async with anyio.create_task_group() as tg, to_app, from_app:
        tg.start_soon(call)
        await to_app.send({"type": "lifespan.startup"})
        try:
            reply = await from_app.receive()
        except anyio.EndOfStream:  # no lifespan support: nothing to start
            reply = {}
        if reply.get("type") == "lifespan.startup.failed":
            raise RuntimeError(f"mounted app failed to start: {reply.get('message', '')}")
        try:
            yield
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            with contextlib.suppress(anyio.EndOfStream):
                await from_app.receive()


def create_app(
    manager: VisionManager,
    *,
    auth_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = 1,
    max_images: int = 4,
    max_jobs: int = 64,
    job_ttl_s: float = 3600.0,
    models: Sequence[str] | None = None,
    mcp_app: ASGIApp | None = None,
    mcp_paths: Sequence[str] = MCP_PATHS,
) -> ASGIApp:
    """The ASGI app. ``mcp_app`` receives ``mcp_paths`` with their full path (e.g. ``/mcp``)."""
    device = threading.BoundedSemaphore(max_concurrency)
    runner = functools.partial(generate, manager, device)
    jobs = VideoJobs(runner, workers=max_concurrency, max_jobs=max_jobs, ttl_s=job_ttl_s)
    ctx = ServerContext(manager, device, jobs, max_images, models)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with run_lifespan(mcp_app) if mcp_app is not None else contextlib.nullcontext():
            try:
                yield
            finally:
                jobs.shutdown()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, max_bytes=max_body_bytes)],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    served: ASGIApp = app if mcp_app is None else _Dispatch(app, mcp_app, mcp_paths)
    return BearerAuth(served, auth_token) if auth_token else served


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth_token: str | None, insecure: bool) -> None:
    """Refuse to expose generation on a network without a token, unless told to."""
    if not auth_token and not insecure and not is_loopback(host):
        raise InvalidRequestError(
            "host",
            host,
            "binding a non-loopback address needs --auth-token (or --insecure to allow it)",
        )


def serve(
    manager: VisionManager,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    auth_token: str | None = None,
    insecure: bool = False,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Run the app with uvicorn until interrupted (``options`` go to ``create_app``)."""
    import uvicorn

    check_bind(host, auth_token, insecure)
    app = create_app(manager, auth_token=auth_token, **options)
    log.info("OpenAI-compatible API on http://%s:%s/v1", host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower())
