"""Warm reuse: the first call (load + generate) vs later calls on the same backend, vs a
baseline that loads the pipeline again for every call.

    .venv/bin/python benchmarks/warm_reuse.py [--runs 5] [--smoke]

torch and diffusers are imported before any timing, so "first call" is load + generate only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _common as c


def main() -> None:
    args = c.parser(__doc__).parse_args()
    side, steps = (64, 1) if args.smoke else (256, 4)
    runs = 1 if args.smoke else args.runs
    import diffusers  # noqa: F401
    import torch  # noqa: F401

    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend
    from abstractvision.types import ImageGenerationRequest

    request = ImageGenerationRequest(prompt="a red cube", width=side, height=side, steps=steps,
                                     seed=1)  # fmt: skip
    print(c.machine())
    with tempfile.TemporaryDirectory(prefix="av-bench-") as tmp:
        model = str(c.tiny_sd(Path(tmp)))

        def fresh() -> HuggingFaceDiffusersVisionBackend:
            return HuggingFaceDiffusersVisionBackend(model_id=model, device="cpu")

        fresh().generate_image(request)  # first-ever load: file cache, lazy imports
        first = c.timed(lambda: fresh().generate_image(request), runs)
        backend = fresh()
        backend.generate_image(request)
        warm = c.timed(lambda: backend.generate_image(request), runs)
        reload = c.timed(lambda: fresh().generate_image(request), runs)
    rows = [("later calls (warm)", c.median(warm)), ("first call (load + generate)",
            c.median(first)), ("reload every call", c.median(reload))]  # fmt: skip
    c.table(f"text_to_image {side}px, {steps} steps, tiny SD (median of {runs})", rows,
            "later calls (warm)")  # fmt: skip


if __name__ == "__main__":
    main()
