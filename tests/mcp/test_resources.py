"""Resources and templates; artifacts through local and runtime stores."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FaultBackend, connect, text
from mcp.shared.exceptions import MCPError

from mcp_server.config import load_config

pytestmark = pytest.mark.anyio
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def _json(result: Any) -> Any:
    return json.loads(result.contents[0].text)


async def test_lists_and_capability_documents(fault_client: Any) -> None:
    async with fault_client() as (client, _):
        listed = {r.uri for r in (await client.list_resources()).resources}
        assert listed == {"abstractvision://capabilities", "abstractvision://backend"}
        templates = {
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        }
        assert "abstractvision://capabilities/models/{model_id}" in templates
        assert "abstractvision://artifacts/{id}" in templates
        caps = _json(await client.read_resource("abstractvision://capabilities"))
        assert caps["tasks"]["text_to_image"]["available"] is True
        assert caps["tasks"]["text_to_video"]["available"] is False
        task = _json(
            await client.read_resource("abstractvision://capabilities/tasks/text_to_image")
        )
        assert task["configured_models"] == ["fault/model"] and SD15 in task["registry_models"]
        for uri in (f"abstractvision://capabilities/models/{SD15}",
                    "abstractvision://capabilities/models/" + SD15.replace("/", "%2F")):  # fmt: skip
            model = _json(await client.read_resource(uri))
            assert model["id"] == SD15
        backend = _json(await client.read_resource("abstractvision://backend"))
        assert backend["tasks"] == ["text_to_image", "image_to_image", "multi_view_image"]
        assert backend["limits"]["max_side"] == 4096 and backend["loaded_models"] == []
        with pytest.raises(MCPError, match="unknown model"):
            await client.read_resource("abstractvision://capabilities/models/no/such")


async def _generate_and_read(client: Any) -> tuple[dict[str, Any], bytes]:
    result = await client.call_tool("text_to_image", {"prompt": "x", "steps": 1})
    assert not result.is_error, text(result)
    ref = result.structured_content
    read = await client.read_resource(ref["uri"])
    assert read.contents[0].mime_type == "image/png"
    again = await client.call_tool("image_to_image", {"prompt": "y", "image": ref, "steps": 1})
    assert not again.is_error, text(again)
    return ref, base64.b64decode(read.contents[0].blob)


async def test_runtime_file_store(tmp_path: Path) -> None:
    cfg = load_config(["--runtime-store", f"file:{tmp_path / 'rt'}"], environ={})
    async with connect(cfg, FaultBackend(0)) as client:
        ref, data = await _generate_and_read(client)
    from abstractruntime.storage.artifacts import FileArtifactStore

    assert FileArtifactStore(tmp_path / "rt").load(ref["$artifact"]).content == data


async def test_runtime_factory_store(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import runtime_factory

    cfg = load_config(["--runtime-store", "runtime_factory:make"], environ={})
    async with connect(cfg, FaultBackend(0)) as client:
        ref, data = await _generate_and_read(client)
    assert runtime_factory.STORES[-1].items[ref["$artifact"]][0] == data
