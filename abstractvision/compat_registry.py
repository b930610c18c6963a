"""Registry documents in 0.3.x's layout: say what is wrong with one, by 0.3.x's own rules.

0.3.x kept models in an object keyed by id (``"models": {"org/name": {"provider", "license",
"tasks": {task: {"inputs", "outputs", "params", "requires"}}}}``); 0.4 reads a list of models with
engine facts (``assets/vision_model_capabilities.schema.json``), so it cannot load such a file.
``validate_capabilities_json`` and ``VisionModelCapabilitiesRegistry(path=...)`` still tell a
0.3.x user what 0.3.x would have: the first broken rule of the document (an unknown task, a
``required`` that is not a boolean, a ``base_model_id`` naming no model...), with its path. A
document that keeps every 0.3.x rule gets the message that its layout is 0.3.x's.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["is_v03_document", "v03_problem"]

_REQUIRES_KEYS = ("backend", "base_model_id", "min_runtime_version")
LAYOUT = (
    "a 0.3.x-format registry (models keyed by id); 0.4 reads schema_version 1 with a list of "
    "models, each with id, display_name, family, license, engines and tasks "
    "(see abstractvision/assets/vision_model_capabilities.schema.json)"
)


def is_v03_document(doc: Any) -> bool:
    """0.3.x's layout: a JSON object whose ``models`` is an object keyed by model id."""
    return isinstance(doc, Mapping) and isinstance(doc.get("models"), Mapping)


def _where(path: Sequence[str]) -> str:
    return path[0] + "".join(f"[{p!r}]" for p in path[1:])


class _Broken(Exception):
    pass


def _fail(path: Sequence[str], problem: str) -> None:
    raise _Broken(f"{_where(path)}: {problem}")


def _text(value: Any, path: Sequence[str]) -> None:
    if not isinstance(value, str) or not value.strip():
        _fail(path, f"must be a non-empty string, got {value!r}")


def _object(value: Any, path: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(path, f"must be an object, got {type(value).__name__}")
    return value


def _task(models: Mapping[str, Any], spec: Any, path: list[str]) -> None:
    task = _object(spec, path)
    for key in ("inputs", "outputs"):
        items = task.get(key, [])
        if not isinstance(items, list):
            _fail([*path, key], "must be a list of strings")
        for i, item in enumerate(items):
            _text(item, [*path, key, str(i)])
    if "params" not in task:
        _fail([*path, "params"], "missing (an object of parameter name -> {required: bool})")
    for name, param in _object(task["params"], [*path, "params"]).items():
        required = _object(param, [*path, "params", name]).get("required")
        if not isinstance(required, bool):
            _fail([*path, "params", name, "required"], f"must be true or false, got {required!r}")
    if "requires" in task:
        requires = _object(task["requires"], [*path, "requires"])
        for key, value in requires.items():
            if key not in _REQUIRES_KEYS:
                _fail([*path, "requires", key], f"unknown key; known: {', '.join(_REQUIRES_KEYS)}")
            _text(value, [*path, "requires", key])
        base = requires.get("base_model_id")
        if base is not None and base not in models:
            _fail([*path, "requires", "base_model_id"], f"{base!r} is no model of this document")


def _check(doc: Mapping[str, Any]) -> None:
    if "schema_version" not in doc:
        _fail(["<root>"], "missing schema_version")
    if isinstance(doc["schema_version"], bool) or not isinstance(
        doc["schema_version"], (str, int, float)
    ):
        _fail(["schema_version"], "must be a string or number")
    doc_tasks = _object(doc.get("tasks"), ["tasks"])
    for name, info in doc_tasks.items():
        _text(name, ["tasks"])
        description = _object(info, ["tasks", name]).get("description")
        if description is not None and not isinstance(description, str):
            _fail(["tasks", name, "description"], "must be a string")
    models = doc["models"]
    for model_id, spec in models.items():
        _text(model_id, ["models"])
        model = _object(spec, ["models", model_id])
        for key in ("provider", "license"):
            _text(model.get(key), ["models", model_id, key])
        if "tasks" not in model:
            _fail(["models", model_id, "tasks"], "missing")
        for task, task_spec in _object(model["tasks"], ["models", model_id, "tasks"]).items():
            path = ["models", model_id, "tasks", task]
            if task not in doc_tasks:
                known = ", ".join(doc_tasks) or "none"
                _fail(path, f"unknown task (the document's tasks are: {known})")
            _task(models, task_spec, path)


def v03_problem(doc: Mapping[str, Any]) -> str:
    """What is wrong with a 0.3.x-layout document: its first broken 0.3.x rule, else its layout."""
    try:
        _check(doc)
    except _Broken as exc:
        return f"{exc} ({LAYOUT})"
    return LAYOUT
