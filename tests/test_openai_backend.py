"""OpenAICompatibleVisionBackend: round trips through our own server, then faults from a stand-in.

The round trips run tiny Diffusers models behind ``abstractvision.openai_server`` on loopback;
the faults come from a small Starlette app whose behaviour is picked by the first path segment.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_servers import half_mask, image_size, png, serving
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from abstractvision import VisionManager, media
from abstractvision.backends.openai_compatible import (
    OpenAICompatibleBackendConfig,
    OpenAICompatibleVisionBackend,
    RemoteServiceError,
)
from abstractvision.control import GenerationControl, ProgressEvent
from abstractvision.errors import (
    BackendError,
    GenerationCancelledError,
    InvalidRequestError,
)
from abstractvision.openai_server import create_app
from abstractvision.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    VideoGenerationRequest,
)

TOKEN = "backend-test"

# --- through our own server, tiny Diffusers models behind it -----------------------------------


@pytest.fixture(scope="module")
def our_server(tiny_sd_dir: Path, tiny_animatediff_dir: Path, tiny_svd_dir: Path) -> Iterator[str]:
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    local = HuggingFaceDiffusersVisionBackend(
        model_id=str(tiny_sd_dir),
        models={"text_to_video": str(tiny_animatediff_dir), "image_to_video": str(tiny_svd_dir)},
        device="cpu",
    )
    with serving(create_app(VisionManager(local), auth_token=TOKEN)) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def remote(our_server: str) -> Iterator[OpenAICompatibleVisionBackend]:
    backend = OpenAICompatibleVisionBackend(
        base_url=our_server, api_key=TOKEN, poll_interval_s=0.05, timeout_s=60
    )
    yield backend
    backend.close()


SIZE = {"width": 64, "height": 64}


@pytest.mark.slow
def test_four_tasks_round_trip(remote: OpenAICompatibleVisionBackend) -> None:
    image = remote.generate_image(ImageGenerationRequest(prompt="a cube", steps=2, seed=5, **SIZE))
    assert (image.mime_type, image_size(image.data)) == ("image/png", (64, 64))
    again = remote.generate_image(ImageGenerationRequest(prompt="a cube", steps=2, seed=5, **SIZE))
    assert again.data == image.data and image.metadata["seed"] == 5
    webp = remote.generate_image(
        ImageGenerationRequest(prompt="a cube", steps=2, output_format="webp", width=96, height=64)
    )
    assert (webp.mime_type, image_size(webp.data)) == ("image/webp", (96, 64))

    edit = ImageEditRequest(prompt="blue", image=png(), mask=half_mask(), steps=2, seed=1)
    edited = remote.edit_image(edit)
    assert image_size(edited.data) == (64, 64)

    events: list[ProgressEvent] = []
    video = remote.generate_video(
        VideoGenerationRequest(prompt="x", num_frames=4, fps=4, steps=10, seed=1, **SIZE),
        control=GenerationControl(events.append),
    )
    info = media.video_info(video.data)
    assert (video.mime_type, info.width, info.n_frames) == ("video/mp4", 64, 4)
    assert events and events[-1].step == 100 and events[-1].total == 100
    assert video.preview is not None and video.preview_mime_type == "image/webp"
    assert video.metadata["video_id"].startswith("video_")

    animated = remote.image_to_video(
        ImageToVideoRequest(image=png(), num_frames=3, fps=3, steps=2, output_format="webp", **SIZE)
    )
    assert animated.mime_type == "image/webp"
    assert media.video_info(animated.data).n_frames == 3


@pytest.mark.slow
def test_server_errors_arrive_typed(remote: OpenAICompatibleVisionBackend) -> None:
    with pytest.raises(RemoteServiceError) as info:
        remote.generate_image(ImageGenerationRequest(prompt="x", model="nobody/nothing"))
    assert info.value.status_code == 404 and info.value.param == "model"
    assert "nobody/nothing" in str(info.value)


@pytest.mark.slow
def test_through_the_manager_with_a_chain(remote: OpenAICompatibleVisionBackend) -> None:
    """Our server in front of our backend in front of our server: the proxy case."""
    with serving(create_app(VisionManager(remote))) as url:
        proxy = OpenAICompatibleVisionBackend(base_url=url + "/v1")
        asset = VisionManager(proxy).run("text_to_image", {"prompt": "x", "steps": 1, **SIZE})
        assert image_size(asset.data) == (64, 64)  # type: ignore[union-attr]
        proxy.close()


# --- faults from a stand-in server --------------------------------------------------------------


def _png_b64(size: tuple[int, int] = (64, 64)) -> str:
    return base64.b64encode(png(size)).decode()


class Faults:
    """A Starlette app whose first path segment picks a behaviour; it records what it got."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []
        self.parts: list[tuple[str, Any]] = []  # the last multipart body, repeated names kept
        self.calls: dict[str, int] = {}
        self.url = ""
        self.app = Starlette(
            routes=[Route("/{case}/{rest:path}", self.handle, methods=["GET", "POST", "DELETE"])]
        )

    async def handle(self, request: Request) -> Response:
        case, rest = request.path_params["case"], request.path_params["rest"]
        count = self.calls[case] = self.calls.get(case, 0) + 1
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/"):
            form = await request.form()
            self.parts = [
                (k, await v.read() if hasattr(v, "read") else v) for k, v in form.multi_items()
            ]
            body: Any = dict(self.parts)
        else:
            raw = await request.body()
            body = json.loads(raw) if raw else None
        self.seen.append((request.method, f"{case}/{rest}", body))
        self.seen[-1] += (request.headers.get("authorization"),)  # type: ignore[assignment]
        ok = JSONResponse({"data": [{"b64_json": _png_b64()}]})
        if case == "ok":
            return ok
        if case == "flaky":
            if count == 1:
                return JSONResponse({"error": {"message": "slow down"}}, 429, {"Retry-After": "1"})
            return ok
        if case == "broken":
            return JSONResponse(
                {"error": {"message": "engine exploded", "type": "server_error"}}, 500
            )
        if case == "bad":
            error = {"message": "size is wrong", "type": "invalid_request_error", "param": "size"}
            return JSONResponse({"error": error}, 400)
        if case == "slow":
            import anyio

            await anyio.sleep(3)
            return ok
        if case == "malformed":
            return Response(b'{"data": [', media_type="application/json")
        if case == "notb64":
            return JSONResponse({"data": [{"b64_json": "***"}]})
        if case == "notimage":
            return JSONResponse({"data": [{"b64_json": base64.b64encode(b"<svg/>").decode()}]})
        if case == "url-loopback":
            return JSONResponse({"data": [{"url": f"{self.url}/png/x.png"}]})
        if case == "url-file":
            return JSONResponse({"data": [{"url": "file:///etc/passwd"}]})
        if case == "png":
            return Response(png((80, 64)), media_type="image/png")
        if case in ("video", "videofail", "videobig"):
            return self.video(case, request.method, rest, count)
        return JSONResponse({"error": {"message": f"no case {case}"}}, 404)

    def video(self, case: str, method: str, rest: str, count: int) -> Response:
        job = {"id": "vid_1", "object": "video", "model": "m", "size": "64x64"}
        if method == "DELETE":
            return JSONResponse({"id": "vid_1", "deleted": True})
        if rest.endswith("/content"):
            frames = [Image.new("RGB", (64, 64), (i * 40, 0, 0)) for i in range(3)]
            data, mime = media.encode_video(frames, fps=3, format="gif")
            return Response(data * (1000 if case == "videobig" else 1), media_type=mime)
        if method == "POST":
            return JSONResponse({**job, "status": "queued", "progress": 0})
        if case == "videofail" and count >= 3:
            error = {"code": "oops", "message": "ran out of frames"}
            return JSONResponse({**job, "status": "failed", "progress": 40, "error": error})
        done = count >= 4
        status = "completed" if done else "in_progress"
        return JSONResponse({**job, "status": status, "progress": 100 if done else 25 * count})


