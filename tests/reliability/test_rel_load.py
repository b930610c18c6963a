"""Load: tens of concurrent MCP clients over streamable HTTP on a real server process.

Every call must be answered exactly once: a result, or a clear "busy, retry after" refusal when
the queue limit is hit; never silence. tools/list keeps answering throughout, and the server's
RSS after the run stays close to its RSS before it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from rel_support import check_store, http_client, start_server, text

pytestmark = pytest.mark.anyio
CLIENTS = int(os.environ.get("REL_LOAD_CLIENTS", "24"))
CALLS_PER_CLIENT = int(os.environ.get("REL_LOAD_CALLS", "25"))


@dataclass
class Tally:
    sent: int = 0
    results: int = 0
    refusals: int = 0
    errors: list[str] = field(default_factory=list)
    lost: int = 0
    lists: int = 0
    slowest_list_s: float = 0.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def one_client(base: str, index: int, calls: int, tally: Tally) -> None:
    async with http_client(base, timeout=60) as client:
        for i in range(calls):
            tally.sent += 1
            try:
                with anyio.fail_after(60):
                    result = await client.call_tool(
                        "text_to_image",
                        {"prompt": f"c{index} n{i}", "seed": index * 1000 + i, "wait_s": 30},
                    )
            except Exception as exc:  # a call without an answer
                tally.lost += 1
                tally.errors.append(f"lost: {type(exc).__name__}: {exc}")
                continue
            message = text(result)
            if not result.is_error:
                assert result.structured_content["$artifact"]
                tally.results += 1
            elif "busy" in message and "retry after" in message:
                tally.refusals += 1
            else:
                tally.errors.append(message)


async def lister(base: str, tally: Tally, stop: anyio.Event) -> None:
    async with http_client(base, timeout=30) as client:
        while not stop.is_set():
            start = time.monotonic()
            with anyio.fail_after(10):
                tools = (await client.list_tools()).tools
            assert any(t.name == "text_to_image" for t in tools)
            tally.slowest_list_s = max(tally.slowest_list_s, time.monotonic() - start)
            tally.lists += 1
            await anyio.sleep(0.1)


async def run_load(base: str, clients: int, calls: int) -> Tally:
    tally = Tally()
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lister, base, tally, stop)
        async with anyio.create_task_group() as workers:
            for index in range(clients):
                workers.start_soon(one_client, base, index, calls, tally)
        stop.set()
    return tally


async def test_concurrent_clients_every_call_answered(tmp_path: Path) -> None:
    store = tmp_path / "store"
    flags = ("--max-concurrency", "2", "--max-queue", "16", "--preview", "none")
    proc, base = start_server(store, *flags, env={"REL_STEP_S": "0.002"})
    try:
        warm = await run_load(base, 8, 5)  # warm-up: imports, caches, sessions
        assert warm.lost == 0 and not warm.errors, warm.errors[:3]
        before = rss_kb(proc.pid)
        started = time.monotonic()
        tally = await run_load(base, CLIENTS, CALLS_PER_CLIENT)
        took = time.monotonic() - started
        after = rss_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    print(
        f"\nload: {CLIENTS} clients, sent={tally.sent} results={tally.results} "
        f"refusals={tally.refusals} errors={len(tally.errors)} lost={tally.lost} in {took:.1f} s; "
        f"tools/list answered {tally.lists}x, slowest {tally.slowest_list_s * 1000:.0f} ms; "
        f"server RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB"
    )
    assert tally.sent == CLIENTS * CALLS_PER_CLIENT
    assert tally.lost == 0 and not tally.errors, tally.errors[:5]
    assert tally.sent == tally.results + tally.refusals
    assert tally.lists > 0  # tools/list answered while loaded; its latency is printed above
    assert after - before < 40 * 1024, (before, after)  # flat: under 40 MiB of growth
    check_store(store)
