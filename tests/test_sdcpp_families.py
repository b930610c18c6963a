"""stable-diffusion.cpp model families end to end on random weights (specs: tests/sdcpp_models.py).

Each family is written in the tensor layout sd.cpp loads, as f16 safetensors and as a Q8_0 GGUF,
and run once through ``VisionManager`` on the real bindings: text->image (twice: same seed, same
bytes) and image->image. FLUX.2 [klein] (f16, every task) and Wan 2.1 (Q4_0) run in
tests/test_sdcpp_backend.py; klein's Q8_0 form runs here.

What sd.cpp (the copy stable-diffusion-cpp-python 0.4.7 ships) infers from a file, and so what
can be small here:

- FLUX.1: depth, single-block depth, hidden size and head size are read from tensor shapes
  (flux.hpp ``FluxRunner``), so the DiT is tiny (one block each, 128 wide). Its text encoders are
  not: CLIP-L is fixed at 12 x 768 (clip.hpp ``CLIPTextModel``: ``hidden_size = 768``,
  ``n_layer = 12``) and T5-XXL at 24 x 4096 (t5.hpp ``num_layers = 24``); the file carries CLIP-L
  only (123 M) and sd.cpp feeds zeros for T5 (conditioner.hpp ``FluxCLIPEmbedder``: "t5xxl text
  encoder not found"). The VAE decoder width is inferred (auto_encoder_kl.hpp
  ``detect_decoder_ch``); the encoder is fixed at ``ch = 128``.
- SD 1.x: the UNet is fixed at ``model_channels = 320``, ``context_dim = 768`` (unet.hpp
  ``UnetModelBlock``); only the layout variant is read from the tensor names (model.cpp
  ``get_sd_version``). The smallest variant, VERSION_SD1_TINY_UNET (BK-SDM-Tiny: no middle block,
  one res block per level), is 323 M parameters, and is what runs here.
- SD 1.x ControlNet: fixed at 320 wide (control.hpp ``ControlNetBlock``, 361 M) and it feeds one
  residual per block of the full UNet (unet.hpp ``controls[control_offset]``), so it runs with the
  full 860 M UNet: the heaviest test here (about 2.3 GB of files, Q8_0 linear weights).

Not run, because sd.cpp fixes their size in code (a "tiny" file would be the real model):

- SDXL: UNet fixed at 320 wide with transformer depth {1, 2, 10} (unet.hpp ``sd_version_is_sdxl``
  branch) and CLIP-G fixed at 32 x 1280 (clip.hpp ``OPEN_CLIP_VIT_BIGG_14``: 695 M); the smallest
  variant (VERSION_SDXL_VEGA) still needs about 1.5 B parameters with both text encoders.
- SD3 / SD3.5: the MMDiT depth starts at 24 and only grows with the file (mmdit.hpp
  ``int64_t depth = 24`` and ``if (block_depth + 1 > depth)``), and the width is 64 x depth: 2 B
  parameters at least.
- Qwen-Image (+ Edit): blocks are counted from the file but every block is 24 heads x 128
  (qwen_image.hpp ``QwenImageParams``: ``num_attention_heads = 24``, ``attention_head_dim = 128``,
  ``joint_attention_dim = 3584``): about 350 M parameters per block, and the text encoder must
  be 3584 wide to feed ``txt_norm``: a Qwen2.5-VL whose embedding table alone is 545 M.
- Z-Image: built from fixed ``ZImageParams`` whatever the file holds (z_image.hpp
  ``ZImageRunner`` passes the defaults: ``hidden_size = 3840``, ``num_layers = 30``); a 128-wide
  file made it allocate 22 GB.
- Wan 2.1/2.2: the block count must be 30 or 40 (wan.hpp ``GGML_ABORT("invalid num_layers(%d) of
  wan")``) and fixes the widths (1536 / 3072 / 5120), so the smallest is the real 1.3B, which runs
  as Q4_0 in tests/test_sdcpp_backend.py; the Wan 2.2 A14B two-expert switch runs here on two
  1.3B-sized experts; TI2V-5B (30 x 3072) and the real 40 x 5120 experts are real size only.

sd.cpp keeps convolution weights in f16 (ggml_extend.hpp ``Conv2d::init_params``), so the Q8_0
files quantize the linear weights only.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import stable_diffusion_cpp  # noqa: F401  (hard import: the extra must be installed)
from PIL import Image
from sdcpp_models import (
    Spec,
    flux1_spec,
    load_spec,
    sd1_controlnet_spec,
    sd1_spec,
    write_gguf_q4,
    write_gguf_q8,
    write_safetensors,
    write_safetensors_fast,
)

from abstractvision import VisionManager, media
from abstractvision.backends.stable_diffusion_cpp import StableDiffusionCppVisionBackend
from abstractvision.control import ProgressEvent

THREADS = os.cpu_count() or 1

FAMILIES: dict[str, Callable[[], Spec]] = {"sd1": sd1_spec, "flux1": flux1_spec}
WRITERS = {"f16": (write_safetensors_fast, "safetensors"), "q8_0": (write_gguf_q8, "gguf")}
RUNS = [(family, dtype) for family in FAMILIES for dtype in WRITERS]


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(spec: Spec, dtype: str, path: Path) -> Path:
    writer, suffix = WRITERS[dtype]
    return writer(spec, path.with_suffix(f".{suffix}"))


@pytest.fixture
def family_file(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """The family's model file in one weight type; each file serves one test, then goes."""
    family, dtype = request.param
    path = _write(FAMILIES[family](), dtype, tmp_path / family)
    yield path
    path.unlink()


