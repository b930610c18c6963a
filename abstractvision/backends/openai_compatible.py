"""Any OpenAI-compatible image/video service as a backend (OpenAI, local servers, our own).

text->image posts to ``/images/generations``, image->image to ``/images/edits`` (multipart; our
white=change mask is sent the OpenAI way, transparent=edit), text/image->video use the video
jobs API (``POST /videos``, poll ``GET /videos/{id}``, ``GET /videos/{id}/content``). Fields that
only local servers accept (seed, steps, guidance_scale, negative_prompt...) are sent only when
set, so OpenAI itself never sees them unasked. A ``url`` result is fetched through
``abstractvision.net`` (public addresses only unless allowed, size and time capped).
Environment variables are not read here.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import httpx

from .. import compat, media, net
from ..control import GenerationControl
from ..errors import (
    BackendError,
    InvalidRequestError,
)
from ..types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ImageUpscaleRequest,
    Task,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)
from . import _openai_sync_video
from ._openai_http import HTTPTransport, RemoteServiceError, read_json
from ._openai_video import VideoJobClient
from .base_backend import VisionBackend

__all__ = [
    "EXTRA_KEYS",
    "OpenAICompatibleBackendConfig",
    "OpenAICompatibleVisionBackend",
    "RemoteServiceError",
]

log = logging.getLogger(__name__)

_TASKS = tuple(t.value for t in Task if t is not Task.MULTI_VIEW_IMAGE)
# image_upscale only when asked for (tasks=[..., "image_upscale"]): OpenAI itself has no such
# route; `abstractvision serve` and AbstractCore's server answer POST /images/upscale.
_DEFAULT_TASKS = tuple(t for t in _TASKS if t != Task.IMAGE_UPSCALE.value)

# The only ``extra`` keys forwarded (plus those a config adds); each goes into the request body.
EXTRA_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "quality": "image quality (OpenAI: low, medium, high, auto; dall-e-3: standard, hd)",
        "style": "dall-e-3 style: vivid or natural",
        "background": "gpt-image background: transparent, opaque or auto",
        "moderation": "gpt-image moderation level: low or auto",
        "output_compression": "0-100 compression of webp/jpeg results (gpt-image)",
        "input_fidelity": "image edits: how closely to keep the input (low or high)",
        "user": "end-user id passed on to the service",
        "seconds": 'video length the service renders, e.g. "4" (OpenAI: 4, 8 or 12)',
    }
)
# Never taken from ``extra``: they come from the request or the config.
RESERVED = frozenset(
    {"prompt", "model", "n", "size", "response_format", "output_format", "image", "mask"}
    | {"input_reference", "stream", "negative_prompt", "seed", "steps", "guidance_scale"}
    | {"strength", "num_frames", "fps", "scale"}
)


@compat.old_config_names(compat.OPENAI_CONFIG)
@dataclass(frozen=True)
class OpenAICompatibleBackendConfig:
    """Where the service is and how to talk to it; ``models`` maps a task to the model ids."""

    base_url: str
    api_key: str | None = None
    model_id: str | None = None
    models: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    tasks: Sequence[str] = _DEFAULT_TASKS
    supports_mask: bool = True
    timeout_s: float = 300.0
    max_retries: int = 3
    retry_max_wait_s: float = 30.0
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    allow_private_urls: bool = False
    url_timeout_s: float = 60.0
    max_result_bytes: int = 256 * 1024 * 1024
    poll_interval_s: float = 1.0
    video_timeout_s: float = 3600.0
    images_generations_path: str = "/images/generations"
    images_edits_path: str = "/images/edits"
    images_upscale_path: str = "/images/upscale"
    videos_path: str = "/videos"
    models_path: str = "/models"  # list_provider_models reads GET <base_url><models_path>
    # 0.3.x synchronous video endpoints instead of the jobs API (_openai_sync_video.py)
    sync_video_paths: Mapping[str, str] = field(default_factory=dict)  # task -> path
    sync_image_to_video_mode: Literal["multipart", "json_b64"] = "multipart"
    extra_keys: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidRequestError("base_url", self.base_url, "must start with http(s)://")
        unknown = [t for t in self.tasks if t not in _TASKS]
        if unknown:
            raise InvalidRequestError("tasks", unknown[0], f"must be among {', '.join(_TASKS)}")
        models: dict[str, tuple[str, ...]] = {}
        for task, ids in dict(self.models).items():
            if task not in _TASKS:
                raise InvalidRequestError("models", task, f"task must be one of {_TASKS}")
            models[task] = (ids,) if isinstance(ids, str) else tuple(ids)
        object.__setattr__(self, "models", MappingProxyType(models))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        for task in self.sync_video_paths:
            if task not in ("text_to_video", "image_to_video"):
                raise InvalidRequestError("sync_video_paths", task, "a video task")
        object.__setattr__(self, "sync_video_paths", MappingProxyType(dict(self.sync_video_paths)))
        if self.sync_image_to_video_mode not in ("multipart", "json_b64"):
            raise InvalidRequestError(
                "sync_image_to_video_mode", self.sync_image_to_video_mode, "multipart or json_b64"
            )
        clash = sorted(RESERVED & set(self.extra_keys))
        if clash:
            raise InvalidRequestError("extra_keys", clash[0], "is a request field, not an extra")
        for name in ("timeout_s", "poll_interval_s", "video_timeout_s", "url_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidRequestError(name, getattr(self, name), "must be > 0")
        if self.max_retries < 0:
            raise InvalidRequestError("max_retries", self.max_retries, "must be >= 0")
        if self.max_result_bytes < 1:
            raise InvalidRequestError("max_result_bytes", self.max_result_bytes, "must be >= 1")


class OpenAICompatibleVisionBackend(VisionBackend):
    """Thread-safe: one pooled HTTP client; each call is independent."""

    def __init__(self, config: OpenAICompatibleBackendConfig | None = None, **options: Any) -> None:
        self.config = config if config is not None else OpenAICompatibleBackendConfig(**options)
        self._http = HTTPTransport(
            self.config.base_url,
            api_key=self.config.api_key,
            timeout_s=self.config.timeout_s,
            max_retries=self.config.max_retries,
            retry_max_wait_s=self.config.retry_max_wait_s,
            headers=self.config.headers,
        )
        self._extra_keys = {**EXTRA_KEYS, **self.config.extra_keys}

    def get_capabilities(self) -> VisionBackendCapabilities:
        return VisionBackendCapabilities(
            supported_tasks=self.config.tasks,
            supports_mask=self.config.supports_mask,
            supports_control_image=False,
            extra_keys=dict(self._extra_keys),
            models=dict(self.config.models),
        )

    def list_provider_models(self, *, task: str | None = None) -> list[Any]:
        """The configured ``models``; with none configured, the service's own ``GET /models``.

        An entry that names its tasks (``tasks`` / ``capabilities``) is kept only for those; one
        that names none is kept for every task, as 0.3.x did.
        """
        if self.config.models:
            return super().list_provider_models(task=task)
        answer = read_json(self._http.request("GET", self.config.models_path))
        rows = answer.get("data") if isinstance(answer, dict) else None
        out = []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                continue
            tasks = row.get("tasks") or row.get("capabilities") or ()
            tasks = tuple(str(t) for t in tasks) if isinstance(tasks, (list, tuple)) else ()
            if task is not None and tasks and str(task) not in tasks:
                continue
            out.append(
                compat.ProviderModelInfo(
                    id=row["id"],
                    object=row.get("object"),
                    created=row.get("created"),
                    owned_by=row.get("owned_by"),
                    capabilities=tasks,
                    raw=row,
                )
            )
        return out

    def close(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        self._http.close()

    # --- images ----------------------------------------------------------------------------------

    def generate_image(
        self, request: ImageGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        body = self._common(request, Task.TEXT_TO_IMAGE)
        if self.config.response_format and _openai_family(body.get("model")) != "gpt-image":
            body["response_format"] = self.config.response_format
        path = self.config.images_generations_path
        return self._image_call(request, body, control, json=body, path=path)

    def edit_image(
        self, request: ImageEditRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        fields = self._common(request, Task.IMAGE_TO_IMAGE)
        if request.strength is not None:
            fields["strength"] = request.strength
        if self.config.response_format and _openai_family(fields.get("model")) != "gpt-image":
            fields["response_format"] = self.config.response_format
        self.check_request(request)
        info = media.inspect_image(request.image, field="image")
        images = [(request.image, info)] + [
            (d, media.inspect_image(d, field=f"reference_images.{i}"))
            for i, d in enumerate(request.reference_images)
        ]
        name = "image[]" if len(images) > 1 else "image"  # gpt-image: an array of images
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            (name, (f"image{k}.{i.format}", d, i.mime_type)) for k, (d, i) in enumerate(images)
        ]
        if request.mask is not None:
            mask = media.decode_mask(request.mask, size=(info.width, info.height))
            files.append(("mask", ("mask.png", media.mask_to_alpha_png(mask), "image/png")))
        data = {k: _form_value(v) for k, v in fields.items()}
        path = self.config.images_edits_path
        return self._image_call(request, fields, control, data=data, files=files, path=path)

    def _image_call(
        self,
        request: ImageGenerationRequest | ImageEditRequest | ImageUpscaleRequest,
        sent: dict[str, Any],
        control: GenerationControl | None,
        *,
        path: str,
        **send: Any,
    ) -> GeneratedAsset:
        started = time.perf_counter()
        response = self._http.request("POST", path, control=control, **send)
        payload = read_json(response)
        items = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            raise BackendError(f"{path} answered without a data[0] image: {str(payload)[:200]}")
        first = items[0]
        data = self._result_bytes(first)
        data, mime, info = _as_format(data, request.output_format)
        meta: dict[str, Any] = {
            "model": sent.get("model"),
            "seed": request.seed,
            "width": info.width,
            "height": info.height,
            "generate_s": round(time.perf_counter() - started, 4),
            "endpoint": path,
        }
        if first.get("revised_prompt"):
            meta["revised_prompt"] = str(first["revised_prompt"])
        return GeneratedAsset("image", data, mime, {k: v for k, v in meta.items() if v is not None})

    def _result_bytes(self, item: Mapping[str, Any]) -> bytes:
        if isinstance(item.get("b64_json"), str):
            try:
                return base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, ValueError):
                raise BackendError("the service returned b64_json that is not base64") from None
        if isinstance(item.get("url"), str):
            try:
                with httpx.Client() as client:  # no API key on a fetch the server chose
                    return net.fetch_url(
                        client,
                        item["url"],
                        max_bytes=self.config.max_result_bytes,
                        timeout_s=self.config.url_timeout_s,
                        allow_private=self.config.allow_private_urls,
                        field="result url",
                    )
            except InvalidRequestError as exc:
                raise BackendError(f"the service's result URL was not fetched: {exc}") from None
        raise BackendError("the service's result has neither b64_json nor url")

    def upscale_image(
        self, request: ImageUpscaleRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        """Multipart POST to ``images_upscale_path``: the image, scale and the common fields."""
        if Task.IMAGE_UPSCALE.value not in self.config.tasks:
            raise self._unsupported(Task.IMAGE_UPSCALE.value)
        model = request.model or next(iter(self.config.models.get("image_upscale", ())), None)
        fields: dict[str, Any] = {"model": model or self.config.model_id}
        for name in ("prompt", "negative_prompt", "scale", "seed", "steps", "guidance_scale"):
            fields[name] = getattr(request, name)
        fields["output_format"] = request.output_format
        fields["response_format"] = self.config.response_format
        for key, value in request.extra.items():
            if key in RESERVED or key not in self._extra_keys:
                accepted = ", ".join(sorted(self._extra_keys))
                raise InvalidRequestError(f"extra.{key}", value, f"accepted: {accepted}")
            fields[key] = value
        fields = {k: v for k, v in fields.items() if v is not None}
        info = media.inspect_image(request.image, field="image")
        files = {"image": (f"image.{info.format}", request.image, info.mime_type)}
        data = {k: _form_value(v) for k, v in fields.items()}
        path = self.config.images_upscale_path
        return self._image_call(request, fields, control, data=data, files=files, path=path)

    # --- videos ----------------------------------------------------------------------------------

    def generate_video(
        self, request: VideoGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._video(request, Task.TEXT_TO_VIDEO, None, control)

    def image_to_video(
        self, request: ImageToVideoRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._video(request, Task.IMAGE_TO_VIDEO, request.image, control)

    def _video(
        self,
        request: VideoGenerationRequest | ImageToVideoRequest,
        task: Task,
        image: bytes | None,
        control: GenerationControl | None,
    ) -> GeneratedAsset:
        control = control if control is not None else GenerationControl()
        body = self._common(request, task)
        for name in ("num_frames", "fps"):
            if getattr(request, name) is not None:
                body[name] = getattr(request, name)
        if request.output_format is not None:
            body["output_format"] = request.output_format
        sync_path = self.config.sync_video_paths.get(task.value)
        if sync_path:
            mode = self.config.sync_image_to_video_mode
            return _openai_sync_video.run(
                self._http, sync_path, body, image, mode, control, self._result_bytes
            )
        base = self.config.videos_path.rstrip("/")
        if image is None:
            send: dict[str, Any] = {"json": body}
        else:
            info = media.inspect_image(image, field="image")
            send = {
                "data": {k: _form_value(v) for k, v in body.items()},
                "files": {"input_reference": (f"image.{info.format}", image, info.mime_type)},
            }
        jobs = VideoJobClient(self._http, self.config)
        return jobs.run(base, send, control, model=body.get("model"), seed=request.seed)

    # --- shared ----------------------------------------------------------------------------------

    def _model(self, request: Any, task: Task) -> str | None:
        """The model a call goes to: the request's, else the task's first, else ``model_id``."""
        model = request.model or next(iter(self.config.models.get(task.value, ())), None)
        return model or self.config.model_id

    def check_request(self, request: Any) -> None:
        """More images (``reference_images``) only where the service takes several: OpenAI's
        gpt-image edits (an ``image[]`` array); other edit endpoints take one, so they are
        refused instead of dropped."""
        if not isinstance(request, ImageEditRequest) or not request.reference_images:
            return
        model = self._model(request, Task.IMAGE_TO_IMAGE)
        if _openai_family(model) != "gpt-image":
            raise InvalidRequestError(
                "reference_images",
                f"{len(request.reference_images)} image(s)",
                f"the edits of {model or 'this service'} take one image; OpenAI's gpt-image "
                "models take several",
            )

    def _common(self, request: Any, task: Task) -> dict[str, Any]:
        """Body fields every endpoint takes: model, prompt, size, local-server extras, extra."""
        body: dict[str, Any] = {"model": self._model(request, task)}
        if request.prompt is not None:
            body["prompt"] = request.prompt
        if task in (Task.TEXT_TO_IMAGE, Task.IMAGE_TO_IMAGE):
            body["n"] = 1
        if (request.width is None) != (request.height is None):
            missing = "height" if request.height is None else "width"
            raise InvalidRequestError(missing, None, "set width and height together here")
        if request.width is not None:
            body["size"] = f"{request.width}x{request.height}"
        if task in (Task.TEXT_TO_IMAGE, Task.IMAGE_TO_IMAGE) and request.output_format:
            body["output_format"] = request.output_format
        for name in ("negative_prompt", "seed", "steps", "guidance_scale"):
            if getattr(request, name) is not None and not _openai_family(body["model"]):
                body[name] = getattr(request, name)
        for key, value in request.extra.items():
            if key in RESERVED or key not in self._extra_keys:
                accepted = ", ".join(sorted(self._extra_keys))
                raise InvalidRequestError(f"extra.{key}", value, f"accepted: {accepted}")
            body[key] = value
        return {k: v for k, v in body.items() if v is not None}


def _openai_family(model: str | None) -> str | None:
    """OpenAI's own image models (gpt-image-*, dall-e-*) answer an unknown body field with a
    400 "Unknown parameter": they get no negative_prompt, seed, steps or guidance_scale (which
    local servers take), and gpt-image no response_format (it always answers base64)."""
    name = str(model or "").rsplit("/", 1)[-1].strip().lower()
    if name.startswith(("gpt-image-", "chatgpt-image")):
        return "gpt-image"
    return "dall-e" if name.startswith("dall-e-") else None


def _form_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _as_format(data: bytes, wanted: str | None) -> tuple[bytes, str, media.ImageInfo]:
    """Prove the result is an image; re-encode it when the service ignored ``output_format``."""
    try:
        info = media.inspect_image(data, field="result")
        if wanted is None or info.format == wanted:
            return data, info.mime_type, info
        mode = "RGB" if wanted == "jpeg" else "RGBA"
        data, _ = media.encode_image(media.decode_image(data, mode=mode), wanted)
        return data, media.IMAGE_MIME[wanted], media.inspect_image(data, field="result")
    except InvalidRequestError as exc:
        raise BackendError(f"the service returned an unusable image: {exc}") from None
