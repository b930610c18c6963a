"""Faults: the engine raising mid-generation, out of memory, and the server SIGKILLed during a
store write, then restarted (real ``abstractvision-mcp`` on the tiny model) on the same store.

The sd.cpp worker dying is covered in tests/test_sdcpp_backend.py
(test_worker_crash_mid_generation_is_a_typed_error, test_worker_killed_between_calls_is_replaced,
test_worker_ends_when_its_parent_dies_mid_generation,
test_mcp_server_serves_sdcpp_and_survives_a_killed_worker).
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from rel_support import (
    ENV,
    FaultBackend,
    check_store,
    config,
    connect,
    http_client,
    snapshot,
    start_server,
    text,
)

from abstractvision import BackendError, LocalAssetStore, OutOfMemoryError

pytestmark = pytest.mark.anyio


class MidFault(FaultBackend):
    """Raises after two steps: ``oom`` -> OutOfMemoryError, ``bug`` -> a raw RuntimeError,
    ``boom`` -> BackendError; other prompts generate."""

    def generate_image(self, request: Any, *, control: Any = None) -> Any:
        faults = {
            "oom": OutOfMemoryError("CUDA out of memory; cache cleared, try a smaller size"),
            "bug": RuntimeError("index out of range in the engine"),
            "boom": BackendError("the engine exploded mid-run"),
        }
        if request.prompt in faults:
            for step in (1, 2):
                time.sleep(self.step_s)
                if control is not None:
                    control.report(step, 4)
            raise faults[request.prompt]
        return super().generate_image(request, control=control)


@pytest.mark.parametrize(
    "prompt,expect", [("oom", "out of memory"), ("bug", "engine failed"), ("boom", "exploded")]
)
async def test_engine_fault_mid_generation(tmp_path: Path, prompt: str, expect: str) -> None:
    async with connect(config(tmp_path, "--wait-s", "10"), MidFault(step_s=0.01)) as client:
        before = snapshot(tmp_path / "store")
        failed = await client.call_tool("text_to_image", {"prompt": prompt})
        assert failed.is_error and expect in text(failed), text(failed)
        assert snapshot(tmp_path / "store") == before  # nothing stored
        jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
        assert jobs[0]["status"] == "failed"
        ok = await client.call_tool("text_to_image", {"prompt": "fine"})
        assert not ok.is_error, text(ok)  # the next call works
        check_store(tmp_path / "store")


async def _generate_until_killed(base: str, store: Path, proc: Any, stage: str) -> list[dict]:
    """Make one artifact, start another and SIGKILL the server while its ``stage`` is written."""
    async with http_client(base) as client:
        made = await client.call_tool("text_to_image", {"prompt": "first", "wait_s": 30})
        assert not made.is_error, text(made)
        first = made.structured_content
        await client.call_tool("text_to_image", {"prompt": "second", "seed": 7, "wait_s": 0})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = [p.name for p in store.iterdir()]
            temps = [n for n in names if n.startswith(".tmp-")]
            blobs = [n for n in names if n.endswith(".png")]
            if temps and (stage == "blob" or len(blobs) == 2):
                os.kill(proc.pid, signal.SIGKILL)
                break
            await anyio.sleep(0.002)
        else:
            raise AssertionError(f"no {stage} write seen")
    proc.wait(10)
    return [first]


@pytest.mark.parametrize("stage", ["blob", "metadata"])
async def test_sigkill_during_store_write_then_restart(
    tmp_path: Path, tiny_sd_dir: Path, stage: str
) -> None:
    store = tmp_path / "store"
    env = {"REL_NOISE_SIDE": "512", "REL_SLOW_FSYNC_S": "0.5"}
    proc, base = start_server(store, env=env)
    try:
        issued = await _generate_until_killed(base, store, proc, stage)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in store.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers  # the kill really landed inside a write
    visible = check_store(store)  # every visible artifact's bytes match its sha256
    assert {m["artifact_id"] for m in visible} == {issued[0]["$artifact"]}
    assert all(not m["content_file"].startswith(".tmp-") for m in visible)
    listed = LocalAssetStore(store).list_artifacts()
    assert [m["artifact_id"] for m in listed] == [issued[0]["$artifact"]]

    # restart: the real abstractvision-mcp (stdio) on the tiny model, same store
    args = ["-m", "mcp_server", "--model", str(tiny_sd_dir), "--device", "cpu",
            "--store", str(store)]  # fmt: skip
    params = StdioServerParameters(command=sys.executable, args=args, env=ENV)
    async with Client(params) as client:
        old = await client.read_resource(issued[0]["uri"])  # refs issued before still resolve
        data = base64.b64decode(old.contents[0].blob)
        assert hashlib.sha256(data).hexdigest() == issued[0]["sha256"]
        made = await client.call_tool("text_to_image", {"prompt": "after", "steps": 1, "width": 64,
                                                        "height": 64})  # fmt: skip
        assert not made.is_error, text(made)  # the next call works
    assert len(check_store(store)) == 2
