"""0.3.x's synchronous video endpoints of an OpenAI-compatible service (``sync_video_paths``).

abstractvision 0.3.x did not use OpenAI's video-jobs API: with ``text_to_video_path`` /
``image_to_video_path`` set it POSTed one request and read the video from the answer
(``data[0].b64_json`` or ``data[0].url``), the image of image->video as a multipart file or, in
``json_b64`` mode, as ``image_b64`` in a JSON body. Those settings now map to
``sync_video_paths`` / ``sync_image_to_video_mode``, and this module speaks that protocol.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import media
from ..control import GenerationControl
from ..errors import BackendError
from ..types import GeneratedAsset
from ._openai_http import HTTPTransport, read_json
from ._openai_video import _video_mime


def run(
    http: HTTPTransport,
    path: str,
    body: dict[str, Any],
    image: bytes | None,
    mode: str,
    control: GenerationControl,
    result_bytes: Callable[[Mapping[str, Any]], bytes],
) -> GeneratedAsset:
    """One POST to ``path``; the answer's first item is the video."""
    body = {**body, "n": 1, "response_format": "b64_json"}
    if "size" in body:  # 0.3.x sent width/height
        width, _, height = str(body.pop("size")).partition("x")
        body.update(width=int(width), height=int(height))
    if image is None:
        send: dict[str, Any] = {"json": body}
    elif mode == "json_b64":
        send = {"json": {**body, "image_b64": base64.b64encode(image).decode("ascii")}}
    else:
        info = media.inspect_image(image, field="image")
        fields = {k: v if isinstance(v, str) else str(v) for k, v in body.items()}
        send = {"data": fields, "files": {"image": (f"image.{info.format}", image, info.mime_type)}}
    started = time.perf_counter()
    control.report(0, None, "waiting for the service")
    payload = read_json(http.request("POST", path, control=control, **send))
    items = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise BackendError(f"{path} answered without a data[0] video: {str(payload)[:200]}")
    data = result_bytes(items[0])
    meta = {
        "model": body.get("model"),
        "seed": body.get("seed"),
        "endpoint": path,
        "generate_s": round(time.perf_counter() - started, 4),
    }
    mime = _video_mime(data, "video/mp4")
    return GeneratedAsset("video", data, mime, {k: v for k, v in meta.items() if v is not None})
