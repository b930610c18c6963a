"""Batches and upscaling on the tiny random-weight models (CPU figures; no assertion).

    .venv/bin/python benchmarks/batches_upscale.py [--runs 3] [--smoke]

1. count=N text->image: N single calls vs an exact batch (default: a call per image, byte-equal)
   vs a batched batch (exact_batches=False: one pipeline call per chunk).
2. image_upscale x4: LDM super-resolution on Diffusers and ESRGAN on stable-diffusion.cpp, whole
   vs tiled (the Diffusers upscaler's tile forced small), with the output's size.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import _common as c


def _png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def main() -> None:
    args = c.parser(__doc__).parse_args()
    runs = 1 if args.smoke else args.runs
    count, side, steps = (2, 64, 1) if args.smoke else (4, 128, 4)
    import diffusers  # noqa: F401
    import torch  # noqa: F401

    from abstractvision import VisionManager
    from abstractvision.backends._diffusers import upscale as diffusers_upscale
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    print(c.machine())
    sys.path.insert(0, str(c.ROOT / "tests"))
    from tiny_upscalers import build_tiny_ldm_sr, write_tiny_esrgan

    with tempfile.TemporaryDirectory(prefix="av-bench-") as tmp:
        model = str(c.tiny_sd(Path(tmp)))
        params = {"width": side, "height": side, "steps": steps}
        exact = VisionManager(HuggingFaceDiffusersVisionBackend(model_id=model, device="cpu"))
        batched = VisionManager(
            HuggingFaceDiffusersVisionBackend(model_id=model, device="cpu", exact_batches=False)
        )
        seeds = list(range(1, count + 1))
        exact.generate_image("warm", **params)
        batched.generate_image("warm", **params)

        def singles() -> None:
            for s in seeds:
                exact.generate_image("a red cube", seed=s, **params)

        def batch(vm: VisionManager) -> float:
            call = lambda: vm.generate_image_batch("a red cube", seeds=seeds, **params)  # noqa: E731
            return c.median(c.timed(call, runs))

        rows = [
            (f"{count} single calls", c.median(c.timed(singles, runs))),
            ("exact batch (a call per image)", batch(exact)),
            ("batched (one pipeline call)", batch(batched)),
        ]
        c.table(f"text->image count={count}, {side}x{side}, {steps} steps", rows, rows[0][0])

        ldm = build_tiny_ldm_sr(Path(tmp) / "ldm")
        up = VisionManager(HuggingFaceDiffusersVisionBackend(model_id=str(ldm), device="cpu"))
        small = 64 if args.smoke else 128
        image = _png(small)
        up.upscale_image(image, steps=1, seed=1)
        spec = diffusers_upscale.UPSCALERS["LDMSuperResolutionPipeline"]
        whole = c.median(c.timed(lambda: up.upscale_image(image, steps=2, seed=1), runs))
        diffusers_upscale.UPSCALERS["LDMSuperResolutionPipeline"] = spec.__class__(
            spec.scale, spec.prompt, small // 2, spec.multiple
        )
        try:
            tiles = c.median(c.timed(lambda: up.upscale_image(image, steps=2, seed=1), runs))
        finally:
            diffusers_upscale.UPSCALERS["LDMSuperResolutionPipeline"] = spec
        rows = [("LDM x4, one tile", whole), (f"LDM x4, tiles of {small // 2} px", tiles)]
        try:
            from abstractvision.backends import StableDiffusionCppVisionBackend

            esrgan = write_tiny_esrgan(Path(tmp) / "esrgan.safetensors")
            sd = StableDiffusionCppVisionBackend(upscale_model=str(esrgan))
            vm = VisionManager(sd)
            vm.upscale_image(image)
            esrgan_s = c.median(c.timed(lambda: vm.upscale_image(image), runs))
            rows.append(("sd.cpp ESRGAN x4 (1 RRDB)", esrgan_s))
            sd.unload()
        except ImportError:
            print("stable-diffusion.cpp not installed: ESRGAN row skipped", file=sys.stderr)
        c.table(f"image_upscale {small}x{small} -> {small * 4}x{small * 4}", rows, rows[0][0])


if __name__ == "__main__":
    main()
