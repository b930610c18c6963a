"""The first five minutes: which engine and model to run when none is named, and what to say.

``recommend()`` picks the registry's recommended model for this machine (device kind and free
memory, engines installed); ``startup_report()`` is the one line a server or CLI prints on stderr
at start: backend, model, whether it is on disk, and what to run when it is not (or which extra
is missing). Nothing here imports torch: a GPU is found with ``nvidia-smi`` (or with torch only
when something already imported it).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass

from .model_capabilities import VisionModelCapabilitiesRegistry
from .model_downloads import ENGINES, format_bytes, local_files, looks_like_hub_id, pull_command

__all__ = [
    "EXTRA_MODULES",
    "Machine",
    "Pick",
    "machine",
    "missing_extra",
    "recommend",
    "startup_report",
]

# engine -> (extra, modules it needs)
EXTRA_MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "diffusers": ("diffusers", ("torch", "diffusers", "transformers")),
    "sdcpp": ("sdcpp", ("stable_diffusion_cpp",)),
}


@dataclass(frozen=True)
class Machine:
    """The device a local engine would use and the memory free on it (GB)."""

    device: str  # cuda | mps | cpu
    free_gb: float

    def describe(self) -> str:
        where = {"cuda": "NVIDIA GPU", "mps": "Apple GPU", "cpu": "CPU only"}[self.device]
        return f"{where}, {self.free_gb:.0f} GB free"


@dataclass(frozen=True)
class Pick:
    """A default: engine, model, quantization, and why."""

    engine: str
    model: str
    quant: str | None
    reason: str


def missing_extra(engine: str) -> str | None:
    """``pip install 'abstractvision[X]'`` when ``engine``'s packages are missing, else None."""
    extra, modules = EXTRA_MODULES.get(engine, ("", ()))
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return f"the {engine} backend needs {', '.join(absent)}: pip install 'abstractvision[{extra}]'"


def _cpu_free_gb() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9 * 0.5
    except (ValueError, OSError, AttributeError):
        return 8.0


def _cuda_free_gb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return float(torch.cuda.mem_get_info()[0]) / 1e9
            return None
        except Exception:
            return None
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return max(float(v) for v in out.split()) / 1e3  # MiB -> GB (rounded)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def machine(device: str | None = None) -> Machine:
    """This machine: a CUDA GPU, Apple silicon, or CPU (``device`` forces the kind)."""
    if device in (None, "auto", "cuda") or (device or "").startswith("cuda"):
        free = _cuda_free_gb()
        if free is not None:
            return Machine("cuda", free)
    if device in (None, "auto", "mps") and sys.platform == "darwin":
        if platform.machine() == "arm64":
            return Machine("mps", _cpu_free_gb())
    return Machine("cpu", _cpu_free_gb())


def recommend(
    engine: str | None = None,
    *,
    device: str | None = None,
    registry: VisionModelCapabilitiesRegistry | None = None,
    host: Machine | None = None,
    task: str | None = None,
) -> Pick | None:
    """The registry's recommended model for this machine; ``engine`` restricts the rows.

    Rows are tried best first; a row needs its engine installed (unless ``engine`` names it),
    the device kind and ``min_memory_gb`` free. When none fits, the smallest row that could run
    is returned with a warning in ``reason``; None when no local engine is usable at all.
    """
    registry = registry or VisionModelCapabilitiesRegistry()
    host = host or machine(device)
    rows = [r for r in registry.recommended() if engine in (None, r.engine)]
    if task is not None:  # e.g. no image model is a default for text_to_video
        rows = [r for r in rows if registry.supports(r.model, task)]
    if engine is None:
        rows = [r for r in rows if missing_extra(r.engine) is None]
    runnable = [r for r in rows if host.device in r.devices]
    for row in runnable:
        if host.free_gb >= row.min_memory_gb:
            why = f"recommended for this machine: {host.describe()}"
            return Pick(row.engine, row.model, row.quant, why)
    if runnable:
        row = min(runnable, key=lambda r: r.min_memory_gb)
        why = (
            f"the smallest recommended model; it needs about {row.min_memory_gb:g} GB and this "
            f"machine has {host.describe()}"
        )
        return Pick(row.engine, row.model, row.quant, why)
    return None


def startup_report(
    backend: str,
    model: str | None,
    *,
    allow_download: bool,
    quant: str | None = None,
    picked: Pick | None = None,
    cache_dir: str | None = None,
) -> list[str]:
    """Lines for stderr at start: backend, model, on disk or not, and what to do next."""
    lines: list[str] = []
    missing = missing_extra(backend)
    if missing:
        lines.append(
            f"missing extra: {missing}; no generation tool is offered until it is installed"
        )
    if model is None:
        if backend in ENGINES:
            lines.append(
                f"backend {backend}, no model: no recommended model fits; name one with --model "
                "(`abstractvision models` lists them)"
            )
        else:
            lines.append(f"backend {backend}, model: the service's default")
        return lines
    chosen = f" [{picked.reason}]" if picked is not None else ""
    if backend not in ENGINES or not looks_like_hub_id(model):
        where = (
            "on disk"
            if os.path.exists(model)
            else "remote"
            if backend not in ENGINES
            else "NOT found"
        )
        lines.insert(0, f"backend {backend}, model {model}{chosen}: {where}")
        return lines
    try:
        files = local_files(model, backend, quant=quant, cache_dir=cache_dir)
    except Exception as exc:  # an id the registry cannot place for this engine
        lines.insert(0, f"backend {backend}, model {model}{chosen}: {exc}")
        return lines
    if files is not None:
        size = sum(_size(p) for p in files.values())
        lines.insert(0, f"backend {backend}, model {model}{chosen}: on disk ({format_bytes(size)})")
    elif allow_download:
        lines.insert(
            0,
            f"backend {backend}, model {model}{chosen}: not on disk; downloads are allowed, the "
            "first call downloads it (with progress)",
        )
    else:
        lines.insert(
            0,
            f"backend {backend}, model {model}{chosen}: not on disk; run "
            f"`{pull_command(model, backend, quant)}` or start with --allow-download",
        )
    return lines


def _size(path: str) -> int:
    if os.path.isdir(path):
        total = 0
        for root, _, names in os.walk(path):
            total += sum(os.path.getsize(os.path.join(root, n)) for n in names)
        return total
    return os.path.getsize(path) if os.path.exists(path) else 0
