"""``completion/complete`` for the arguments of the resource templates: model ids and tasks.

Candidates are the configured models first (what the backend serves now, without probing it),
then the registry's ids and aliases; matching is case-insensitive, prefix matches before
substring matches, at most 100 values.
"""

from __future__ import annotations

from typing import Any

from mcp_types import CompleteRequestParams, CompleteResult, Completion

from abstractvision import Task

from .state import ServerState

MAX_VALUES = 100


def candidates(state: ServerState, argument: str) -> list[str]:
    if argument == "task":
        return [t.value for t in Task]
    if argument != "model_id":
        return []
    engine = state.engine
    caps = engine.advertised()
    configured = [m for ids in caps.models.values() for m in ids]
    if state.config.model:
        configured.insert(0, state.config.model)
    return list(dict.fromkeys([*configured, *engine.registry.list_models()]))


def complete(state: ServerState, params: CompleteRequestParams) -> CompleteResult:
    uri = getattr(params.ref, "uri", "")
    found: list[str] = []
    if uri.startswith("abstractvision://"):
        typed = params.argument.value.lower()
        pool = candidates(state, params.argument.name)
        found = [c for c in pool if c.lower().startswith(typed)]
        found += [c for c in pool if typed in c.lower() and c not in found]
    values = found[:MAX_VALUES]
    return CompleteResult(
        completion=Completion(values=values, total=len(found), has_more=len(found) > len(values))
    )


def handler(state: ServerState) -> Any:
    async def on_completion(ctx: Any, params: CompleteRequestParams) -> CompleteResult:
        return complete(state, params)

    return on_completion