@pytest.fixture(scope="module")
def faults() -> Iterator[Faults]:
    faults = Faults()
    with serving(faults.app) as url:
        faults.url = url
        yield faults


def backend(faults: Faults, case: str, **options: Any) -> OpenAICompatibleVisionBackend:
    options = {"retry_max_wait_s": 2.0, "poll_interval_s": 0.01, **options}
    return OpenAICompatibleVisionBackend(base_url=f"{faults.url}/{case}", **options)


def t2i(**options: Any) -> ImageGenerationRequest:
    return ImageGenerationRequest(prompt="a cube", **options)


def test_body_fields_auth_and_extra(faults: Faults) -> None:
    remote = backend(faults, "ok", api_key="sk-test", model_id="m1")
    remote.generate_image(t2i(seed=3, steps=2, extra={"quality": "high"}, **SIZE))
    method, path, body, auth = faults.seen[-1]  # type: ignore[misc]
    assert (method, path, auth) == ("POST", "ok/images/generations", "Bearer sk-test")
    assert body == {
        "model": "m1",
        "prompt": "a cube",
        "n": 1,
        "size": "64x64",
        "seed": 3,
        "steps": 2,
        "quality": "high",
        "response_format": "b64_json",
    }
    remote.generate_image(t2i())  # nothing unset is sent
    assert set(faults.seen[-1][2]) == {"model", "prompt", "n", "response_format"}
    with pytest.raises(InvalidRequestError, match=r"extra\.colour"):
        remote.generate_image(t2i(extra={"colour": "red"}))
    with pytest.raises(InvalidRequestError) as info:
        remote.generate_image(t2i(width=64))
    assert info.value.field == "height"
    assert "quality" in remote.get_capabilities().extra_keys


