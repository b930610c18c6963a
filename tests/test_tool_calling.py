"""Tool calling without MCP: specs through the openai/anthropic SDKs, dispatch on a tiny model."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionToolUnionParam
from openai.types.chat.chat_completion_message_function_tool_call import Function
from PIL import Image
from pydantic import TypeAdapter

from abstractvision import LocalAssetStore, Task, VisionManager
from abstractvision.backends import create_backend
from abstractvision.inputs import ImageResolver
from abstractvision.tools import dispatch, tool_specs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def manager(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> VisionManager:
    backend = create_backend("diffusers", model_id=str(tiny_sd_dir), device="cpu")
    return VisionManager(backend=backend, store=LocalAssetStore(tmp_path_factory.mktemp("store")))


def _mock(reply: dict[str, Any], seen: list[dict[str, Any]]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=reply)

    return httpx.Client(transport=httpx.MockTransport(handle))


def _openai_call(specs: list[dict[str, Any]], name: str, args: dict[str, Any]) -> Any:
    """Send ``specs`` as ``tools=`` through the openai SDK; the mocked model calls ``name``."""
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
    call["function"]["arguments"] = json.dumps(args)
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    reply = {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
    }
    seen: list[dict[str, Any]] = []
    client = openai.OpenAI(
        api_key="k", base_url="http://llm.test/v1", http_client=_mock(reply, seen)
    )
    out = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "draw"}], tools=specs
    )
    assert seen[0]["tools"] == specs
    return out.choices[0].message.tool_calls[0]


def _anthropic_call(specs: list[dict[str, Any]], name: str, args: dict[str, Any]) -> Any:
    block = {"type": "tool_use", "id": "toolu_1", "name": name, "input": args}
    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [block],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    seen: list[dict[str, Any]] = []
    client = anthropic.Anthropic(
        api_key="k", base_url="http://llm.test", http_client=_mock(reply, seen)
    )
    out = client.messages.create(
        model="claude-test",
        max_tokens=64,
        messages=[{"role": "user", "content": "draw"}],
        tools=specs,  # type: ignore[arg-type]
    )
    assert seen[0]["tools"] == specs
    return out.content[0]


def _size(manager: VisionManager, ref: dict[str, Any]) -> tuple[int, int]:
    assert manager.store is not None
    image = Image.open(io.BytesIO(manager.store.load_bytes(ref["$artifact"])))
    return image.size


def test_specs_follow_the_backend_and_validate_as_openai_tools(
    manager: VisionManager, tiny_sd_dir: Path
) -> None:
    specs = tool_specs("openai", manager)
    names = [s["function"]["name"] for s in specs]
    assert names == ["text_to_image", "image_to_image", "multi_view_image"]
    adapter: TypeAdapter[Any] = TypeAdapter(ChatCompletionToolUnionParam)
    for spec in specs:
        adapter.validate_python(spec, strict=True)
        assert "$ref" not in json.dumps(spec)
    params = specs[0]["function"]["parameters"]
    assert params["properties"]["model"]["enum"] == [str(tiny_sd_dir)]
    assert len(tool_specs("anthropic", None)) == len(Task)


def test_mcp_openai_and_anthropic_describe_the_same_parameters(
    manager: VisionManager, tiny_sd_dir: Path, tmp_path: Path
) -> None:
    from mcp_server.config import load_config
    from mcp_server.engine import Engine
    from mcp_server.state import ServerState
    from mcp_server.tools import list_tools

    config = load_config(["--model", str(tiny_sd_dir), "--store", str(tmp_path)], environ={})
    engine = Engine(config, backend=manager.backend, store=manager.store)
    engine.capabilities()
    served = {t.name: t.input_schema for t in list_tools(ServerState.create(config, engine))}
    by_format = {f: tool_specs(f, manager) for f in ("openai", "anthropic", "mcp")}
    assert [s["name"] for s in by_format["mcp"]] == [n for n in served if n in set(Task)]
    for i, spec in enumerate(by_format["mcp"]):
        schema = dict(served[spec["name"]], properties=dict(served[spec["name"]]["properties"]))
        schema["properties"].pop("wait_s")
        assert spec["inputSchema"] == schema
        assert by_format["openai"][i]["function"]["parameters"] == schema
        assert by_format["anthropic"][i]["input_schema"] == schema
    width = by_format["anthropic"][0]["input_schema"]["properties"]["width"]
    assert (width["minimum"], width["maximum"], width["multipleOf"]) == (64, 4096, 8)


def test_openai_tool_calls_generate_then_edit_by_ref(manager: VisionManager) -> None:
    specs = tool_specs("openai", manager)
    args = {"prompt": "a red cube", "width": 64, "height": 96, "steps": 2, "seed": 1}
    call = _openai_call(specs, "text_to_image", args)
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    ref = dispatch(manager, call.function.name, call.function.arguments)
    assert ref["content_type"] == "image/png" and ref["uri"].endswith(ref["$artifact"])
    assert _size(manager, ref) == (64, 96) and json.dumps(ref)
    edit = {"prompt": "blue", "image": {"$artifact": ref["$artifact"]}, "steps": 2}
    call = _openai_call(specs, "image_to_image", edit)
    edited = dispatch(manager, call.function.name, call.function.arguments)
    assert _size(manager, edited) == (64, 96)


def test_anthropic_tool_use_multi_view(manager: VisionManager) -> None:
    specs = tool_specs("anthropic", manager)
    args = {"prompt": "a chair", "angles": ["front", "side"], "steps": 2, "width": 64}
    block = _anthropic_call(specs, "multi_view_image", {**args, "height": 64})
    assert isinstance(block, anthropic.types.ToolUseBlock)
    out = dispatch(manager, block.name, block.input)
    assert set(out) == {"reference", "views", "contact_sheet"}, out
    assert [v["angle"] for v in out["views"]] == ["front", "side"]
    assert out["contact_sheet"]["role"] == "contact_sheet"
    json.dumps(out)


def _error(manager: VisionManager, name: str, arguments: Any) -> dict[str, Any]:
    tool_call = ChatCompletionMessageFunctionToolCall(
        id="c", type="function", function=Function(name=name, arguments=arguments)
    )
    out = dispatch(manager, tool_call.function.name, tool_call.function.arguments)
    assert "error" in out and "$artifact" not in out, out
    return out


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("text_to_image", '{"prompt": "x", "width": 65}', "width"),
        ("text_to_image", '{"prompt": "x", "colour": 1}', "colour"),
        ("text_to_image", '{"prompt": ', "arguments"),
        ("text_to_image", "[1]", "arguments"),
        ("text_to_image", "{}", "prompt"),
        ("image_to_image", '{"prompt": "x", "image": "/etc/passwd.png"}', "image"),
        ("image_to_image", '{"prompt": "x", "image": "not base64!"}', "image"),
        ("image_to_image", '{"prompt": "x", "image": "http://127.0.0.1/a.png"}', "image"),
        ("paint", "{}", "name"),
    ],
)
def test_bad_calls_come_back_as_readable_errors(
    manager: VisionManager, name: str, arguments: str, field: str
) -> None:
    assert _error(manager, name, arguments)["field"] == field


def test_inline_and_rooted_images(manager: VisionManager, tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(png, "PNG")
    (tmp_path / "in.png").write_bytes(png.getvalue())
    data_url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()

    def edit(image: str, inputs: ImageResolver | None) -> dict[str, Any]:
        return dispatch(
            manager, "image_to_image", {"prompt": "x", "image": image, "steps": 2}, inputs=inputs
        )

    assert _size(manager, edit(data_url, None)) == (64, 64)
    rooted = ImageResolver(manager.store, roots=[tmp_path])
    assert _size(manager, edit("in.png", rooted)) == (64, 64)
    assert edit("in.png", None)["field"] == "image"
