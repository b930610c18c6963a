"""Every model family we list runs end to end on a tiny model of its own architecture.

Each family of ``tests/tiny_families.py`` is built once per session (a real model folder), loaded
through ``from_pretrained`` by the Diffusers backend and run for every task it has through
``VisionManager``: output size, frame count and determinism (same seed, same bytes). The
family-specific argument mapping (``families.family_kwargs``: Kontext's size, Wan 2.2's second
expert guidance, max_sequence_length, a pipeline that sizes its own output) is checked on the
pipeline call it produces. A subset runs through a real MCP client.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from abstractvision import LocalAssetStore, VisionManager
from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend
from abstractvision.errors import InvalidRequestError, UnknownModelError

pytestmark = pytest.mark.slow

tiny_families = pytest.importorskip("tiny_families")
FAMILIES = tiny_families.FAMILIES
PROMPT = "a red cube on a table"
# Fast settings for the tiny models: a short prompt budget where the pipeline takes one.
FAST = {"max_sequence_length": 32}


def _png(size: tuple[int, int], color: tuple[int, int, int] = (120, 40, 200)) -> bytes:
    image = Image.new("RGB", size, color)
    image.paste((20, 200, 90), (0, 0, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _mask(size: tuple[int, int]) -> bytes:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    return buf.getvalue()


def _frames(data: bytes) -> tuple[tuple[int, int], int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size, getattr(image, "n_frames", 1)


@pytest.fixture(scope="session")
def family_dir(build_model_once: Callable[..., Path]) -> Callable[[str], Path]:
    """``family_dir(name)``: the family's model folder, built on first use in this session."""

    def get(name: str) -> Path:
        for module in FAMILIES[name].requires:
            pytest.importorskip(module, reason=f"the {name} family needs {module}")
        return build_model_once(
            f"family-{name}",
            lambda path: tiny_families.build_family(name, path),
        )

    return get


@pytest.fixture(scope="module")
def manager_for(
    family_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], VisionManager]:
    """One warm VisionManager per family for this module (each family loads once)."""
    managers: dict[str, VisionManager] = {}
    store = LocalAssetStore(tmp_path_factory.mktemp("family_store"))

    def get(name: str) -> VisionManager:
        if name not in managers:
            backend = HuggingFaceDiffusersVisionBackend(
                model_id=str(family_dir(name)), device="cpu"
            )
            managers[name] = VisionManager(backend=backend, store=store)
        return managers[name]

    return get  # no unload: ~25 tiny pipelines, and one gc pass per unload cost ~25 s


# no max_sequence_length in __call__, or (CogVideoX) a fixed one
NO_SEQUENCE_LENGTH = {
    "sdxl",
    "instruct-pix2pix",
    "hunyuan-video15",
    "hunyuan-video15-i2v",
    "cogvideox",
    "cogvideox-i2v",
}


def _extra(name: str) -> dict[str, Any]:
    return dict(FAST) if name not in NO_SEQUENCE_LENGTH else {}


def _run(vm: VisionManager, name: str, task: str, seed: int) -> dict[str, Any]:
    family = FAMILIES[name]
    width, height = family.size
    common = {"seed": seed, "steps": family.steps, "extra": _extra(name)}
    if task == "t2i":
        return vm.generate_image(PROMPT, width=width, height=height, **common)
    if task in ("i2i", "inpaint"):
        mask = _mask(family.size) if task == "inpaint" else None
        return vm.edit_image(PROMPT, _png(family.size), mask=mask, strength=0.9, **common)
    size = {} if name == "hunyuan-video15-i2v" else {"width": width, "height": height}
    video = {"num_frames": family.frames, "output_format": "webp", **size, **common}
    if task == "t2v":
        return vm.generate_video(PROMPT, **video)
    return vm.image_to_video(_png(family.size), prompt=PROMPT, **video)


CASES = [
    pytest.param(
        name,
        task,
        id=f"{name}-{task}",
        marks=[pytest.mark.xfail(raises=UnknownModelError, strict=True, reason=family.broken)]
        if family.broken
        else [],
    )
    for name, family in FAMILIES.items()
    for task in family.tasks
]


