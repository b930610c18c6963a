"""VisionManager orchestration: validation, gating, progress, cancellation, storing.

The engine here is a small Pillow backend defined in this file: these tests are about what the
manager does around any engine (the Diffusers backend has its own end-to-end tests).
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from abstractvision import (
    BackendError,
    BackendNotConfiguredError,
    CapabilityNotSupportedError,
    GeneratedAsset,
    GenerationCancelledError,
    GenerationControl,
    ImageGenerationRequest,
    InvalidImageError,
    InvalidRequestError,
    LocalAssetStore,
    UnknownModelError,
    VisionBackendCapabilities,
    VisionManager,
    VisionModelCapabilitiesRegistry,
    is_artifact_ref,
)
from abstractvision.backends.base_backend import VisionBackend


def png(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


class PillowBackend(VisionBackend):
    """Draws a flat colour derived from the seed; one 'step' per requested step."""

    def __init__(self, *, fail_at_step: int | None = None) -> None:
        self.calls = 0
        self.fail_at_step = fail_at_step

    def get_capabilities(self) -> VisionBackendCapabilities:
        return VisionBackendCapabilities(
            supported_tasks=("text_to_image", "image_to_image"),
            supports_mask=True,
            max_width=1024,
            max_height=1024,
            extra_keys={"scheduler": "sampler name"},
            models={"text_to_image": ("pillow/flat",), "image_to_image": ("pillow/flat",)},
        )

    def _draw(self, request, control: GenerationControl) -> GeneratedAsset:
        self.calls += 1
        steps = request.steps or 3
        for step in range(1, steps + 1):
            control.check()
            if step == self.fail_at_step:
                raise BackendError("engine failed at step 2")
            control.report(step, steps)
        seed = request.seed or 0
        color = (seed % 256, (seed // 256) % 256, 99)
        size = (request.width or 64, request.height or 64)
        buf = io.BytesIO()
        Image.new("RGB", size, color).save(buf, format="PNG")
        return GeneratedAsset("image", buf.getvalue(), "image/png", {"seed": seed, "steps": steps})

    def generate_image(self, request, *, control=None):
        return self._draw(request, control or GenerationControl())

    def edit_image(self, request, *, control=None):
        return self._draw(request, control or GenerationControl())


def test_without_a_backend_the_error_says_what_to_pass() -> None:
    with pytest.raises(BackendNotConfiguredError, match="backend="):
        VisionManager().generate_image("a cat")


def test_generate_returns_an_asset_without_store_and_a_ref_with_one(tmp_path) -> None:
    asset = VisionManager(backend=PillowBackend()).generate_image("a cat", width=128, seed=5)
    assert isinstance(asset, GeneratedAsset)
    assert Image.open(io.BytesIO(asset.data)).size == (128, 64)

    store = LocalAssetStore(tmp_path)
    ref = VisionManager(backend=PillowBackend(), store=store).generate_image("a cat", seed=5)
    assert is_artifact_ref(ref)
    meta = store.get_metadata(ref["$artifact"])
    assert meta["metadata"]["task"] == "text_to_image"
    assert meta["metadata"]["params"] == {"prompt": "a cat", "seed": 5}
    assert meta["metadata"]["seed"] == 5


def test_request_objects_and_keyword_parameters_are_both_accepted() -> None:
    manager = VisionManager(backend=PillowBackend())
    request = ImageGenerationRequest(prompt="a cat", seed=1)
    assert manager.generate_image(request).metadata["seed"] == 1
    with pytest.raises(InvalidRequestError, match="not both"):
        manager.generate_image(request, seed=2)


def test_progress_reaches_the_caller_for_every_step() -> None:
    events = []
    VisionManager(backend=PillowBackend()).generate_image("x", steps=4, on_progress=events.append)
    assert [(e.step, e.total) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_mid_run_raises_and_stores_nothing(tmp_path) -> None:
    store = LocalAssetStore(tmp_path)
    backend = PillowBackend()
    manager = VisionManager(backend=backend, store=store)
    control = GenerationControl(lambda e: control.cancel() if e.step == 2 else None)
    with pytest.raises(GenerationCancelledError):
        manager.generate_image("x", steps=5, control=control)
    assert store.list_artifacts() == []
    assert is_artifact_ref(manager.generate_image("x", steps=2))  # the next call works


def test_engine_failure_stores_nothing_and_manager_stays_usable(tmp_path) -> None:
    store = LocalAssetStore(tmp_path)
    backend = PillowBackend(fail_at_step=2)
    manager = VisionManager(backend=backend, store=store)
    with pytest.raises(BackendError):
        manager.generate_image("x", steps=3)
    assert store.list_artifacts() == []
    backend.fail_at_step = None
    assert is_artifact_ref(manager.generate_image("x"))


def test_backend_capabilities_gate_tasks_limits_extra_and_models() -> None:
    manager = VisionManager(backend=PillowBackend())
    with pytest.raises(CapabilityNotSupportedError, match="text_to_video"):
        manager.generate_video("x")
    with pytest.raises(InvalidRequestError, match="<= 1024 on this backend"):
        manager.generate_image("x", width=2048)
    with pytest.raises(InvalidRequestError) as info:
        manager.generate_image("x", extra={"num_inference_steps": 999})
    assert info.value.field == "extra.num_inference_steps" and "scheduler" in info.value.limit
    assert manager.generate_image("x", extra={"scheduler": "ddim"}).mime_type == "image/png"
    with pytest.raises(UnknownModelError, match="pillow/flat"):
        manager.generate_image("x", model="other/model")


def test_edit_checks_image_bytes_and_mask_size_before_the_engine_runs() -> None:
    backend = PillowBackend()
    manager = VisionManager(backend=backend)
    with pytest.raises(InvalidImageError) as info:
        manager.edit_image("x", b"this is not an image")
    assert info.value.field == "image"
    with pytest.raises(InvalidRequestError, match="same size"):
        manager.edit_image("x", png(64, 64), mask=png(32, 32, (255, 255, 255)))
    assert backend.calls == 0
    edited = manager.edit_image("x", png(), mask=png(64, 64, (255, 255, 255)))
    assert edited.media_type == "image"


def test_registry_gates_when_a_model_id_is_set() -> None:
    registry = VisionModelCapabilitiesRegistry()
    video_only = next(
        m
        for m in registry.models_for_task("text_to_video")
        if not registry.supports(m, "text_to_image")
    )
    manager = VisionManager(backend=PillowBackend(), model_id=video_only)
    with pytest.raises(CapabilityNotSupportedError):
        manager.generate_image("x")
    with pytest.raises(UnknownModelError):
        VisionManager(backend=PillowBackend(), model_id="nobody/nothing").generate_image("x")


def test_the_registry_refuses_a_task_before_image_inputs_are_decoded() -> None:
    """The cheap check first (0.3.x's order too): a model that cannot edit is refused as such,
    even when the image is not one, and the engine is never called."""
    registry = VisionModelCapabilitiesRegistry()
    cannot_edit = next(
        m
        for m in registry.models_for_task("text_to_image")
        if not registry.supports(m, "image_to_image")
    )
    backend = PillowBackend()
    manager = VisionManager(backend=backend, model_id=cannot_edit)
    with pytest.raises(CapabilityNotSupportedError, match="cannot run image_to_image"):
        manager.edit_image("x", b"not an image")
    with pytest.raises(CapabilityNotSupportedError, match="cannot run image_to_image"):
        manager.check("image_to_image", {"prompt": "x", "image": b"not an image"})
    assert backend.calls == 0


def test_run_by_task_name_with_plain_arguments(tmp_path) -> None:
    manager = VisionManager(backend=PillowBackend(), store=LocalAssetStore(tmp_path))
    ref = manager.run("text_to_image", {"prompt": "x", "seed": 3})
    assert is_artifact_ref(ref)
    with pytest.raises(InvalidRequestError, match="unknown task"):
        manager.run("text_to_sound", {"prompt": "x"})
    with pytest.raises(InvalidRequestError, match="unknown parameter"):
        manager.run("text_to_image", {"prompt": "x", "num_inference_steps": 3})


def test_multi_view_is_refused_clearly_by_a_backend_that_cannot_edit() -> None:
    class TextOnly(PillowBackend):  # multi-view needs image_to_image (one edit per view)
        def get_capabilities(self) -> VisionBackendCapabilities:
            return VisionBackendCapabilities(supported_tasks=("text_to_image",))

    with pytest.raises(CapabilityNotSupportedError, match="multi_view_image needs"):
        VisionManager(backend=TextOnly()).generate_angles("robot")
