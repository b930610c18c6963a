"""Tool results: structured ref + one text line + resource_link + bounded preview; error results."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent

from abstractvision import MediaStore
from abstractvision.tools import flatten_ref, group_views

from .config import ServerConfig

log = logging.getLogger(__name__)


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


def _link(ref: Mapping[str, Any]) -> ResourceLink:
    return ResourceLink(
        type="resource_link",
        uri=ref["uri"],
        name=str(ref["$artifact"]),
        mime_type=ref.get("content_type"),
        size=ref.get("size_bytes"),
    )


def describe_views(refs: Sequence[Mapping[str, Any]]) -> str:
    """One line for a multi-view set: views by angle, the reference, a failed view if any."""
    views = [r for r in refs if r.get("role") == "view"]
    sheet = next((r for r in refs if r.get("role") == "contact_sheet"), refs[-1])
    angles = ", ".join(str(v.get("angle", "?")) for v in views)
    text = f"{len(views)} view{'s' * (len(views) != 1)} ({angles}) + contact sheet"
    if any(r.get("role") == "reference" for r in refs):
        text += " + generated reference"
    failed = sheet.get("failed")
    if isinstance(failed, Mapping):
        text += (
            f"; view {int(failed.get('view_index', 0)) + 1} ({failed.get('angle')}) failed: "
            f"{failed.get('error')}"
        )
    return f"{text} -> {sheet['uri']}"


def multi_view_content(refs: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """(structured content, text) of a multi-view result, split by each ref's role."""
    return group_views(refs), describe_views(refs)


def generation_result(
    config: ServerConfig, store: MediaStore, task: str, job: Any, result: Any
) -> CallToolResult:
    """A finished task: one ref, or for multi-view ``{reference, views, contact_sheet}``.

    Content: one text line, a resource_link per ref, one preview (the contact sheet's for
    multi-view).
    """
    refs = [flatten_ref(r) for r in (result if isinstance(result, list) else [result])]
    if isinstance(result, list) and task != "multi_view_image":  # count > 1: one ref per image
        seeds = ", ".join(str(r.get("seed")) for r in refs)
        structured, shown = {"images": refs}, refs[0]
        line = f"{len(refs)} images (seeds {seeds}); first: {describe(task, refs[0])}"
    elif isinstance(result, list):
        structured, line = multi_view_content(refs)
        shown = structured["contact_sheet"]
    else:
        structured, line, shown = dict(refs[0]), describe(task, refs[0]), refs[0]
    content: list[Any] = [TextContent(type="text", text=line), *map(_link, refs)]
    picture = preview(config, store, shown)
    if picture is not None:
        content.append(picture)
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