@pytest.mark.parametrize(
    "family_file",
    RUNS,
    ids=[f"{family}-{dtype}" for family, dtype in RUNS],
    indirect=True,
)
def test_family_text_to_image_and_image_to_image(family_file: Path) -> None:
    backend = StableDiffusionCppVisionBackend(model=str(family_file), n_threads=THREADS)
    assert backend.get_capabilities().supported_tasks == ("text_to_image", "image_to_image")
    manager = VisionManager(backend=backend)
    args = {"width": 64, "height": 64, "steps": 2, "seed": 3, "guidance_scale": 1.0}
    try:
        first = manager.generate_image("a red fox", **args)
        again = manager.generate_image("a red fox", **args)
        # steps=3: sd.cpp keeps int(steps * strength) + 1 sigmas, and at steps=2 a flow model
        # (FLUX) would start at sigma 1, where the init image has no weight at all.
        edited = manager.edit_image(
            "a red fox", _png((200, 40, 40)), strength=0.5, **{**args, "steps": 3}
        )
    finally:
        backend.unload()
    assert Image.open(io.BytesIO(first.data)).size == (64, 64)
    assert first.metadata["seed"] == 3 and first.metadata["load_s"] > 0
    assert again.data == first.data  # same seed, same bytes
    assert media.decode_image(edited.data).size == (64, 64) and edited.data != first.data


def _tiny_flux1(tmp_path: Path, name: str, **dit: bool) -> Path:
    return write_safetensors_fast(flux1_spec(**dit), tmp_path / f"{name}.safetensors")


def test_flux1_kontext_edits_with_the_image_as_reference(tmp_path: Path) -> None:
    """FLUX.1 Kontext has the [dev] layout (``guidance_in``), so nothing in its file says it edits
    by reference; the registry does (``engines.sdcpp.edit_mode``), and a backend serving that id
    sends the image as sd.cpp's ``ref_images`` (Kontext's path), not as an init image. The
    ``guidance`` extra reaches the distilled guidance embedder."""
    path = _tiny_flux1(tmp_path, "kontext", guidance=True)
    backend = StableDiffusionCppVisionBackend(
        model=str(path), n_threads=THREADS, model_name="black-forest-labs/FLUX.1-Kontext-dev"
    )
    manager = VisionManager(backend=backend)
    args = {"steps": 2, "seed": 4, "guidance_scale": 1.0}

    def edit(color: tuple[int, int, int], **extra: object) -> bytes:
        extra = {"guidance": 2.5, **extra}
        return manager.edit_image("make it blue", _png(color), extra=extra, **args).data

    try:
        red, green = edit((200, 40, 40)), edit((40, 200, 40))
        as_reference = edit((200, 40, 40), edit_mode="reference")
        as_init = edit((200, 40, 40), edit_mode="init")
    finally:
        backend.unload()
    assert media.decode_image(red).size == (64, 64)
    assert red != green  # the reference image conditions the result
    assert red == as_reference and red != as_init