@pytest.mark.parametrize(("name", "task"), CASES)
def test_family_task_end_to_end(
    name: str, task: str, manager_for: Callable[[str], VisionManager]
) -> None:
    vm = manager_for(name)
    family = FAMILIES[name]
    first = _run(vm, name, task, seed=11)
    data = vm.store.load_bytes(first["$artifact"])
    size, frames = _frames(data)
    assert size == family.size
    assert frames == (family.frames if task in ("t2v", "i2v") else 1)
    assert first["metadata"]["seed"] == 11
    again = vm.store.load_bytes(_run(vm, name, task, seed=11)["$artifact"])
    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(data).hexdigest()


def _pipeline(vm: VisionManager, task: str, masked: bool = False) -> Any:
    return vm.backend.get_pipeline(task, masked=masked)


def _call_kwargs(
    vm: VisionManager, monkeypatch: pytest.MonkeyPatch, call: Callable[[], Any]
) -> dict:
    """The keyword arguments the backend passed to the pipeline for ``call``."""
    from abstractvision.backends._diffusers import run

    seen: dict[str, Any] = {}
    real = run.run_pipeline

    def spy(pipe: Any, kwargs: dict[str, Any], control: Any) -> Any:
        seen.update(kwargs, pipeline=type(pipe).__name__)
        return real(pipe, kwargs, control)

    monkeypatch.setattr(run, "run_pipeline", spy)
    call()
    return seen


