"""Ray Serve scale-out on a real local cluster: two replicas of the tiny SD, two MCP front ends.

One cluster and one two-replica deployment serve the whole module. Front end A is an in-process
MCP server (the SDK's ``Client``); front end B is a separate ``abstractvision serve --ray``
process over streamable HTTP (it attaches to the running deployment). Both share one store.
"""

from __future__ import annotations

import base64
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from threading import Thread
from typing import Any

import anyio
import httpx
import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from http_servers import mcp_http_client  # noqa: E402
from mcp import Client  # noqa: E402

from abstractvision import (  # noqa: E402
    BackendError,
    BusyError,
    GenerationCancelledError,
    GenerationControl,
    InvalidRequestError,
    LocalAssetStore,
    VisionManager,
)
from abstractvision.backends import RayServeBackendConfig, RayServeVisionBackend  # noqa: E402
from abstractvision.errors import OptionalDependencyMissingError, ReplicaLostError  # noqa: E402
from abstractvision.ray_serve import WorkerOptions, build_app, deploy, worker_options  # noqa: E402
from mcp_server.config import load_config  # noqa: E402
from mcp_server.server import create_server  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
TOKEN = "ray-front-end-token"
APP = "abstractvision"
SLOW = {"width": 512, "height": 512, "steps": 200}  # seconds on the tiny model: time to cancel


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- no cluster needed ---------------------------------------------------------------------


