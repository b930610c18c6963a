"""The MCP Tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663) over our jobs.

A 2026-07-28 client that declares the extension on its ``tools/call`` gets, for a long tool
(video, multi-view) at once and for an image tool once ``wait_s`` has passed, a
``CreateTaskResult`` (``resultType: "task"``) instead of a job handle. The task is the job:
its id is the job id (unguessable), it belongs to the caller's owner (owners.py), it survives
the client's disconnect and is kept ``--job-ttl-s`` after it ends.

- ``tasks/get``: ``working`` (``statusMessage`` = the job's progress, e.g. ``step 3/20``),
  ``completed`` with the same ``CallToolResult`` a plain call returns (a refused or failed
  generation is a completed task whose result has ``isError``), ``failed`` with a JSON-RPC
  error (-32603) when the engine broke, ``cancelled``.
- ``tasks/cancel``: cancels the job; the engine stops at its next step and stores nothing.
- ``tasks/update``: acknowledged (our tasks never ask for input).
- ``subscriptions/listen`` with ``notifications.taskIds``: ``notifications/tasks`` with the
  full task on every change, next to the tool-list events of ``listing.py``.

Unknown, expired or someone else's task ids are ``-32602`` ("Task not found").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY, ToolsListChanged
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    EmptyResult,
    Notification,
    NotificationParams,
    RequestParams,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    ToolListChangedNotification,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field

from abstractvision import Task

from .jobs import Job
from .owners import owner_of

log = logging.getLogger(__name__)

EXTENSION = "io.modelcontextprotocol/tasks"
LONG_TASKS = frozenset({Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO, Task.MULTI_VIEW_IMAGE})
POLL_INTERVAL_MS = 1000
_STATUS = {"queued": "working", "running": "working", "succeeded": "completed"}


class TaskParams(RequestParams):
    """``tasks/get`` / ``tasks/cancel`` / ``tasks/update`` params (inputResponses are ignored)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str = Field(alias="taskId", min_length=1, max_length=128)


def declared(ctx: Any) -> bool:
    """Whether this request may get a task: a 2026-07-28 request declaring the extension."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False  # a task result cannot cross a handshake-era wire
    caps = ctx.session.client_capabilities
    return bool(caps is not None and caps.extensions and EXTENSION in caps.extensions)


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def task_doc(state: Any, job: Job) -> dict[str, Any]:
    """The ``Task`` fields of a job (no result)."""
    status = _STATUS.get(job.status, job.status)
    if job.status == "failed" and job.error_type != "InternalError":
        status = "completed"  # a tool-level failure: completed, with an isError result
    end = job.finished if job.finished is not None else job.updated
    doc: dict[str, Any] = {
        "taskId": job.id,
        "status": status,
        "statusMessage": job.error if job.error else job.progress()["message"],
        "createdAt": _iso(job.created),
        "lastUpdatedAt": _iso(job.updated),
        "ttlMs": int((end - job.created + state.jobs.ttl_s) * 1000),
        "pollIntervalMs": POLL_INTERVAL_MS,
    }
    return doc


def created(state: Any, job: Job) -> dict[str, Any]:
    """The ``CreateTaskResult`` of a just-submitted job (it is in the job table already)."""
    return {"resultType": "task", **task_doc(state, job)}


async def detailed(state: Any, job: Job) -> dict[str, Any]:
    """The ``DetailedTask``: ``result`` when completed, ``error`` when failed."""
    from .tools import finish  # tools imports this module

    doc = task_doc(state, job)
    if doc["status"] == "completed":
        result = await finish(state, job)
        doc["result"] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    elif doc["status"] == "failed":
        doc["error"] = {"code": INTERNAL_ERROR, "message": job.error or "the task failed"}
    return doc


def _job(state: Any, ctx: Any, task_id: str) -> Job:
    job = state.jobs.get(task_id, owner_of(ctx))
    if job is None:
        raise MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found")
    return job


def install(server: Any, state: Any, bus: Any) -> None:
    """Advertise the extension and serve its methods and ``subscriptions/listen`` on ``server``."""

    async def get(ctx: Any, params: TaskParams) -> dict[str, Any]:
        return await detailed(state, _job(state, ctx, params.task_id))

    async def cancel(ctx: Any, params: TaskParams) -> EmptyResult:
        state.jobs.cancel(_job(state, ctx, params.task_id))
        return EmptyResult()

    async def update(ctx: Any, params: TaskParams) -> EmptyResult:
        _job(state, ctx, params.task_id)
        return EmptyResult()

    server.add_request_handler("tasks/get", TaskParams, get)
    server.add_request_handler("tasks/cancel", TaskParams, cancel)
    server.add_request_handler("tasks/update", TaskParams, update)
    server.add_request_handler(
        "subscriptions/listen", SubscriptionsListenRequestParams, Listen(state, bus)
    )
    server.extensions[EXTENSION] = {}


class Listen:
    """``subscriptions/listen``: tool-list changes (from the bus) and ``notifications/tasks``."""

    def __init__(self, state: Any, bus: Any) -> None:
        self.state = state
        self.bus = bus

    async def __call__(
        self, ctx: Any, params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        if ctx.request_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        wanted = params.notifications
        task_ids = list((wanted.model_extra or {}).get("taskIds") or [])
        if task_ids and not declared(ctx):
            raise MCPError(
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                "Missing required client capability",
                {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
            )
        owner = owner_of(ctx)
        jobs = [j for j in (self.state.jobs.get(str(t), owner) for t in task_ids) if j]
        honored = SubscriptionFilter(tools_list_changed=True if wanted.tools_list_changed else None)
        if task_ids:
            honored = honored.model_copy(update={"taskIds": [j.id for j in jobs]})
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: ctx.request_id}
        wake = asyncio.Event()
        tools_changed = False

        def on_event(event: Any) -> None:
            nonlocal tools_changed
            if isinstance(event, ToolsListChanged) and honored.tools_list_changed:
                tools_changed = True
                wake.set()

        unsubscribe = self.bus.subscribe(on_event)
        keys = [job.watch(wake) for job in jobs]
        sent: dict[str, float] = {}
        try:
            ack = SubscriptionsAcknowledgedNotificationParams(notifications=honored, _meta=meta)
            await self._send(ctx, SubscriptionsAcknowledgedNotification(params=ack))
            while True:
                wake.clear()
                if tools_changed:
                    tools_changed = False
                    await self._send(
                        ctx, ToolListChangedNotification(params=NotificationParams(_meta=meta))
                    )
                for job in jobs:
                    if sent.get(job.id) in (job.updated, -1.0):  # unchanged, or ended and sent
                        continue
                    doc = await detailed(self.state, job)
                    note = Notification[dict[str, Any], str](
                        method="notifications/tasks", params={**doc, "_meta": meta}
                    )
                    await self._send(ctx, note)
                    sent[job.id] = -1.0 if job.done else job.updated  # nothing after the end
                await wake.wait()
        finally:
            unsubscribe()
            for job, key in zip(jobs, keys, strict=True):
                job.unwatch(key)
        return SubscriptionsListenResult(_meta=meta)  # pragma: no cover (streams end abruptly)

    @staticmethod
    async def _send(ctx: Any, notification: Any) -> None:
        await ctx.session.send_notification(notification, related_request_id=ctx.request_id)
