"""``abstractvision doctor``: what is installed, which models are cached, what each engine can run.

Reads the local Hugging Face cache only (no network) and the capability registry.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import platform
from pathlib import Path
from typing import Any

from . import __version__
from .model_capabilities import VisionModelCapabilitiesRegistry

__all__ = ["ROWS", "report"]

# import name -> distribution name (for the version)
PACKAGES = {
    "torch": "torch",
    "diffusers": "diffusers",
    "transformers": "transformers",
    "stable_diffusion_cpp": "stable-diffusion-cpp-python",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "huggingface_hub": "huggingface-hub",
    "mcp": "mcp",
}
# backend -> the packages it needs
NEEDS = {
    "diffusers": ("torch", "diffusers", "transformers"),
    "sdcpp": ("stable_diffusion_cpp",),
    "openai": (),
}


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(PACKAGES[module])
    except importlib.metadata.PackageNotFoundError:
        return "installed"


def _devices() -> dict[str, Any]:
    if importlib.util.find_spec("torch") is None:
        return {}
    import torch

    cuda = torch.cuda.is_available()
    names = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    )
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return {"cuda": cuda, "cuda_devices": names, "mps": mps}


def _ffmpeg() -> str | None:
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return None
    try:
        return str(importlib.import_module("imageio_ffmpeg").get_ffmpeg_exe())
    except Exception:
        return None


def cached_models(cache_dir: str | None = None) -> tuple[str | None, list[dict[str, Any]]]:
    """(cache folder, model repos in it) from the local Hugging Face cache; no network."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return None, []
    from huggingface_hub import constants, scan_cache_dir

    folder = cache_dir or constants.HF_HUB_CACHE
    if not Path(folder).is_dir():
        return folder, []
    rows = []
    for repo in sorted(scan_cache_dir(folder).repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        files = {f.file_name for rev in repo.revisions for f in rev.files}
        rows.append(
            {
                "id": repo.repo_id,
                "size_mb": round(repo.size_on_disk / 2**20, 1),
                "diffusers": "model_index.json" in files,
                "gguf": any(n.endswith(".gguf") for n in files),
            }
        )
    return folder, rows


def report(
    registry: VisionModelCapabilitiesRegistry, cache_dir: str | None = None
) -> dict[str, Any]:
    """Everything ``doctor`` prints, as one JSON-ready document."""
    packages = {name: _version(name) for name in PACKAGES}
    folder, models = cached_models(cache_dir)
    backends = {}
    for name, needs in NEEDS.items():
        missing = [p for p in needs if packages[p] is None]
        runnable = {}
        for model in models:
            known = registry.get(model["id"]) if model["id"] in registry else None
            engines = known.engines if known is not None else None
            fits = (name == "diffusers" and model["diffusers"]) or (
                name == "sdcpp" and (model["gguf"] or bool(engines and engines.sdcpp))
            )
            if fits:
                tasks = [t.value for t in known.tasks] if known is not None else ["?"]
                runnable[model["id"]] = tasks
        backends[name] = {"ready": not missing, "missing": missing, "cached_models": runnable}
    backends["openai"]["note"] = "any OpenAI-compatible server: --backend-option base_url=URL"
    return {
        "abstractvision": __version__,
        "python": platform.python_version(),
        "packages": packages,
        "devices": _devices(),
        "ffmpeg": _ffmpeg(),
        "hf_cache": folder,
        "models": models,
        "backends": backends,
    }


def _print(doc: dict[str, Any]) -> None:
    print(f"abstractvision {doc['abstractvision']} on Python {doc['python']}")
    for name, version in doc["packages"].items():
        print(f"  {name:<22} {version or 'not installed'}")
    devices = doc["devices"]
    if devices:
        gpus = ", ".join(devices["cuda_devices"]) or "no"
        print(f"  CUDA: {gpus}; MPS: {'yes' if devices['mps'] else 'no'}")
    print(f"  ffmpeg: {doc['ffmpeg'] or 'not found (pip install imageio-ffmpeg)'}")
    print(f"Hugging Face cache: {doc['hf_cache'] or 'huggingface_hub not installed'}")
    for model in doc["models"]:
        print(f"  {model['id']:<50} {model['size_mb']:>9} MB")
    if not doc["models"]:
        print("  no models cached; get one with `abstractvision pull <id>` (or --allow-download)")
    for name, info in doc["backends"].items():
        state = "ready" if info["ready"] else f"missing {', '.join(info['missing'])}"
        print(f"backend {name}: {state}")
        for model, tasks in info["cached_models"].items():
            print(f"  {model}: {', '.join(tasks)}")
        if info.get("note"):
            print(f"  {info['note']}")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", help="Hugging Face hub cache to scan")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _doctor(args: argparse.Namespace) -> int:
    doc = report(VisionModelCapabilitiesRegistry(args.registry), args.cache_dir)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print(doc)
    return 0


ROWS = {"doctor": ("report installed engines, devices and cached models", _configure, _doctor)}
