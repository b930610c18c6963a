"""The MCP ``logging`` capability: ``logging/setLevel`` and ``notifications/message``.

Log records that the library and the server emit while a job runs (in its worker thread: model
loading, pipeline derivation, the job's end) are kept on the job (``jobs.CURRENT_JOB``) and sent
to the client waiting on it, on that request's stream, as ``notifications/message``:

- handshake-era clients choose the level with ``logging/setLevel`` (per owner; ``warning``
  until they do);
- 2026-07-28 clients opt in per request (``_meta`` ``io.modelcontextprotocol/logLevel``), which
  the SDK enforces.

What reaches the client is also bounded by the server's own ``--log-level``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_types import EmptyResult, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .jobs import CURRENT_JOB
from .owners import owner_of

# MCP (RFC 5424) level -> Python level
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}
DEFAULT_LEVEL = "warning"
_MAX_LOGS = 200  # per job


def mcp_level(levelno: int) -> str:
    for name in ("critical", "error", "warning", "info"):
        if levelno >= LEVELS[name]:
            return name
    return "debug"


class JobLogHandler(logging.Handler):
    """Keeps each record emitted in a job's worker thread on that job."""

    def emit(self, record: logging.LogRecord) -> None:
        job = CURRENT_JOB.get()
        if job is None or len(job.logs) >= _MAX_LOGS:
            return
        try:
            job.logs.append((mcp_level(record.levelno), record.name, record.getMessage()))
        except Exception:  # a bad format string must not break the job
            return
        job.changed()


_HANDLER = JobLogHandler(logging.DEBUG)


def install_handler() -> None:
    """Attach the handler to the library's and the server's loggers (once)."""
    for name in ("abstractvision", "mcp_server"):
        logger = logging.getLogger(name)
        if _HANDLER not in logger.handlers:
            logger.addHandler(_HANDLER)


class LogLevels:
    """The level each owner asked for with ``logging/setLevel`` (handshake era)."""

    def __init__(self) -> None:
        self._levels: dict[str, str] = {}

    async def set_level(self, ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        self._levels[owner_of(ctx)] = params.level
        return EmptyResult()

    def sink(self, ctx: Any) -> Callable[[str, str, str], Awaitable[None]]:
        """Where a tool call's job log records go: this request's stream, at the chosen level."""
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        floor = LEVELS[self._levels.get(owner_of(ctx), DEFAULT_LEVEL)]

        async def send(level: str, logger: str, message: str) -> None:
            if not modern and LEVELS[level] < floor:
                return  # 2026-07-28: the SDK applies the request's own opt-in
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the capability is deprecated in 2026-07-28
                try:
                    await ctx.session.send_log_message(
                        level, message, logger, related_request_id=ctx.request_id
                    )
                except Exception:  # the client went away
                    return

        return send
