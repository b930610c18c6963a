"""Tool calling without MCP: tool specs for OpenAI / Anthropic / MCP, and one-call dispatch.

``tool_specs(format, manager)`` lists a tool per task the manager's backend can run, with the
same input schemas the MCP server publishes (``abstractvision.tool_schemas``).
``dispatch(manager, name, arguments)`` runs one tool call as the model sent it and returns a
small JSON-serialisable result: the artifact ref, ``{reference, views, contact_sheet}`` for
multi-view, or ``{"error": ..., "field": ...}`` that the model can read and fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .artifacts import artifact_uri
from .errors import AbstractVisionError, InvalidRequestError, _short_repr
from .inputs import ImageResolver
from .tool_schemas import TASK_TEXT, available_tasks, models_for, task_input_schema
from .types import REQUEST_TYPES, Task, VisionBackendCapabilities

__all__ = ["dispatch", "flatten_ref", "group_views", "tool_result", "tool_specs"]

Format = Literal["openai", "anthropic", "mcp"]
FORMATS: tuple[str, ...] = ("openai", "anthropic", "mcp")

_FIELDS = ("width", "height", "frames", "fps", "model", "seed", "timings", "replica_id")
# What a multi-view ref says about its place in the set (see docs/multiview.md).
_VIEW_FIELDS = ("role", "view_index", "angle", "azimuth", "elevation", "zoom", "route", "failed")


def _capabilities(manager: Any) -> VisionBackendCapabilities:
    if manager is None or getattr(manager, "backend", None) is None:
        return VisionBackendCapabilities()  # every task, no model list
    caps: VisionBackendCapabilities = manager.capabilities()
    return caps


def tool_specs(
    format: Format = "openai", manager: Any = None, *, all_tasks: bool = False
) -> list[dict[str, Any]]:
    """Tool definitions for the tasks ``manager``'s backend can run (every task without one)."""
    if format not in FORMATS:
        raise InvalidRequestError("format", format, f"must be one of {', '.join(FORMATS)}")
    caps = _capabilities(manager)
    tasks = list(Task) if all_tasks else available_tasks(caps)
    specs = []
    for task in tasks:
        title, text = TASK_TEXT[task]
        schema = task_input_schema(task, models_for(caps, task), caps.extra_keys, caps=caps)
        specs.append(_spec(format, task.value, title, text + _note(task), schema))
    return specs


def _note(task: Task) -> str:
    if task is Task.MULTI_VIEW_IMAGE:
        return " Returns refs {reference, views, contact_sheet}."
    return " Returns an artifact ref (pass it to other tools as an image)."


def _spec(
    format: str, name: str, title: str, description: str, schema: dict[str, Any]
) -> dict[str, Any]:
    if format == "openai":
        fn = {"name": name, "description": description, "parameters": schema}
        return {"type": "function", "function": fn}
    if format == "anthropic":
        return {"name": name, "description": description, "input_schema": schema}
    return {"name": name, "title": title, "description": description, "inputSchema": schema}


def dispatch(
    manager: Any,
    name: str,
    arguments: str | Mapping[str, Any] | None,
    *,
    inputs: ImageResolver | None = None,
) -> dict[str, Any]:
    """Run one tool call; every library error becomes ``{"error": ...}`` for the model to read.

    ``arguments`` is the JSON string (OpenAI) or the dict (Anthropic) the model sent. Image
    fields are resolved by ``inputs`` (default: refs and inline data from the manager's store;
    no file paths, public URLs only). The manager must have a store: results are refs.
    """
    if getattr(manager, "store", None) is None:
        raise AbstractVisionError("dispatch needs a VisionManager with a store (results are refs)")
    try:
        task = Task(name)
    except ValueError:
        tools = [t.value for t in Task]
        return {"error": f"unknown tool {name!r}", "field": "name", "tools": tools}
    try:
        args = _arguments(arguments)
        resolver = inputs if inputs is not None else ImageResolver(manager.store)
        args = resolver.resolve_request(REQUEST_TYPES[task], args)
        return tool_result(manager.run(task, args))
    except InvalidRequestError as exc:
        return {
            "error": str(exc),
            "field": exc.field,
            "value": _short_repr(exc.value),
            "limit": exc.limit,
        }
    except AbstractVisionError as exc:
        return {"error": str(exc), "kind": type(exc).__name__}


def _arguments(arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError as exc:
            raise InvalidRequestError(
                "arguments", arguments, f"must be a JSON object ({exc})"
            ) from None
    if not isinstance(arguments, Mapping):
        raise InvalidRequestError("arguments", arguments, "must be a JSON object")
    return dict(arguments)


def flatten_ref(ref: Mapping[str, Any]) -> dict[str, Any]:
    """The ref an agent passes on, plus the generation facts lifted out of its metadata."""
    meta = ref.get("metadata") or {}
    out = {k: v for k, v in ref.items() if k != "metadata"}
    out.setdefault("uri", artifact_uri(str(ref["$artifact"])))
    for key in _FIELDS + _VIEW_FIELDS:
        value = meta.get(key)
        if key == "frames" and value is None:
            value = meta.get("num_frames")
        if value is not None:
            out[key] = value
    return out


def group_views(refs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Flattened multi-view refs as ``{reference, views, contact_sheet}``, split by role."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    for ref in refs:
        by_role.setdefault(str(ref.get("role", "view")), []).append(ref)
    return {
        "reference": (by_role.get("reference") or [None])[0],
        "views": by_role.get("view", []),
        "contact_sheet": (by_role.get("contact_sheet") or [refs[-1]])[0],
    }


def tool_result(result: Any) -> dict[str, Any]:
    """A stored result (one ref, a multi-view list, or ``{images}`` for count > 1)."""
    if isinstance(result, list):
        refs = [flatten_ref(r) for r in result]
        if not any("role" in r for r in refs):  # a batch (count > 1), not multi-view
            return {"images": refs}
        return group_views(refs)
    if not isinstance(result, Mapping):
        raise AbstractVisionError("tool results need a store: got bytes, not an artifact ref")
    return flatten_ref(result)
