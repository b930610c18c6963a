"""Tools on the real Diffusers backend (tiny model): schemas, generation, progress, chaining."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import config, connect, text

pytestmark = pytest.mark.anyio


def _walk(value: Any) -> list[str]:
    if isinstance(value, dict):
        return list(value) + [k for v in value.values() for k in _walk(v)]
    if isinstance(value, list):
        return [k for v in value for k in _walk(v)]
    return []


async def test_schemas_are_flat_typed_and_bounded(sd_client: Any, tiny_sd_dir: Path) -> None:
    async with sd_client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for tool in tools.values():
        keys = _walk(tool.input_schema) + _walk(tool.output_schema or {})
        assert "$ref" not in keys and "$defs" not in keys, tool.name
        assert tool.annotations is not None and tool.title
        assert tool.description and len(tool.description) < 200
    props = tools["text_to_image"].input_schema["properties"]
    assert props["width"] == {"maximum": 4096, "minimum": 64, "multipleOf": 8, "type": "integer"}
    assert props["model"]["enum"] == [str(tiny_sd_dir)]
    assert tools["text_to_image"].input_schema["required"] == ["prompt"]
    image = tools["image_to_image"].input_schema["properties"]["image"]
    assert {o["type"] for o in image["anyOf"]} == {"object", "string"}
    assert tools["list_jobs"].annotations.read_only_hint is True
    assert not tools["text_to_image"].annotations.read_only_hint  # false: the default, left out
    assert tools["text_to_image"].annotations.destructive_hint is False
    assert tools["text_to_image"].output_schema["properties"]["$artifact"]["type"] == "string"


async def test_generate_read_back_and_edit_by_ref(sd_client: Any) -> None:
    async with sd_client() as client:
        events: list[tuple[float, float | None, str | None]] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            events.append((done, total, message))

        first = await client.call_tool(
            "text_to_image",
            {"prompt": "a red cube", "steps": 4, "seed": 3},
            progress_callback=progress,
        )
        assert not first.is_error, text(first)
        ref = first.structured_content
        assert ref["status"] == "succeeded" and ref["seed"] == 3 and ref["width"] == 64
        assert [e[0] for e in events] == [1, 2, 3, 4] and events[-1][2] == "step 4/4"
        kinds = [c.type for c in first.content]
        assert kinds == ["text", "resource_link", "image"]
        assert first.content[1].uri == ref["uri"]
        assert first.content[2].mime_type == "image/webp"

        read = await client.read_resource(ref["uri"])
        blob = read.contents[0]
        assert blob.mime_type == "image/png"
        assert base64.b64decode(blob.blob)[:8] == b"\x89PNG\r\n\x1a\n"

        edited = await client.call_tool(
            "image_to_image", {"prompt": "blue", "image": ref, "steps": 2, "strength": 0.5}
        )
        assert not edited.is_error, text(edited)
        assert edited.structured_content["$artifact"] != ref["$artifact"]
        by_uri = await client.call_tool(
            "image_to_image", {"prompt": "green", "image": ref["uri"], "steps": 2}
        )
        assert not by_uri.is_error, text(by_uri)


@pytest.mark.parametrize(
    ("preview", "kinds", "limit"),
    [
        ("thumbnail", ["text", "resource_link", "image"], 64 * 1024),
        ("none", ["text", "resource_link"], 4096),
        ("full", ["text", "resource_link", "image"], None),
    ],
)
async def test_preview_setting_bounds_a_512px_result(
    sd_client: Any, preview: str, kinds: list[str], limit: int | None
) -> None:
    async with sd_client("--preview", preview) as client:
        args = {"prompt": "x", "steps": 1, "width": 512, "height": 512}
        result = await client.call_tool("text_to_image", args)
    assert not result.is_error, text(result)
    assert [c.type for c in result.content] == kinds
    size = len(json.dumps(result.model_dump(by_alias=True, exclude_none=True, mode="json")))
    if limit is not None:
        assert size < limit
    else:  # the full image inline: as big as the artifact itself
        assert result.content[2].mime_type == "image/png"
        assert size > result.structured_content["size_bytes"]
    if preview == "thumbnail":
        assert result.content[2].mime_type == "image/webp"
        assert len(base64.b64decode(result.content[2].data)) <= 40_000


async def test_only_runnable_tasks_are_listed(tmp_path: Path) -> None:
    cfg = config(tmp_path, "--model", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    async with connect(cfg) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "text_to_video" in names and "text_to_image" not in names
    cfg = config(tmp_path, "--model", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "--all-tools")
    async with connect(cfg) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "text_to_image" in names
        refused = await client.call_tool("text_to_image", {"prompt": "x"})
    assert refused.is_error and "text_to_image" in text(refused)


async def test_catalogue_tools(sd_client: Any, tiny_sd_dir: Path) -> None:
    async with sd_client() as client:
        models = await client.call_tool("list_models", {"task": "text_to_image"})
        caps = await client.call_tool("get_capabilities", {})
        model = await client.call_tool(
            "get_capabilities", {"model": "stable-diffusion-v1-5/stable-diffusion-v1-5"}
        )
    assert models.structured_content["configured"]["text_to_image"] == [str(tiny_sd_dir)]
    assert caps.structured_content["tasks"]["text_to_image"]["available"] is True
    assert "text_to_image" in model.structured_content["tasks"]


async def test_text_to_video_with_poster_preview(
    tmp_path: Path, tiny_animatediff_dir: Path
) -> None:
    cfg = config(tmp_path, "--model", str(tiny_animatediff_dir), "--device", "cpu")
    async with connect(cfg) as client:
        result = await client.call_tool(
            "text_to_video", {"prompt": "x", "steps": 2, "num_frames": 4}
        )
        assert not result.is_error, text(result)
        ref = result.structured_content
        assert ref["content_type"] == "video/mp4" and ref["frames"] == 4
        assert result.content[2].mime_type == "image/webp"
        read = await client.read_resource(ref["uri"])
        assert read.contents[0].mime_type == "video/mp4"
        # once the backend has been probed, only what it can run is listed
        names = {t.name for t in (await client.list_tools()).tools}
        assert "text_to_video" in names and "text_to_image" not in names
