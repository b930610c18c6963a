"""The playground: a page at ``/`` of the HTTP app, and the JSON + event-stream routes it uses.

The page (plain HTML/JS/CSS from ``abstractvision/playground/static``, no build step, no CDN) is
served without the bearer token, since it holds no secret: the person types the token once and
the page keeps it in session storage and sends it on every API call. The API under
``/playground/api`` sits behind the same bearer token and the same Host/Origin guard as ``/mcp``
and ``/v1``, and runs generations through the MCP tool table and job manager, so a playground job
is an MCP job: same validation, same device limit, same progress log, same cancel.

Routes (all JSON unless said):
  GET  /playground/api/tools                  tasks the backend runs + their tool input schemas
  POST /playground/api/jobs                   {"task", "params"} -> {"job_id"} (400 names the field)
  GET  /playground/api/jobs/{id}/events       event stream: progress (step, total, eta_s), done
  POST /playground/api/jobs/{id}/cancel
  GET  /playground/api/artifacts?offset&limit the store's artifacts, newest first (no previews)
  GET  /playground/api/artifacts/{id}         one artifact's metadata
  GET  /playground/api/artifacts/{id}/content the bytes (``?download=1`` as an attachment)
  GET  /playground/api/artifacts/{id}/thumbnail  the stored preview, else a WebP thumbnail
  GET  /playground/api/events                 event stream of artifacts as they land (MCP too)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources as package_files
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from abstractvision import AbstractVisionError, Task
from abstractvision.errors import ArtifactNotFoundError

from . import tools
from .jobs import Job
from .owners import Caller, bearer_token, principal
from .state import ServerState

__all__ = ["API_PREFIX", "STATIC_PREFIX", "PlaygroundPages", "api_app", "item_of"]

log = logging.getLogger(__name__)

API_PREFIX = "/playground/api"
STATIC_PREFIX = "/playground/static/"
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page loads only its own files; images and videos come in as blob: URLs (fetched with the
# token), never from another origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' blob: data:; media-src 'self' blob:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_HEARTBEAT_S = 15.0
_MAX_PAGE = 100
_THUMB_CACHE = 256


def _static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type) of the shipped page files, read once."""
    folder = package_files.files("abstractvision.playground").joinpath("static")
    out: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _STATIC_TYPES:
            out[entry.name] = (entry.read_bytes(), _STATIC_TYPES[suffix])
    return out


class PlaygroundPages:
    """Pure ASGI: ``/`` and ``/playground/static/*`` answered from the package, without the token
    but behind the Host/Origin ``guard``; every other request goes on to ``app``."""

    def __init__(self, app: ASGIApp, guard: Callable[[ASGIApp], ASGIApp]) -> None:
        self.app = app
        self.files = _static_files()
        self.pages = guard(self._serve)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/" or path.startswith(STATIC_PREFIX):
            await self.pages(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        name = "index.html" if path == "/" else path[len(STATIC_PREFIX) :]
        found = self.files.get(name)
        if scope.get("method") not in ("GET", "HEAD"):
            response = Response("only GET", status_code=405, headers={"Allow": "GET, HEAD"})
        elif found is None:
            response = Response("not found", status_code=404, media_type="text/plain")
        else:
            response = Response(found[0], media_type=found[1], headers=_PAGE_HEADERS)
        await response(scope, receive, send)


class ArtifactFeed:
    """Fans finished jobs' refs out to every open ``/playground/api/events`` stream."""

    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = set()
        self._lock = threading.Lock()

    def publish(self, message: Mapping[str, Any]) -> None:
        """Thread-safe: called from the job's worker thread."""
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(queue.put_nowait, dict(message))

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        entry = (asyncio.get_running_loop(), asyncio.Queue[Any](maxsize=0))
        with self._lock:
            self._subscribers.add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._subscribers.discard(entry)


def _refs(result: Any) -> list[dict[str, Any]]:
    if result is None:
        return []
    return [r for r in (result if isinstance(result, list) else [result]) if isinstance(r, dict)]


def item_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A store metadata document (or a ref) as a gallery item: id, type, sizes, the facts a
    person compares (prompt, seed, model, steps, timings), the preview's id."""
    inner = meta.get("metadata") or {}
    params = inner.get("params") or {}
    item: dict[str, Any] = {
        "id": meta.get("artifact_id") or meta.get("$artifact"),
        "content_type": meta.get("content_type"),
        "size_bytes": meta.get("size_bytes"),
        "created_at": meta.get("created_at"),
        "task": inner.get("task"),
        "prompt": params.get("prompt"),
        "params": params,
        "model": inner.get("model"),
        "seed": inner.get("seed", params.get("seed")),
        "width": inner.get("width"),
        "height": inner.get("height"),
        "frames": inner.get("frames", inner.get("num_frames")),
        "timings": {k: v for k, v in inner.items() if k.endswith("_s") and isinstance(v, float)}
        | dict(inner.get("timings") or {}),
        "preview": (inner.get("preview") or {}).get("$artifact"),
    }
    item["ref"] = {"$artifact": item["id"], "uri": f"abstractvision://artifacts/{item['id']}"}
    return item


def _is_preview(meta: Mapping[str, Any]) -> bool:
    return (meta.get("tags") or {}).get("role") == "preview"


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "field": field}}, status_code=status)


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _owner(request: Request) -> str | None:
    """The token's principal (owners.py); None without a token (a loopback page sees all)."""
    token = bearer_token(request.headers.get("authorization"))
    return principal(token) if token else None


