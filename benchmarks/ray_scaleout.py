"""Ray Serve scale-out: per-call cost of the Ray hop, 1 vs 2 replicas under concurrent load, and
the cost of a call whose replica is killed mid-call (answered by a retry).

    .venv/bin/python benchmarks/ray_scaleout.py [--runs 5] [--calls 16] [--side 256] [--steps 8]
                                                [--smoke]

Starts a private local Ray cluster (``num_cpus=2``) and two Serve apps on the tiny random-weight
SD, all alive at once: ``bench-1`` (1 replica, torch threads 2), ``bench-1t`` (1 replica, 1
thread) and ``bench-2`` (2 replicas, 1 thread each); 0.5 logical CPU per replica, threads set with
OMP_NUM_THREADS in ``WorkerOptions.env`` (Ray would otherwise set 1). Every call goes through
VisionManager (no store), on an in-process Diffusers backend (2 threads) or a
RayServeVisionBackend. Ray's own messages go to stderr; the tables to stdout.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import _common as c

PROMPT = "a lighthouse at dusk"
PAUSE_S = 0.25  # between sequential calls: lets the last caller's OpenMP threads stop spinning
APPS = {  # app name -> (replicas, num_cpus per replica, torch threads per replica)
    "bench-1": (1, 0.5, 2),
    "bench-1t": (1, 0.5, 1),
    "bench-2": (2, 0.5, 1),
}
NAMES = {
    "bench-1": "Ray Serve, 1 replica x 2 threads",
    "bench-1t": "Ray Serve, 1 replica x 1 thread",
    "bench-2": "Ray Serve, 2 replicas x 1 thread",
    "in-process": "in-process, 2 threads",
}


def deploy_apps(address: str, model: Path) -> None:
    from abstractvision.ray_serve import deploy, worker_options

    backend_options = {"model_id": str(model), "device": "cpu"}
    for app, (replicas, cpus, threads) in APPS.items():
        options = worker_options(
            app_name=app,
            num_replicas=replicas,
            num_cpus=cpus,
            max_queued_requests=64,
            env={"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"},
        )
        deploy(address, "diffusers", backend_options, options)


def front_end(address: str, app: str) -> Any:
    from abstractvision import VisionManager
    from abstractvision.backends import RayServeBackendConfig, RayServeVisionBackend

    return VisionManager(
        backend=RayServeVisionBackend(RayServeBackendConfig(address=address, app_name=app))
    )


def sequential(calls: dict[str, Any], req: dict[str, Any], runs: int) -> dict[str, list[float]]:
    """Round robin over ``calls``, one call at a time, same request and seed every time."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, vm in calls.items():
            time.sleep(PAUSE_S)
            out[name].extend(c.timed(lambda vm=vm: vm.generate_image(**req, seed=1), 1))
    return out


def throughput(vm: Any, calls: int, req: dict[str, Any]) -> float:
    """Calls per second: ``calls`` concurrent calls (one thread each), distinct seeds."""
    start = time.perf_counter()
    with ThreadPoolExecutor(calls) as pool:
        list(pool.map(lambda i: vm.generate_image(**req, seed=100 + i), range(calls)))
    return calls / (time.perf_counter() - start)


def deployment_state(app: str) -> tuple[int, bool]:
    from ray import serve

    status = serve.status().applications[app].deployments["VisionWorker"]
    return status.replica_states.get("RUNNING", 0), str(status.status).endswith("HEALTHY")


def wait_replaced(app: str, replicas: int) -> float | None:
    """Seconds until Serve reports the lost replica gone and then ``replicas`` running again."""
    start = time.monotonic()
    while deployment_state(app) == (replicas, True):  # Serve has not noticed the death yet
        if time.monotonic() - start > 60:
            return None
        time.sleep(0.1)
    while deployment_state(app) != (replicas, True):
        if time.monotonic() - start > 180:
            raise TimeoutError(f"{app}: replica not replaced in 180 s")
        time.sleep(0.1)
    return time.monotonic() - start


def killed_call(vm: Any, req: dict[str, Any]) -> tuple[float, int, bool]:
    """One call whose replica is SIGKILLed at its first progress message.

    Returns the call's wall time, the retries it took, and whether another pid answered."""
    killed: list[int] = []
    retries: list[str] = []

    def on_progress(event: Any) -> None:
        message = event.message or ""
        if not killed and message.startswith("running on replica"):
            killed.append(int(message.rsplit("pid ", 1)[1].rstrip(")")))
            os.kill(killed[0], signal.SIGKILL)
        elif message.startswith("replica lost"):
            retries.append(message)

    start = time.perf_counter()
    asset = vm.generate_image(**req, seed=7, on_progress=on_progress)
    took = time.perf_counter() - start
    return took, len(retries), bool(killed) and asset.metadata["replica_pid"] != killed[0]


