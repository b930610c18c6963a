"""multi_view_image over a real in-process MCP client: refs by role, resources, preview, errors."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from conftest import FaultBackend, config, connect, text

from abstractvision import BackendError
from abstractvision.control import GenerationControl

pytestmark = pytest.mark.anyio


async def _read_all(client: Any, refs: list[dict[str, Any]]) -> None:
    for ref in refs:
        blob = (await client.read_resource(ref["uri"])).contents[0]
        assert blob.mime_type == ref["content_type"] == "image/png"
        assert base64.b64decode(blob.blob).startswith(b"\x89PNG")


async def test_views_reference_and_sheet_on_tiny_sd(sd_client: Any) -> None:
    async with sd_client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = tools["multi_view_image"]
        assert schema.input_schema["properties"]["reference_image"]["anyOf"][0]["type"] == "object"
        assert set(schema.output_schema["properties"]) >= {"reference", "views", "contact_sheet"}
        events: list[tuple[float, float | None, str | None]] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            events.append((done, total, message))

        args = {"prompt": "a robot", "angles": ["front", "side", {"azimuth": 135}], "steps": 2}
        made = await client.call_tool(
            "multi_view_image", {**args, "seed": 5}, progress_callback=progress
        )
        assert not made.is_error, text(made)
        out = made.structured_content
        views, reference, sheet = out["views"], out["reference"], out["contact_sheet"]
        assert [v["angle"] for v in views] == ["front", "side", "az135 el0"]
        assert [v["view_index"] for v in views] == [0, 1, 2]
        assert views[2]["azimuth"] == 135 and {v["seed"] for v in views} == {5}
        assert reference["role"] == "reference" and sheet["role"] == "contact_sheet"
        links = [c for c in made.content if c.type == "resource_link"]
        assert [c.uri for c in links] == [r["uri"] for r in (reference, *views, sheet)]
        assert [c.type for c in made.content].count("image") == 1
        assert made.content[0].text.startswith("3 views (front, side, az135 el0) + contact sheet")
        await _read_all(client, [reference, *views, sheet])
        assert events[-1][:2] == (8, 8) and "view 3/3" in str(events[-1][2])

        given = await client.call_tool(
            "multi_view_image", {**args, "angles": ["back"], "reference_image": reference["uri"]}
        )
        assert not given.is_error, text(given)
        assert given.structured_content["reference"] is None
        assert len([c for c in given.content if c.type == "resource_link"]) == 2
        await _read_all(
            client, [*given.structured_content["views"], given.structured_content["contact_sheet"]]
        )


@pytest.mark.parametrize(
    ("angles", "needle"),
    [(["sideways"], "angles"), ([], "angles"), ([{"azimuth": 400}], "azimuth")],
)
async def test_bad_angles_are_error_results(fault_client: Any, angles: Any, needle: str) -> None:
    async with fault_client() as (client, backend):
        result = await client.call_tool("multi_view_image", {"prompt": "x", "angles": angles})
    assert result.is_error and needle in text(result), text(result)
    assert backend.started == 0


class BackViewFails(FaultBackend):
    def edit_image(self, request: Any, *, control: GenerationControl | None = None) -> Any:
        if "back view" in request.prompt:
            raise BackendError("out of memory")
        return self.generate_image(request, control=control)


async def test_partial_results_name_the_failed_view(tmp_path: Path) -> None:
    async with connect(config(tmp_path, "--preview", "none"), BackViewFails(0.0)) as client:
        args = {"prompt": "x", "angles": ["front", "back"], "partial_results": True, "steps": 1}
        result = await client.call_tool("multi_view_image", args)
    assert not result.is_error, text(result)
    assert [v["angle"] for v in result.structured_content["views"]] == ["front"]
    assert result.structured_content["contact_sheet"]["failed"]["angle"] == "back"
    assert "view 2 (back) failed" in text(result) and "out of memory" in text(result)
    assert "image" not in [c.type for c in result.content]
