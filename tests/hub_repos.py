"""Tiny model repos in the Hub's layout, served by ``tests/hub_server.py`` under real repo ids.

- ``diffusers_repo``: the tiny Stable Diffusion folder plus what real repos also carry and a
  pull must skip: fp16 and ``.bin`` copies of each weight file, a single-file checkpoint at the
  root, an ONNX export, a README.
- ``klein_sdcpp_repos``: the three repos the registry names for FLUX.2-klein-4B on sd.cpp
  (diffusion model GGUF, VAE, Qwen3 GGUF), holding the tiny klein model split by role in two
  quantization names.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hub_server import HubRepo

sys.path.insert(0, str(Path(__file__).parent))

__all__ = ["SD_ID", "diffusers_repo", "klein_sdcpp_repos", "split_klein"]

SD_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
KLEIN_ID = "black-forest-labs/FLUX.2-klein-4B"
_ROLES = {
    "diffusion_model": "model.diffusion_model.",
    "vae": "first_stage_model.",
    "llm": "text_encoders.llm.",
}


def diffusers_repo(folder: Path, repo_id: str = SD_ID, **options: object) -> HubRepo:
    """The ``save_pretrained`` folder as a Hub repo, plus files a pull must not fetch."""
    files: dict[str, bytes | Path] = {
        p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()
    }
    for path in list(files):
        if path.endswith(".safetensors"):
            stem = path[: -len(".safetensors")]
            files[f"{stem}.fp16.safetensors"] = b"fp16 copy " * 64
            files[f"{stem}.bin"] = b"pickle copy " * 64
    files["v1-5-pruned-emaonly.safetensors"] = b"single-file checkpoint " * 256
    files["onnx/unet/model.onnx"] = b"onnx " * 64
    files["README.md"] = b"# tiny\n"
    return HubRepo(repo_id, files, **options)  # type: ignore[arg-type]


def split_klein(folder: Path) -> dict[str, Path]:
    """The tiny FLUX.2-klein model as three role files (GGUF, safetensors, GGUF)."""
    import gguf
    import numpy as np
    from safetensors.numpy import save_file
    from sdcpp_models import _float_tensor, load_spec

    out = {
        "diffusion_model": folder / "dit.gguf",
        "vae": folder / "vae.safetensors",
        "llm": folder / "llm.gguf",
    }
    if all(p.exists() for p in out.values()):
        return out
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**load_spec("klein_spec"), **load_spec("klein_vae_encoder_spec")}
    rng = np.random.default_rng(0)
    parts: dict[str, dict[str, object]] = {role: {} for role in _ROLES}
    for name in sorted(spec):
        for role, prefix in _ROLES.items():
            if name.startswith(prefix):
                parts[role][name[len(prefix) :]] = _float_tensor(name, spec[name], rng)
    for role in ("diffusion_model", "llm"):
        writer = gguf.GGUFWriter(str(out[role]), arch="flux")
        for name, tensor in parts[role].items():
            writer.add_tensor(name, tensor)  # type: ignore[arg-type]
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    save_file(parts["vae"], str(out["vae"]))  # type: ignore[arg-type]
    return out


def klein_sdcpp_repos(
    split: dict[str, Path], *, klein_files: dict[str, bytes | Path] | None = None
) -> list[HubRepo]:
    """leejet/FLUX.2-klein-4B-GGUF, black-forest-labs/FLUX.2-klein-4B (VAE), unsloth/Qwen3-4B-GGUF."""
    return [
        HubRepo(
            "leejet/FLUX.2-klein-4B-GGUF",
            {
                "flux-2-klein-4b-Q4_0.gguf": split["diffusion_model"],
                "flux-2-klein-4b-Q8_0.gguf": split["diffusion_model"],
                "README.md": b"# gguf\n",
            },
        ),
        HubRepo(
            KLEIN_ID,
            {
                "vae/diffusion_pytorch_model.safetensors": split["vae"],
                "vae/config.json": b"{}",
                **(klein_files or {}),
            },
        ),
        HubRepo(
            "unsloth/Qwen3-4B-GGUF",
            {
                "Qwen3-4B-Q4_0.gguf": split["llm"],
                "Qwen3-4B-Q4_K_M.gguf": split["llm"],
                "Qwen3-4B-Q8_0.gguf": split["llm"],
            },
        ),
    ]
