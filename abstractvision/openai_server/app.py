"""The app factory: OpenAI-compatible routes over one VisionManager.

``create_app(manager)`` serves ``/v1/...`` as a Starlette app, so another front end can mount
it (and run its lifespan) beside its own routes. ``device`` lets that front end share one device
limit with this app. A bearer token, when set, guards every path.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..control import DeviceLimit
from ..errors import InvalidRequestError
from ..http_guard import HttpGuard, loopback_hosts
from ..vision_manager import VisionManager
from .errors import ApiError, error_response, exception_handlers
from .jobs import VideoJobs
from .routes import ServerContext, generate, routes

__all__ = ["check_bind", "create_app", "guarded_app", "serve"]

log = logging.getLogger(__name__)

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


def create_app(
    manager: VisionManager,
    *,
    auth_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = 1,
    max_queue: int = 32,
    device: AbstractContextManager[Any] | None = None,
    max_images: int = 4,
    max_jobs: int = 64,
    job_ttl_s: float = 3600.0,
    models: Sequence[str] | None = None,
) -> Starlette:
    """The ASGI app; ``device`` is held while a generation runs (default: a ``DeviceLimit`` of
    ``max_concurrency`` and ``max_queue``, past which calls get 429 + Retry-After); pass one
    shared with other work on the same device."""
    limit = device if device is not None else DeviceLimit(max_concurrency, max_queue)
    runner = functools.partial(generate, manager, limit)
    jobs = VideoJobs(runner, workers=max_concurrency, max_jobs=max_jobs, ttl_s=job_ttl_s)
    ctx = ServerContext(manager, limit, jobs, max_images, models)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            jobs.shutdown()

    middleware = [Middleware(BodyLimit, max_bytes=max_body_bytes)]
    if auth_token:
        middleware.insert(0, Middleware(BearerAuth, token=auth_token))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    return app


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


def guarded_app(app: ASGIApp, host: str, allowed_origins: Sequence[str] = ()) -> ASGIApp:
    """``app`` behind the shared HTTP guard as ``serve`` runs it: Host must be a loopback name
    when bound to loopback, an Origin must be the server's own (or ``allowed_origins``), form
    bodies to the JSON endpoint are refused, WebSocket upgrades never reach a route."""
    return HttpGuard(
        app,
        allowed_hosts=loopback_hosts() if is_loopback(host) else (),
        allowed_origins=allowed_origins,
        json_paths=("/v1/images/generations",),
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
    app = guarded_app(create_app(manager, auth_token=auth_token, **options), host)
    log.info("OpenAI-compatible API on http://%s:%s/v1", host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower())