def test_flux1_fill_inpaints_under_the_mask(tmp_path: Path) -> None:
    """FLUX.1 Fill (384 input channels): image + mask go to the model as conditioning."""
    path = _tiny_flux1(tmp_path, "fill", fill=True)
    backend = StableDiffusionCppVisionBackend(model=str(path), n_threads=THREADS)
    manager = VisionManager(backend=backend)
    args = {"strength": 1.0, "steps": 2, "seed": 1, "guidance_scale": 1.0}
    results = []
    try:
        for fill in (0, 255):
            mask = io.BytesIO()
            Image.new("L", (64, 64), fill).save(mask, format="PNG")
            image = _png((30, 160, 60))
            results.append(manager.edit_image("a fox", image, mask=mask.getvalue(), **args))
    finally:
        backend.unload()
    assert all(media.decode_image(r.data).size == (64, 64) for r in results)
    assert results[0].data != results[1].data


def test_klein_q8_0_text_to_image(tmp_path: Path) -> None:
    """FLUX.2 [klein] as Q8_0 (its f16 file runs every task in tests/test_sdcpp_backend.py)."""
    spec = {**load_spec("klein_spec"), **load_spec("klein_vae_encoder_spec")}
    path = write_gguf_q8(spec, tmp_path / "klein.gguf")
    backend = StableDiffusionCppVisionBackend(model=str(path), n_threads=THREADS)
    try:
        asset = VisionManager(backend=backend).generate_image(
            "a red fox", width=64, height=64, steps=1, seed=2, guidance_scale=1.0
        )
    finally:
        backend.unload()
    assert media.decode_image(asset.data).size == (64, 64) and asset.metadata["load_s"] > 0


@pytest.fixture
def controlnet_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The full SD 1.x UNet and an SD 1.x ControlNet, Q8_0 (see the module docstring)."""
    model = write_gguf_q8(sd1_spec(tiny=False), tmp_path / "sd1.gguf")
    control = write_gguf_q8(sd1_controlnet_spec(), tmp_path / "control.gguf")
    yield model, control
    model.unlink()
    control.unlink()


def test_sd1_control_net_steers_text_to_image(controlnet_files: tuple[Path, Path]) -> None:
    """``control_net=FILE``: control_image reaches the engine's ControlNet, and the image follows
    it (same seed, a different control image, different bytes)."""
    model, control = controlnet_files
    backend = StableDiffusionCppVisionBackend(
        model=str(model), control_net=str(control), n_threads=THREADS
    )
    assert backend.get_capabilities().supports_control_image
    manager = VisionManager(backend=backend)
    args = {"width": 64, "height": 64, "steps": 1, "seed": 5, "guidance_scale": 1.0}
    try:
        white = manager.generate_image("a house", control_image=_png((255, 255, 255)), **args)
        black = manager.generate_image("a house", control_image=_png((0, 0, 0)), **args)
    finally:
        backend.unload()
    assert media.decode_image(white.data).size == (64, 64)
    assert white.data != black.data


def test_wan22_two_experts_switch_mid_run(tmp_path: Path) -> None:
    """Wan 2.2 A14B's layout: a high-noise and a low-noise expert (``high_noise_diffusion_model``
    + ``diffusion_model``); sd.cpp runs the first steps on the high-noise one and switches. The
    experts here are 1.3B-sized (Q4_0): sd.cpp accepts only 30 or 40 blocks, at fixed widths."""
    spec = load_spec("wan_dit_spec")
    low = write_gguf_q4(spec, tmp_path / "low.gguf")
    bare = {name.removeprefix("model.diffusion_model."): shape for name, shape in spec.items()}
    high = write_gguf_q4(bare, tmp_path / "high.gguf", seed=1)  # sd.cpp prefixes bare names
    tae = write_safetensors(load_spec("wan_tae_spec"), tmp_path / "taew2_1.safetensors")
    backend = StableDiffusionCppVisionBackend(
        diffusion_model=str(low), high_noise_diffusion_model=str(high), taesd=str(tae),
        n_threads=THREADS, fps=8,
    )  # fmt: skip
    assert backend.get_capabilities().supported_tasks == ("text_to_video", "image_to_video")
    events: list[ProgressEvent] = []
    try:
        asset = VisionManager(backend=backend).generate_video(
            "a fox running", num_frames=1, width=64, height=64, steps=2, seed=1,
            on_progress=events.append,
        )  # fmt: skip
    finally:
        backend.unload()
    info = media.video_info(asset.data)
    assert (info.width, info.height, info.n_frames) == (64, 64, 1)
    assert set(asset.metadata["files"]) == {
        "diffusion_model",
        "high_noise_diffusion_model",
        "taesd",
    }
    # one step on each expert, counted as one run
    assert [(e.step, e.total) for e in events] == [(1, 2), (2, 2)]
