"""The OpenAI-shaped endpoints, each a thin shell: parse, run through VisionManager, shape the answer.

Images are generated in a worker thread while the request waits; videos become jobs. One
device limit (a semaphore, possibly shared with another front end) bounds how many generations
use the device at once, images and videos together.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import media
from ..control import GenerationControl
from ..errors import BackendError, CapabilityNotSupportedError
from ..types import REQUEST_TYPES, GeneratedAsset, Task
from ..vision_manager import VisionManager
from .errors import ApiError
from .forms import image_params, read_body, upscale_params, video_params
from .jobs import VideoJobs

__all__ = ["ServerContext", "generate", "routes"]


@dataclass
class ServerContext:
    """What the routes share: the manager, the device limit, the video jobs, the model list."""

    manager: VisionManager
    device: AbstractContextManager[Any]
    jobs: VideoJobs
    max_images: int = 4
    models: Sequence[str] | None = None

    def run(self, task: str, params: dict[str, Any], control: GenerationControl) -> GeneratedAsset:
        return generate(self.manager, self.device, task, params, control)

    def model_ids(self) -> dict[str, list[str]]:
        """model id -> tasks it is configured for."""
        if self.models is not None:
            return {m: [] for m in self.models}
        out: dict[str, list[str]] = {}
        for task, ids in self.manager.capabilities().models.items():
            for model in ids:
                out.setdefault(model, []).append(str(task))
        if self.manager.model_id:
            out.setdefault(self.manager.model_id, [])
        return out


def generate(
    manager: VisionManager,
    device: AbstractContextManager[Any],
    task: str,
    params: dict[str, Any],
    control: GenerationControl,
) -> Any:
    """Generate (in a worker thread) under the device limit; a stored ref is read back.

    One ``GeneratedAsset``, or a list of them for an image batch (``count`` > 1)."""
    with device:
        control.check()
        result = manager.run(task, params, control=control)
    if isinstance(result, list):
        return [_asset(manager, task, r) for r in result]
    return _asset(manager, task, result)


def _asset(manager: VisionManager, task: str, result: Any) -> GeneratedAsset:
    if isinstance(result, GeneratedAsset):
        return result
    if isinstance(result, Mapping) and manager.store is not None:
        data = manager.store.load_bytes(str(result["$artifact"]))
        kind = "video" if task in ("text_to_video", "image_to_video") else "image"
        meta = dict(result.get("metadata") or {})
        return GeneratedAsset(kind, data, str(result["content_type"]), meta)
    raise BackendError(f"{task} returned {type(result).__name__}, not one result")


def _ctx(request: Request) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


async def _extra_keys(ctx: ServerContext) -> list[str]:
    caps = await anyio.to_thread.run_sync(ctx.manager.capabilities)
    return list(caps.extra_keys)


async def _generate(ctx: ServerContext, task: str, params: dict[str, Any]) -> GeneratedAsset:
    """Run off the event loop; a dropped client cancels the generation at its next step."""
    control = GenerationControl()
    try:
        return await anyio.to_thread.run_sync(
            ctx.run, task, params, control, abandon_on_cancel=True
        )
    except anyio.get_cancelled_exc_class():
        control.cancel()
        raise


async def _images(request: Request, task: str, *, edit: bool) -> Response:
    ctx = _ctx(request)
    fields, files, typed = await read_body(request)
    params, n = image_params(
        fields, files, typed, edit=edit, extra_keys=await _extra_keys(ctx), max_n=ctx.max_images
    )
    if n > 1:
        params["count"] = n  # one batch: image k uses seed+k (one pipeline call on Diffusers)
    return _image_response(await _generate(ctx, task, params))


def _image_response(result: Any) -> Response:
    data = []
    asset = None
    for asset in result if isinstance(result, list) else [result]:
        item: dict[str, Any] = {"b64_json": base64.b64encode(asset.data).decode("ascii")}
        if asset.metadata.get("revised_prompt"):
            item["revised_prompt"] = asset.metadata["revised_prompt"]
        data.append(item)
    assert asset is not None
    meta = asset.metadata
    body: dict[str, Any] = {
        "created": int(time.time()),
        "data": data,
        "output_format": asset.mime_type.rpartition("/")[2],
    }
    if "width" in meta and "height" in meta:
        body["size"] = f"{meta['width']}x{meta['height']}"
    return JSONResponse(body)


async def images_generations(request: Request) -> Response:
    return await _images(request, "text_to_image", edit=False)


async def images_edits(request: Request) -> Response:
    return await _images(request, "image_to_image", edit=True)


async def images_upscale(request: Request) -> Response:
    """``POST /v1/images/upscale`` (the route AbstractCore's server uses): multipart image +
    scale; answered like an image generation."""
    ctx = _ctx(request)
    fields, files, typed = await read_body(request)
    params = upscale_params(fields, files, typed, extra_keys=await _extra_keys(ctx))
    return _image_response(await _generate(ctx, "image_upscale", params))


async def videos_create(request: Request) -> Response:
    ctx = _ctx(request)
    fields, files, typed = await read_body(request)
    task, params, seconds = video_params(fields, files, typed, extra_keys=await _extra_keys(ctx))
    # What can be refused now is a 400 now, not a failed job later.
    REQUEST_TYPES[Task(task)].from_dict(params)
    caps = await anyio.to_thread.run_sync(ctx.manager.capabilities)
    if not caps.supports(task):
        raise CapabilityNotSupportedError(f"this server cannot run {task}")
    await anyio.to_thread.run_sync(ctx.manager.check, task, params)  # the library's pre-job check
    if "image" in params:  # off the event loop: a decode may take a second
        await anyio.to_thread.run_sync(
            functools.partial(media.inspect_image, params["image"], field="input_reference")
        )
    size = f"{params['width']}x{params['height']}" if "width" in params else None
    model = params.get("model") or _default_model(ctx, task)
    job = ctx.jobs.submit(
        task, params, model=model, prompt=params.get("prompt"), size=size, seconds=seconds
    )
    return JSONResponse(job.to_json())


def _default_model(ctx: ServerContext, task: str) -> str:
    configured = ctx.manager.capabilities().models.get(task) or ()
    return configured[0] if configured else ctx.manager.model_id or "default"


async def videos_list(request: Request) -> Response:
    data = [job.to_json() for job in _ctx(request).jobs.list()]
    return JSONResponse({"object": "list", "data": data, "has_more": False})


async def videos_retrieve(request: Request) -> Response:
    return JSONResponse(_ctx(request).jobs.get(request.path_params["video_id"]).to_json())


async def videos_delete(request: Request) -> Response:
    job = _ctx(request).jobs.delete(request.path_params["video_id"])
    return JSONResponse({"id": job.id, "object": "video.deleted", "deleted": True})


async def videos_content(request: Request) -> Response:
    job = _ctx(request).jobs.get(request.path_params["video_id"])
    if job.status != "completed" or job.asset is None:
        raise ApiError(409, f"video {job.id} is {job.status}, not completed", code="not_ready")
    variant = request.query_params.get("variant", "video")
    if variant == "video":
        return Response(job.asset.data, media_type=job.asset.mime_type)
    if variant == "thumbnail" and job.asset.preview is not None:
        return Response(job.asset.preview, media_type=job.asset.preview_mime_type)
    raise ApiError(404, f"no {variant} for video {job.id}", param="variant", code="not_found")


async def models_list(request: Request) -> Response:
    models = await anyio.to_thread.run_sync(_ctx(request).model_ids)
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": "abstractvision", "tasks": t}
        for model, t in models.items()
    ]
    return JSONResponse({"object": "list", "data": data})


routes = [
    Route("/v1/images/generations", images_generations, methods=["POST"]),
    Route("/v1/images/edits", images_edits, methods=["POST"]),
    Route("/v1/images/upscale", images_upscale, methods=["POST"]),
    Route("/v1/videos", videos_create, methods=["POST"]),
    Route("/v1/videos", videos_list, methods=["GET"]),
    Route("/v1/videos/{video_id}", videos_retrieve, methods=["GET"]),
    Route("/v1/videos/{video_id}", videos_delete, methods=["DELETE"]),
    Route("/v1/videos/{video_id}/content", videos_content, methods=["GET"]),
    Route("/v1/models", models_list, methods=["GET"]),
]
