"""The Diffusers backend's speed options on a tiny random-weight FLUX.1 pipeline (CPU).

Each option loads, generates, and stays within its stated tolerance of the plain backend's image
(same seed): attention backend ``native``: identical; ``compile``: within 1e-3 mean abs;
``quantize=int8`` and a Q8_0 ``gguf_file``: the image changes but stays a valid image close to
the plain one; step caches: the denoiser's last block runs fewer times, counted with a real
forward hook. What needs CUDA (fp8, bitsandbytes, flash/sage attention, group offload) is
checked to refuse clearly here. Costs: ~1 s per option; the compile test ~15-30 s (inductor
builds the FLUX blocks on CPU).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from tiny_dit import build_tiny_flux, write_transformer_gguf

from abstractvision.backends import backend_options, create_backend
from abstractvision.backends._diffusers import optimize
from abstractvision.errors import (
    CapabilityNotSupportedError,
    InvalidRequestError,
    OptionalDependencyMissingError,
)
from abstractvision.types import ImageGenerationRequest

STEPS = 6
REQUEST = ImageGenerationRequest(prompt="a red cube", width=64, height=64, steps=STEPS, seed=3)


@pytest.fixture(scope="session")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_flux(tmp_path_factory.mktemp("tiny_flux") / "flux")


@pytest.fixture(scope="session")
def flux_gguf(flux_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf")
    return write_transformer_gguf(flux_dir, tmp_path_factory.mktemp("gguf") / "flux-Q8_0.gguf")


def _pixels(asset):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(asset.data)).convert("RGB"), dtype=np.float64) / 255


def _run(flux_dir: Path, request=REQUEST, **options):
    """(backend, asset, calls of the last DiT block's attention) for one generation."""
    backend = create_backend("diffusers", model_id=str(flux_dir), device="cpu", **options)
    pipe = backend.get_pipeline("text_to_image")
    calls: list[int] = []
    last = pipe.transformer.single_transformer_blocks[-1].attn.to_q
    handle = last.register_forward_hook(lambda *_: calls.append(1))
    try:
        asset = backend.generate_image(request)
    finally:
        handle.remove()
    return backend, asset, len(calls)


@pytest.fixture(scope="session")
def plain(flux_dir: Path):
    _, asset, calls = _run(flux_dir)
    assert calls == STEPS
    assert "optimizations" not in asset.metadata
    return _pixels(asset)


def _valid_and_close(image, plain, limit: float) -> float:
    import numpy as np

    assert image.shape == plain.shape == (64, 64, 3)
    assert np.isfinite(image).all() and image.std() > 0.01  # a picture, not a constant
    diff = float(np.abs(image - plain).mean())
    assert diff < limit, diff
    return diff


# --- options reach the config from the command line, and bad values are refused ------------------


def test_backend_option_flags_build_the_config(flux_dir: Path) -> None:
    options = backend_options(
        "diffusers",
        ["compile=regional", "step_cache=first_block", "step_cache_threshold=0.2"],
        model=str(flux_dir),
    )
    backend = create_backend("diffusers", **options)
    assert backend.config.compile == "regional"
    assert backend.config.step_cache_threshold == 0.2
    assert optimize.settings(backend.config) == {
        "compile": "regional",
        "step_cache": "first_block",
        "step_cache_threshold": 0.2,
    }


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"compile": "fast"}, "compile"),
        ({"quantize": "int3"}, "quantize"),
        ({"quantize_components": ["vae"]}, "quantize_components"),
        ({"step_cache": "teacache"}, "step_cache"),
        ({"step_cache_threshold": 0.1}, "step_cache_threshold"),
        ({"step_cache": "first_block", "step_cache_threshold": -1}, "step_cache_threshold"),
        ({"step_cache": "pab", "step_cache_threshold": 1.5}, "step_cache_threshold"),
        ({"gguf_file": "model.safetensors"}, "gguf_file"),
        ({"gguf_file": "m.gguf", "quantize": "int8"}, "quantize"),
        ({"group_offload": True, "enable_model_cpu_offload": True}, "group_offload"),
        ({"compile": True, "compile_warmup": ["1024"]}, "compile_warmup"),
    ],
)
def test_bad_option_names_field_and_choices(options: dict, field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        create_backend("diffusers", model_id="unused", **options)
    assert caught.value.field == field


# --- each option loads, generates, and stays within its tolerance -------------------------------


def test_attention_backend_native_is_identical(flux_dir: Path, plain) -> None:
    import numpy as np

    _, asset, _ = _run(flux_dir, attention_backend="native")
    assert np.array_equal(_pixels(asset), plain)
    assert asset.metadata["optimizations"]["attention_backend"] == "native"


def test_int8_weight_only_changes_the_image_a_little(flux_dir: Path, plain) -> None:
    pytest.importorskip("torchao")
    backend, asset, _ = _run(flux_dir, quantize="int8")
    diff = _valid_and_close(_pixels(asset), plain, 0.05)
    assert diff > 0  # the weights really are int8
    pipe = backend.get_pipeline("text_to_image")
    weight = pipe.transformer.transformer_blocks[0].attn.to_q.weight
    assert "Int8" in type(weight).__name__
    assert "Int8" in type(pipe.text_encoder_2.shared.weight).__name__ or any(
        "Int8" in type(p).__name__ for p in pipe.text_encoder_2.parameters()
    )
    meta = asset.metadata["optimizations"]
    assert meta["quantize"] == "int8"
    plain_bytes = optimize.estimate_weights(
        str(flux_dir), flux_dir / "model_index.json", backend.config, 4
    )
    assert plain_bytes is not None
    assert meta["weights_estimate_bytes"] < plain_bytes["weights_bytes_unquantized"] / 2


def test_gguf_denoiser_loads_into_the_diffusers_class(
    flux_dir: Path, flux_gguf: Path, plain
) -> None:
    backend, asset, _ = _run(flux_dir, gguf_file=str(flux_gguf))
    diff = _valid_and_close(_pixels(asset), plain, 0.05)
    assert diff > 0
    transformer = backend.get_pipeline("text_to_image").transformer
    assert type(transformer).__name__ == "FluxTransformer2DModel"
    kinds = {type(p).__name__ for p in transformer.parameters()}
    assert "GGUFParameter" in kinds
    assert asset.metadata["optimizations"]["gguf_file"] == flux_gguf.name


@pytest.mark.parametrize(
    ("cache", "threshold"),
    [("first_block", 0.5), ("taylorseer", 2), ("magcache", 0.5), ("pab", 2)],
)
def test_step_cache_skips_denoiser_work(flux_dir: Path, plain, cache: str, threshold) -> None:
    _, asset, calls = _run(flux_dir, step_cache=cache, step_cache_threshold=threshold)
    assert calls < STEPS, f"{cache}: the last block ran {calls} of {STEPS} steps"
    _valid_and_close(_pixels(asset), plain, 0.05)
    assert asset.metadata["optimizations"]["step_cache"] == cache


def test_magcache_follows_the_step_count(flux_dir: Path) -> None:
    backend = create_backend(
        "diffusers", model_id=str(flux_dir), device="cpu", step_cache="magcache"
    )
    for steps in (6, 4, 6):
        request = ImageGenerationRequest(prompt="x", width=64, height=64, steps=steps, seed=1)
        assert backend.generate_image(request).metadata["steps"] == steps


@pytest.mark.slow
def test_regional_compile_at_preload_matches_plain(flux_dir: Path, plain) -> None:
    """~15-30 s on 2 CPU cores: inductor compiles the two FLUX block classes."""
    import torch._dynamo

    backend = create_backend(
        "diffusers",
        model_id=str(flux_dir),
        device="cpu",
        compile=True,
        compile_warmup=["64x64"],
    )
    backend.preload()
    key = backend._cache.keys()[0]
    assert key.endswith("#compile=regional")  # the cache key carries the compile setting
    assert backend.get_capabilities().loaded_models == (str(flux_dir.resolve()),)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    asset = backend.generate_image(REQUEST)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # compiled at preload
    _valid_and_close(_pixels(asset), plain, 1e-3)
    meta = asset.metadata["optimizations"]
    assert meta["compile"] == "regional" and meta["compile_warmup_s"] > 0
    backend.unload(str(flux_dir))
    assert backend._cache.keys() == []


# --- what needs CUDA or a missing package says so --------------------------------------------------


@pytest.mark.parametrize(
    ("options", "needs"),
    [
        ({"group_offload": True}, "group_offload streams weights to a CUDA GPU"),
        ({"quantize": "nf4"}, "quantize=nf4"),
        ({"quantize": "fp8"}, "quantize=fp8"),
    ],
)
def test_cuda_only_options_refuse_on_cpu(flux_dir: Path, options: dict, needs: str) -> None:
    backend = create_backend("diffusers", model_id=str(flux_dir), device="cpu", **options)
    with pytest.raises(CapabilityNotSupportedError, match=needs) as caught:
        backend.generate_image(REQUEST)
    assert "cpu" in str(caught.value)


def test_missing_attention_package_is_named(flux_dir: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    backend = create_backend(
        "diffusers", model_id=str(flux_dir), device="cpu", attention_backend="flash"
    )
    with pytest.raises(OptionalDependencyMissingError, match="flash-attn"):
        backend.generate_image(REQUEST)
    hub = create_backend(
        "diffusers", model_id=str(flux_dir), device="cpu", attention_backend="flash_hub"
    )
    with pytest.raises(InvalidRequestError, match="allow_download"):
        hub.generate_image(REQUEST)


def test_weight_estimate_counts_every_parameter(flux_dir: Path) -> None:
    backend = create_backend("diffusers", model_id=str(flux_dir), device="cpu")
    pipe = backend.get_pipeline("text_to_image")
    params = sum(
        p.numel()
        for name in ("transformer", "text_encoder", "text_encoder_2", "vae")
        for p in getattr(pipe, name).parameters()
    )
    estimate = optimize.estimate_weights(
        str(flux_dir), flux_dir / "model_index.json", backend.config, 4
    )
    assert estimate is not None
    # safetensors headers list tied weights once per name; the loaded modules share them
    assert params <= estimate["parameters"] <= params * 1.2
    assert estimate["weights_bytes"] == estimate["weights_bytes_unquantized"]


def test_options_combine(flux_dir: Path, plain) -> None:
    pytest.importorskip("torchao")
    options = {"quantize": "int8", "step_cache": "first_block", "attention_backend": "native"}
    _, asset, _ = _run(flux_dir, **options)
    _valid_and_close(_pixels(asset), plain, 0.05)
    meta = asset.metadata["optimizations"]
    assert {k: meta[k] for k in options} == options


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"step_cache": "first_block"}, "step_cache=first_block"),
        ({"step_cache": "magcache"}, "step_cache=magcache"),
        ({"attention_backend": "native"}, "attention_backend"),
    ],
)
def test_unet_model_refuses_dit_only_options(tiny_sd_dir: Path, options: dict, says: str) -> None:
    backend = create_backend("diffusers", model_id=str(tiny_sd_dir), device="cpu", **options)
    request = ImageGenerationRequest(prompt="x", width=64, height=64, steps=2, seed=1)
    with pytest.raises(CapabilityNotSupportedError, match=says):
        backend.generate_image(request)


