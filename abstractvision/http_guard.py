"""The HTTP guard in front of every route of a server: Host, Origin, body type, WebSocket.

A page in a browser can send requests to a server on loopback (any local page, any port, or a
remote page after DNS rebinding). ``HttpGuard`` refuses them before any handler runs:

- ``Host`` must name the server (loopback names, the bind host or a configured value), so a
  rebound DNS name is refused (421);
- ``Origin``, when a browser sends one, must be the server's own origin: same scheme, a name of
  the server and the server's own port (``http://localhost:3000`` is another site, even on the
  same machine), or one of a configured list (403);
- a body sent to a JSON endpoint must say ``application/json``: the types a page may send
  cross-site without a preflight (forms, ``text/plain``) are refused (415);
- WebSocket upgrades are refused (403) except on paths that serve one (none do today), so a
  WebSocket never reaches a handler written for HTTP.

Pure ASGI with no dependency, so both front ends (the MCP app and the OpenAI-compatible app)
and any page mounted beside them share one guard. ``deny`` answers an HTTP or WebSocket scope
with a status before any handler; ``BearerAuth`` uses it for every scope type.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["BearerAuth", "HttpGuard", "deny", "is_loopback_name", "loopback_hosts"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
# Types a browser sends cross-site without asking first (a CORS "simple" request).
_SIMPLE_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def is_loopback_name(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (brackets allowed)."""
    host = host.lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_hosts() -> list[str]:
    """Host patterns of a loopback server: every loopback name, any port."""
    return ["127.0.0.1:*", "localhost:*", "[::1]:*"]


async def deny(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """Answer ``status`` with a JSON ``body`` before any handler, for HTTP and WebSocket scopes.

    A WebSocket gets the HTTP answer where the server supports the denial-response extension;
    otherwise it is closed before the handshake completes (the server answers 403).
    """
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers]
    if scope["type"] == "websocket":
        if "websocket.http.response" not in (scope.get("extensions") or {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        prefix = "websocket.http.response"
    else:
        prefix = "http.response"
    await send({"type": f"{prefix}.start", "status": status, "headers": raw})
    await send({"type": f"{prefix}.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` (brackets kept for IPv6) -> (lower-case host, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value.partition("]")
        host += "]"
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.partition(":")
    return host, int(port) if port.isdigit() else None


def _matches(value: str, patterns: Iterable[str]) -> bool:
    """``value`` equals a pattern, or a ``…:*`` pattern up to any port."""
    value = value.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if value == pattern:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if value == base or (value.startswith(base + ":") and value[len(base) + 1 :].isdigit()):
                return True
    return False


class HttpGuard:
    """Pure ASGI middleware: Host, Origin, JSON body type and WebSocket checks (see module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        json_paths: Iterable[str] = (),
        websocket_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)
        self.allowed_origins = [o.rstrip("/") for o in allowed_origins]
        self.json_paths = tuple(json_paths)
        self.websocket_paths = tuple(websocket_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is not None:
            status, reason = refusal
            await deny(scope, receive, send, status, {"error": "forbidden", "reason": reason})
            return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> tuple[int, str] | None:
        """(status, reason) when the request is refused, else None."""
        path = scope.get("path") or "/"
        if scope["type"] == "websocket" and not path.startswith(self.websocket_paths or ("\0",)):
            return 403, "WebSocket is not served here"
        host = _header(scope, b"host")
        if self.allowed_hosts and (host is None or not _matches(host, self.allowed_hosts)):
            return 421, f"Host {host!r} does not name this server"
        origin = _header(scope, b"origin")
        if origin is not None and not self._origin_ok(scope, origin, host):
            return 403, f"Origin {origin!r} is not this server's origin nor an allowed one"
        if scope["type"] == "http" and path.startswith(self.json_paths):
            kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if kind in _SIMPLE_TYPES:
                return 415, f"{path} takes application/json, not {kind}"
        return None

    def _origin_ok(self, scope: Scope, origin: str, host: str | None) -> bool:
        origin = origin.strip().rstrip("/")
        if _matches(origin, self.allowed_origins):
            return True
        try:
            parts = urlsplit(origin)
            origin_port = parts.port
        except ValueError:
            return False
        scheme = str(scope.get("scheme", "http")).replace("ws", "http", 1)
        if parts.scheme.lower() != scheme or not parts.hostname or host is None:
            return False
        origin_host = parts.netloc.rpartition("@")[2]
        origin_name, _ = _split_host(origin_host)
        port = origin_port or _DEFAULT_PORTS.get(scheme)
        host_name, host_port = _split_host(host)  # the Host a browser sent: the server's name
        if port != (host_port or _DEFAULT_PORTS.get(scheme)):
            return False
        if origin_name == host_name:
            return True
        # localhost:PORT and 127.0.0.1:PORT are the same server when it listens on loopback.
        return is_loopback_name(origin_name) and is_loopback_name(host_name)


class BearerAuth:
    """Pure ASGI middleware: every HTTP and WebSocket request needs ``Authorization: Bearer
    <token>`` (constant-time check); anything else gets 401 before any handler."""

    def __init__(self, app: ASGIApp, token: str, body: dict[str, Any] | None = None) -> None:
        self.app = app
        # several comma-separated tokens: each is a principal that owns its own MCP jobs
        self.tokens = [t.strip().encode() for t in token.split(",") if t.strip()]
        self.body = body or {
            "error": "unauthorized",
            "error_description": "missing or wrong bearer token",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            given = b""
            for key, value in scope.get("headers") or ():
                if key.lower() == b"authorization":
                    given = bytes(value)
                    break
            scheme, _, token = given.strip().partition(b" ")
            token = token.strip() if scheme.lower() == b"bearer" else b""  # RFC 7235: any case
            if not token or not any([hmac.compare_digest(token, t) for t in self.tokens]):
                challenge = 'Bearer realm="abstractvision"'
                if given:  # RFC 6750: a token was sent and is wrong
                    challenge += ', error="invalid_token"'
                headers = [("WWW-Authenticate", challenge)]
                await deny(scope, receive, send, 401, self.body, headers)
                return
        await self.app(scope, receive, send)
