"""multi_view_image end to end on tiny Diffusers models: routes, results, progress, failures.

Real pipelines throughout (see conftest); the only stand-in is a backend that fails on its
k-th edit, a fault a CPU cannot produce on demand.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from abstractvision import LocalAssetStore, VisionManager, VisionModelCapabilitiesRegistry
from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend
from abstractvision.control import GenerationControl, ProgressEvent
from abstractvision.errors import (
    GenerationCancelledError,
    InvalidRequestError,
    OutOfMemoryError,
)
from abstractvision.model_capabilities import PACKAGED_PATH
from abstractvision.multiview import View, camera_prompt, sheet_layout
from abstractvision.types import (
    ANGLE_PRESETS,
    LIMITS,
    GeneratedAsset,
    ImageEditRequest,
    MultiAngleRequest,
    request_field_schemas,
)

pytestmark = pytest.mark.slow

DEVICE = os.environ.get("ABSTRACTVISION_TEST_DEVICE", "cpu")
FAST = {"width": 64, "height": 64, "steps": 2, "seed": 5}


def png(color: tuple[int, int, int] = (30, 160, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, format="PNG")
    return buf.getvalue()


def pixels(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def meta(result: Any) -> dict[str, Any]:
    return result.metadata if isinstance(result, GeneratedAsset) else result["metadata"]


@pytest.fixture(scope="module")
def backend(tiny_models_root: Path, tiny_sd_dir: Path) -> HuggingFaceDiffusersVisionBackend:
    return HuggingFaceDiffusersVisionBackend(
        model_id=str(tiny_sd_dir), device=DEVICE, lora_allowlist=[str(tiny_models_root)]
    )


class FailingBackend(HuggingFaceDiffusersVisionBackend):
    """The real backend, except that its ``fail_on``-th edit runs out of memory."""

    def __init__(self, fail_on: int, **options: Any) -> None:
        super().__init__(**options)
        self.fail_on, self.edits = fail_on, 0

    def edit_image(self, request: Any, *, control: Any = None) -> GeneratedAsset:
        self.edits += 1
        if self.edits == self.fail_on:
            raise OutOfMemoryError("the device ran out of memory")
        return super().edit_image(request, control=control)


# --- generic route ----------------------------------------------------------------------------


def test_default_angles_generate_a_reference_then_views_then_a_sheet(
    backend: HuggingFaceDiffusersVisionBackend, tmp_path: Path
) -> None:
    store = LocalAssetStore(tmp_path)
    events: list[ProgressEvent] = []
    manager = VisionManager(backend=backend, store=store)
    refs = manager.run(
        "multi_view_image",
        {"prompt": "a red cube", **FAST},
        control=GenerationControl(events.append),
    )
    assert isinstance(refs, list) and len(refs) == 6 and len(store.list_artifacts()) == 6
    roles = [meta(r)["role"] for r in refs]
    assert roles == ["reference", "view", "view", "view", "view", "contact_sheet"]
    views = [meta(r) for r in refs[1:5]]
    assert [v["angle"] for v in views] == ["front", "three_quarter", "side", "back"]
    assert [v["azimuth"] for v in views] == [0, 45, 90, 180]
    assert [v["view_index"] for v in views] == [0, 1, 2, 3]
    assert {v["seed"] for v in [*views, meta(refs[0])]} == {5}
    assert {v["route"] for v in views} == {"generic"}
    assert all(v["reference"] == refs[0]["$artifact"] for v in views)
    assert "back view" in views[3]["view_prompt"] and "a red cube" in views[3]["view_prompt"]
    sheet = meta(refs[5])
    assert sheet["views"] == [r["$artifact"] for r in refs[1:5]]
    assert sheet["angles"] == ["front", "three_quarter", "side", "back"]
    # progress: one count over the reference and the 4 views, 2 units each, never going back
    assert {e.total for e in events} == {10}
    assert [e.step for e in events] == sorted(e.step for e in events) and events[-1].step == 10
    assert events[0].message == "reference image: step 1/2"
    assert any(e.message.startswith("view 2/4 (three_quarter): step 1/") for e in events)


def test_explicit_moves_on_a_given_reference_and_the_sheet_tiles(
    backend: HuggingFaceDiffusersVisionBackend,
) -> None:
    angles = [{"azimuth": 30}, {"azimuth": -120, "elevation": 20, "zoom": 1.5}, "top"]
    request = MultiAngleRequest(prompt="a vase", reference_image=png(), angles=angles, **FAST)
    assets = backend.generate_angles(request)  # the base class's default: no manager needed
    assert [a.metadata["role"] for a in assets] == ["view", "view", "view", "contact_sheet"]
    labels = [a.metadata["angle"] for a in assets[:3]]
    assert labels == ["az30 el0", "az-120 el20 x1.5", "top"]
    prompts = [a.metadata["view_prompt"] for a in assets[:3]]
    assert "front-right three-quarter view" in prompts[0]
    assert "back-left three-quarter view, elevated shot, close-up" in prompts[1]
    assert "top-down view from directly above" in prompts[2]
    sheet = pixels(assets[3].data)
    size, boxes = sheet_layout(3, (64, 64))
    assert sheet.size == size == (3 * 64 + 4 * 4, 64 + 14 + 2 * 4)
    for view, box in zip(assets[:3], boxes, strict=True):
        assert sheet.crop(box).tobytes() == pixels(view.data).tobytes()
    label_strip = sheet.crop((boxes[0][0], boxes[0][3], boxes[0][2], boxes[0][3] + 14))
    assert label_strip.convert("L").getextrema()[1] > 200  # the label was drawn


def test_bounds_and_flat_schema() -> None:
    with pytest.raises(InvalidRequestError, match="at most 12"):
        MultiAngleRequest(prompt="x", angles=["front"] * (LIMITS.max_angles + 1))
    with pytest.raises(InvalidRequestError, match="azimuth"):
        MultiAngleRequest(prompt="x", angles=[{"azimuth": 181}])
    with pytest.raises(InvalidRequestError, match="one of"):
        MultiAngleRequest(prompt="x", angles=["upside_down"])
    schema = request_field_schemas(MultiAngleRequest)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    assert schema["properties"]["angles"]["maxItems"] == 12
    assert schema["properties"]["partial_results"]["default"] is False


# --- dedicated route --------------------------------------------------------------------------

CAMERA = {
    "front": ("front view", "eye-level shot", "medium shot"),
    "back": ("back view", "eye-level shot", "medium shot"),
    "back_right": ("back-right quarter view", "eye-level shot", "medium shot"),
    "elevated": ("front view", "elevated shot", "medium shot"),
    "close_up": ("front view", "eye-level shot", "close-up"),
}


def _registry_with_tiny_multiview(path: Path) -> Path:
    doc = json.loads(PACKAGED_PATH.read_text(encoding="utf-8"))
    doc["models"].append(
        {
            "id": "tiny/sd-angles",
            "display_name": "tiny SD with a camera LoRA",
            "family": "stable-diffusion-1",
            "license": {"id": "mit"},
            "engines": {"diffusers": {"pipelines": {"text_to_image": "StableDiffusionPipeline"}}},
            "tasks": {"text_to_image": {}, "image_to_image": {}, "multi_view_image": {}},
            "multi_view": {
                "lora": "tiny/angles-lora",
                "lora_scale": 0.8,
                "reference_model": "tiny/sd-angles",
                "prompt_template": "<sks> {azimuth} {elevation} {distance}",
                "angles": {
                    name: dict(zip(("azimuth", "elevation", "distance"), words, strict=True))
                    for name, words in CAMERA.items()
                },
            },
        }
    )
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_dedicated_route_uses_the_registry_prompt_and_lora(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_sd_dir: Path, tiny_lora_dir: Path
) -> None:
    # Registry ids are hub-shaped; folders of those names in the working directory stand in.
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "sd-angles").symlink_to(tiny_sd_dir)
    (tmp_path / "tiny" / "angles-lora").symlink_to(tiny_lora_dir)
    monkeypatch.chdir(tmp_path)
    registry = VisionModelCapabilitiesRegistry(_registry_with_tiny_multiview(tmp_path / "r.json"))
    engine = HuggingFaceDiffusersVisionBackend(
        model_id="tiny/sd-angles", device=DEVICE, lora_allowlist=["tiny/angles-lora"]
    )
    manager = VisionManager(backend=engine, model_id="tiny/sd-angles", registry=registry)
    angles = ["front", "top", {"azimuth": 135, "elevation": 30}]
    assets = manager.generate_angles("a red cube", angles=angles, **FAST)
    views = [a.metadata for a in assets if a.metadata["role"] == "view"]
    assert assets[0].metadata["role"] == "reference" and len(views) == 3
    assert {v["route"] for v in views} == {"dedicated"}
    assert [v["view_prompt"] for v in views] == [
        "<sks> front view eye-level shot medium shot",
        "<sks> front view elevated shot medium shot",  # nearest the registry can say
        "<sks> back-right quarter view elevated shot medium shot",  # composed axis by axis
    ]
    assert views[0]["loras"] == [{"source": "tiny/angles-lora", "weight": 0.8}]
    assert "loras" not in assets[0].metadata  # the reference is plain text->image
    prompt, reference = views[0]["view_prompt"], assets[0].data
    plain = engine.edit_image(ImageEditRequest(prompt=prompt, image=reference, **FAST))
    assert plain.data != assets[1].data  # the same edit without the camera LoRA differs


def test_packaged_camera_lora_prompts_agree_with_the_preset_table() -> None:
    spec = VisionModelCapabilitiesRegistry().get("Qwen/Qwen-Image-Edit-2511").multi_view
    assert spec is not None
    for name in spec.angles:
        unnamed = View(*ANGLE_PRESETS[name])  # composed from the camera alone
        assert camera_prompt(spec, unnamed) == spec.prompt_for(name), name
    odd = View(azimuth=-60, elevation=-20, zoom=2.5)
    assert camera_prompt(spec, odd) == "<sks> front-left quarter view low-angle shot close-up"


# --- cancellation and failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cancel_at", "steps"),
    [("view 1/3 (front): step 2/2", 2), ("view 2/3 (side): step 1/4", 4)],
    ids=["between-views", "within-a-view"],
)
def test_cancellation_stores_nothing_and_starts_no_further_view(
    backend: HuggingFaceDiffusersVisionBackend, tmp_path: Path, cancel_at: str, steps: int
) -> None:
    store = LocalAssetStore(tmp_path)
    events: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        events.append(event)
        if event.message.startswith(cancel_at):
            control.cancel()

    control = GenerationControl(on_progress)
    manager = VisionManager(backend=backend, store=store)
    params = {**FAST, "steps": steps, "strength": 1.0, "reference_image": png()}
    with pytest.raises(GenerationCancelledError):
        manager.generate_angles(
            "a cube", angles=["front", "side", "back"], control=control, **params
        )
    assert store.list_artifacts() == []
    assert events[-1].message == cancel_at  # no step and no view after the cancellation


@pytest.mark.parametrize("partial", [False, True])
def test_failure_of_view_k_names_it_and_stores_only_when_partial_results(
    tiny_sd_dir: Path, tmp_path: Path, partial: bool
) -> None:
    store = LocalAssetStore(tmp_path)
    engine = FailingBackend(fail_on=2, model_id=str(tiny_sd_dir), device=DEVICE)
    manager = VisionManager(backend=engine, store=store)
    call = {"angles": ["front", "side", "back"], "partial_results": partial, **FAST}
    if not partial:
        with pytest.raises(OutOfMemoryError, match=r"view 2/3 \(side\) failed") as info:
            manager.generate_angles("a cube", **call)
        assert info.value.view_index == 1 and info.value.angle == "side"  # type: ignore[attr-defined]
        assert store.list_artifacts() == []
        return
    refs = manager.generate_angles("a cube", **call)
    assert [meta(r)["role"] for r in refs] == ["reference", "view", "contact_sheet"]
    assert len(store.list_artifacts()) == 3 and engine.edits == 2
    failed = meta(refs[-1])["failed"]
    assert failed["view_index"] == 1 and failed["angle"] == "side"
    assert failed["error_type"] == "OutOfMemoryError" and "view 2/3" in failed["error"]
    assert meta(refs[-1])["view_count"] == 1 and meta(refs[-1])["views_requested"] == 3
