"""Who a request comes from: the owner of the jobs and tasks it starts.

- HTTP with a bearer token: the token's principal (a hash of the token), so a client that
  reconnects with the same token (new session, new TCP connection, stateless 2026-07-28 POSTs)
  finds its jobs, and a client with another token never does.
- HTTP without a token (loopback only): the ``Mcp-Session-Id`` (streamable HTTP) or the SSE
  ``session_id``; 2026-07-28 requests carry neither and share one anonymous owner.
- stdio and in-process clients: the connection (the server's lifespan is entered once per
  connection there), so one client process owns its jobs.

Artifacts are not owned: an artifact id is a capability (32 hex digits of the content's SHA-256,
unguessable without the bytes), and whoever holds a ref may read it; see docs/mcp.md.
"""

from __future__ import annotations

import contextvars
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

_OWNER_KEY = "abstractvision.owner"


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def principal(token: str) -> str:
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:24]


def owner_of(ctx: Any) -> str:
    """The owner of a request (``ServerRequestContext``); see the module docstring."""
    request = getattr(ctx, "request", None)
    headers: Mapping[str, str] | None = getattr(request, "headers", None)
    if headers is not None:
        token = bearer_token(headers.get("authorization"))
        if token:
            return principal(token)
        session = headers.get("mcp-session-id")
        query = getattr(request, "query_params", None) or {}
        session = session or query.get("session_id")
        return f"session:{session}" if session else "http:anonymous"
    state = ctx.lifespan_context
    if isinstance(state, dict):
        return str(state.setdefault(_OWNER_KEY, f"connection:{uuid.uuid4().hex}"))
    return "local"


@dataclass(frozen=True)
class Caller:
    """The request a tool runs for: its owner, where its log records go, whether it takes tasks.

    ``tools.call`` sets it for the handler (``CALLER``); in-process callers that set none (the
    playground page) act for every owner.
    """

    owner: str | None = None
    on_log: Callable[[str, str, str], Awaitable[None]] | None = None
    tasks: bool = False  # the request declared the Tasks extension (io.modelcontextprotocol/tasks)


CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "caller",
    default=Caller(),  # noqa: B039 (frozen)
)