def test_kontext_keeps_the_asked_size(
    manager_for: Callable[[str], VisionManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLUX.1 Kontext would rescale to 1 MP and resize its input to a Kontext size."""
    vm = manager_for("flux-kontext")
    kwargs = _call_kwargs(
        vm, monkeypatch, lambda: vm.edit_image(PROMPT, _png((64, 64)), seed=1, steps=2)
    )
    assert kwargs["pipeline"] == "FluxKontextPipeline"
    assert kwargs["max_area"] == 64 * 64 and kwargs["_auto_resize"] is False
    assert "strength" not in kwargs  # Kontext takes none: not passed


def test_guidance_maps_to_each_family_knob(
    manager_for: Callable[[str], VisionManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distilled FLUX.1 (guidance embedding) -> guidance_scale; Qwen-Image -> true_cfg_scale."""
    flux = manager_for("flux")
    kwargs = _call_kwargs(
        flux,
        monkeypatch,
        lambda: flux.generate_image(PROMPT, seed=1, steps=1, guidance_scale=3.5, **_sz()),
    )
    assert kwargs["guidance_scale"] == 3.5 and "true_cfg_scale" not in kwargs
    qwen = manager_for("qwen-image")
    kwargs = _call_kwargs(
        qwen,
        monkeypatch,
        lambda: qwen.generate_image(
            PROMPT, negative_prompt="blur", seed=1, steps=1, guidance_scale=4.0, **_sz()
        ),
    )
    assert kwargs["true_cfg_scale"] == 4.0 and "guidance_scale" not in kwargs
    assert kwargs["negative_prompt"] == "blur"


def _sz() -> dict[str, int]:
    return {"width": 64, "height": 64}


def test_wan22_two_experts_switch_and_second_guidance(
    manager_for: Callable[[str], VisionManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wan 2.2 A14B: both experts run, split at boundary_ratio; guidance_scale_2 reaches the call."""
    vm = manager_for("wan22-a14b")
    pipe = _pipeline(vm, "text_to_video")
    assert pipe.transformer_2 is not None and pipe.config.boundary_ratio == 0.875
    calls: list[str] = []
    hooks = [
        module.register_forward_hook(lambda *_a, label=label: calls.append(label))
        for label, module in (("high", pipe.transformer), ("low", pipe.transformer_2))
    ]
    try:
        kwargs = _call_kwargs(
            vm,
            monkeypatch,
            lambda: vm.generate_video(
                PROMPT,
                num_frames=5,
                steps=4,
                seed=1,
                guidance_scale=4.0,
                output_format="webp",
                extra={"guidance_scale_2": 3.0, **FAST},
                **_sz(),
            ),
        )
    finally:
        for hook in hooks:
            hook.remove()
    assert kwargs["guidance_scale"] == 4.0 and kwargs["guidance_scale_2"] == 3.0
    # 4 steps with CFG (2 forwards each): the high-noise expert first, then the low-noise one
    assert calls[0] == "high" and calls[-1] == "low"
    assert calls == sorted(calls, key=lambda c: c != "high")
    single = manager_for("wan")
    with pytest.raises(InvalidRequestError, match="guidance_scale_2"):
        single.generate_video(
            PROMPT, num_frames=5, steps=1, extra={"guidance_scale_2": 3.0}, **_sz()
        )


def test_max_sequence_length_reaches_the_pipeline_or_is_refused(
    manager_for: Callable[[str], VisionManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    vm = manager_for("flux")
    kwargs = _call_kwargs(
        vm,
        monkeypatch,
        lambda: vm.generate_image(
            PROMPT, seed=1, steps=1, extra={"max_sequence_length": 16}, **_sz()
        ),
    )
    assert kwargs["max_sequence_length"] == 16
    sdxl = manager_for("sdxl")
    with pytest.raises(InvalidRequestError, match="max_sequence_length"):
        sdxl.generate_image(PROMPT, steps=1, extra={"max_sequence_length": 16}, **_sz())
    with pytest.raises(InvalidRequestError, match=r"\[1, 4096\]"):
        vm.generate_image(PROMPT, steps=1, extra={"max_sequence_length": 0}, **_sz())
    cog = manager_for("cogvideox")
    with pytest.raises(InvalidRequestError, match="exactly 226 tokens"):
        cog.generate_video(
            PROMPT, num_frames=5, steps=1, extra={"max_sequence_length": 32}, **_sz()
        )


def test_self_sizing_video_pipeline_refuses_width(
    manager_for: Callable[[str], VisionManager],
) -> None:
    """HunyuanVideo-1.5 image->video picks its size from its resolution tier: asking is an error."""
    vm = manager_for("hunyuan-video15-i2v")
    with pytest.raises(InvalidRequestError, match="omit width/height"):
        vm.image_to_video(_png((64, 64)), prompt=PROMPT, num_frames=5, steps=1, width=128)


def test_fill_model_without_mask_changes_everything(
    manager_for: Callable[[str], VisionManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLUX.1 Fill is inpaint-only: an edit without a mask goes through it with a full mask."""
    vm = manager_for("flux-fill")
    caps = vm.backend.get_capabilities()
    assert caps.supported_tasks == ("image_to_image",) and caps.supports_mask
    kwargs = _call_kwargs(
        vm, monkeypatch, lambda: vm.edit_image(PROMPT, _png((64, 64)), seed=1, steps=2)
    )
    assert kwargs["pipeline"] == "FluxFillPipeline"
    assert kwargs["mask_image"].getextrema() == (255, 255)


async def _mcp_call(model: Path, tool: str, args: dict[str, Any], tmp_path: Path) -> Any:
    from mcp import Client

    from mcp_server.config import load_config
    from mcp_server.server import create_server

    cfg = load_config(
        ["--store", str(tmp_path / "store"), "--model", str(model), "--device", "cpu"], environ={}
    )
    async with Client(create_server(cfg)) as client:
        result = await client.call_tool(tool, args)
        assert not result.is_error, result.content
        ref = result.structured_content
        read = await client.read_resource(f"abstractvision://artifacts/{ref['$artifact']}")
        return ref, read


MCP_CASES = [
    ("flux2-klein", "text_to_image", {}),
    ("qwen-image", "text_to_image", {}),
    ("wan22-ti2v", "text_to_video", {"num_frames": 5, "output_format": "webp"}),
    ("ltx2", "text_to_video", {"num_frames": 9, "output_format": "webp"}),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "tool", "args"), MCP_CASES, ids=[c[0] for c in MCP_CASES])
async def test_family_through_mcp(
    name: str,
    tool: str,
    args: dict[str, Any],
    family_dir: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    pytest.importorskip("mcp")
    import base64

    call = {"prompt": PROMPT, "seed": 5, "steps": 1, "width": 64, "height": 64, **args}
    call["extra"] = dict(FAST)
    ref, read = await _mcp_call(family_dir(name), tool, call, tmp_path)
    data = base64.b64decode(read.contents[0].blob)
    assert hashlib.sha256(data).hexdigest() == ref["sha256"]
    size, frames = _frames(data)
    assert size == (64, 64)
    assert frames == args.get("num_frames", 1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_multi_reference_edit_passes_every_image(
    manager_for: Callable[[str], VisionManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLUX.2 (like Qwen-Image-Edit-2509+) edits with reference images: image is the list."""
    vm = manager_for("flux2-klein")
    refs = [_png((64, 64), (250, 250, 0)), _png((64, 96), (0, 0, 250))]

    def edit() -> dict[str, Any]:
        return vm.edit_image(PROMPT, _png((64, 64)), reference_images=refs, seed=4, steps=2)

    kwargs = _call_kwargs(vm, monkeypatch, edit)
    images = kwargs["image"]
    assert isinstance(images, list) and [im.size for im in images] == [(64, 64), (64, 64), (64, 96)]
    first = vm.store.load_bytes(edit()["$artifact"])
    assert _frames(first) == ((64, 64), 1)
    assert vm.store.load_bytes(edit()["$artifact"]) == first
    single = vm.store.load_bytes(
        vm.edit_image(PROMPT, _png((64, 64)), seed=4, steps=2)["$artifact"]
    )
    assert single != first  # the references changed the result
    flux = manager_for("flux")
    from abstractvision.errors import CapabilityNotSupportedError

    with pytest.raises(CapabilityNotSupportedError, match="multi-reference"):
        flux.edit_image(PROMPT, _png((64, 64)), reference_images=refs[:1], steps=2)


@pytest.mark.anyio
async def test_multi_reference_edit_through_mcp(
    family_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    pytest.importorskip("mcp")
    import base64

    def data_url(data: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(data).decode()

    call = {
        "prompt": PROMPT,
        "image": data_url(_png((64, 64))),
        "reference_images": [data_url(_png((64, 64), (250, 250, 0)))],
        "seed": 2,
        "steps": 2,
        "extra": dict(FAST),
    }
    ref, read = await _mcp_call(family_dir("flux2-klein"), "image_to_image", call, tmp_path)
    data = base64.b64decode(read.contents[0].blob)
    assert _frames(data) == ((64, 64), 1)
    assert hashlib.sha256(data).hexdigest() == ref["sha256"]


def test_qwen_edit_loads_without_torchvision(family_dir: Callable[[str], Path]) -> None:
    """transformers 5 builds no Qwen2VLProcessor without torchvision (its video slot): the
    backend builds it from the same processor/ folder with the PIL image processor instead."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the stock Qwen2VLProcessor loads")
    source = str(family_dir("qwen-image-edit"))
    backend = HuggingFaceDiffusersVisionBackend(model_id=source, device="cpu")
    processor = backend._entry(backend._info(source))[0].pipe.processor
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert processor.video_processor is None


def test_component_needing_torchvision_names_the_package(
    family_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """A component whose transformers class needs torchvision is a typed error naming it.

    No tiny family needs torchvision any more, so a real Wan 2.1 I2V folder gets the stock
    Qwen2VLProcessor (whose video slot needs torchvision in transformers 5) as its
    image_processor: the path a Qwen-Image-Edit processor took before the PIL fallback.
    """
    import importlib.util
    import json
    import shutil

    from abstractvision.errors import OptionalDependencyMissingError

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the class loads")
    folder = tmp_path / "wan-i2v"
    shutil.copytree(family_dir("wan-i2v"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["image_processor"] = ["transformers", "Qwen2VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(folder / "image_processor")
    tiny_families.qwen_processor_parts(folder / "image_processor")
    backend = HuggingFaceDiffusersVisionBackend(model_id=str(folder), device="cpu")
    with pytest.raises(OptionalDependencyMissingError, match="needs the 'torchvision' package"):
        backend.preload()