def test_weight_estimate_from_registry_counts_before_download() -> None:
    """A hub model not on disk: the registry's published counts give the figure."""
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig
    from abstractvision.model_capabilities import VisionModelCapabilitiesRegistry

    registry = VisionModelCapabilitiesRegistry()
    counted = [m for m in registry.list_models() if getattr(registry.get(m), "parameters_b", None)]
    assert counted, "the registry publishes parameter counts"
    model = counted[0]
    published = sum(registry.get(model).parameters_b.values()) * 1e9
    config = HuggingFaceDiffusersBackendConfig(model_id=model, quantize="int8")
    estimate = optimize.estimate_weights(model, None, config, 2)
    assert estimate is not None
    assert abs(estimate["parameters"] - published) <= len(registry.get(model).parameters_b)
    assert estimate["weights_bytes_unquantized"] == estimate["parameters"] * 2
    assert estimate["weights_bytes"] < estimate["weights_bytes_unquantized"]


def test_original_flux_names_round_trip_through_diffusers_converter() -> None:
    """The GGUF layout of stable-diffusion.cpp / ComfyUI: Diffusers' single-file converter maps
    it back onto its own FluxTransformer2DModel (names and shapes, at the real 3072 width, on the
    meta device: no memory)."""
    import torch
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )
    from tiny_dit import flux_original_names

    with torch.device("meta"):
        model = FluxTransformer2DModel(
            in_channels=64,
            num_layers=1,
            num_single_layers=1,
            guidance_embeds=True,
        )
    ours = model.state_dict()
    original = flux_original_names(dict(ours))
    assert "double_blocks.0.img_attn.qkv.weight" in original
    assert "single_blocks.0.linear1.weight" in original
    back = convert_flux_transformer_checkpoint_to_diffusers(
        {f"model.diffusion_model.{k}": v for k, v in original.items()}
    )
    assert {k: tuple(v.shape) for k, v in back.items()} == {
        k: tuple(v.shape) for k, v in ours.items()
    }
