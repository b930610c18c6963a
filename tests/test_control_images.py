"""Control images: a tiny ControlNet SD pipeline and a tiny FLUX.1 Canny-shaped pipeline
(FluxControlPipeline, control as input channels) change their output with the control image,
deterministically; errors name the field; the canny preprocessor.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from abstractvision import VisionManager
from abstractvision.errors import CapabilityNotSupportedError, InvalidRequestError


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def square() -> bytes:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), outline="white", width=3)
    return _png(image)


def circle() -> bytes:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).ellipse((8, 8, 56, 40), outline="white", width=3)
    return _png(image)


@pytest.fixture(scope="module")
def control_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    from tiny_control import (
        build_tiny_controlnet,
        build_tiny_flux_control,
        build_tiny_sd_controlnet,
    )

    root = tmp_path_factory.mktemp("control")
    out = {
        "controlnet": build_tiny_sd_controlnet(root / "sd-controlnet"),
        "controlnet_model": build_tiny_controlnet(root / "controlnet-model"),
    }
    out["flux"] = build_tiny_flux_control(root / "flux-control")
    return out


def _vm(path: Path) -> VisionManager:
    from abstractvision.backends import HuggingFaceDiffusersVisionBackend

    return VisionManager(HuggingFaceDiffusersVisionBackend(model_id=str(path), device="cpu"))


def test_controlnet_sd_follows_the_control_image(
    control_models: dict[str, Path], tiny_sd_dir: Path
) -> None:
    vm = _vm(control_models["controlnet"])
    assert vm.capabilities().supports_control_image
    one = vm.generate_image("a house", control_image=square(), seed=1, steps=2)
    again = vm.generate_image("a house", control_image=square(), seed=1, steps=2)
    other = vm.generate_image("a house", control_image=circle(), seed=1, steps=2)
    assert one.data == again.data  # deterministic
    assert one.data != other.data  # the control image matters
    assert one.metadata["pipeline"] == "StableDiffusionControlNetPipeline"
    # strength 0 switches the ControlNet off: the same UNet/VAE/CLIP without control
    off = vm.generate_image(
        "a house", control_image=square(), control_strength=0.0, seed=1, steps=2
    )
    plain = _vm(tiny_sd_dir).generate_image("a house", seed=1, steps=2)  # same base weights
    assert off.data == plain.data
    assert one.data != plain.data  # a control image changes the output versus no control
    with pytest.raises(InvalidRequestError) as bad:
        vm.generate_image("a house", seed=1, steps=2)
    assert bad.value.field == "control_image" and "StableDiffusionControlNetPipeline" in str(
        bad.value
    )
    with pytest.raises(InvalidRequestError) as bad:
        vm.generate_image("a house", control_image=square(), control_strength=2.5)
    assert bad.value.field == "control_strength" and "2.0" in str(bad.value)


def test_controlnet_option_over_a_plain_model(
    control_models: dict[str, Path], tiny_sd_dir: Path
) -> None:
    """controlnet=<ControlNetModel folder> beside a plain SD: a control image selects the
    ControlNet pipeline (same bytes as the saved ControlNet pipeline); none, the plain model."""
    from abstractvision.backends import HuggingFaceDiffusersVisionBackend

    backend = HuggingFaceDiffusersVisionBackend(
        model_id=str(tiny_sd_dir), device="cpu", controlnet=str(control_models["controlnet_model"])
    )
    vm = VisionManager(backend)
    assert vm.capabilities().supports_control_image
    plain = vm.generate_image("a house", seed=1, steps=2)
    assert plain.metadata["pipeline"] == "StableDiffusionPipeline"
    led = vm.generate_image("a house", control_image=square(), seed=1, steps=2)
    assert led.metadata["pipeline"] == "StableDiffusionControlNetPipeline"
    saved = _vm(control_models["controlnet"]).generate_image(
        "a house", control_image=square(), seed=1, steps=2
    )
    assert led.data == saved.data != plain.data


def test_qwen_image_controlnet(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Qwen-Image + a QwenImageControlNetModel (the controlnet option): control changes the
    output, deterministically; no control image runs the plain QwenImagePipeline."""
    from tiny_control import build_tiny_qwen_controlnet
    from tiny_families import build_family

    from abstractvision.backends import HuggingFaceDiffusersVisionBackend

    root = tmp_path_factory.mktemp("qwen-control")
    model, controlnet = (
        build_family("qwen-image", root / "q"),
        build_tiny_qwen_controlnet(root / "c"),
    )
    vm = VisionManager(
        HuggingFaceDiffusersVisionBackend(
            model_id=str(model), device="cpu", controlnet=str(controlnet)
        )
    )
    args: dict[str, Any] = {"seed": 1, "steps": 2, "width": 64, "height": 64}
    plain = vm.generate_image("a house", **args)
    one = vm.generate_image("a house", control_image=square(), **args)
    again = vm.generate_image("a house", control_image=square(), control_strength=1.0, **args)
    other = vm.generate_image("a house", control_image=circle(), **args)
    assert plain.metadata["pipeline"] == "QwenImagePipeline"
    assert one.metadata["pipeline"] == "QwenImageControlNetPipeline"
    assert one.data == again.data and len({plain.data, one.data, other.data}) == 3


