"""The queue limit: past ``--max-queue`` a call is refused at once with "busy, retry after"."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from http_servers import serving
from rel_support import FaultBackend, config, connect, snapshot, text

from abstractvision import BusyError, VisionManager
from abstractvision.control import DeviceLimit
from abstractvision.openai_server import create_app

pytestmark = pytest.mark.anyio


def test_device_limit_counts_and_refuses() -> None:
    limit = DeviceLimit(max_concurrency=1, max_queue=1)
    first, second = limit.admit(), limit.admit()
    with pytest.raises(BusyError, match="retry after") as busy:
        limit.admit()
    assert busy.value.retry_after_s >= 1
    with first:
        pass
    second.close()
    assert limit.admitted == 0
    with limit:
        assert limit.admitted == 1
    assert limit.admitted == 0


async def test_mcp_call_past_the_queue_is_busy(tmp_path: Path) -> None:
    cfg = config(tmp_path, "--max-queue", "1", "--wait-s", "20")
    backend = FaultBackend(step_s=0.1)
    async with connect(cfg, backend) as client:
        now = {"steps": 10, "wait_s": 0}
        running = await client.call_tool("text_to_image", {"prompt": "a", **now})
        queued = await client.call_tool("text_to_image", {"prompt": "b", **now})
        assert not running.is_error and not queued.is_error
        before = snapshot(tmp_path / "store")
        busy = await client.call_tool("text_to_image", {"prompt": "c", **now})
        assert busy.is_error
        assert "busy" in text(busy) and "retry after" in text(busy)
        assert snapshot(tmp_path / "store") == before
        assert backend.started <= 2
        job = queued.structured_content["job_id"]
        done = await client.call_tool("get_job", {"job_id": job, "wait_s": 20})
        assert not done.is_error, text(done)
        again = await client.call_tool("text_to_image", {"prompt": "d", "steps": 1, "wait_s": 20})
        assert not again.is_error, text(again)


def test_openai_route_answers_429_with_retry_after() -> None:
    limit = DeviceLimit(max_concurrency=1, max_queue=0)
    app = create_app(VisionManager(FaultBackend(step_s=0.05)), device=limit)
    with serving(app) as url:
        slot = limit.admit()  # another front end holds the only place
        busy = httpx.post(url + "/v1/images/generations", json={"prompt": "x"}, timeout=10)
        slot.close()
        assert busy.status_code == 429
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"]["code"] == "busy"
        again = httpx.post(url + "/v1/images/generations", json={"prompt": "y"}, timeout=10)
        assert again.status_code == 200


def test_queue_flag_in_config(tmp_path: Path) -> None:
    assert config(tmp_path).max_queue == 32
    with pytest.raises(ValueError, match="max-queue"):
        config(tmp_path, "--max-queue", "-1")
