"""Batches: ``count``/``seeds`` on text->image and image->image, through the library, MCP, the
CLI and the OpenAI ``n``. Image k of a batch is byte-identical to a single call with seed k (the
Diffusers default, ``exact_batches``); with ``exact_batches=False`` a text->image batch is one
pipeline call (``batch_size`` in its metadata), equal to single calls up to rounding.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from abstractvision import LocalAssetStore, VisionManager
from abstractvision.errors import InvalidRequestError
from abstractvision.types import LIMITS, ImageGenerationRequest


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def vm(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> VisionManager:
    from abstractvision.backends import HuggingFaceDiffusersVisionBackend

    backend = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device="cpu")
    return VisionManager(backend, store=LocalAssetStore(tmp_path_factory.mktemp("store")))


def _bytes(vm: VisionManager, ref: dict[str, Any]) -> bytes:
    assert vm.store is not None
    return vm.store.load_bytes(ref["$artifact"])


def test_seeds_give_the_single_calls_bytes(vm: VisionManager) -> None:
    batch = vm.generate_image_batch("a red cube", seeds=[1, 2, 3], steps=2)
    singles = [vm.generate_image("a red cube", seed=s, steps=2) for s in (1, 2, 3)]
    assert [r["sha256"] for r in batch] == [r["sha256"] for r in singles]
    assert [_bytes(vm, r) for r in batch] == [_bytes(vm, r) for r in singles]
    assert len({r["$artifact"] for r in batch}) == 3  # each stored on its own
    for ref, seed in zip(batch, (1, 2, 3), strict=True):
        meta = ref["metadata"]
        assert meta["seed"] == seed and "batch_size" not in meta  # exact: a call per image
        assert "count" not in meta["params"] and meta["params"]["seed"] == seed


def test_batched_calls_match_up_to_rounding(tiny_sd_dir: Path) -> None:
    """exact_batches=False: one pipeline call for the batch; pixels within one level."""
    import numpy as np

    from abstractvision.backends import HuggingFaceDiffusersVisionBackend

    backend = HuggingFaceDiffusersVisionBackend(
        model_id=str(tiny_sd_dir), device="cpu", exact_batches=False
    )
    vm = VisionManager(backend)
    batch = vm.generate_image_batch("a red cube", seeds=[1, 2, 3], steps=2)
    assert [a.metadata["batch_size"] for a in batch] == [3, 3, 3]
    assert [a.metadata["seed"] for a in batch] == [1, 2, 3]
    for asset, seed in zip(batch, (1, 2, 3), strict=True):
        alone = vm.generate_image("a red cube", seed=seed, steps=2)
        a = np.asarray(Image.open(io.BytesIO(asset.data)), dtype=int)
        b = np.asarray(Image.open(io.BytesIO(alone.data)), dtype=int)
        assert np.abs(a - b).max() <= 1


def test_progress_counts_across_the_batch(vm: VisionManager) -> None:
    events: list[Any] = []
    vm.generate_image_batch("a red cube", count=3, seed=1, steps=2, on_progress=events.append)
    assert [(e.step, e.total) for e in events] == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]
    assert events[-1].message == "image 3/3: step 2/2"


def test_count_with_a_seed_counts_up(vm: VisionManager) -> None:
    batch = vm.generate_image_batch("a red cube", count=2, seed=40, steps=1)
    assert [r["metadata"]["seed"] for r in batch] == [40, 41]
    loose = vm.generate_image_batch("a red cube", count=2, steps=1)
    first = loose[0]["metadata"]["seed"]
    assert loose[1]["metadata"]["seed"] == (first + 1) % (LIMITS.max_seed + 1)


def test_edit_batches_match_single_edits(vm: VisionManager) -> None:
    batch = vm.edit_image_batch("make it blue", png(), count=2, seed=5, steps=2, strength=0.5)
    singles = [vm.edit_image("make it blue", png(), seed=s, steps=2, strength=0.5) for s in (5, 6)]
    assert [r["sha256"] for r in batch] == [r["sha256"] for r in singles]


def test_bounds_and_wrong_combinations(vm: VisionManager) -> None:
    for params, field in (
        ({"count": LIMITS.max_batch + 1}, "count"),
        ({"count": 0}, "count"),
        ({"seeds": [1, 2], "count": 3}, "count"),
        ({"seeds": [1], "seed": 1}, "seed"),
        ({"seeds": list(range(LIMITS.max_batch + 1))}, "seeds"),
        ({"seeds": [-1]}, "seeds.0"),
        ({"control_strength": 0.5}, "control_strength"),
    ):
        with pytest.raises(InvalidRequestError) as bad:
            ImageGenerationRequest(prompt="x", **params)
        assert bad.value.field == field, params
    with pytest.raises(InvalidRequestError, match="generate_image_batch") as bad:
        vm.generate_image("x", count=2)
    assert bad.value.field == "count"
    one = vm.generate_image("a red cube", seeds=[7], steps=1)  # one seed: a single image
    assert one["metadata"]["seed"] == 7


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_mcp_returns_one_ref_per_image(
    vm: VisionManager, tiny_sd_dir: Path, tmp_path: Path
) -> None:
    from mcp import Client

    from mcp_server.config import load_config
    from mcp_server.engine import Engine
    from mcp_server.server import create_server

    cfg = load_config(["--store", str(tmp_path / "store"), "--preview", "none"], environ={})
    engine = Engine(cfg, backend=vm.backend)
    async with Client(create_server(cfg, engine=engine)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        props = tools["text_to_image"].input_schema["properties"]
        assert props["count"]["maximum"] == LIMITS.max_batch and props["seeds"]["type"] == "array"
        args = {"prompt": "a red cube", "seeds": [1, 2, 3], "steps": 2}
        result = await client.call_tool("text_to_image", args)
        assert not result.is_error, result.content
        images = result.structured_content["images"]
        assert [i["seed"] for i in images] == [1, 2, 3]
        links = [c for c in result.content if c.type == "resource_link"]
        assert len(links) == 3
        single = vm.generate_image("a red cube", seed=2, steps=2)
        assert images[1]["sha256"] == single["sha256"]


def test_cli_seeds_write_one_file_per_image(
    tiny_sd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from abstractvision.cli import main  # in this process: torch is already imported

    code = main(
        ["t2i", "a red cube", "--model", str(tiny_sd_dir), "--device", "cpu", "--steps", "1",
         "--seeds", "4", "5", "-o", str(tmp_path / "cube.png"), "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    rows = json.loads(out.out)
    assert [r["seed"] for r in rows] == [4, 5]
    assert all(Path(r["path"]).is_file() for r in rows)


def test_openai_n_is_one_batch(vm: VisionManager) -> None:
    import openai
    from http_servers import serving

    from abstractvision.openai_server import create_app

    with serving(create_app(VisionManager(vm.backend), auth_token="t")) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="t", max_retries=0, timeout=120)
        result = client.images.generate(
            prompt="a red cube", n=2, extra_body={"seed": 1, "steps": 2}
        )
    got = [base64.b64decode(d.b64_json) for d in result.data]
    assert len(got) == 2
    singles = [vm.generate_image("a red cube", seed=s, steps=2) for s in (1, 2)]
    assert got == [_bytes(vm, r) for r in singles]