def test_flux_control_channels_follow_the_control_image(control_models: dict[str, Path]) -> None:
    vm = _vm(control_models["flux"])
    assert vm.capabilities().supports_control_image
    args: dict[str, Any] = {"seed": 2, "steps": 2, "width": 64, "height": 64}
    one = vm.generate_image("a house", control_image=square(), **args)
    again = vm.generate_image("a house", control_image=square(), **args)
    other = vm.generate_image("a house", control_image=circle(), **args)
    blank = vm.generate_image("a house", control_image=_png(Image.new("RGB", (64, 64))), **args)
    assert one.data == again.data
    assert len({one.data, other.data, blank.data}) == 3
    assert one.metadata["pipeline"] == "FluxControlPipeline"
    with pytest.raises(InvalidRequestError) as bad:  # control is input channels: no strength
        vm.generate_image("a house", control_image=square(), control_strength=0.5, **args)
    assert bad.value.field == "control_strength"


def test_models_without_control_refuse_it(tiny_sd_dir: Path) -> None:
    vm = _vm(tiny_sd_dir)
    assert not vm.capabilities().supports_control_image
    with pytest.raises(CapabilityNotSupportedError, match="control_image"):
        vm.generate_image("a house", control_image=square())
    with pytest.raises(InvalidRequestError) as bad:
        vm.generate_image("a house", control_type="canny")
    assert bad.value.field == "control_type"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_mcp_passes_the_control_image(
    control_models: dict[str, Path], tmp_path: Path
) -> None:
    from mcp import Client

    from abstractvision.backends import HuggingFaceDiffusersVisionBackend
    from mcp_server.config import load_config
    from mcp_server.engine import Engine
    from mcp_server.server import create_server

    cfg = load_config(["--store", str(tmp_path / "store"), "--preview", "none"], environ={})
    backend = HuggingFaceDiffusersVisionBackend(
        model_id=str(control_models["controlnet"]), device="cpu"
    )
    engine = Engine(cfg, backend=backend)
    engine.capabilities()  # probed: tools/list shows control fields only where they apply
    async with Client(create_server(cfg, engine=engine)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "control_image" in tools["text_to_image"].input_schema["properties"]
        image = "data:image/png;base64," + base64.b64encode(square()).decode()
        args = {"prompt": "a house", "control_image": image, "seed": 1, "steps": 1}
        result = await client.call_tool("text_to_image", args)
        assert not result.is_error, result.content
        assert result.structured_content["width"] == 64


def test_sdcpp_control_net_option(tmp_path: Path) -> None:
    """sd.cpp: control_net=FILE turns control on and reaches the bindings (control_image,
    control_strength); a missing file is named before any worker starts. The engine run (full
    SD 1.x UNet + ControlNet) is tests/test_sdcpp_families.py::test_sd1_control_net_steers_text_to_image."""
    from abstractvision.backends import StableDiffusionCppVisionBackend
    from abstractvision.backends._sdcpp.config import StableDiffusionCppBackendConfig
    from abstractvision.backends._sdcpp.extras import control_inputs
    from abstractvision.errors import BackendError
    from abstractvision.types import ImageGenerationRequest

    model = tmp_path / "sd15.safetensors"
    model.write_bytes(b"\0" * 16)
    backend = StableDiffusionCppVisionBackend(
        model=str(model), control_net=str(tmp_path / "no.pth")
    )
    assert backend.get_capabilities().supports_control_image
    plain = StableDiffusionCppVisionBackend(model=str(model))
    assert not plain.get_capabilities().supports_control_image
    config = StableDiffusionCppBackendConfig(model=str(model), control_net="/m/cn.safetensors")
    assert config.load_kwargs()["control_net_path"] == "/m/cn.safetensors"
    request = ImageGenerationRequest(prompt="x", control_image=square(), control_strength=0.4)
    args = control_inputs(request)
    assert args["control_strength"] == 0.4 and args["control_image"].size == (64, 64)
    with pytest.raises(BackendError, match="control_net="):
        VisionManager(backend).generate_image("x", control_image=square())


def test_the_registry_says_which_model_takes_which_control() -> None:
    from abstractvision import VisionModelCapabilitiesRegistry
    from abstractvision.backends._diffusers.control import registry_types

    registry = VisionModelCapabilitiesRegistry()
    assert registry_types("black-forest-labs/FLUX.1-Canny-dev", None) == ["canny"]
    assert registry_types("black-forest-labs/FLUX.1-Depth-dev", None) == ["depth"]
    sd15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert registry_types(sd15, "lllyasviel/control_v11p_sd15_canny") == ["canny"]
    assert registry_types(sd15, None) == []  # no built-in control: a ControlNet is needed
    types = {c.type for c in registry.get("Qwen/Qwen-Image").controls}
    assert {"canny", "depth", "pose"} <= types


def test_canny_preprocessor_finds_the_edges() -> None:
    import numpy as np

    from abstractvision.preprocess import canny

    photo = Image.new("RGB", (96, 64), (40, 40, 40))
    ImageDraw.Draw(photo).rectangle((24, 16, 71, 47), fill=(220, 220, 220))
    edges = np.asarray(Image.open(io.BytesIO(canny(_png(photo)))).convert("L"))
    assert edges.shape == (64, 96)
    assert set(np.unique(edges)) == {0, 255}
    assert edges[16:48, 22:27].max() == 255 and edges[16:48, 69:74].max() == 255  # the sides
    assert edges[24:40, 36:60].max() == 0 and edges[:8].max() == 0  # flat areas stay black
    with pytest.raises(InvalidRequestError):
        canny(_png(photo), low=300, high=100)
