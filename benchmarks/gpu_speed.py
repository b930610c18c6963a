"""Speed options: seconds per image and peak GPU memory, raw Diffusers vs our backend per option.

    .venv/bin/python benchmarks/gpu_speed.py [--size 1024] [--steps 28] [--runs 3]
                                             [--depth 19,38] [--options compile,first_block]
                                             [--smoke]

One model, one size, one run: the raw pipeline call (``FluxPipeline.__call__`` on the same
folder, same dtype, seed, steps and guidance; PIL image out, nothing encoded) against
``HuggingFaceDiffusersVisionBackend.generate_image`` with no option and with each speed option,
side by side, as ratios to the raw call.

On CUDA the model is a random-weight FLUX.1-dev-shaped pipeline: the transformer at its real
width (3072, 24 heads; 19 + 38 blocks, 11.9 B parameters, unless ``--depth``), the real
16-channel VAE, 2-layer text encoders of FLUX's widths, in bfloat16 (written once to
``--folder``). Without CUDA, or with ``--smoke``, it is the tests' tiny FLUX on CPU: the ratios
then show the options' fixed costs on a model too small to gain from them, not GPU speed-ups.

Random weights: step caches decide to skip from how much block outputs change between steps,
which random weights do not model; their skip counts (``skipped`` column) are only indicative.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

sys.path.insert(0, str(c.ROOT / "tests"))

# option set name -> backend options; "best" is the fastest set expected on a GPU
OPTION_SETS: dict[str, dict[str, Any]] = {
    "none": {},
    "compile": {"compile": "regional"},
    "int8": {"quantize": "int8"},
    "fp8": {"quantize": "fp8"},
    "nf4": {"quantize": "nf4"},
    "gguf_q8": {},  # gguf_file filled in when the file is written
    "first_block": {"step_cache": "first_block"},
    "taylorseer": {"step_cache": "taylorseer"},
    "magcache": {"step_cache": "magcache"},
    "attn_flash": {"attention_backend": "flash"},
    "attn_sage": {"attention_backend": "sage"},
    "group_offload": {"group_offload": True},
    "best": {"compile": "regional", "step_cache": "first_block", "quantize": "fp8"},
}
CPU_SETS = ("none", "compile", "int8", "gguf_q8", "first_block", "taylorseer", "magcache")


def build_model(folder: Path, cuda: bool, depth: tuple[int, int]) -> Path:
    import torch
    from diffusers import FluxPipeline
    from tiny_dit import build_tiny_flux, flux_shaped_parts

    path = folder / (f"flux-shaped-{depth[0]}-{depth[1]}" if cuda else "tiny-flux")
    if (path / "model_index.json").exists():
        return path
    if not cuda:
        return build_tiny_flux(path)
    torch.manual_seed(0)
    with torch.device("cuda"):
        parts = flux_shaped_parts(layers=depth[0], single_layers=depth[1])
    for part in parts.values():
        if isinstance(part, torch.nn.Module):
            part.to(torch.bfloat16)
    FluxPipeline(**parts).save_pretrained(path)
    del parts
    gc.collect()
    torch.cuda.empty_cache()
    return path


def sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def allocated(cuda: bool) -> int:
    if not cuda:
        return 0
    import torch

    sync(cuda)
    return torch.cuda.memory_allocated()


def free(cuda: bool) -> None:
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()


class Raw:
    """The plain Diffusers pipeline: ``from_pretrained``, ``.to(device)``, ``pipe(...)``."""

    def __init__(self, model: Path, cuda: bool, kwargs: dict[str, Any]) -> None:
        import torch
        from diffusers import FluxPipeline

        self.cuda, self.kwargs = cuda, kwargs
        self.device = "cuda" if cuda else "cpu"
        before = allocated(cuda)
        started = time.perf_counter()
        dtype = torch.bfloat16 if cuda else torch.float32
        self.pipe = FluxPipeline.from_pretrained(model, torch_dtype=dtype, local_files_only=True)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.load_s = time.perf_counter() - started
        self.resident = allocated(cuda) - before
        self.peak: float | None = None

    def __call__(self) -> None:
        import torch

        generator = torch.Generator(device=self.device).manual_seed(1)
        self.pipe(**self.kwargs, generator=generator)
        sync(self.cuda)

    def measure_peak(self) -> float | None:
        """GiB the raw pipeline holds at its peak (weights + activations), on CUDA."""
        if not self.cuda:
            return None
        import torch

        base = allocated(self.cuda) - self.resident
        torch.cuda.reset_peak_memory_stats()
        self()
        sync(self.cuda)
        self.peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        return self.peak


def backend_row(
    model: Path, cuda: bool, options: dict[str, Any], request: Any, runs: int, raw: Raw
) -> dict[str, Any]:
    """Our backend with ``options`` against the raw call, in alternating rounds.

    preload (compile happens there), one warm-up call each, then ``runs`` rounds of one raw
    call and one backend call: drift on a shared machine hits both columns alike.
    """
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    size = f"{request.width}x{request.height}"
    if options.get("compile"):
        options = {**options, "compile_warmup": [size]}
    backend = HuggingFaceDiffusersVisionBackend(
        model_id=str(model),
        device="cuda" if cuda else "cpu",
        torch_dtype="bfloat16" if cuda else "float32",
        **options,
    )
    base = allocated(cuda)  # the raw pipeline's weights: not this row's
    started = time.perf_counter()
    backend.preload()
    load_s = time.perf_counter() - started
    pipe = backend.get_pipeline("text_to_image")
    calls: list[int] = []
    last = pipe.transformer.single_transformer_blocks[-1].attn.to_q
    handle = last.register_forward_hook(lambda *_: calls.append(1))
    backend.generate_image(request)  # warm-up
    raw()
    calls.clear()
    ours: list[float] = []
    theirs: list[float] = []
    inside: list[float] = []  # the pipeline call alone (metadata generate_s): no PNG encode
    peak = 0
    for _ in range(runs):
        theirs += c.timed(raw, 1)
        if cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        asset = backend.generate_image(request)
        ours.append(time.perf_counter() - started)
        inside.append(asset.metadata["generate_s"])
        if cuda:
            peak = max(peak, torch.cuda.max_memory_allocated() - base)
    handle.remove()
    # a compiled block does not run Python forward hooks: no count then
    skipped = "-" if options.get("compile") else request.steps * runs - len(calls)
    backend.unload()
    return {
        "s": c.median(ours),
        "pipe_s": c.median(inside),
        "raw_s": c.median(theirs),
        "peak": peak / 2**30 if cuda else None,
        "load_s": load_s,
        "skipped": skipped,
    }


def available(name: str, options: dict[str, Any], cuda: bool) -> str | None:
    """Why an option set cannot run here, or None."""
    import importlib.util

    if not cuda and name not in CPU_SETS:
        return "needs CUDA"
    needs = {
        "int8": "torchao",
        "fp8": "torchao",
        "best": "torchao",
        "nf4": "bitsandbytes",
        "gguf_q8": "gguf",
        "attn_flash": "flash_attn",
        "attn_sage": "sageattention",
    }
    package = needs.get(name)
    if package and importlib.util.find_spec(package) is None:
        return f"{package} not installed"
    if name == "gguf_q8" and not options.get("gguf_file"):
        return "no --gguf file (pass --gguf PATH or --gguf auto)"
    return None


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=28)
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--depth", default="19,38", help="double,single FLUX blocks (CUDA model)")
    p.add_argument("--options", default="", help="comma list of option sets (default: all)")
    p.add_argument("--folder", default=None, help="where the random-weight model is written")
    p.add_argument(
        "--gguf",
        default=None,
        help="a .gguf of the transformer, or 'auto': write a Q8_0 one in FLUX.1's original "
        "tensor names (the sd.cpp layout; minutes for the full model)",
    )
    args = p.parse_args()
    import diffusers  # noqa: F401
    import torch

    from abstractvision.types import ImageGenerationRequest

    cuda = torch.cuda.is_available() and not args.smoke
    side, steps, runs = (64, 4, 1) if args.smoke or not cuda else (args.size, args.steps, args.runs)
    if not cuda and not args.smoke:
        side, steps, runs = 128, 8, args.runs
    depth = tuple(int(x) for x in args.depth.split(","))
    wanted = [s for s in args.options.split(",") if s] or list(OPTION_SETS)
    if (
        args.smoke and not args.options
    ):  # compile costs 10-60 s on CPU; tests/test_optimize.py has it
        wanted.remove("compile")
    print(c.machine())
    kwargs = {
        "prompt": "a red cube on a wooden table",
        "width": side,
        "height": side,
        "num_inference_steps": steps,
        "guidance_scale": args.guidance,
        "output_type": "pil",
    }
    request = ImageGenerationRequest(
        prompt=kwargs["prompt"],
        width=side,
        height=side,
        steps=steps,
        guidance_scale=args.guidance,
        seed=1,
    )
    with tempfile.TemporaryDirectory(prefix="av-speed-") as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        model = build_model(folder, cuda, depth)
        print(f"model: {model.name} (built in {time.perf_counter() - started:.1f}s)", flush=True)
        sets = {name: dict(OPTION_SETS[name]) for name in wanted}
        if "gguf_q8" in sets:
            if args.gguf and args.gguf != "auto":
                sets["gguf_q8"]["gguf_file"] = args.gguf
            elif (args.gguf == "auto" or not cuda) and available(
                "gguf_q8", {"gguf_file": "x"}, cuda
            ) is None:
                from tiny_dit import write_transformer_gguf

                # on CUDA in FLUX.1's original tensor names: the layout of sd.cpp's GGUFs
                path = folder / f"{model.name}-Q8_0.gguf"
                if not path.exists():
                    write_transformer_gguf(
                        model,
                        path,
                        original_names=cuda,
                        dtype=torch.bfloat16 if cuda else None,
                    )
                sets["gguf_q8"]["gguf_file"] = str(path)
        raw = Raw(model, cuda, kwargs)
        raw()  # warm-up
        raw_peak = raw.measure_peak()
        rows: list[tuple[str, dict[str, Any]]] = []
        for name, options in sets.items():
            why = available(name, options, cuda)
            if why is not None:
                print(f"  {name}: skipped ({why})", file=sys.stderr)
                rows.append((name, {"skip": why}))
                continue
            try:
                rows.append((name, backend_row(model, cuda, options, request, runs, raw)))
            except Exception as exc:  # one failing option must not hide the others' figures
                print(f"  {name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                rows.append((name, {"skip": f"failed: {type(exc).__name__}"}))
            free(cuda)
        raw_load = raw.load_s
    report(rows, side, steps, runs, cuda, raw_peak, raw_load)


def report(
    rows: list[tuple[str, dict[str, Any]]],
    side: int,
    steps: int,
    runs: int,
    cuda: bool,
    raw_peak: float | None,
    raw_load: float,
) -> None:
    where = "CUDA, bfloat16" if cuda else "CPU, float32, tiny FLUX"
    print(f"\ntext_to_image {side}px, {steps} steps ({where}; median of {runs} alternating rounds)")
    print(f"raw Diffusers call: peak {_gib(raw_peak)} GiB, load {raw_load:.2f} s")
    print(
        "  (ratio: our call / the raw call of the same rounds; pipeline: our pipeline call alone,"
    )
    print("   without the PNG encode and the store, which the raw call does not do)")
    head = f"  {'backend option set':<20}{'s/image':>10}{'raw s':>10}{'ratio':>8}{'pipeline':>10}"
    print(head + f"{'peak GiB':>10}{'load s':>9}{'skipped':>9}")
    for name, row in rows:
        if "skip" in row:
            dashes = "".join(f"{'-':>{w}}" for w in (10, 10, 8, 10, 10, 9, 9))
            print(f"  {name:<20}{dashes}  ({row['skip']})")
            continue
        ratio = row["s"] / row["raw_s"]
        inner = row["pipe_s"] / row["raw_s"]
        print(
            f"  {name:<20}{row['s']:>10.4f}{row['raw_s']:>10.4f}{ratio:>8.3f}{inner:>10.3f}"
            f"{_gib(row['peak']):>10}{row['load_s']:>9.2f}{row['skipped']!s:>9}"
        )
    done = {name: row for name, row in rows if "s" in row}
    if "none" in done:
        plain = done["none"]
        print(
            f"\nratio backend (no option) / raw Diffusers: {plain['s'] / plain['raw_s']:.3f} "
            f"(pipeline call alone: {plain['pipe_s'] / plain['raw_s']:.3f})"
        )
    if done:
        best = min(done, key=lambda n: done[n]["s"] / done[n]["raw_s"])
        print(f"fastest option set: {best} at {done[best]['s'] / done[best]['raw_s']:.3f} of raw")


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