def test_worker_options_name_the_bad_field() -> None:
    with pytest.raises(InvalidRequestError, match="num_replicas=0"):
        WorkerOptions(num_replicas=0)
    with pytest.raises(InvalidRequestError, match=r"max_replicas.*min_replicas"):
        WorkerOptions(min_replicas=3, max_replicas=2)
    with pytest.raises(InvalidRequestError, match=r"replicas=4 .*not a Ray worker option"):
        worker_options(["replicas=4"])
    with pytest.raises(InvalidRequestError, match=r"cancel_grace_s=0 .*> 0 or null"):
        worker_options(["cancel_grace_s=0"])
    assert worker_options(["cancel_grace_s=null"]).cancel_grace_s is None
    auto = worker_options(["min_replicas=1", "max_replicas=4", "num_gpus=1"]).deployment_options()
    assert auto["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in auto
    assert auto["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1}
    fixed = WorkerOptions(num_replicas=3, env={"HF_HOME": "/models"}).deployment_options()
    assert fixed["num_replicas"] == 3
    assert fixed["ray_actor_options"]["runtime_env"] == {"env_vars": {"HF_HOME": "/models"}}


def test_serve_config_file_builder_takes_text_or_typed_args() -> None:
    # ``serve run abstractvision.ray_serve:build_app num_replicas=2 ...`` passes text
    build_app({"engine": "diffusers", "num_replicas": "2", "backend_options": '{"model_id": "m"}'})
    build_app({"engine": "sdcpp", "num_replicas": 2, "backend_options": {"model": "m.gguf"}})
    with pytest.raises(InvalidRequestError, match="engine='openai'"):
        build_app({"engine": "openai"})
    with pytest.raises(InvalidRequestError, match="num_gpus=-1"):
        build_app({"engine": "diffusers", "num_gpus": "-1"})


def test_front_end_config_and_server_flags() -> None:
    with pytest.raises(InvalidRequestError, match="on_replica_failure='sometimes'"):
        RayServeBackendConfig(on_replica_failure="sometimes")
    assert RayServeBackendConfig(on_replica_failure="fail").attempts == 1
    assert RayServeBackendConfig(max_retries=2).attempts == 3
    # a remote pool queues for itself: the front end lets many calls through by default
    assert load_config(["--backend", "ray"], environ={}).max_concurrency == 64
    assert load_config(["--ray", "auto"], environ={}).max_concurrency == 64
    assert load_config([], environ={}).max_concurrency == 1
    with pytest.raises(ValueError, match="--ray runs a local engine"):
        load_config(["--ray", "auto", "--backend", "openai"], environ={})


def test_errors_cross_process_boundaries_intact() -> None:
    for exc in (InvalidRequestError("width", 9, "must be >= 64"), BusyError("busy", 7)):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert back.__dict__ == exc.__dict__
    missing = pickle.loads(pickle.dumps(OptionalDependencyMissingError("ray", "ray")))
    assert "abstractvision[ray]" in str(missing)


# --- the cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-store")


def _server_flags(address: str, model: Path, store: Path) -> list[str]:
    return ["--ray", address, "--backend", "diffusers", "--model", str(model), "--device", "cpu",
            "--store", str(store), "--ray-option", "num_replicas=2",
            "--ray-option", "num_cpus=0.5", "--preview", "none"]  # fmt: skip


@pytest.fixture(scope="module")
def workers(cluster: str, tiny_sd_dir: Path, shared_store: Path) -> str:
    """Deploy two replicas the way front end A's ``--ray`` flag does (B then attaches)."""
    config = load_config(_server_flags(cluster, tiny_sd_dir, shared_store), environ={})
    deploy(cluster, "diffusers", config.backend_options(), worker_options(config.ray_option))
    return cluster


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def front_end_b(
    workers: str, tiny_sd_dir: Path, shared_store: Path, tmp_path_factory: Any
) -> Iterator[str]:
    """``abstractvision serve --ray ADDRESS`` in its own process, MCP + OpenAI over HTTP."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("front-end-b") / "server.log"
    args = [sys.executable, "-m", "abstractvision.cli", "serve", "--port", str(port),
            *_server_flags(workers, tiny_sd_dir, shared_store)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ABSTRACTVISION_AUTH_TOKEN": TOKEN}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-3000:])
            try:
                httpx.get(base + "/mcp", timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


@asynccontextmanager
async def front_end_a(workers: str, model: Path, store: Path, *flags: str) -> AsyncIterator[Client]:
    config = load_config([*_server_flags(workers, model, store), *flags], environ={})
    async with Client(create_server(config)) as client:
        yield client


def http_client(base: str) -> Any:
    return mcp_http_client(base, TOKEN, timeout=120)


def _text(result: Any) -> str:
    return " ".join(c.text for c in result.content if c.type == "text")


def _replicas() -> dict[str, int]:
    """Replica id -> pid of the live replicas, asked of the replicas themselves."""
    handle = serve.get_app_handle(APP)
    seen: dict[str, int] = {}
    for _ in range(40):
        info = handle.info.remote().result()
        seen[info["replica_id"]] = info["replica_pid"]
        if len(seen) >= 2:
            break
    return seen


def _jobs_total(counter: str) -> int:
    """``counter`` (served_jobs, cancelled_jobs) summed over the live replicas."""
    handle = serve.get_app_handle(APP)
    seen: dict[str, int] = {}
    for _ in range(40):
        info = handle.info.remote().result()
        seen[info["replica_id"]] = info[counter]
    return sum(seen.values())


def _wait_healthy(replicas: int = 2, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications[APP].deployments["VisionWorker"]
        if status.replica_states.get("RUNNING", 0) >= replicas and str(status.status).endswith(
            "HEALTHY"
        ):
            return
        time.sleep(0.25)
    raise TimeoutError(f"deployment not back to {replicas} replicas: {status}")


async def _generate(client: Client, prompt: str, progress: Any = None, **args: Any) -> Any:
    arguments = {"prompt": prompt, "steps": 4, **args}
    return await client.call_tool("text_to_image", arguments, progress_callback=progress)


async def _read_all(client: Client, refs: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for ref in refs:
        read = await client.read_resource(ref["uri"])
        out.append(base64.b64decode(read.contents[0].blob))
    return out


async def _bar(
    workers: str, front_end_b: str, model: Path, store: Path, *, kill_one: bool
) -> tuple[list[Any], list[int]]:
    """20 concurrent text_to_image calls, 10 through each front end; optionally kill the
    replica that reports first, mid-run."""
    results: list[Any] = [None] * 20
    killed: list[int] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        if kill_one and not killed and message and message.startswith("running on replica"):
            pid = int(message.rsplit("pid ", 1)[1].rstrip(")"))
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    async with front_end_a(workers, model, store) as a, http_client(front_end_b) as b:

        async def call(i: int) -> None:
            client = a if i % 2 == 0 else b
            results[i] = await _generate(client, f"cube {i}", seed=i, progress=on_progress)

        with anyio.fail_after(240):
            async with anyio.create_task_group() as group:
                for i in range(20):
                    group.start_soon(call, i)
        refs = [r.structured_content for r in results if not r.is_error]
        # every ref resolves through both front ends, to the same bytes
        assert await _read_all(a, refs) == await _read_all(b, refs)
    return results, killed


async def test_twenty_calls_two_front_ends_two_replicas(
    workers: str, front_end_b: str, tiny_sd_dir: Path, shared_store: Path
) -> None:
    results, _ = await _bar(workers, front_end_b, tiny_sd_dir, shared_store, kill_one=False)
    assert all(r is not None and not r.is_error for r in results), [_text(r) for r in results]
    refs = [r.structured_content for r in results]
    assert len({ref["$artifact"] for ref in refs}) == 20  # 20 seeds, 20 images
    assert len({ref["replica_id"] for ref in refs}) == 2, "work was not spread over both replicas"
    assert len(LocalAssetStore(shared_store).list_artifacts()) >= 20


async def test_progress_arrives_from_the_replica(
    workers: str, tiny_sd_dir: Path, shared_store: Path
) -> None:
    events: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        events.append((done, message))

    async with front_end_a(workers, tiny_sd_dir, shared_store) as client:
        made = await _generate(client, "a sphere", steps=5, progress=on_progress)
    assert not made.is_error, _text(made)
    assert events[0][1].startswith(f"running on replica {made.structured_content['replica_id']}")
    assert [m for _, m in events[1:]] == [f"step {i}/5" for i in range(1, 6)]


async def test_cancel_reaches_the_replica(
    workers: str, tiny_sd_dir: Path, shared_store: Path
) -> None:
    def cancelled_total() -> int:
        return _jobs_total("cancelled_jobs")

    before_count = await anyio.to_thread.run_sync(cancelled_total)
    before_files = set(os.listdir(shared_store))
    async with front_end_a(workers, tiny_sd_dir, shared_store) as client:
        started = await _generate(client, "slow", **SLOW, wait_s=0)
        assert not started.is_error, _text(started)
        job = started.structured_content
        seen_step = False
        for _ in range(200):
            state = await client.call_tool("get_job", {"job_id": job["job_id"], "wait_s": 0.1})
            if state.structured_content["progress"]["step"] >= 2:
                seen_step = True
                break
        cancelled = await client.call_tool("cancel_job", {"job_id": job["job_id"]})
        assert cancelled.structured_content["status"] == "cancelled", _text(cancelled)
        assert seen_step
    for _ in range(40):
        if await anyio.to_thread.run_sync(cancelled_total) > before_count:
            break
        await anyio.sleep(0.1)
    assert await anyio.to_thread.run_sync(cancelled_total) > before_count, "no cancel seen"
    assert set(os.listdir(shared_store)) == before_files  # nothing stored


def test_capabilities_come_from_the_replicas_and_refresh_in_the_background(workers: str) -> None:
    backend = RayServeVisionBackend(RayServeBackendConfig(address=workers, capabilities_ttl_s=0))
    first = backend.get_capabilities()
    assert "text_to_image" in first.supported_tasks and first.supports_mask is True
    assert backend.get_capabilities() is first  # stale copy at once; a refresh starts behind it
    deadline = time.monotonic() + 20
    while backend.get_capabilities() is first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.get_capabilities() is not first and backend.get_capabilities() == first


def test_cancel_through_the_library(workers: str, tmp_path: Path) -> None:
    backend = RayServeVisionBackend(RayServeBackendConfig(address=workers))
    manager = VisionManager(backend=backend, store=LocalAssetStore(tmp_path))
    control = GenerationControl(on_progress=lambda e: e.step >= 2 and control.cancel())
    start = time.monotonic()
    with pytest.raises(GenerationCancelledError):
        manager.generate_image("x", **SLOW, control=control)
    assert time.monotonic() - start < 5  # stopped at a step, not after 200
    assert list(tmp_path.iterdir()) == []


def test_a_call_past_its_timeout_is_cancelled_on_the_replica(workers: str, tmp_path: Path) -> None:
    backend = RayServeVisionBackend(RayServeBackendConfig(address=workers, timeout_s=0.5))
    manager = VisionManager(backend=backend, store=LocalAssetStore(tmp_path))
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"timeout_s=0\.5 s.*nothing was stored"):
        manager.generate_image("x", **SLOW)
    assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_killed_replica_fail_policy_gives_a_typed_error(workers: str, tmp_path: Path) -> None:
    backend = RayServeVisionBackend(
        RayServeBackendConfig(address=workers, on_replica_failure="fail")
    )
    manager = VisionManager(backend=backend, store=LocalAssetStore(tmp_path))

    def kill(event: Any) -> None:
        if event.message.startswith("running on replica"):
            os.kill(int(event.message.rsplit("pid ", 1)[1].rstrip(")")), signal.SIGKILL)

    with pytest.raises(ReplicaLostError, match=r"died.*nothing was stored"):
        manager.generate_image("x", width=64, height=64, steps=200, on_progress=kill)
    assert list(tmp_path.iterdir()) == []
    _wait_healthy()  # Serve replaced the replica; later calls succeed on either
    ref = manager.generate_image("x", width=64, height=64, steps=2)
    assert ref["metadata"]["replica_id"] in _replicas()


async def test_killed_replica_mid_run_loses_no_call(
    workers: str, front_end_b: str, tiny_sd_dir: Path, shared_store: Path
) -> None:
    await anyio.to_thread.run_sync(_wait_healthy)
    results, killed = await _bar(workers, front_end_b, tiny_sd_dir, shared_store, kill_one=True)
    assert killed, "no replica was killed"
    assert all(r is not None for r in results)  # every call got an answer...
    assert all(not r.is_error for r in results), [_text(r) for r in results]  # ...by a retry
    assert len({r.structured_content["$artifact"] for r in results}) == 20
    await anyio.to_thread.run_sync(_wait_healthy)
    async with front_end_a(workers, tiny_sd_dir, shared_store) as client:
        again = await _generate(client, "after the kill", seed=99)
    assert not again.is_error, _text(again)
    assert again.structured_content["replica_id"] in await anyio.to_thread.run_sync(_replicas)


def test_openai_api_of_front_end_b_goes_through_the_replicas(front_end_b: str) -> None:
    served = _jobs_total("served_jobs")
    answer = httpx.post(
        front_end_b + "/v1/images/generations",
        json={"prompt": "a teapot", "size": "64x64", "response_format": "b64_json"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert base64.b64decode(answer.json()["data"][0]["b64_json"]).startswith(b"\x89PNG")
    assert _jobs_total("served_jobs") == served + 1


@contextmanager
def one_replica_app(
    cluster: str, model: Path, name: str, engine: str = "diffusers", **options: Any
) -> Iterator[VisionManager]:
    """A separate one-replica application for one test, deleted after it."""
    if engine == "diffusers":
        engine_options = {"model_id": str(model), "device": "cpu"}
    else:
        engine_options = {"model": str(model), "n_threads": 1}
    engine_options.update(options.pop("backend_options", {}))
    deploy(cluster, engine, engine_options, worker_options(app_name=name, num_cpus=0.25, **options))
    try:
        backend = RayServeVisionBackend(RayServeBackendConfig(address=cluster, app_name=name))
        yield VisionManager(backend=backend)
    finally:
        serve.delete(name)


def test_coalescing_happens_inside_a_replica(cluster: str, tiny_sd_dir: Path) -> None:
    batching = {"max_batch_size": 4, "batch_window_ms": 500}
    app = one_replica_app(
        cluster, tiny_sd_dir, "batched", max_ongoing_requests=4, backend_options=batching
    )
    with app as manager, ThreadPoolExecutor(4) as pool:
        calls = [
            pool.submit(manager.generate_image, "same", width=64, height=64, steps=2, seed=i)
            for i in range(4)
        ]
        assets = [call.result(timeout=120) for call in calls]
    assert [a.metadata.get("batch_size") for a in assets] == [4, 4, 4, 4]
    assert len({a.metadata["replica_id"] for a in assets}) == 1


def test_a_replica_can_host_stable_diffusion_cpp(cluster: str, klein_file: Path) -> None:
    events: list[str] = []
    with one_replica_app(cluster, klein_file, "sdcpp", engine="sdcpp") as manager:
        asset = manager.generate_image(
            "a fox",
            width=64,
            height=64,
            steps=2,
            seed=3,
            on_progress=lambda e: events.append(e.message),
        )
    assert asset.data.startswith(b"\x89PNG") and asset.metadata["seed"] == 3
    assert asset.metadata["replica_id"] and events[0].startswith("running on replica")
    assert "step 2/2" in events


def test_full_deployment_gives_a_busy_answer(cluster: str, tiny_sd_dir: Path) -> None:
    """One replica taking one call, one more queued: a third concurrent call is refused."""
    app = one_replica_app(
        cluster, tiny_sd_dir, "busy", max_ongoing_requests=1, max_queued_requests=1
    )
    stop = GenerationControl()
    running: list[Any] = []

    def long_call() -> None:
        control = GenerationControl(on_progress=running.append)
        stop.on_cancel(control.cancel)
        with suppress(GenerationCancelledError):
            manager.generate_image("long", **SLOW, control=control)

    threads = [Thread(target=long_call) for _ in range(2)]
    with app as manager:
        manager.generate_image("warm", width=64, height=64, steps=1)
        try:
            for thread in threads:
                thread.start()
                time.sleep(0.5)
            assert running, "the first long call never started"
            with pytest.raises(BusyError, match="busy") as busy:
                manager.generate_image("third", width=64, height=64, steps=1)
            assert busy.value.retry_after_s > 0
        finally:
            stop.cancel()
            for thread in threads:
                thread.join(30)


def test_a_replica_stuck_after_a_cancel_is_replaced(cluster: str, tiny_sd_dir: Path) -> None:
    """A job that runs on past ``cancel_grace_s`` after its cancel fails the health check.

    The stuck engine is a real slow step (1024 px: a second or more before the next step
    boundary) against a grace of 0.2 s; Serve replaces the replica and later calls succeed."""
    app = one_replica_app(
        cluster, tiny_sd_dir, "stuck", cancel_grace_s=0.2, health_check_period_s=0.2
    )
    with app as manager:
        handle = serve.get_app_handle("stuck")
        first = handle.info.remote().result()["replica_id"]
        control = GenerationControl(on_progress=lambda event: control.cancel())  # first event
        with pytest.raises(GenerationCancelledError):
            manager.generate_image("slow", width=1024, height=1024, steps=3, control=control)
        deadline = time.monotonic() + 120
        while (now := handle.info.remote().result()["replica_id"]) == first:
            assert time.monotonic() < deadline, "the stuck replica was never replaced"
            time.sleep(0.5)
        asset = manager.generate_image("after", width=64, height=64, steps=1)
        assert asset.metadata["replica_id"] == now != first