def api_app(state: ServerState) -> Starlette:
    """The playground's API (mount it at ``/playground/api`` behind auth and the guard)."""
    feed = ArtifactFeed()
    thumbs: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
    thumbs_lock = threading.Lock()

    def on_finished(job: Job) -> None:
        if job.status == "succeeded":
            for ref in _refs(job.result):
                feed.publish({"job_id": job.id, "item": item_of(ref) | _created(ref)})

    state.jobs.finished_listeners.append(on_finished)
    store = state.engine.store

    async def tool_list(request: Request) -> Response:
        try:  # the exact task list needs the backend probed (in a thread: it may import torch)
            await anyio.to_thread.run_sync(state.engine.capabilities)
        except Exception as exc:  # show what the page can, say why the rest is missing
            log.warning("playground: backend probe failed: %s", exc)
        supported = {t.value for t in state.engine.supported_tasks(advertised=True)}
        listed = tools.list_tools(state)
        schemas = {t.name: t.input_schema for t in listed if t.name in supported}
        return JSONResponse(
            {
                "backend": state.config.backend,
                "model": state.config.model,
                "tasks": [t.value for t in Task if t.value in schemas],
                "schemas": schemas,
                "gallery": hasattr(store, "list_artifacts"),
            }
        )

    async def submit(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return _error(400, "the body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
            return _error(400, 'send {"task": ..., "params": {...}}')
        task = body.get("task")
        spec = tools.TOOLS.get(str(task))
        if spec is None or spec.task is None:
            names = ", ".join(t.value for t in Task)
            return _error(400, f"task={task!r} is not a task; tasks: {names}", "task")
        params = {k: v for k, v in dict(body.get("params") or {}).items() if k != "wait_s"}
        # The tool itself: resolves image inputs, validates against the request type, submits to
        # the job manager; wait_s=0 hands back the job at once.
        caller = Caller(owner=_owner(request))  # the page's jobs belong to its token, like MCP's
        result = await tools.call(state, spec.name, {**params, "wait_s": 0}, _no_progress, caller)
        structured = result.structured_content or {}
        if result.is_error or not structured.get("job_id"):
            text = " ".join(getattr(c, "text", "") for c in result.content).strip()
            status = 429 if text.startswith("busy:") else 400  # DeviceLimit's queue is full
            return _error(status, text or "the call was refused")
        return JSONResponse({"job_id": structured["job_id"], "status": structured.get("status")})

    def job_or_404(request: Request) -> Job | Response:
        job = state.jobs.get(request.path_params["job_id"], _owner(request))
        return job if job is not None else _error(404, "no such job (finished jobs expire)")

    async def job_events(request: Request) -> Response:
        job = job_or_404(request)
        if isinstance(job, Response):
            return job

        async def stream() -> AsyncIterator[bytes]:
            first: tuple[float, int] | None = None  # (time, step) of the first step seen
            chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

            async def on_progress(event: Any) -> None:
                nonlocal first
                now = time.monotonic()
                eta = None
                if event.total and event.step > 0:
                    if first is None:
                        first = (now, event.step)
                    elif event.step > first[1]:
                        per_step = (now - first[0]) / (event.step - first[1])
                        eta = round(per_step * (event.total - event.step), 2)
                progress = {"step": event.step, "total": event.total, "message": event.message}
                chunks.put_nowait(_sse("progress", {**progress, "eta_s": eta}))

            async def pump() -> None:  # the job manager pushes each event as it happens
                cursor = 0
                try:
                    while True:
                        cursor = await state.jobs.wait(
                            job, _HEARTBEAT_S, on_progress, cursor=cursor
                        )
                        if job.done:
                            break
                        chunks.put_nowait(b": keep-alive\n\n")
                finally:
                    chunks.put_nowait(None)

            yield _sse("status", {"status": job.status, "job_id": job.id, "task": job.task})
            pumping = asyncio.ensure_future(pump())
            try:
                while (chunk := await chunks.get()) is not None:
                    yield chunk
            finally:
                pumping.cancel()
            refs = _refs(job.result) if job.status == "succeeded" else []
            items = [item_of(r) | _created(r) for r in refs]
            yield _sse(
                "done",
                {
                    "status": job.status,
                    "error": job.error,
                    "items": items,
                    "finished_at": job.finished,  # epoch seconds: the page measures its delay
                },
            )

        return StreamingResponse(stream(), media_type="text/event-stream", headers=_NO_CACHE)

    async def cancel(request: Request) -> Response:
        job = job_or_404(request)
        if isinstance(job, Response):
            return job
        state.jobs.cancel(job)
        return JSONResponse(job.summary())

    async def artifacts(request: Request) -> Response:
        try:
            offset = int(request.query_params.get("offset", 0))
            limit = int(request.query_params.get("limit", 24))
        except ValueError:
            return _error(400, "offset and limit must be integers")
        if offset < 0 or not 1 <= limit <= _MAX_PAGE:
            return _error(400, f"limit={limit} must be in 1..{_MAX_PAGE}, offset >= 0", "limit")
        if not hasattr(store, "list_artifacts"):
            return JSONResponse({"items": [], "total": 0, "listing": False})
        metas = await anyio.to_thread.run_sync(store.list_artifacts)
        shown = [m for m in metas if not _is_preview(m)]
        page = [item_of(m) for m in shown[offset : offset + limit]]
        return JSONResponse({"items": page, "total": len(shown), "offset": offset, "listing": True})

    async def metadata(request: Request) -> Response:
        artifact_id = request.path_params["artifact_id"]
        meta = await anyio.to_thread.run_sync(store.get_metadata, artifact_id)
        return JSONResponse(item_of({"artifact_id": artifact_id, **meta}) | {"raw": meta})

    async def content(request: Request) -> Response:
        artifact_id = request.path_params["artifact_id"]
        meta = await anyio.to_thread.run_sync(store.get_metadata, artifact_id)
        data = await anyio.to_thread.run_sync(store.load_bytes, artifact_id)
        kind = str(meta.get("content_type") or "application/octet-stream")
        headers = {"Cache-Control": "private, max-age=86400, immutable", **_NOSNIFF}
        if request.query_params.get("download"):
            ext = kind.rpartition("/")[2].split("+")[0] or "bin"
            headers["Content-Disposition"] = f'attachment; filename="{artifact_id}.{ext}"'
        return Response(data, media_type=kind, headers=headers)

    def make_thumbnail(artifact_id: str) -> tuple[bytes, str]:
        with thumbs_lock:
            if artifact_id in thumbs:
                thumbs.move_to_end(artifact_id)
                return thumbs[artifact_id]
        from abstractvision import media

        meta = store.get_metadata(artifact_id)
        preview = ((meta.get("metadata") or {}).get("preview") or {}).get("$artifact")
        kind = str(meta.get("content_type") or "")
        if preview:  # the preview the server stored beside it (an animated WebP for a video)
            made = (store.load_bytes(preview), str(store.get_metadata(preview)["content_type"]))
        else:
            data: Any = store.load_bytes(artifact_id)
            if kind.startswith("video/"):
                data = media.poster_frame(data)
            made = media.thumbnail(data, max_side=256, max_bytes=60_000, format="webp")
        with thumbs_lock:
            thumbs[artifact_id] = made
            while len(thumbs) > _THUMB_CACHE:
                thumbs.popitem(last=False)
        return made

    async def thumbnail(request: Request) -> Response:
        data, kind = await anyio.to_thread.run_sync(
            make_thumbnail, request.path_params["artifact_id"]
        )
        headers = {"Cache-Control": "private, max-age=86400, immutable", **_NOSNIFF}
        return Response(data, media_type=kind, headers=headers)

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            with feed.subscribe() as queue:
                yield _sse("hello", {"at": time.time()})
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), _HEARTBEAT_S)
                    except asyncio.TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield _sse("artifact", message)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=_NO_CACHE)

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ArtifactNotFoundError):  # its text may name the store's folder
            name = request.path_params.get("artifact_id", "")
            return _error(404, f"no artifact {name} in the store (or it is unreadable)")
        return _error(400, str(exc), getattr(exc, "field", None))

    routes = [
        Route("/tools", tool_list, methods=["GET"]),
        Route("/jobs", submit, methods=["POST"]),
        Route("/jobs/{job_id}/events", job_events, methods=["GET"]),
        Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/artifacts", artifacts, methods=["GET"]),
        Route("/artifacts/{artifact_id}", metadata, methods=["GET"]),
        Route("/artifacts/{artifact_id}/content", content, methods=["GET"]),
        Route("/artifacts/{artifact_id}/thumbnail", thumbnail, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={AbstractVisionError: on_error})


_NOSNIFF = {"X-Content-Type-Options": "nosniff"}
_NO_CACHE = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _created(ref: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh ref has no created_at (the store's document has): stamp it for the gallery."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return {"created_at": ref.get("created_at") or stamp}


async def _no_progress(event: Any) -> None:
    return None
