"""``--openai``: the library's OpenAI-compatible routes inside the MCP HTTP app.

Both front ends share what matters: the one backend object (warm models load once), the device
limit of the job manager (an MCP job and an OpenAI request never use the device at once beyond
``--max-concurrency``) and the bearer token (the MCP app's auth wraps every path). OpenAI
answers carry bytes, so their manager has no store: nothing is written to the artifact store.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from abstractvision import VisionManager
from abstractvision.openai_server import create_app

from .state import ServerState

Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


def openai_app(state: ServerState) -> Starlette:
    """The OpenAI-compatible app on the server's backend, device limit and body cap."""
    config = state.config
    return create_app(
        VisionManager(backend=state.engine.backend),
        max_body_bytes=config.max_body_bytes,
        max_concurrency=config.max_concurrency,
        device=state.jobs.device,
        max_jobs=config.max_jobs,
        job_ttl_s=config.job_ttl_s,
    )


def mount(
    app: Starlette, guard: Callable[[ASGIApp], ASGIApp] = lambda app: app
) -> tuple[BaseRoute, Callable[[Lifespan], Lifespan]]:
    """(a catch-all route for ``guard(app)``, a wrapper that runs ``app``'s lifespan inside
    another).

    The route goes last, after the MCP paths, so ``/v1/...`` and unknown paths reach ``app``
    (whose 404s are OpenAI-shaped). ``guard`` wraps it (the Host/Origin check).
    """

    def wrap(outer: Lifespan) -> Lifespan:
        @contextlib.asynccontextmanager
        async def both(host: Any) -> AsyncIterator[Any]:
            async with outer(host) as state, app.router.lifespan_context(app):
                yield state

        return both

    return Mount("", app=guard(app)), wrap
