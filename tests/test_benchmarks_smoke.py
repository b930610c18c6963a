"""Every benchmark script runs at its smallest setting (``--smoke``) and prints its table.

Speed is not asserted: figures depend on the machine; this only keeps the scripts from rotting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = {
    "protocol_overhead.py": "MCP stdio / VisionManager",
    "warm_reuse.py": "reload every call",
    "startup.py": "minimal mcp server (floor)",
    "mcp_payload.py": "image inline as base64",
    "concurrency.py": "coalescing on / off",
    "peak_rss_shared_weights.py": "ratio t2i+i2i+inpaint / t2i",
    "ray_scaleout.py": "answered by another replica: True",
    "gpu_speed.py": "ratio backend (no option) / raw Diffusers",
    "batches_upscale.py": "image_upscale 64x64 -> 256x256",
    "fixed_cost.py": "fixed cost",
}
NEEDS = {"ray_scaleout.py": "ray.serve"}


def test_every_script_is_covered() -> None:
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert scripts - {"minimal_server.py"} == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_smoke(script: str) -> None:
    if script in NEEDS:
        pytest.importorskip(NEEDS[script])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"],
        capture_output=True, text=True, env=env, cwd=BENCHMARKS, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("machine: "), done.stdout
    assert SCRIPTS[script] in done.stdout, done.stdout
