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
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, Tool, ToolAnnotations

from abstractvision import AbstractVisionError, InvalidRequestError, ProgressEvent, Task
from abstractvision.tool_schemas import TASK_TEXT
from abstractvision.types import REQUEST_TYPES

from . import resources, results, tasks
from .owners import CALLER, Caller
from .schemas import (
    GENERATION_OUTPUT,
    GET_JOB_OUTPUT,
    MULTI_VIEW_OUTPUT,
    UTILITY_INPUTS,
    check_arguments,
    task_input_schema,
    wait_schema,
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

_RESULT_NOTE = " Returns an artifact ref, or after wait_s seconds a job_id."
_VIEWS_NOTE = " Returns {reference, views, contact_sheet}, or after wait_s seconds a job_id."


def tool(name: str, title: str, description: str, **kwargs: Any) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        TOOLS[name] = ToolSpec(name, title, description, handler, **kwargs)
        return handler

    return register


def list_tools(state: ServerState) -> list[Tool]:
    """The tools to advertise: task tools the backend can run (all with --all-tools).

    Built once per capabilities object (the guess, then the probed one) and reused: schema
    generation costs milliseconds, and a 2026-07-28 HTTP tools/call looks its schema up too.
    """
    caps = state.engine.advertised()
    cached = state.tool_cache
    if cached is not None and cached[0] is (caps if state.engine.probed else None):
        return list(cached[1])
    built = _build_tools(state, caps)
    state.tool_cache = (caps if state.engine.probed else None, built)
    return list(built)


def input_schema(state: ServerState, name: str) -> dict[str, Any] | None:
    """A listed tool's input schema (the SDK's ``get_tool_input_schema``), from the cache."""
    return next((t.input_schema for t in list_tools(state) if t.name == name), None)


def _build_tools(state: ServerState, caps: Any) -> list[Tool]:
    supported = set(state.engine.supported_tasks(advertised=True))
    out = []
    for spec in TOOLS.values():
        if spec.task is not None:
            if spec.task not in supported and not state.config.all_tools:
                continue
            schema = task_input_schema(
                spec.task,
                state.engine.models_for(spec.task, advertised=True),
                caps,
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
                annotations=ToolAnnotations(  # the title is the tool's; defaults left out
                    read_only_hint=spec.read_only or None,
                    destructive_hint=None if spec.read_only else False,
                    idempotent_hint=spec.read_only or None,
                ),
            )
        )
    return out


async def call(
    state: ServerState,
    name: str,
    arguments: dict[str, Any] | None,
    progress: Progress,
    caller: Caller | None = None,
) -> CallToolResult | dict[str, Any]:
    """Run one tool for ``caller`` (default: an in-process caller acting for every owner).

    An unknown tool is a JSON-RPC error (-32602) naming the advertised tools; every other
    failure is an ``isError`` result. A Tasks-extension caller may get a task (a dict).
    """
    spec = TOOLS.get(name)
    if spec is None:
        known = await anyio.to_thread.run_sync(advertised_names, state)
        raise MCPError(INVALID_PARAMS, f"unknown tool {name!r}; tools: {', '.join(known)}")
    args = dict(arguments or {})
    token = CALLER.set(caller) if caller is not None else None  # handlers read it
    try:
        if spec.task is None:
            check_arguments(UTILITY_INPUTS[name], args)
        return await spec.handler(state, args, progress)
    except AbstractVisionError as exc:
        return results.error_result(str(exc))
    except Exception as exc:
        log.exception("tool %s failed", name)
        return results.error_result(f"{name} failed unexpectedly: {type(exc).__name__}")
    finally:
        if token is not None:
            CALLER.reset(token)


def advertised_names(state: ServerState) -> list[str]:
    return [t.name for t in list_tools(state)]


async def finish(state: ServerState, job: Any) -> CallToolResult:
    """The tool result of a job now: its result (made once, then reused), error or handle."""
    if job.status == "succeeded":
        made = job.memo.get("result")
        if made is None:
            made = job.memo["result"] = await anyio.to_thread.run_sync(
                results.generation_result,
                state.config,
                state.engine.store,
                job.task,
                job,
                job.result,
            )
        return made
    if job.status in ("failed", "cancelled"):
        return results.error_result(f"{job.task} {job.status}: {job.error}")
    return results.pending_result(job)


def _check_plain_arguments(state: ServerState, args: dict[str, Any]) -> float:
    """``wait_s`` within the bounds its published schema gives (removed from ``args``)."""
    wait_s = args.pop("wait_s", state.config.wait_s)
    check_arguments(
        {"properties": {"wait_s": wait_schema(state.config.wait_s)}}, {"wait_s": wait_s}
    )
    return float(wait_s)


def _refuse_nulls(args: dict[str, Any]) -> None:
    """The published schema types every optional field without null: omit it instead."""
    for name, value in args.items():
        if value is None:
            raise InvalidRequestError(name, None, "must not be null; omit it for the default")


def _task_handler(task: Task) -> Handler:
    async def run_task(
        state: ServerState, args: dict[str, Any], progress: Progress
    ) -> CallToolResult:
        wait_s = _check_plain_arguments(state, args)
        caller = CALLER.get()
        if state.engine.probed:  # cached: no thread hop
            supported = state.engine.supported_tasks()
        else:
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
            for field in cls.image_list_fields:
                if isinstance(args.get(field), list):
                    args[field] = [
                        await state.inputs.resolve(f"{field}.{i}", v)
                        for i, v in enumerate(args[field])
                    ]
            # every check the library makes before running (bounds, steps x strength of an
            # edit, the scheduler...): bad calls never become jobs
            await anyio.to_thread.run_sync(state.engine.check, task, args)
            _refuse_nulls(args)
        except AbstractVisionError as exc:
            slot.close()
            return results.error_result(f"{task.value} refused: {exc}")
        except BaseException:
            slot.close()
            raise
        job = state.jobs.submit(
            task.value,
            lambda control: state.engine.run(task, args, control),
            slot=slot,
            owner=caller.owner,
        )
        if caller.tasks and task in tasks.LONG_TASKS:
            return tasks.created(state, job)
        await state.jobs.wait(
            job,
            min(wait_s, state.config.wait_s),
            progress,
            cancel_on_abort=True,
            on_log=caller.on_log,
        )
        if caller.tasks and not job.done:
            return tasks.created(state, job)
        return await finish(state, job)

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
    job = state.jobs.get(job_id, CALLER.get().owner)  # another owner's job is no such job
    if job is None:
        raise InvalidRequestError(
            "job_id", job_id, "no such job (finished jobs are kept for a while; see list_jobs)"
        )
    return job


@tool("get_job", "Get job", "Status of a job; waits up to wait_s, then returns its result.",
      output_schema=GET_JOB_OUTPUT)  # fmt: skip
async def get_job(state: ServerState, args: dict[str, Any], progress: Progress) -> CallToolResult:
    job = _job(state, args["job_id"])
    # progress from where the job is now (not its whole history), then each new step
    await state.jobs.wait(
        job, float(args.get("wait_s", 0)), progress, cursor=-1, on_log=CALLER.get().on_log
    )
    return await finish(state, job)


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
    jobs = state.jobs.list(CALLER.get().owner)
    return results.json_result({"jobs": [j.summary() for j in jobs]})


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
