"""Tool results: structured ref + one text line + resource_link + bounded preview; error results."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent

from abstractvision import MediaStore
from abstractvision.artifacts import artifact_uri

from .config import ServerConfig

log = logging.getLogger(__name__)

_FIELDS = ("width", "height", "frames", "fps", "model", "seed", "timings")


def flatten_ref(ref: Mapping[str, Any]) -> dict[str, Any]:
    """The ref an agent passes on, plus the generation facts lifted out of its metadata."""
    meta = ref.get("metadata") or {}
    out = {k: v for k, v in ref.items() if k != "metadata"}
    out.setdefault("uri", artifact_uri(str(ref["$artifact"])))
    for key in _FIELDS:
        value = meta.get(key)
        if key == "frames" and value is None:
            value = meta.get("num_frames")
        if value is not None:
            out[key] = value
    return out


def describe(task: str, ref: Mapping[str, Any]) -> str:
    kind = str(ref.get("content_type", "?")).split("/")[-1].upper()
    size = f"{ref['width']}x{ref['height']}" if "width" in ref and "height" in ref else "?"
    frames = f", {ref['frames']} frames" if ref.get("frames") else ""
    kb = round(int(ref.get("size_bytes", 0)) / 1024, 1)
    bits = [f"{task}: {size} {kind}{frames} ({kb} KB)"]
    if ref.get("model"):
        bits.append(f"model {ref['model']}")
    if ref.get("seed") is not None:
        bits.append(f"seed {ref['seed']}")
    return ", ".join(bits) + f" -> {ref['uri']}"


def preview(config: ServerConfig, store: MediaStore, ref: Mapping[str, Any]) -> ImageContent | None:
    """The inline picture: a WebP thumbnail, the full image, or nothing (``--preview``)."""
    if config.preview == "none":
        return None
    try:
        from abstractvision import media

        data: Any = store.load_bytes(str(ref["$artifact"]))
        mime = str(ref.get("content_type", ""))
        if mime.startswith("video/"):
            data = media.poster_frame(data)
            if config.preview == "full":
                data, mime = media.encode_image(data, "png")
        if config.preview == "thumbnail":
            data, mime = media.thumbnail(
                data,
                max_side=config.preview_max_side,
                max_bytes=config.preview_max_bytes,
                format="webp",
            )
        return ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime)
    except Exception:
        log.warning("no preview for %s", ref.get("$artifact"), exc_info=True)
        return None


def generation_result(
    config: ServerConfig, store: MediaStore, task: str, job: Any, result: Any
) -> CallToolResult:
    """Build the result of a finished task: one ref, or ``views`` for multi-view."""
    refs = [flatten_ref(r) for r in (result if isinstance(result, list) else [result])]
    content: list[Any] = []
    for ref in refs:
        content.append(TextContent(type="text", text=describe(task, ref)))
        content.append(
            ResourceLink(
                type="resource_link",
                uri=ref["uri"],
                name=str(ref["$artifact"]),
                mime_type=ref.get("content_type"),
                size=ref.get("size_bytes"),
            )
        )
        picture = preview(config, store, ref)
        if picture is not None:
            content.append(picture)
    structured: dict[str, Any] = dict(refs[0]) if len(refs) == 1 else {"views": refs}
    structured.update(job_id=job.id, status="succeeded")
    return CallToolResult(content=content, structured_content=structured)


def pending_result(job: Any) -> CallToolResult:
    summary = job.summary()
    text = (
        f"{job.task} still {job.status} ({summary['progress']['message']}); "
        f"call get_job(job_id={job.id!r}, wait_s=30) to wait for it"
    )
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=summary)


def json_result(value: Any, text: str | None = None) -> CallToolResult:
    import json

    structured = value if isinstance(value, dict) else {"items": value}
    body = text if text is not None else json.dumps(value, separators=(",", ":"), default=str)
    return CallToolResult(
        content=[TextContent(type="text", text=body)], structured_content=structured
    )


def error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
