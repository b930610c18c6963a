"""The tool table: five task tools (one generic handler) and the job/catalogue tools.

Every tool is a row in ``TOOLS`` (added by ``@tool``); ``call`` looks the name up, checks the
arguments and turns every library error into an ``isError`` result that says what to change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from mcp_types import CallToolResult, Tool, ToolAnnotations

from abstractvision import AbstractVisionError, InvalidRequestError, ProgressEvent, Task
from abstractvision.tool_schemas import TASK_TEXT
from abstractvision.types import REQUEST_TYPES

from . import resources, results
from .schemas import (
    GENERATION_OUTPUT,
    GET_JOB_OUTPUT,
    MULTI_VIEW_OUTPUT,
    UTILITY_INPUTS,
    check_arguments,
    task_input_schema,
)
from .state import ServerState

log = logging.getLogger(__name__)

Progress = Callable[[ProgressEvent], Awaitable[None]]
Handler = Callable[[ServerState, dict[str, Any], Progress], Awaitable[CallToolResult]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    handler: Handler
    read_only: bool = True
    task: Task | None = None
    output_schema: dict[str, Any] | None = None


TOOLS: dict[str, ToolSpec] = {}

_RESULT_NOTE = " Returns an artifact ref (pass it to other tools) or a job_id for get_job."
_VIEWS_NOTE = " Returns refs {reference, views, contact_sheet} or a job_id for get_job."


def tool(name: str, title: str, description: str, **kwargs: Any) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        TOOLS[name] = ToolSpec(name, title, description, handler, **kwargs)
        return handler

    return register


def list_tools(state: ServerState) -> list[Tool]:
    """The tools to advertise: task tools the backend can run (all with --all-tools)."""
    supported = set(state.engine.supported_tasks(advertised=True))
    caps = state.engine.advertised()
    out = []
    for spec in TOOLS.values():
        if spec.task is not None:
            if spec.task not in supported and not state.config.all_tools:
                continue
            schema = task_input_schema(
                spec.task,
                state.engine.models_for(spec.task, advertised=True),
                caps.extra_keys,
                state.config.wait_s,
            )
        else:
            schema = UTILITY_INPUTS[spec.name]
        out.append(
            Tool(
                name=spec.name,
                title=spec.title,
                description=spec.description,
                input_schema=schema,
                output_schema=spec.output_schema,
                annotations=ToolAnnotations(
                    title=spec.title,
                    read_only_hint=spec.read_only,
                    destructive_hint=False,
                    idempotent_hint=spec.read_only,
                    open_world_hint=False,
                ),
            )
        )
    return out


async def call(
    state: ServerState, name: str, arguments: dict[str, Any] | None, progress: Progress
) -> CallToolResult:
    spec = TOOLS.get(name)
    if spec is None:
        return results.error_result(f"unknown tool {name!r}; tools: {', '.join(TOOLS)}")
    args = dict(arguments or {})
    try:
        if spec.task is None:
            check_arguments(UTILITY_INPUTS[name], args)
        return await spec.handler(state, args, progress)
    except AbstractVisionError as exc:
        return results.error_result(str(exc))
    except Exception as exc:
        log.exception("tool %s failed", name)
        return results.error_result(f"{name} failed unexpectedly: {type(exc).__name__}: {exc}")


async def _finish(state: ServerState, job: Any) -> CallToolResult:
    if job.status == "succeeded":
        return await anyio.to_thread.run_sync(
            results.generation_result, state.config, state.engine.store, job.task, job, job.result
        )
    if job.status in ("failed", "cancelled"):
        return results.error_result(f"{job.task} {job.status}: {job.error}")
    return results.pending_result(job)


def _task_handler(task: Task) -> Handler:
    async def run_task(
        state: ServerState, args: dict[str, Any], progress: Progress
    ) -> CallToolResult:
        wait_s = args.pop("wait_s", state.config.wait_s)
        check_arguments(
            {"properties": {"wait_s": {"type": "number", "minimum": 0}}}, {"wait_s": wait_s}
        )
        supported = await anyio.to_thread.run_sync(state.engine.supported_tasks)
        if task not in supported:
            can = ", ".join(t.value for t in supported) or "nothing"
            return results.error_result(
                f"{task.value} is not available: the {state.config.backend} backend as configured "
                f"can run {can}. Use one of those tools or start the server with another model."
            )
        cls = REQUEST_TYPES[task]
        slot = state.jobs.device.admit()  # busy is answered before any input is fetched or decoded
        try:
            for field in cls.image_fields:
                if args.get(field) is not None:
                    args[field] = await state.inputs.resolve(field, args[field])
            cls.from_dict(args)  # validate now: bad calls never become jobs
        except BaseException:
            slot.close()
            raise
        job = state.jobs.submit(
            task.value, lambda control: state.engine.run(task, args, control), slot=slot
        )
        await state.jobs.wait(
            job, min(float(wait_s), state.config.wait_s), progress, cancel_on_abort=True
        )
        return await _finish(state, job)

    return run_task


for _task, (_title, _text) in TASK_TEXT.items():
    _views = _task is Task.MULTI_VIEW_IMAGE
    TOOLS[_task.value] = ToolSpec(
        _task.value,
        _title,
        _text + (_VIEWS_NOTE if _views else _RESULT_NOTE),
        _task_handler(_task),
        read_only=False,
        task=_task,
        output_schema=MULTI_VIEW_OUTPUT if _views else GENERATION_OUTPUT,
    )


def _job(state: ServerState, job_id: str) -> Any:
    job = state.jobs.get(job_id)
    if job is None:
        raise InvalidRequestError(
            "job_id", job_id, "no such job (finished jobs are kept for a while; see list_jobs)"
        )
    return job


@tool("get_job", "Get job", "Status of a job; waits up to wait_s, then returns its result.",
      output_schema=GET_JOB_OUTPUT)  # fmt: skip
async def get_job(state: ServerState, args: dict[str, Any], progress: Progress) -> CallToolResult:
    job = _job(state, args["job_id"])
    await state.jobs.wait(job, float(args.get("wait_s", 0)), progress)
    return await _finish(state, job)


@tool(
    "cancel_job", "Cancel job", "Stop a job at its next step; nothing is stored.", read_only=False
)
async def cancel_job(
    state: ServerState, args: dict[str, Any], progress: Progress
) -> CallToolResult:
    job = _job(state, args["job_id"])
    state.jobs.cancel(job)
    await state.jobs.wait(job, 10.0)
    return results.json_result(job.summary(), f"{job.id}: {job.status}")


@tool("list_jobs", "List jobs", "Jobs running now and recently finished.")
async def list_jobs(state: ServerState, args: dict[str, Any], progress: Progress) -> CallToolResult:
    return results.json_result({"jobs": [j.summary() for j in state.jobs.list()]})


@tool("list_models", "List models", "Models configured now and known to the registry.")
async def list_models(
    state: ServerState, args: dict[str, Any], progress: Progress
) -> CallToolResult:
    doc = await anyio.to_thread.run_sync(resources.models_doc, state, args.get("task"))
    return results.json_result(doc)


@tool("get_capabilities", "Capabilities", "Tasks and models; details for one task or model.")
async def get_capabilities(
    state: ServerState, args: dict[str, Any], progress: Progress
) -> CallToolResult:
    if args.get("model"):
        doc = await anyio.to_thread.run_sync(resources.model_doc, state, args["model"])
    elif args.get("task"):
        doc = await anyio.to_thread.run_sync(resources.task_doc, state, args["task"])
    else:
        doc = await anyio.to_thread.run_sync(resources.capabilities_doc, state)
    return results.json_result(doc)