def main() -> None:
    parser = c.parser(__doc__)
    parser.add_argument("--calls", type=int, default=16, help="concurrent calls per round")
    parser.add_argument("--side", type=int, default=256, help="throughput/fault image side")
    parser.add_argument("--steps", type=int, default=8, help="throughput/fault steps")
    args = parser.parse_args()
    runs = 2 if args.smoke else args.runs
    rounds = 1 if args.smoke else min(args.runs, 3)
    kills = 1 if args.smoke else min(args.runs, 3)
    calls = 4 if args.smoke else args.calls
    side, steps = (64, 2) if args.smoke else (args.side, args.steps)
    small = {"prompt": PROMPT, "width": 64, "height": 64, "steps": 4}
    big = {"prompt": PROMPT, "width": side, "height": side, "steps": steps}
    import diffusers  # noqa: F401
    import torch  # noqa: F401

    print(c.machine())
    import ray
    from ray import serve

    from abstractvision import VisionManager
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    # Ray prints worker and raylet messages to sys.stdout: send them to stderr, keep the tables
    with tempfile.TemporaryDirectory(prefix="av-bench-") as tmp, redirect_stdout(sys.stderr):
        model = c.tiny_sd(Path(tmp))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            address = ray.get_runtime_context().gcs_address
            started = time.perf_counter()
            deploy_apps(address, model)
            deploy_s = time.perf_counter() - started
            vms = {
                "in-process": VisionManager(
                    backend=HuggingFaceDiffusersVisionBackend(model_id=str(model), device="cpu")
                ),
                **{app: front_end(address, app) for app in APPS},
            }
            for vm in vms.values():  # warm: connect, first pipeline call at both sizes
                vm.generate_image(**small, seed=0)
                vm.generate_image(**big, seed=0)
            handle = serve.get_app_handle("bench-1")
            hop = c.timed(lambda: handle.info.remote().result(), max(runs, 5))

            # 1. per-call overhead, 2 torch threads on both sides
            one = {k: vms[k] for k in ("in-process", "bench-1")}
            overhead = sequential(one, small, runs)
            # 2. throughput (rounds interleaved), and one call at a time at the same size
            latency = sequential(vms, big, runs)
            rates: dict[str, list[float]] = {name: [] for name in vms}
            for _ in range(rounds):
                for name, vm in vms.items():
                    rates[name].append(throughput(vm, calls, big))
            # 3. fault cost, on the 2-replica app
            normal = sequential({"bench-2": vms["bench-2"]}, big, runs)["bench-2"]
            faults: list[tuple[float, int, bool]] = []
            replaced: list[float | None] = []
            for _ in range(kills):
                time.sleep(PAUSE_S)
                faults.append(killed_call(vms["bench-2"], big))
                if not args.smoke:
                    replaced.append(wait_replaced("bench-2", 2))
        finally:
            serve.shutdown()
            ray.shutdown()

    print(f"\ncluster: local Ray {ray.__version__}, num_cpus=2, apps deployed in {deploy_s:.1f} s")
    for app, (replicas, cpus, threads) in APPS.items():
        print(f"  {app}: {replicas} replica(s), num_cpus={cpus}, OMP_NUM_THREADS={threads}")

    inproc, remote = c.median(overhead["in-process"]), c.median(overhead["bench-1"])
    c.table(
        f"1. one call, 64px, 4 steps, seed 1 (median of {runs}); ratio to in-process",
        [
            ("in-process VisionManager", inproc),
            ("Ray Serve front end, 1 replica", remote),
            ("bare handle call (info())", c.median(hop)),
        ],
        "in-process VisionManager",
    )
    print(f"  added by the Ray hop: {1000 * (remote - inproc):+.1f} ms per call")

    base = NAMES["bench-1"]
    c.table(
        f"2a. one call at a time, {side}px, {steps} steps (median of {runs})",
        [(NAMES[k], c.median(v)) for k, v in latency.items()],
        base,
    )
    rate = {k: c.median(v) for k, v in rates.items()}
    c.table(
        f"2b. throughput, {calls} concurrent calls, {side}px, {steps} steps (median of {rounds})",
        [(NAMES[k], v) for k, v in rate.items()],
        base,
        "calls/s",
    )
    for single in ("bench-1", "bench-1t"):
        gain = rate["bench-2"] / rate[single]
        print(f"  2 replicas x 1 thread / {NAMES[single][11:]} = {gain:.2f}x")
    print(
        f"  all replicas share this machine's {os.cpu_count()} cores: these ratios are bounded by\n"
        "  CPU (and torch threading), not by Ray; on GPUs the point is one replica per GPU"
    )

    rows = [("normal call", c.median(normal))]
    rows += [(f"replica killed, run {i + 1}", f[0]) for i, f in enumerate(faults)]
    c.table(
        f"3. fault, 2 replicas, {side}px, {steps} steps, replica SIGKILLed at its first "
        "progress message",
        rows,
        "normal call",
    )
    added = 1000 * (c.median([f[0] for f in faults]) - rows[0][1])
    print(f"  retries per killed call: {[f[1] for f in faults]}; answered by another replica: "
          f"{all(f[2] for f in faults)}; kill + retry adds {added:+.1f} ms")  # fmt: skip
    if replaced:
        shown = ", ".join("not seen" if r is None else f"{r:.1f} s" for r in replaced)
        print(f"  kill -> Serve back to 2 healthy replicas: {shown}")


if __name__ == "__main__":
    main()
