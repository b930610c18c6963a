"""image_upscale: a tiny upscaler of each engine turns 64x64 into 256x256 through VisionManager,
MCP and the CLI; bounds and tiling.

Engines: Diffusers (StableDiffusionUpscalePipeline x4 and LDMSuperResolutionPipeline x4, tiny
random weights), stable-diffusion.cpp's ESRGAN (a one-block RRDBNet file), and an
OpenAI-compatible service (``abstractvision serve``'s ``/v1/images/upscale`` over loopback HTTP).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_servers import serving
from PIL import Image

from abstractvision import LocalAssetStore, VisionManager
from abstractvision.errors import CapabilityNotSupportedError, InvalidRequestError
from abstractvision.types import LIMITS
from abstractvision.upscaling import check_output, tiled

TOKEN = "upscale-token"


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    for x in range(0, size[0], 8):  # some structure, so the upscalers have edges to work on
        for y in range(size[1]):
            image.putpixel((x, y), (20, 200, 40))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


@pytest.fixture(scope="session")
def upscalers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    from tiny_upscalers import build_tiny_ldm_sr, build_tiny_sd_upscaler, write_tiny_esrgan

    root = tmp_path_factory.mktemp("upscalers")
    return {
        "sdx4": build_tiny_sd_upscaler(root / "sd-x4"),
        "ldm": build_tiny_ldm_sr(root / "ldm-sr"),
        "esrgan": write_tiny_esrgan(root / "esrgan-x4.safetensors"),
    }


def _backend(kind: str, paths: dict[str, Path]) -> Any:
    if kind == "esrgan":
        pytest.importorskip("stable_diffusion_cpp")
        from abstractvision.backends import StableDiffusionCppVisionBackend

        return StableDiffusionCppVisionBackend(upscale_model=str(paths["esrgan"]))
    from abstractvision.backends import HuggingFaceDiffusersVisionBackend

    return HuggingFaceDiffusersVisionBackend(model_id=str(paths[kind]), device="cpu")


@pytest.fixture(scope="module")
def backends(upscalers: dict[str, Path]) -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {}

    def get(kind: str) -> Any:
        if kind not in made:
            made[kind] = _backend(kind, upscalers)
        return made[kind]

    yield get  # type: ignore[misc]
    for backend in made.values():
        backend.unload()


@pytest.mark.parametrize("kind", ["sdx4", "ldm", "esrgan"])
def test_each_engine_upscales_64_to_256(kind: str, backends: Any, tmp_path: Path) -> None:
    backend = backends(kind)
    vm = VisionManager(backend, store=LocalAssetStore(tmp_path / "store"))
    assert vm.capabilities().supports("image_upscale")
    ref = vm.upscale_image(png(), steps=2, seed=3, prompt="sharp" if kind == "sdx4" else None)
    data = vm.store.load_bytes(ref["$artifact"])  # type: ignore[union-attr]
    assert size_of(data) == (256, 256)
    meta = ref["metadata"]
    assert meta["task"] == "image_upscale" and meta["scale"] == 4 and meta["native_scale"] == 4
    assert (meta["width"], meta["height"]) == (256, 256)
    if kind == "ldm":  # same input and seed, same bytes (once: the others are slower)
        again = vm.upscale_image(png(), steps=2, seed=3)
        assert again["sha256"] == ref["sha256"]


def test_latent_x2_upscaler_reaches_x4_in_two_passes(tmp_path_factory: Any) -> None:
    """StableDiffusionLatentUpscalePipeline (x2, text-guided): native x2, and 64 -> 256 as two
    passes."""
    from tiny_upscalers import build_tiny_latent_upscaler

    from abstractvision.backends import HuggingFaceDiffusersVisionBackend

    path = build_tiny_latent_upscaler(tmp_path_factory.mktemp("latent-x2") / "m")
    vm = VisionManager(HuggingFaceDiffusersVisionBackend(model_id=str(path), device="cpu"))
    two = vm.upscale_image(png(), steps=1, seed=1, prompt="sharp")
    assert size_of(two.data) == (128, 128) and two.metadata["native_scale"] == 2
    four = vm.upscale_image(png(), scale=4, steps=1, seed=1)
    assert size_of(four.data) == (256, 256) and four.metadata["passes"] == 2


def test_other_factors_run_passes_and_resize(backends: Any) -> None:
    vm = VisionManager(backends("ldm"))
    half = vm.upscale_image(png((32, 32)), scale=2, steps=1, seed=1)  # x4 model, resized down
    assert size_of(half.data) == (64, 64) and half.metadata["passes"] == 1
    eight = vm.upscale_image(png((16, 16)), scale=8, steps=1, seed=1)  # two x4 passes, then /2
    assert size_of(eight.data) == (128, 128) and eight.metadata["passes"] == 2


def test_large_inputs_are_tiled_by_the_engine(backends: Any) -> None:
    from abstractvision.backends._diffusers import upscale as diffusers_upscale

    backend = backends("ldm")
    vm = VisionManager(backend)
    steps: list[tuple[int, int | None]] = []
    asset = vm.upscale_image(
        png((96, 80)), steps=1, seed=2, on_progress=lambda e: steps.append((e.step, e.total))
    )
    assert size_of(asset.data) == (384, 320)
    tile = diffusers_upscale.UPSCALERS["LDMSuperResolutionPipeline"].tile
    assert tile < 384  # a 96x80 input fits one tile; the helper below forces several
    assert asset.metadata["tiles"] == 1 and steps[-1] == (1, 1)


def test_tiled_matches_the_whole_image_where_tiles_agree() -> None:
    """Overlapping tiles of a deterministic, local upscaler blend back to the untiled result."""
    import numpy as np

    image = Image.open(io.BytesIO(png((100, 70))))

    def nearest(piece: Image.Image) -> Image.Image:
        return piece.resize((piece.width * 3, piece.height * 3), Image.Resampling.NEAREST)

    seen: list[tuple[int, int]] = []
    out = tiled(image, 3, nearest, tile=40, overlap=8, on_tile=lambda d, t: seen.append((d, t)))
    assert out.size == (300, 210)
    assert np.array_equal(np.asarray(out), np.asarray(nearest(image)))
    assert seen[-1][0] == seen[-1][1] > 4  # several tiles, each reported


def test_bounds_name_field_value_and_limit(backends: Any, tmp_path: Path) -> None:
    store = LocalAssetStore(tmp_path / "store")
    vm = VisionManager(backends("ldm"), store=store)
    with pytest.raises(InvalidRequestError) as bad:
        vm.upscale_image(png(), scale=9)
    assert bad.value.field == "scale" and "8" in str(bad.value)
    with pytest.raises(InvalidRequestError) as bad:
        vm.upscale_image(png(), scale=1)
    assert bad.value.field == "scale"
    big = png((2048, 1024))  # x8 -> 134 M pixels
    with pytest.raises(InvalidRequestError) as bad:
        vm.upscale_image(big, scale=8)
    assert bad.value.field == "scale" and str(LIMITS.max_upscale_pixels) in str(bad.value)
    with pytest.raises(InvalidRequestError):  # scale of 4 but the default passes: model's own
        check_output(4096, 4096, 4)
    with pytest.raises(InvalidRequestError) as bad:
        vm.upscale_image(png(), extra={"loras": []})
    assert bad.value.field == "extra.loras"
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert stored == []  # nothing stored by a refused call


def test_a_backend_without_an_upscaler_says_so(tiny_sd_dir: Path) -> None:
    from abstractvision.backends import HuggingFaceDiffusersVisionBackend

    vm = VisionManager(HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device="cpu"))
    assert not vm.capabilities().supports("image_upscale")
    with pytest.raises(CapabilityNotSupportedError, match="image_upscale"):
        vm.upscale_image(png())


# --- MCP --------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ldm", "esrgan"])
async def test_mcp_tool_upscales(kind: str, backends: Any, tmp_path: Path) -> None:
    from mcp import Client

    from mcp_server.config import load_config
    from mcp_server.engine import Engine
    from mcp_server.server import create_server

    cfg = load_config(["--store", str(tmp_path / "store"), "--preview", "none"], environ={})
    engine = Engine(cfg, backend=backends(kind))
    async with Client(create_server(cfg, engine=engine)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = tools["image_upscale"].input_schema
        assert schema["required"] == ["image"]
        assert schema["properties"]["scale"]["maximum"] == LIMITS.max_upscale_scale
        image = "data:image/png;base64," + base64.b64encode(png()).decode()
        result = await client.call_tool("image_upscale", {"image": image, "steps": 1, "seed": 1})
        assert not result.is_error, result.content
        ref = result.structured_content
        assert (ref["width"], ref["height"]) == (256, 256)
        data = engine.store.load_bytes(ref["$artifact"])
        assert size_of(data) == (256, 256)
        bad = await client.call_tool("image_upscale", {"image": image, "scale": 16})
        assert bad.is_error and "scale" in bad.content[0].text


async def _mcp_upscale(backend: Any, tmp_path: Path) -> None:
    from mcp import Client

    from mcp_server.config import load_config
    from mcp_server.engine import Engine
    from mcp_server.server import create_server

    cfg = load_config(["--store", str(tmp_path / "mcp-store"), "--preview", "none"], environ={})
    engine = Engine(cfg, backend=backend)
    async with Client(create_server(cfg, engine=engine)) as client:
        image = "data:image/png;base64," + base64.b64encode(png()).decode()
        result = await client.call_tool("image_upscale", {"image": image, "steps": 1, "seed": 1})
        assert not result.is_error, result.content
        assert size_of(engine.store.load_bytes(result.structured_content["$artifact"])) == (
            256,
            256,
        )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- CLI ------------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``abstractvision ARGS`` in this process (torch is already imported; a subprocess would
    spend ~10 s importing it again), in ``cwd``, with stdout/stderr captured."""
    import contextlib
    import os

    from abstractvision.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("kind", ["ldm", "esrgan"])
