"""Tool input/output JSON Schemas, derived from the request dataclasses; flat (no $ref/$defs).

Also the readable check of tool arguments against the small schemas of the non-task tools: a
wrong value is reported as ``field=value is invalid: <limit>``, like the library does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from abstractvision import InvalidRequestError, Task, VisionBackendCapabilities, tool_schemas

JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]


def task_input_schema(
    task: Task,
    models: Sequence[str],
    caps: VisionBackendCapabilities,
    max_wait_s: float,
) -> dict[str, Any]:
    """The flat input schema of one task tool: the library's (kept small there), plus ``wait_s``."""
    more = {"wait_s": wait_schema(max_wait_s)}
    return tool_schemas.task_input_schema(task, models, caps.extra_keys, more=more, caps=caps)


def wait_schema(max_wait_s: float) -> dict[str, Any]:
    """``wait_s`` of a task tool: published, and checked against, with the same bounds."""
    return {"type": "number", "minimum": 0, "maximum": max_wait_s}  # see the tool's description


def _obj(props: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


_JOB_ID = {"type": "string", "minLength": 1, "maxLength": 64, "description": "From a task tool."}
_TASK = {"type": "string", "enum": [t.value for t in Task]}

# Input schemas of the tools that do not generate.
UTILITY_INPUTS: dict[str, dict[str, Any]] = {
    "get_job": _obj(
        {
            "job_id": _JOB_ID,
            "wait_s": {
                "type": "number",
                "minimum": 0,
                "maximum": 600,
                "description": "Wait up to this long for the job to finish.",
            },
        },
        ["job_id"],
    ),
    "cancel_job": _obj({"job_id": _JOB_ID}, ["job_id"]),
    "list_jobs": _obj({}),
    "list_models": _obj({"task": {**_TASK, "description": "Only models for this task."}}),
    "get_capabilities": _obj(
        {
            "task": {**_TASK, "description": "One task's details."},
            "model": {"type": "string", "maxLength": 256, "description": "One model's details."},
        }
    ),
}

# Output schemas: the keys an agent reads (results carry more: sha256, size_bytes, timings...).
_STR, _INT = {"type": "string"}, {"type": "integer"}
REF_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"$artifact": _STR, "uri": _STR}}
_JOB_PROPS: dict[str, Any] = {"job_id": _STR, "status": _STR}  # queued ... cancelled
# multi_view_image: refs by role (each carries role, angle, view_index...), or a job handle.
_VIEWS_PROPS: dict[str, Any] = {
    "reference": {"type": ["object", "null"]},
    "views": {"type": "array"},
    "contact_sheet": {"type": "object"},
}
MULTI_VIEW_OUTPUT: dict[str, Any] = {"type": "object", "properties": {**_VIEWS_PROPS, **_JOB_PROPS}}
# The other task tools: the ref itself, or a job handle. get_job returns either shape.
GENERATION_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {**REF_SCHEMA["properties"], **_JOB_PROPS},
}
GET_JOB_OUTPUT: dict[str, Any] = {"type": "object", "properties": _JOB_PROPS}


def check_arguments(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
    """Check the small utility-tool schemas; raise InvalidRequestError naming the field."""
    props = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in arguments:
            raise InvalidRequestError(name, None, "is required")
    for name, value in arguments.items():
        spec = props.get(name)
        if spec is None:
            known = ", ".join(props) or "none"
            raise InvalidRequestError(name, value, f"unknown parameter; known: {known}")
        _check_value(name, spec, value)


def _check_value(name: str, spec: Mapping[str, Any], value: Any) -> None:
    kind = spec.get("type")
    if kind == "string" and not isinstance(value, str):
        raise InvalidRequestError(name, value, "must be a string")
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidRequestError(name, value, "must be a number")
    if "enum" in spec and value not in spec["enum"]:
        raise InvalidRequestError(
            name, value, f"must be one of {', '.join(map(str, spec['enum']))}"
        )
    if isinstance(value, str):
        if len(value) < spec.get("minLength", 0):
            raise InvalidRequestError(name, value, "must not be empty")
        if "maxLength" in spec and len(value) > spec["maxLength"]:
            raise InvalidRequestError(
                name, value, f"must have at most {spec['maxLength']} characters"
            )
    if isinstance(value, (int, float)):
        low, high = spec.get("minimum"), spec.get("maximum")
        if value != value:
            raise InvalidRequestError(name, value, "must be a number")
        if low is not None and value < low:
            raise InvalidRequestError(name, value, _range_text(low, high, ">="))
        if high is not None and value > high:
            raise InvalidRequestError(name, value, _range_text(low, high, "<="))


def _range_text(low: Any, high: Any, broken: str) -> str:
    """'must be <= 45 (allowed: 0..45)', or 'must be >= 0' when there is no upper bound."""
    text = f"must be {broken} {low if broken == '>=' else high}"
    return f"{text} (allowed: {low}..{high})" if low is not None and high is not None else text
