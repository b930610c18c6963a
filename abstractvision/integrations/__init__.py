"""Adapters for the frameworks that load abstractvision.

- ``abstractcore_plugin.register``: AbstractCore's ``abstractcore.capabilities_plugins`` entry
  point (``llm.vision.t2i(...)`` and friends run on our backends);
- ``make_vision_tools``: AbstractCore tools (``@tool`` functions) over a ``VisionManager``.

Both are thin: every call goes through ``VisionManager``; nothing here imports AbstractCore,
torch or PIL until used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["make_vision_tools", "register"]


def register(registry: Any) -> None:
    """The AbstractCore plugin entry point (see ``abstractcore_plugin.register``)."""
    from .abstractcore_plugin import register as _register

    _register(registry)


def make_vision_tools(*args: Any, **kwargs: Any) -> list[Any]:
    """AbstractCore tools over a ``VisionManager`` (see ``abstractcore_tools.make_vision_tools``)."""
    from .abstractcore_tools import make_vision_tools as _make

    return _make(*args, **kwargs)
