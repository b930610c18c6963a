"""Request coalescing in the Diffusers backend, on the tiny random-weight SD (no fakes)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from abstractvision.control import GenerationControl, ProgressEvent
from abstractvision.errors import GenerationCancelledError, InvalidRequestError
from abstractvision.types import GeneratedAsset, ImageGenerationRequest

Backend = Any


@pytest.fixture
def make_backend(tiny_sd_dir: Path) -> Callable[..., Backend]:
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    def make(**options: Any) -> Backend:
        backend = HuggingFaceDiffusersVisionBackend(
            model_id=str(tiny_sd_dir), device="cpu", **options
        )
        backend.preload()
        return backend

    return make


def _request(seed: int, prompt: str = "a red cube", steps: int = 3) -> ImageGenerationRequest:
    return ImageGenerationRequest(prompt=prompt, width=64, height=64, steps=steps, seed=seed)


def _concurrently(
    backend: Backend,
    requests: list[ImageGenerationRequest],
    controls: list[GenerationControl] | None = None,
) -> list[GeneratedAsset | BaseException]:
    controls = controls or [GenerationControl() for _ in requests]
    barrier = threading.Barrier(len(requests))

    def one(i: int) -> GeneratedAsset | BaseException:
        barrier.wait()
        try:
            return backend.generate_image(requests[i], control=controls[i])
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, range(len(requests))))


def _levels(a: bytes, b: bytes) -> int:
    """The largest per-pixel difference between two encoded images, in 8-bit levels."""
    import io

    import numpy as np
    from PIL import Image

    x, y = (np.asarray(Image.open(io.BytesIO(d)), dtype=int) for d in (a, b))
    return int(np.abs(x - y).max())


def test_batched_bytes_equal_solo_bytes(make_backend: Callable[..., Backend]) -> None:
    requests = [_request(seed, prompt=f"prompt {seed}") for seed in (1, 2, 3, 4)]
    solo = make_backend()
    alone = [solo.generate_image(r).data for r in requests]
    batched = _concurrently(make_backend(max_batch_size=4, batch_window_ms=500), requests)
    assert all(isinstance(b, GeneratedAsset) for b in batched)
    assert [b.metadata.get("batch_size") for b in batched] == [4, 4, 4, 4]  # type: ignore[union-attr]
    # batched matmuls round differently from batch-of-one ones (~1e-7; docs/benchmarks.md 9):
    # each image is its solo image within one pixel level, not always byte for byte
    for got, want in zip(batched, alone, strict=True):
        assert _levels(got.data, want) <= 1  # type: ignore[union-attr]
    assert len(set(alone)) == 4


def test_different_settings_are_not_batched(make_backend: Callable[..., Backend]) -> None:
    backend = make_backend(max_batch_size=4, batch_window_ms=200)
    results = _concurrently(backend, [_request(1, steps=2), _request(2, steps=3)])
    assert [r.metadata.get("batch_size") for r in results] == [None, None]  # type: ignore[union-attr]


def test_each_request_gets_its_progress(make_backend: Callable[..., Backend]) -> None:
    events: list[list[ProgressEvent]] = [[], [], []]
    controls = [GenerationControl(on_progress=events[i].append) for i in range(3)]
    backend = make_backend(max_batch_size=3, batch_window_ms=500)
    _concurrently(backend, [_request(s) for s in (1, 2, 3)], controls)
    for got in events:
        assert [(e.step, e.total) for e in got] == [(1, 3), (2, 3), (3, 3)]


def test_a_cancelled_request_leaves_the_others_running(
    make_backend: Callable[..., Backend],
) -> None:
    backend = make_backend(max_batch_size=3, batch_window_ms=500)
    controls = [GenerationControl() for _ in range(3)]
    controls[0] = GenerationControl(on_progress=lambda e: controls[0].cancel())
    results = _concurrently(backend, [_request(s, steps=4) for s in (1, 2, 3)], controls)
    assert isinstance(results[0], GenerationCancelledError)
    assert all(isinstance(r, GeneratedAsset) for r in results[1:])
    alone = make_backend().generate_image(_request(2, steps=4)).data
    assert results[1].data == alone  # type: ignore[union-attr]


def test_all_cancelled_interrupts_the_call(make_backend: Callable[..., Backend]) -> None:
    backend = make_backend(max_batch_size=2, batch_window_ms=500)
    steps: list[int] = []

    def cancel_self(control: list[GenerationControl]) -> Callable[[ProgressEvent], None]:
        return lambda event: (steps.append(event.step), control[0].cancel())

    holders: list[list[GenerationControl]] = [[], []]
    controls = [GenerationControl(on_progress=cancel_self(h)) for h in holders]
    for holder, control in zip(holders, controls, strict=True):
        holder.append(control)
    results = _concurrently(backend, [_request(s, steps=20) for s in (1, 2)], controls)
    assert all(isinstance(r, GenerationCancelledError) for r in results)
    assert max(steps) < 20


def test_config_bounds() -> None:
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersBackendConfig

    with pytest.raises(InvalidRequestError, match="max_batch_size"):
        HuggingFaceDiffusersBackendConfig(model_id="x", max_batch_size=0)
    with pytest.raises(InvalidRequestError, match="batch_window_ms"):
        HuggingFaceDiffusersBackendConfig(model_id="x", batch_window_ms=-1)