def test_extra_keys_cannot_override_request_fields() -> None:
    with pytest.raises(InvalidRequestError, match="request field"):
        OpenAICompatibleBackendConfig(base_url="http://x", extra_keys={"prompt": "no"})
    remote = OpenAICompatibleVisionBackend(base_url="http://x", extra_keys={"lora": "a LoRA"})
    assert "lora" in remote.get_capabilities().extra_keys
    with pytest.raises(InvalidRequestError):
        OpenAICompatibleBackendConfig(base_url="file:///tmp")


def test_edit_sends_the_mask_the_openai_way(faults: Faults) -> None:
    remote = backend(faults, "ok")
    remote.edit_image(ImageEditRequest(prompt="x", image=png(), mask=half_mask(), strength=0.5))
    _, path, body, _ = faults.seen[-1]  # type: ignore[misc]
    assert path == "ok/images/edits" and body["strength"] == "0.5"
    mask = Image.open(io.BytesIO(body["mask"]))
    assert mask.mode == "RGBA"
    assert mask.getpixel((5, 5))[3] == 0 and mask.getpixel((60, 5))[3] == 255  # clear = edit
    assert body["image"] == png()


def test_reference_images_go_to_gpt_image_as_an_array_and_are_refused_elsewhere(
    faults: Faults,
) -> None:
    first, second, third = png(), png((32, 48)), png((48, 32))
    gpt = backend(faults, "ok", model_id="gpt-image-1")
    gpt.edit_image(ImageEditRequest(prompt="x", image=first, reference_images=(second, third)))
    assert [name for name, _ in faults.parts if name.startswith("image")] == ["image[]"] * 3
    assert [v for name, v in faults.parts if name == "image[]"] == [first, second, third]
    gpt.edit_image(ImageEditRequest(prompt="x", image=first))  # one image: the plain field
    assert [name for name, _ in faults.parts if name.startswith("image")] == ["image"]

    sent = len(faults.seen)
    local = backend(faults, "ok", model_id="local-sd")
    with pytest.raises(InvalidRequestError) as info:
        local.edit_image(ImageEditRequest(prompt="x", image=first, reference_images=(second,)))
    assert info.value.field == "reference_images" and "local-sd" in str(info.value)
    with pytest.raises(InvalidRequestError, match="reference_images"):  # before a job is queued
        VisionManager(local).check(
            "image_to_image", {"prompt": "x", "image": first, "reference_images": [second]}
        )
    assert len(faults.seen) == sent  # nothing was sent with an image dropped


