"""Resources: capabilities (whole, per task, per model), the backend now, and artifact bytes.

URIs are matched by one table of patterns; a model id keeps its slash
(``abstractvision://capabilities/models/org/name``) and may also arrive percent-encoded.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from mcp_types import (
    BlobResourceContents,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    TextResourceContents,
)

from abstractvision import Task, UnknownModelError
from abstractvision.artifacts import ARTIFACT_URI_PREFIX

from .state import ServerState

ROOT = "abstractvision://"


def _summary(model: Any) -> dict[str, Any]:
    return {"id": model.id, "name": model.display_name, "tasks": [str(t) for t in model.tasks]}


def capabilities_doc(state: ServerState) -> dict[str, Any]:
    registry, engine = state.engine.registry, state.engine
    supported = set(engine.supported_tasks())
    tasks = {
        t.value: {
            "description": registry.get_task(t).description,
            "available": t in supported,
            "configured_models": engine.models_for(t),
        }
        for t in Task
    }
    models = [_summary(registry.get(m)) for m in registry.list_models()]
    extra = dict(engine.capabilities().extra_keys)  # the `extra` keys of the task tools
    return {"backend": state.config.backend, "tasks": tasks, "extra_keys": extra, "models": models}


def task_doc(state: ServerState, task: str) -> dict[str, Any]:
    info = state.engine.registry.get_task(task)
    name = Task(info.name)
    return {
        "task": info.name,
        "description": info.description,
        "available": name in state.engine.supported_tasks(),
        "configured_models": state.engine.models_for(name),
        "extra_keys": dict(state.engine.capabilities().extra_keys),
        "registry_models": list(info.models),
    }


def models_doc(state: ServerState, task: str | None = None) -> dict[str, Any]:
    registry, engine = state.engine.registry, state.engine
    tasks = [Task(task)] if task else list(Task)
    configured = {t.value: engine.models_for(t) for t in tasks if engine.models_for(t)}
    known = [_summary(registry.get(m)) for m in registry.list_models(task)]
    return {"default_model": state.config.model, "configured": configured, "registry": known}


def model_doc(state: ServerState, model_id: str) -> dict[str, Any]:
    configured_for = [t.value for t in Task if model_id in state.engine.models_for(t)]
    if model_id in state.engine.registry:
        doc = state.engine.registry.get(model_id).model_dump(mode="json", exclude_none=True)
        return {**doc, "configured_for": configured_for}
    if configured_for:
        return {"id": model_id, "configured_for": configured_for}
    state.engine.registry.get(model_id)  # raises UnknownModelError with suggestions
    raise UnknownModelError(model_id)


@dataclass(frozen=True)
class ResourceSpec:
    uri: str
    name: str
    description: str
    mime_type: str
    read: Callable[..., Any]

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>.+)", re.escape(self.uri))
        return re.compile(f"^{regex}$")


def _artifact(state: ServerState, id: str) -> tuple[bytes, str]:
    store = state.engine.store
    meta = store.get_metadata(id)
    return store.load_bytes(id), str(meta.get("content_type") or "application/octet-stream")


RESOURCES = [
    ResourceSpec(f"{ROOT}capabilities", "capabilities", "Tasks and models.",
                 "application/json", capabilities_doc),
    ResourceSpec(f"{ROOT}backend", "backend", "Backend now: tasks, limits, loaded models.",
                 "application/json", lambda state: state.engine.describe()),
    ResourceSpec(f"{ROOT}capabilities/tasks/{{task}}", "task", "One task.",
                 "application/json", task_doc),
    ResourceSpec(f"{ROOT}capabilities/models/{{model_id}}", "model", "One model (id may hold '/').",
                 "application/json", model_doc),
    ResourceSpec(f"{ARTIFACT_URI_PREFIX}{{id}}", "artifact", "Bytes of a generated artifact.",
                 "application/octet-stream", _artifact),
]  # fmt: skip


def list_resources() -> list[Resource]:
    return [
        Resource(uri=r.uri, name=r.name, description=r.description, mime_type=r.mime_type)
        for r in RESOURCES
        if "{" not in r.uri
    ]


def list_templates() -> list[ResourceTemplate]:
    return [
        ResourceTemplate(
            uri_template=r.uri, name=r.name, description=r.description, mime_type=r.mime_type
        )
        for r in RESOURCES
        if "{" in r.uri
    ]


def read(state: ServerState, uri: str) -> ReadResourceResult | None:
    """Read one resource; None when no pattern matches. Library errors propagate."""
    for spec in RESOURCES:
        match = spec.pattern.match(uri)
        if match is None:
            continue
        params = {k: unquote(v) for k, v in match.groupdict().items()}
        value = spec.read(state, **params)
        if isinstance(value, tuple):
            data, mime = value
            blob = base64.b64encode(data).decode()
            return ReadResourceResult(
                contents=[BlobResourceContents(uri=uri, blob=blob, mime_type=mime)]
            )
        text = json.dumps(value, indent=1, default=str)
        return ReadResourceResult(
            contents=[TextResourceContents(uri=uri, text=text, mime_type=spec.mime_type)]
        )
    return None
