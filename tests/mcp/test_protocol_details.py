"""Protocol details: unknown tools, logging, completions, pre-job checks, tools/list size."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import FaultBackend, config, connect, text
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import ResourceTemplateReference

from mcp_server.engine import Engine
from mcp_server.server import create_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def info_logs() -> Iterator[None]:
    """The server runs at INFO (``--log-level``); pytest leaves the root logger at WARNING."""
    logger = logging.getLogger("mcp_server")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


async def test_unknown_tool_is_invalid_params_naming_only_advertised_tools(
    tmp_path: Path,
) -> None:
    async with connect(config(tmp_path), FaultBackend()) as client:
        with anyio.fail_after(30):  # the first tools/list starts the probe in the background
            while "text_to_video" in {t.name for t in (await client.list_tools()).tools}:
                await anyio.sleep(0.01)  # probed: the fault backend runs two tasks
        with pytest.raises(MCPError) as refused:
            await client.call_tool("nope_tool", {})
    assert refused.value.error.code == -32602
    message = refused.value.error.message
    assert "nope_tool" in message and "text_to_image" in message
    assert "text_to_video" not in message  # not advertised: not named


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_job_log_messages_reach_the_caller(
    tmp_path: Path, mode: str, info_logs: None
) -> None:
    messages: list[Any] = []

    async def on_log(params: Any) -> None:
        messages.append(params)

    cfg = config(tmp_path)
    server = create_server(cfg, engine=Engine(cfg, backend=FaultBackend(0.0)))
    level: Any = "info" if mode == "auto" else None  # 2026-07-28: a per-request opt-in
    async with Client(server, mode=mode, logging_callback=on_log, log_level=level) as client:
        if mode == "legacy":
            assert client.server_capabilities.logging is not None
            await client.call_tool("text_to_image", {"prompt": "quiet", "steps": 1})
            assert not messages  # warning until the client asks for more
            await client.set_logging_level("info")
        done = await client.call_tool("text_to_image", {"prompt": "loud", "steps": 1})
        assert not done.is_error, text(done)
    assert any("succeeded" in str(m.data) and m.level == "info" for m in messages), messages


async def test_completion_of_model_ids(tmp_path: Path, tiny_sd_dir: Path) -> None:
    cfg = config(tmp_path, "--model", str(tiny_sd_dir), "--no-probe")
    async with Client(create_server(cfg)) as client:
        assert client.server_capabilities.completions is not None
        ref = ResourceTemplateReference(uri="abstractvision://capabilities/models/{model_id}")
        done = await client.complete(ref, {"name": "model_id", "value": "stable-diff"})
        assert done.completion.values and all(
            "stable-diff" in v.lower() for v in done.completion.values
        )
        mine = await client.complete(ref, {"name": "model_id", "value": str(tiny_sd_dir)[:8]})
        assert mine.completion.values[0] == str(tiny_sd_dir)  # the configured model first
        task_ref = ResourceTemplateReference(uri="abstractvision://capabilities/tasks/{task}")
        tasks = await client.complete(task_ref, {"name": "task", "value": "text"})
        assert set(tasks.completion.values) == {"text_to_image", "text_to_video"}


async def test_engine_would_fail_is_refused_before_a_job(sd_client: Any, tmp_path: Path) -> None:
    async with sd_client("--preview", "none") as client:
        made = await client.call_tool("text_to_image", {"prompt": "x", "steps": 1})
        ref = made.structured_content
        stored = set((tmp_path / "store").glob("*.json"))
        cases = [
            ("image_to_image", {"prompt": "x", "image": ref, "steps": 1}, "steps"),
            ("image_to_image", {"prompt": "x", "image": ref, "steps": 2, "strength": 0.2}, "steps"),
            ("text_to_image", {"prompt": "x", "extra": {"scheduler": "bogus"}}, "extra.scheduler"),
            ("text_to_image", {"prompt": "x", "extra": {"scheduler": "lcm"}}, "does not suit"),
            ("multi_view_image", {"prompt": "x", "steps": 1}, "steps"),  # before the reference
        ]
        for tool, args, needle in cases:
            refused = await client.call_tool(tool, args)
            assert refused.is_error and needle in text(refused), (tool, args, text(refused))
        jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
    assert len(jobs) == 1  # only the first call became a job
    assert set((tmp_path / "store").glob("*.json")) == stored  # no reference was generated


async def test_tools_list_fits_12_kb_with_every_tool(tmp_path: Path) -> None:
    for flags in (["--all-tools", "--model", "x"], ["--backend", "openai", "--model", "m"]):
        async with Client(create_server(config(tmp_path, "--no-probe", *flags))) as client:
            tools = (await client.list_tools()).tools
        wire = json.dumps(
            {"tools": [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in tools]},
            separators=(",", ":"),
        )
        assert len(tools) >= 10 and len(wire) <= 12 * 1024, (flags, len(wire))
        for tool in tools:  # bounds stay
            for name, prop in (tool.input_schema.get("properties") or {}).items():
                if prop.get("type") == "integer" and name != "wait_s":
                    assert "maximum" in prop, (tool.name, name)


async def test_get_job_does_not_replay_past_progress(tmp_path: Path) -> None:
    async with connect(config(tmp_path), FaultBackend(0.02)) as client:
        started = await client.call_tool("text_to_image", {"prompt": "x", "steps": 30, "wait_s": 0})
        job_id = started.structured_content["job_id"]
        for _ in range(200):
            jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
            if jobs[0]["progress"]["step"] >= 10:
                break
            await anyio.sleep(0.02)
        steps: list[float] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            steps.append(done)

        await client.call_tool(
            "get_job", {"job_id": job_id, "wait_s": 0}, progress_callback=progress
        )
    assert steps and steps[0] >= 10  # where the job is, not its history from step 1
