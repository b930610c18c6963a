"""A duck-typed runtime store for ``--runtime-store runtime_factory:make`` (tests only)."""

from __future__ import annotations

import uuid
from typing import Any

STORES: list[DictStore] = []


class DictStore:
    def __init__(self) -> None:
        self.items: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def store(self, content: bytes, *, content_type: str, **kwargs: Any) -> dict[str, Any]:
        artifact_id = uuid.uuid4().hex
        self.items[artifact_id] = (content, {"content_type": content_type, **kwargs})
        return {"artifact_id": artifact_id}

    def load(self, artifact_id: str) -> bytes | None:
        item = self.items.get(artifact_id)
        return None if item is None else item[0]

    def get_metadata(self, artifact_id: str) -> dict[str, Any] | None:
        item = self.items.get(artifact_id)
        return None if item is None else item[1]


def make() -> DictStore:
    STORES.append(DictStore())
    return STORES[-1]
