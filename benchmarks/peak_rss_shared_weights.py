"""Peak RSS of text->image alone vs text->image + image->image + inpaint on one Diffusers backend.

The three tasks share one set of weights (``from_pipe``), so running all three should cost about
what text->image alone costs. A random-weight SD-shaped model (a few hundred MB, weights
dominate) is built in a temp dir; each scenario runs in a fresh subprocess and reports its peak
RSS from ``resource.getrusage``. For contrast, "3 backends" loads the model three times.

    .venv/bin/python benchmarks/peak_rss_shared_weights.py [--scale 40] [--keep DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

SCENARIOS = ("baseline", "t2i", "t2i+i2i+inpaint", "3 backends")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(scenario: str, model_dir: str) -> dict[str, float]:
    """Run one scenario in this (fresh) process; returns peak RSS and timings."""
    import diffusers  # noqa: F401  (baseline: the libraries, no model)
    import torch  # noqa: F401
    from PIL import Image

    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend
    from abstractvision.types import ImageEditRequest, ImageGenerationRequest

    out: dict[str, float] = {}
    if scenario == "baseline":
        return {"peak_rss_mb": _peak_rss_mb()}
    size = {"width": 64, "height": 64, "steps": 2, "seed": 1}
    count = 3 if scenario == "3 backends" else 1
    backends = [
        HuggingFaceDiffusersVisionBackend(model_id=model_dir, device="cpu") for _ in range(count)
    ]
    first = backends[0].generate_image(ImageGenerationRequest(prompt="a cube", **size))
    out["t2i_load_s"] = first.metadata["load_s"]
    out["t2i_generate_s"] = first.metadata["generate_s"]
    if scenario != "t2i":
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (0, 0, 32, 64))
        buf = io.BytesIO()
        mask.save(buf, format="PNG")
        edit_backend = backends[1 % count]
        paint_backend = backends[2 % count]
        if count == 3:  # separate backends: load the model for real in each
            out["second_load_s"] = edit_backend.generate_image(
                ImageGenerationRequest(prompt="a cube", **size)
            ).metadata["load_s"]
            paint_backend.generate_image(ImageGenerationRequest(prompt="a cube", **size))
        edit = edit_backend.edit_image(ImageEditRequest(prompt="x", image=first.data, **size))
        paint = paint_backend.edit_image(
            ImageEditRequest(prompt="x", image=first.data, mask=buf.getvalue(), **size)
        )
        out["i2i_load_s"] = edit.metadata["load_s"]
        out["inpaint_load_s"] = paint.metadata["load_s"]
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def build(folder: str, scale: int) -> dict[str, float]:
    started = time.perf_counter()
    c.tiny_sd(Path(folder), scale)
    return {"build_s": time.perf_counter() - started}


def run_child(*args: str) -> dict[str, float]:
    """A fresh interpreter started from this small parent (Linux carries maxrss across exec)."""
    env = {**os.environ, **c.ENV}
    cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=600)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = c.parser(__doc__)
    parser.add_argument("--scale", type=int, default=40, help="width multiplier of the tiny model")
    parser.add_argument("--keep", type=Path, help="build the model here and keep it")
    parser.add_argument("--child", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.scale = 1 if args.smoke else args.scale
    if args.child or args.build:
        result = build(args.build, args.scale) if args.build else child(args.child, args.model)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="av-rss-") as tmp:
        folder = args.keep or Path(tmp)
        model_dir = folder / f"tiny-sd-x{args.scale}"
        if not (model_dir / "model_index.json").exists():
            built = run_child("--build", str(folder), "--scale", str(args.scale))
            print(f"built {model_dir} in {built['build_s']:.1f}s", file=sys.stderr)
        weights_mb = sum(f.stat().st_size for f in model_dir.rglob("*.safetensors")) / 2**20
        results = {
            name: run_child("--child", name, "--model", str(model_dir))
            for name in SCENARIOS[: 3 if args.smoke else 4]  # smoke: no 3-loads contrast
        }

    base = results["baseline"]["peak_rss_mb"]
    print(c.machine())
    print(f"model weights on disk: {weights_mb:.0f} MB (fp32)")
    print(f"{'scenario':<18}{'peak RSS MB':>12}{'above baseline':>16}  timings")
    for name, row in results.items():
        timings = ", ".join(f"{k}={v:.3f}" for k, v in row.items() if k.endswith("_s"))
        rss = row["peak_rss_mb"]
        print(f"{name:<18}{rss:>12.0f}{rss - base:>16.0f}  {timings}")
    t2i = results["t2i"]["peak_rss_mb"] - base
    shared = results["t2i+i2i+inpaint"]["peak_rss_mb"] - base
    total = results["t2i+i2i+inpaint"]["peak_rss_mb"] / results["t2i"]["peak_rss_mb"]
    print(f"ratio t2i+i2i+inpaint / t2i (whole process): {total:.3f} (target <= 1.10)")
    print(f"ratio t2i+i2i+inpaint / t2i (above baseline): {shared / t2i:.3f}")
    if "3 backends" in results:
        separate = results["3 backends"]["peak_rss_mb"] - base
        print(f"ratio 3 separate loads / t2i (above baseline): {separate / t2i:.3f}")


if __name__ == "__main__":
    main()
