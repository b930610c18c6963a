"""A Tasks-extension client for the tests, on the SDK's extension points (as SEP-2663 defines).

``TasksExtension`` declares ``io.modelcontextprotocol/tasks`` on every request and claims the
``resultType: "task"`` shape of ``tools/call``; ``call`` returns the raw ``CreateTaskResult``,
and ``get``/``cancel``/``update`` send ``tasks/*`` with the ``Mcp-Name`` routing header.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import anyio
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from mcp_types import CallToolResult, NotificationParams, Request, RequestParams, Result
from pydantic import ConfigDict

EXTENSION = "io.modelcontextprotocol/tasks"


class CreateTaskResult(Result):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class DetailedTask(Result):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str
    status: str
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TaskIdParams(RequestParams):
    task_id: str
    input_responses: dict[str, Any] | None = None


class _TaskRequest(Request[TaskIdParams, str]):
    name_param: ClassVar[str | None] = "taskId"


async def _resolve(task: CreateTaskResult, ctx: ClaimContext) -> CallToolResult:
    """Transparent resolution: poll tasks/get to a terminal status (what call_tool returns)."""
    while True:
        doc = await get(ctx.session, task.task_id)
        if doc.status == "completed":
            return CallToolResult.model_validate(doc.result)
        if doc.status in ("failed", "cancelled"):
            raise RuntimeError(f"task {doc.status}: {doc.status_message}")
        await anyio.sleep(0.05)


class TaskNotification(NotificationParams):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str
    status: str
    result: dict[str, Any] | None = None


class TasksExtension(ClientExtension):
    """Declares the extension, claims ``resultType: "task"``, keeps ``notifications/tasks``."""

    identifier = EXTENSION

    def __init__(self) -> None:
        self.seen: list[TaskNotification] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=_resolve)]

    def notifications(self) -> list[NotificationBinding[Any]]:
        async def keep(params: TaskNotification) -> None:
            self.seen.append(params)

        return [NotificationBinding(method="notifications/tasks", params_type=TaskNotification,
                                    handler=keep)]  # fmt: skip


async def call(client: Any, name: str, args: dict[str, Any]) -> Any:
    """tools/call, returning a CreateTaskResult or a CallToolResult as the server chose."""
    return await client.session.call_tool(name, args, allow_claimed=True)


async def get(session: Any, task_id: str) -> DetailedTask:
    request = _TaskRequest(method="tasks/get", params=TaskIdParams(task_id=task_id))
    return await session.send_request(request, DetailedTask)


async def cancel(session: Any, task_id: str) -> Any:
    request = _TaskRequest(method="tasks/cancel", params=TaskIdParams(task_id=task_id))
    return await session.send_request(request, Result)


async def update(session: Any, task_id: str) -> Any:
    params = TaskIdParams(task_id=task_id, input_responses={})
    return await session.send_request(_TaskRequest(method="tasks/update", params=params), Result)


async def poll(session: Any, task_id: str, timeout_s: float = 120) -> DetailedTask:
    """tasks/get until a terminal status."""
    with anyio.fail_after(timeout_s):
        while True:
            doc = await get(session, task_id)
            if doc.status in ("completed", "failed", "cancelled"):
                return doc
            await anyio.sleep(0.05)
