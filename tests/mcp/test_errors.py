"""Bad inputs at the protocol level: every one is an isError result; the server keeps serving."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from conftest import text

pytestmark = pytest.mark.anyio

BAD_CALLS = [
    ("text_to_image", {"prompt": 5}, "prompt"),
    ("text_to_image", {}, "prompt"),
    ("text_to_image", {"prompt": "x", "width": "512"}, "width"),
    ("text_to_image", {"prompt": "x", "width": 65}, "multiple of 8"),
    ("text_to_image", {"prompt": "x", "steps": 100000}, "steps"),
    ("text_to_image", {"prompt": "x", "guidance_scale": -1}, "guidance_scale"),
    ("text_to_image", {"prompt": "x", "colour": "red"}, "unknown parameter"),
    ("text_to_image", {"prompt": "x", "model": "nope/nope"}, "nope/nope"),
    ("text_to_image", {"prompt": "x", "wait_s": "soon"}, "wait_s"),
    ("text_to_image", {"prompt": "x", "wait_s": 10**6}, "must be <= 45"),
    ("text_to_image", {"prompt": "x", "negative_prompt": None}, "negative_prompt"),
    ("image_to_image", {"prompt": "x", "image": {"$artifact": ""}}, "image"),
    ("image_to_image", {"prompt": "x", "image": {"$artifact": "../../etc/passwd"}}, "artifact_id"),
    ("image_to_image", {"prompt": "x", "image": {"$artifact": "0" * 32}}, "no artifact"),
    ("image_to_image", {"prompt": "x", "image": {"id": 1}}, "artifact ref"),
    ("image_to_image", {"prompt": "x", "image": "abstractvision://artifacts/zz"}, "artifact_id"),
    ("image_to_image", {"prompt": "x", "image": "../../etc/passwd"}, "--input-root"),
    ("image_to_image", {"prompt": "x", "image": "ftp://example.com/a.png"}, "scheme"),
    ("image_to_image", {"prompt": "x", "image": "http://127.0.0.1:1/a.png"}, "non-public"),
    ("image_to_image", {"prompt": "x", "image": "http://169.254.169.254/x"}, "non-public"),
    ("image_to_image", {"prompt": "x", "image": "http://[::1]/x.png"}, "non-public"),
    ("image_to_image", {"prompt": "x", "image": "http://localhost/x.png"}, "non-public"),
    ("image_to_image", {"prompt": "x", "image": "http://10.1.2.3/x.png"}, "non-public"),
    ("image_to_image", {"prompt": "x", "image": "not base64 at all!"}, "base64"),
    ("image_to_image", {"prompt": "x", "image": "aGVsbG8="}, "image"),
    ("image_to_image", {"prompt": "x", "image": "data:image/png,abc"}, "data URL"),
    ("get_job", {"job_id": 3}, "job_id"),
    ("get_job", {"job_id": "job-x"}, "no such job"),
    ("get_job", {"job_id": "j", "wait_s": 10**9}, "wait_s"),
    ("list_models", {"task": "dance"}, "task"),
    ("get_capabilities", {"model": "nobody/nothing"}, "unknown model"),
]


@pytest.mark.parametrize(("tool", "args", "needle"), BAD_CALLS)
async def test_bad_call_is_an_error_result(
    fault_client: Any, tool: str, args: dict[str, Any], needle: str
) -> None:
    async with fault_client() as (client, backend):
        result = await client.call_tool(tool, args)
        assert result.is_error, text(result)
        assert needle in text(result)
        assert "None" not in text(result).replace("=None", "")  # no "0..None" bounds
        assert "/tmp" not in text(result)  # never a server path
        assert backend.started == 0
        ok = await client.call_tool("text_to_image", {"prompt": "still serving", "steps": 1})
        assert not ok.is_error, text(ok)


async def test_huge_base64_is_refused_before_decoding(fault_client: Any) -> None:
    async with fault_client("--max-input-bytes", "1000") as (client, _):
        huge = base64.b64encode(b"\0" * 5000).decode()
        result = await client.call_tool("image_to_image", {"prompt": "x", "image": huge})
    assert result.is_error and "1000 bytes" in text(result)


async def test_engine_error_is_a_readable_result(fault_client: Any, tmp_path: Path) -> None:
    async with fault_client() as (client, _):
        result = await client.call_tool("text_to_image", {"prompt": "boom"})
        assert result.is_error and "engine exploded" in text(result)
        assert not (await client.call_tool("text_to_image", {"prompt": "ok"})).is_error
    assert len(list((tmp_path / "store").glob("*.json"))) == 1


async def test_unknown_resource_is_a_protocol_error(fault_client: Any) -> None:
    from mcp.shared.exceptions import MCPError

    async with fault_client() as (client, _):
        for uri in ("abstractvision://nothing", "abstractvision://artifacts/" + "0" * 32):
            with pytest.raises(MCPError):
                await client.read_resource(uri)
        assert (await client.list_tools()).tools