def test_cli_upscale(kind: str, upscalers: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    engine = (
        ["--backend", "sdcpp", "--backend-option", f"upscale_model={upscalers['esrgan']}"]
        if kind == "esrgan"
        else ["--model", str(upscalers["ldm"]), "--device", "cpu", "--steps", "1"]
    )
    done = _cli("upscale", "--image", "in.png", *engine, "-o", "big.png", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert rows[0]["width"] == 256 and size_of((tmp_path / "big.png").read_bytes()) == (256, 256)


# --- OpenAI-compatible: the server route and the backend that calls it -----------------------------


def test_openai_route_and_openai_backend(backends: Any, tmp_path: Path) -> None:
    from abstractvision.backends import OpenAICompatibleVisionBackend
    from abstractvision.openai_server import create_app

    with serving(create_app(VisionManager(backends("ldm")), auth_token=TOKEN)) as url:
        # the form AbstractCore's server sends: scale/resolution as "4x", SeedVR2 fields dropped
        form = {"scale": "4x", "softness": "0.25", "seed": "5", "steps": "1"}
        files = {"image": ("in.png", png(), "image/png")}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answer = httpx.post(url + "/v1/images/upscale", data=form, files=files, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["size"] == "256x256"
        assert size_of(base64.b64decode(body["data"][0]["b64_json"])) == (256, 256)
        refused = httpx.post(
            url + "/v1/images/upscale", data={"scale": "9x"}, files=files, headers=headers
        )
        assert refused.status_code == 400 and "scale" in refused.text

        remote = OpenAICompatibleVisionBackend(
            base_url=url + "/v1", api_key=TOKEN, tasks=["text_to_image", "image_upscale"]
        )
        vm = VisionManager(remote)
        asset = vm.upscale_image(png(), steps=1, seed=5)
        assert size_of(asset.data) == (256, 256)
        assert asset.metadata["endpoint"] == "/images/upscale"
        plain = OpenAICompatibleVisionBackend(base_url=url + "/v1", api_key=TOKEN)
        assert not plain.get_capabilities().supports("image_upscale")  # opt-in: OpenAI has none

        import anyio

        anyio.run(_mcp_upscale, remote, tmp_path)  # MCP server -> this remote backend -> serve

        (tmp_path / "in.png").write_bytes(png())
        options = [f"base_url={url}/v1", f"api_key={TOKEN}", 'tasks=["image_upscale"]']
        flags = [x for o in options for x in ("--backend-option", o)]
        done = _cli(
            "upscale", "--image", "in.png", "--backend", "openai", *flags, "--steps", "1",
            "-o", "big.png", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert size_of((tmp_path / "big.png").read_bytes()) == (256, 256)