def test_429_is_retried_after_retry_after(faults: Faults) -> None:
    started = time.monotonic()
    asset = backend(faults, "flaky").generate_image(t2i())
    assert time.monotonic() - started >= 0.95 and faults.calls["flaky"] == 2
    assert asset.mime_type == "image/png"


def test_500_gives_up_after_bounded_retries(faults: Faults) -> None:
    with pytest.raises(RemoteServiceError) as info:
        backend(faults, "broken", max_retries=2, retry_max_wait_s=0.01).generate_image(t2i())
    assert info.value.status_code == 500 and "engine exploded" in str(info.value)
    assert faults.calls["broken"] == 3


def test_400_is_not_retried(faults: Faults) -> None:
    with pytest.raises(RemoteServiceError) as info:
        backend(faults, "bad").generate_image(t2i())
    assert (info.value.status_code, info.value.param, faults.calls["bad"]) == (400, "size", 1)


def test_slow_response_times_out_without_retry(faults: Faults) -> None:
    started = time.monotonic()
    with pytest.raises(BackendError, match="timed out"):
        backend(faults, "slow", timeout_s=0.5).generate_image(t2i())
    assert time.monotonic() - started < 2 and faults.calls["slow"] == 1


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("malformed", "malformed JSON"),
        ("notb64", "not base64"),
        ("notimage", "unusable image"),
        ("url-loopback", "non-public address 127.0.0.1"),
        ("url-file", r"http:// or https://"),
    ],
)
def test_bad_results_are_refused(faults: Faults, case: str, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        backend(faults, case).generate_image(t2i())


def test_url_results_when_private_addresses_are_allowed(faults: Faults) -> None:
    remote = backend(faults, "url-loopback", allow_private_urls=True, response_format="url")
    asset = remote.generate_image(t2i(output_format="jpeg"))
    assert faults.seen[-2][2]["response_format"] == "url"
    assert (asset.mime_type, image_size(asset.data)) == ("image/jpeg", (80, 64))  # re-encoded
    capped = backend(faults, "url-loopback", allow_private_urls=True, max_result_bytes=100)
    with pytest.raises(BackendError, match="at most 100 bytes"):
        capped.generate_image(t2i())


def test_video_job_progress_and_download(faults: Faults) -> None:
    events: list[ProgressEvent] = []
    asset = backend(faults, "video", model_id="m").generate_video(
        VideoGenerationRequest(prompt="x", num_frames=3, extra={"seconds": "4"}),
        control=GenerationControl(events.append),
    )
    assert [e.step for e in events] == [0, 50, 75, 100]
    assert asset.mime_type == "image/gif" and asset.metadata["num_frames"] == 3
    posted = next(b for m, p, b, _ in faults.seen if m == "POST" and p.startswith("video/"))
    assert posted == {"model": "m", "prompt": "x", "num_frames": 3, "seconds": "4"}


def test_video_failure_and_oversize(faults: Faults) -> None:
    with pytest.raises(BackendError, match="ran out of frames"):
        backend(faults, "videofail").generate_video(VideoGenerationRequest(prompt="x"))
    with pytest.raises(BackendError, match="max_result_bytes"):
        backend(faults, "videobig", max_result_bytes=50_000).generate_video(
            VideoGenerationRequest(prompt="x")
        )
    deletes = [p for m, p, _, _ in faults.seen if m == "DELETE"]
    assert "videofail/videos/vid_1" in deletes and "videobig/videos/vid_1" in deletes


def test_cancelled_video_job_is_deleted(faults: Faults) -> None:
    control = GenerationControl()
    remote = backend(faults, "video", poll_interval_s=5.0)
    threading.Timer(0.3, control.cancel).start()
    started = time.monotonic()
    with pytest.raises(GenerationCancelledError):
        remote.generate_video(VideoGenerationRequest(prompt="x"), control=control)
    assert time.monotonic() - started < 2  # the poll wait ends at the cancellation
    assert faults.seen[-1][:2] == ("DELETE", "video/videos/vid_1")


def test_one_pooled_client_shared_by_threads(faults: Faults) -> None:
    remote = backend(faults, "ok")
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(remote.generate_image(t2i())))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8
    client = remote._http.client
    assert client is remote._http.client
    remote.close()
