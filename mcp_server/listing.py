"""tools/list before the backend is known: answer at once, probe in the background, then notify.

The first tools/list is built from the cheap guess (``Engine.advertised``: registry tasks, or
every task for a local folder) so start-up never waits for the engine. That answer starts one
background probe (``Engine.capabilities`` in a worker thread; the Diffusers backend imports torch
there). When the exact list differs from the guess, clients hear it: handshake-era sessions that
received the guess get ``notifications/tools/list_changed``, 2026-07-28 clients a
``ToolsListChanged`` event on their ``subscriptions/listen`` stream.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged
from mcp_types import Tool
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from . import tools
from .state import ServerState

log = logging.getLogger(__name__)


def _dump(found: list[Tool]) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", exclude_none=True) for t in found]


class ToolListing:
    """Serves tools/list and keeps clients that saw a guessed list up to date."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.bus = InMemorySubscriptionBus()
        # one per connection (a session object is made per request), kept until the probe ends
        self._sessions: dict[int, Any] = {}
        self._probing = False

    async def list(self, ctx: ServerRequestContext[Any], tasks: TaskGroup | None) -> list[Tool]:
        """The tool list now; a guessed one starts the probe (once) in ``tasks``."""
        found = await anyio.to_thread.run_sync(tools.list_tools, self.state)
        if self.state.engine.probed or not self.state.config.probe or tasks is None:
            return found
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            connection = getattr(ctx.session, "_connection", ctx.session)
            self._sessions[id(connection)] = ctx.session
        if not self._probing:
            self._probing = True
            tasks.start_soon(self._probe, found)
        return found

    async def _probe(self, guessed: list[Tool]) -> None:
        try:
            await anyio.to_thread.run_sync(self.state.engine.capabilities, abandon_on_cancel=True)
            exact = await anyio.to_thread.run_sync(tools.list_tools, self.state)
        except anyio.get_cancelled_exc_class():
            self._probing = False  # the server stopped; a later tools/list tries again
            raise
        except Exception:
            log.warning("capability probe failed; tools/list stays as guessed", exc_info=True)
            self._sessions = {}
            return
        sessions, self._sessions = list(self._sessions.values()), {}
        if _dump(exact) == _dump(guessed):
            return
        log.info("tools/list changed after probing: %s", ", ".join(t.name for t in exact))
        await self.bus.publish(ToolsListChanged())
        for session in sessions:
            with contextlib.suppress(Exception):  # a session that has gone away
                await session.send_tool_list_changed()
