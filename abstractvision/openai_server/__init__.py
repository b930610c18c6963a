"""An OpenAI-compatible HTTP API (images, video jobs, models) over any configured backend.

``create_app(manager)`` builds the ASGI app; ``serve(manager, host=..., port=...)`` runs it with
uvicorn (``abstractvision serve`` on the command line). Needs starlette and uvicorn, which the
``mcp`` dependency already brings.
"""

from __future__ import annotations

from .app import check_bind, create_app, serve

__all__ = ["check_bind", "create_app", "serve"]
