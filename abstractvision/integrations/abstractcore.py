"""The 0.3.x import path of ``make_vision_tools`` (now ``abstractvision.integrations``)."""

from .abstractcore_tools import make_vision_tools

__all__ = ["make_vision_tools"]
