"""The Tasks extension (SEP-2663) on the wire: in-process, over stdio and streamable HTTP."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import tasks_client as tc
from conftest import FaultBackend, config
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from PIL import Image

from abstractvision import GeneratedAsset, VisionBackendCapabilities, media
from mcp_server.engine import Engine
from mcp_server.server import create_server

pytestmark = pytest.mark.anyio


class VideoBackend(FaultBackend):
    """Slow-stepping text->video for the long-task cases (a fault: a step takes ``step_s``)."""

    def get_capabilities(self) -> VisionBackendCapabilities:
        models = ("fault/model",)
        return VisionBackendCapabilities(
            supported_tasks=("text_to_image", "image_to_image", "text_to_video"),
            models={t: models for t in ("text_to_image", "image_to_image", "text_to_video")},
        )

    def generate_video(self, request: Any, *, control: Any = None) -> GeneratedAsset:
        self.started += 1
        steps = request.steps or 4
        for step in range(1, steps + 1):
            time.sleep(self.step_s)
            control.check()
            control.report(step, steps)
        frame = Image.new("RGB", (64, 64), (10, 200, 30))
        data, _ = media.encode_image(frame, "webp")
        meta = {"model": "fault/model", "seed": 0, "width": 64, "height": 64, "frames": 1}
        return GeneratedAsset("video", data, "video/webp", meta)


def _server(tmp_path: Path, step_s: float = 0.02, *flags: str) -> tuple[Any, VideoBackend]:
    backend = VideoBackend(step_s)
    cfg = config(tmp_path, "--preview", "none", *flags)
    return create_server(cfg, engine=Engine(cfg, backend=backend)), backend


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    keep = ("content_type", "width", "height", "frames", "model", "status")
    assert {k: a.get(k) for k in keep} == {k: b.get(k) for k in keep}


async def test_long_call_is_a_task_polled_to_the_plain_result(tmp_path: Path) -> None:
    server, _ = _server(tmp_path)
    args = {"prompt": "waves", "steps": 5, "seed": 3}
    async with Client(server, extensions=[tc.TasksExtension()]) as client:
        caps = client.server_capabilities.extensions or {}
        assert tc.EXTENSION in caps
        made = await tc.call(client, "text_to_video", args)
        assert isinstance(made, tc.CreateTaskResult), made
        assert made.status == "working" and made.ttl_ms and made.poll_interval_ms
        done = await tc.poll(client.session, made.task_id)
        assert done.status == "completed", done
        assert (await tc.update(client.session, made.task_id)) is not None
        # an image call that finishes within wait_s is a plain result, not a task
        image = await tc.call(client, "text_to_image", {"prompt": "x", "steps": 1})
        assert not isinstance(image, tc.CreateTaskResult) and not image.is_error
        # transparent resolution through the claim gives a CallToolResult too
        resolved = await client.call_tool("text_to_video", args)
    async with Client(server) as plain:  # no extension: the job-handle flow, same result
        direct = await plain.call_tool("text_to_video", {**args, "wait_s": 30})
        with pytest.raises(MCPError):  # another owner's task
            await tc.get(plain.session, made.task_id)
    _same(done.result["structuredContent"], direct.structured_content)
    _same(resolved.structured_content, direct.structured_content)


async def test_tasks_cancel_stops_within_a_step(tmp_path: Path) -> None:
    server, backend = _server(tmp_path, 0.05)
    async with Client(server, extensions=[tc.TasksExtension()]) as client:
        made = await tc.call(client, "text_to_video", {"prompt": "x", "steps": 200})
        with anyio.fail_after(30):
            while (doc := await tc.get(client.session, made.task_id)).status_message in (
                "queued",
                "running",
            ):
                await anyio.sleep(0.02)
        await tc.cancel(client.session, made.task_id)
        at_cancel = int(doc.status_message.split()[1].split("/")[0])
        final = await tc.poll(client.session, made.task_id)
        assert final.status == "cancelled", final
        job = server.abstractvision_state.jobs.get(made.task_id)  # type: ignore[attr-defined]
        assert job.progress()["step"] < 200
        assert (
            job.progress()["step"] <= at_cancel + 25
        )  # stopped at its next step (timing-free bound)
        with pytest.raises(MCPError) as missing:
            await tc.get(client.session, "job-" + "0" * 32)
        assert missing.value.error.code == -32602
    assert not list((tmp_path / "store").glob("*.json"))
    assert backend.started == 1


async def test_notifications_tasks_on_listen(tmp_path: Path) -> None:
    server, _ = _server(tmp_path)
    ext = tc.TasksExtension()
    async with Client(server, extensions=[ext]) as client:
        made = await tc.call(client, "text_to_video", {"prompt": "x", "steps": 30})
        filt = {"taskIds": [made.task_id]}
        async with anyio.create_task_group() as tg:
            tg.start_soon(_listen, client, filt)
            with anyio.fail_after(20):
                while not ext.seen or ext.seen[-1].status != "completed":
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    assert ext.seen[-1].result["structuredContent"]["content_type"] == "video/webp"
    assert len({n.status for n in ext.seen}) >= 2  # working ..., then completed


async def _listen(client: Any, filt: dict[str, Any]) -> None:
    from mcp_types import (
        SubscriptionFilter,
        SubscriptionsListenRequest,
        SubscriptionsListenRequestParams,
        SubscriptionsListenResult,
    )

    params = SubscriptionsListenRequestParams(notifications=SubscriptionFilter(**filt))
    await client.session.send_request(
        SubscriptionsListenRequest(params=params), SubscriptionsListenResult
    )


async def test_tasks_over_stdio(tmp_path: Path, tiny_sd_dir: Path) -> None:
    args = ["-m", "mcp_server", "--model", str(tiny_sd_dir), "--device", "cpu",
            "--store", str(tmp_path / "store"), "--preview", "none"]  # fmt: skip
    params = StdioServerParameters(
        command=sys.executable, args=args, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    )
    async with Client(params, extensions=[tc.TasksExtension()]) as client:
        # an image call still running after wait_s becomes a task (a video one would at once)
        made = await tc.call(client, "text_to_image", {"prompt": "x", "steps": 2, "wait_s": 0})
        assert isinstance(made, tc.CreateTaskResult), made
        done = await tc.poll(client.session, made.task_id, 240)
        assert done.status == "completed", done
        assert not done.result.get("isError"), done.result
        assert done.result["structuredContent"]["content_type"] == "image/png"
