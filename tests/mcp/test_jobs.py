"""Bounded wait, job handles, get_job, cancel (tool and MCP request cancellation), retention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import text

pytestmark = pytest.mark.anyio


async def test_bounded_wait_returns_handle_then_get_job(fault_client: Any) -> None:
    async with fault_client("--wait-s", "0.2") as (client, _):
        started = await client.call_tool("text_to_image", {"prompt": "slow", "steps": 20})
        handle = started.structured_content
        assert not started.is_error and handle["status"] == "running", text(started)
        assert "get_job" in text(started)
        # the event loop stays free while the job runs
        assert (await client.list_tools()).tools
        events: list[float] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            events.append(done)

        done = await client.call_tool(
            "get_job", {"job_id": handle["job_id"], "wait_s": 10}, progress_callback=progress
        )
        assert not done.is_error, text(done)
        assert done.structured_content["status"] == "succeeded"
        assert done.structured_content["uri"].startswith("abstractvision://artifacts/")
        assert events == sorted(events) and events[-1] == 20
        jobs = await client.call_tool("list_jobs", {})
        assert jobs.structured_content["jobs"][0]["status"] == "succeeded"


async def test_cancel_job_stops_and_stores_nothing(fault_client: Any, tmp_path: Path) -> None:
    async with fault_client("--wait-s", "0.1") as (client, _):
        started = await client.call_tool("text_to_image", {"prompt": "slow", "steps": 200})
        job_id = started.structured_content["job_id"]
        cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
        assert cancelled.structured_content["status"] == "cancelled"
        after = await client.call_tool("get_job", {"job_id": job_id})
        assert after.is_error and "cancelled" in text(after)
        # the device is free again
        ok = await client.call_tool("text_to_image", {"prompt": "quick", "steps": 1})
        assert not ok.is_error, text(ok)
    assert len(list((tmp_path / "store").glob("*.json"))) == 1


async def test_request_cancellation_cancels_the_job(fault_client: Any, tmp_path: Path) -> None:
    async with fault_client() as (client, _backend):
        with anyio.move_on_after(0.3):
            await client.call_tool("text_to_image", {"prompt": "slow", "steps": 200})
        for _ in range(100):
            jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
            if jobs and jobs[0]["status"] == "cancelled":
                break
            await anyio.sleep(0.05)
        assert jobs[0]["status"] == "cancelled"
        assert jobs[0]["progress"]["step"] < 200
    assert not list((tmp_path / "store").glob("*.json"))


async def test_concurrency_limit_queues_second_job(fault_client: Any) -> None:
    async with fault_client("--wait-s", "0") as (client, _):
        first = await client.call_tool("text_to_image", {"prompt": "a", "steps": 10})
        second = await client.call_tool("text_to_image", {"prompt": "b", "steps": 10})
        assert second.structured_content["status"] == "queued"
        for job in (first, second):
            done = await client.call_tool(
                "get_job", {"job_id": job.structured_content["job_id"], "wait_s": 10}
            )
            assert done.structured_content["status"] == "succeeded"


async def test_finished_jobs_expire(fault_client: Any) -> None:
    async with fault_client("--job-ttl-s", "0") as (client, _):
        result = await client.call_tool("text_to_image", {"prompt": "a", "steps": 1})
        await anyio.sleep(0.05)
        gone = await client.call_tool("get_job", {"job_id": result.structured_content["job_id"]})
    assert gone.is_error and "no such job" in text(gone)
