"""The MCP server object: a low-level ``mcp.server.Server`` whose handlers read the two tables.

``create_server(config)`` builds it without touching an engine: the backend is made on the first
tools/list or call, and weights load on the first generation (or in the background with
``--preload``). ``serve(config)`` runs it on the configured transport.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp.server import InitializationOptions, NotificationOptions, Server
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    SetLevelRequestParams,
)

from abstractvision import AbstractVisionError, ProgressEvent, __version__

from . import completions, logs, resources, tasks, tools
from .config import ServerConfig
from .engine import Engine
from .listing import ToolListing
from .owners import Caller, owner_of
from .state import ServerState

log = logging.getLogger(__name__)
RESOURCE_NOT_FOUND = -32002

INSTRUCTIONS = (
    "Generate images and videos. Task tools return an artifact ref: pass it as the image of "
    "the next tool instead of bytes; read abstractvision://artifacts/{id} for the bytes. "
    "Long jobs return a job_id: call get_job(job_id, wait_s)."
)


class _Server(Server[Any]):
    """Declares ``tools.listChanged`` to handshake-era clients (the list is exact after probing)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


def create_server(config: ServerConfig, *, engine: Engine | None = None) -> Server[Any]:
    """Build the server; ``engine`` lets tests inject a backend or store."""
    state = ServerState.create(config, engine)

    listing = ToolListing(state)
    levels = logs.LogLevels()
    logs.install_handler()

    @contextlib.asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        if config.preload:
            state.engine.preload_in_background()
        async with anyio.create_task_group() as background:
            try:
                yield {"background": background}
            finally:
                background.cancel_scope.cancel()

    async def list_tools(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        background = (ctx.lifespan_context or {}).get("background")
        return ListToolsResult(tools=await listing.list(ctx, background))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        phase = {"base": 0.0, "last": 0.0, "total": 0.0}  # MCP progress must only increase

        async def progress(event: ProgressEvent) -> None:
            if event.step < phase["last"]:  # a new phase (a download, then the steps)
                phase["base"] += phase["total"] or phase["last"]
            phase["last"], phase["total"] = event.step, float(event.total or 0)
            done = phase["base"] + event.step
            total = phase["base"] + event.total if event.total else None
            with contextlib.suppress(Exception):
                await ctx.session.report_progress(done, total, event.message)

        caller = Caller(owner_of(ctx), levels.sink(ctx), tasks.declared(ctx))
        return await tools.call(state, params.name, params.arguments, progress, caller)  # type: ignore[return-value]

    async def list_resources(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        return ListResourcesResult(resources=resources.list_resources())

    async def list_templates(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        return ListResourceTemplatesResult(resource_templates=resources.list_templates())

    async def read_resource(
        ctx: ServerRequestContext[Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult:
        uri = str(params.uri)
        try:
            found = await anyio.to_thread.run_sync(resources.read, state, uri)
        except LookupError as exc:  # unknown model / artifact
            raise MCPError(code=RESOURCE_NOT_FOUND, message=str(exc), data={"uri": uri}) from None
        except AbstractVisionError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc), data={"uri": uri}) from None
        if found is None:
            raise MCPError(code=RESOURCE_NOT_FOUND, message=f"no resource {uri}", data={"uri": uri})
        return found

    server: Server[Any] = _Server(
        "abstractvision",
        version=__version__,
        title="abstractvision",
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_completion=completions.handler(state),
    )
    # 2026-07-28 HTTP checks a tools/call's Mcp-Param headers against the tool's schema: from
    # the cache, not by running tools/list on every call (that cost ~8 ms a call)
    server.get_tool_input_schema = lambda name: tools.input_schema(state, name)
    server.add_request_handler("logging/setLevel", SetLevelRequestParams, levels.set_level)
    tasks.install(server, state, listing.bus)  # also serves subscriptions/listen
    server.abstractvision_state = state  # type: ignore[attr-defined]
    return server


def serve(config: ServerConfig) -> None:
    """Run on the configured transport until interrupted."""
    server = create_server(config)
    if config.transport == "stdio":
        from .stdio import serve_stdio  # malformed lines answered; EOF ends the process

        serve_stdio(server)
        return
    from .http import run_http

    anyio.run(run_http, server, config)
