"""The OpenAI-compatible server, driven by the official ``openai`` client over real HTTP.

Tiny random-weight Diffusers models (see conftest) generate behind it; faults and limits use a
small stand-in backend so they cost no model time.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from http_servers import half_mask, image_size, png, serving

from abstractvision import VisionManager, media
from abstractvision.backends.base_backend import VisionBackend
from abstractvision.control import GenerationControl
from abstractvision.errors import InvalidRequestError
from abstractvision.openai_server import check_bind, create_app
from abstractvision.types import (
    GeneratedAsset,
    ImageGenerationRequest,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)

TOKEN = "test-token"
# openai marks the video API as deprecated (Sora's end date); the shape is what we serve.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


# --- the real thing: tiny Diffusers models behind the server -----------------------------------


@pytest.fixture(scope="module")
def diffusers_backend(
    tiny_sd_dir: Path, tiny_animatediff_dir: Path, tiny_svd_dir: Path
) -> VisionBackend:
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend

    return HuggingFaceDiffusersVisionBackend(
        model_id=str(tiny_sd_dir),
        models={"text_to_video": str(tiny_animatediff_dir), "image_to_video": str(tiny_svd_dir)},
        device="cpu",
    )


@pytest.fixture(scope="module")
def server(diffusers_backend: VisionBackend) -> Iterator[str]:
    with serving(create_app(VisionManager(diffusers_backend), auth_token=TOKEN)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Any:
    return openai.OpenAI(base_url=server + "/v1", api_key=TOKEN, max_retries=0, timeout=60)


def _b64(result: Any) -> bytes:
    return base64.b64decode(result.data[0].b64_json)


@pytest.mark.slow
def test_images_generate(client: Any) -> None:
    steps = {"steps": 2, "seed": 7}
    first = client.images.generate(prompt="a red cube", size="64x64", extra_body=steps)
    again = client.images.generate(prompt="a red cube", size="64x64", extra_body=steps)
    assert image_size(_b64(first)) == (64, 64)
    assert (first.output_format, first.size) == ("png", "64x64")
    assert _b64(first) == _b64(again)  # the seed travels through HTTP
    wide = client.images.generate(
        prompt="a red cube", size="96x64", output_format="webp", extra_body=steps
    )
    assert image_size(_b64(wide)) == (96, 64)
    assert media.inspect_image(_b64(wide)).format == "webp"
    two = client.images.generate(prompt="x", size="64x64", n=2, extra_body=steps)
    assert len(two.data) == 2 and _b64(two) != base64.b64decode(two.data[1].b64_json)


@pytest.mark.slow
def test_images_edit_with_and_without_mask(client: Any) -> None:
    source = ("in.png", png(), "image/png")
    extra = {"steps": 2, "seed": 1, "strength": 0.8}
    plain = client.images.edit(image=source, prompt="blue", extra_body=extra)
    assert image_size(_b64(plain)) == (64, 64)
    masked = client.images.edit(
        image=source, mask=("m.png", half_mask(), "image/png"), prompt="blue", extra_body=extra
    )
    assert image_size(_b64(masked)) == (64, 64)
    assert _b64(masked) != _b64(plain)


def _poll(client: Any, video_id: str) -> tuple[Any, list[int]]:
    seen = []
    deadline = time.monotonic() + 60
    video = client.videos.retrieve(video_id)
    while video.status in ("queued", "in_progress") and time.monotonic() < deadline:
        seen.append(video.progress)
        time.sleep(0.05)
        video = client.videos.retrieve(video_id)
    return video, seen


@pytest.mark.slow
def test_videos_create_retrieve_download(client: Any) -> None:
    options = {"num_frames": 4, "fps": 4, "steps": 8, "seed": 3}
    video = client.videos.create(prompt="a cube", size="64x64", extra_body=options)
    assert video.status in ("queued", "in_progress") and video.id.startswith("video_")
    video, seen = _poll(client, video.id)
    assert video.status == "completed", video.error
    assert (video.progress, video.size, video.seconds) == (100, "64x64", "1")
    assert any(0 < p < 100 for p in seen), seen  # step progress was visible while it ran
    data = client.videos.download_content(video.id).content
    info = media.video_info(data)
    assert (info.format, info.width, info.height, info.n_frames) == ("mp4", 64, 64, 4)
    thumb = client.videos.download_content(video.id, variant="thumbnail").content
    assert media.inspect_image(thumb).format == "webp"
    assert video.id in {v.id for v in client.videos.list()}
    assert client.videos.delete(video.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


@pytest.mark.slow
def test_image_to_video_from_input_reference(client: Any) -> None:
    video = client.videos.create(
        prompt="move",
        size="64x64",
        input_reference=("ref.png", png(), "image/png"),
        extra_body={"num_frames": 3, "steps": 2, "fps": 3},
    )
    video, _ = _poll(client, video.id)
    assert video.status == "completed", video.error
    info = media.video_info(client.videos.download_content(video.id).content)
    assert (info.width, info.height, info.n_frames) == (64, 64, 3)


@pytest.mark.slow
def test_models_list(client: Any, tiny_sd_dir: Path, tiny_svd_dir: Path) -> None:
    ids = {m.id for m in client.models.list()}
    assert {str(tiny_sd_dir), str(tiny_svd_dir)} <= ids


@pytest.mark.slow
def test_errors_in_openai_shape(client: Any, server: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(prompt="x", size="65x64")
    assert info.value.body["param"] == "width" and "multiple of 8" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(prompt="x", extra_body={"colour": "red"})
    assert info.value.body["param"] == "colour"
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(prompt="x", response_format="url")
    assert info.value.body["param"] == "response_format"
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(prompt="x", model="nobody/nothing")
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", extra_body={"num_frames": 0})
    assert info.value.body["param"] == "num_frames"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    answer = httpx.post(server + "/v1/images/generations", content=b"{nope", headers=_auth())
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


# --- limits, jobs and mounting on a stand-in backend --------------------------------------------


class SlowStub(VisionBackend):
    """Makes a flat image at the asked size; videos take ``steps`` x 50 ms and honour cancel."""

    def __init__(self) -> None:
        self.cancelled = 0

    def get_capabilities(self) -> VisionBackendCapabilities:
        return VisionBackendCapabilities(
            supported_tasks=("text_to_image", "text_to_video"),
            extra_keys={"style": "passed through"},
            models={"text_to_image": ("stub-image",), "text_to_video": ("stub-video",)},
        )

    def generate_image(
        self, request: ImageGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        size = (request.width or 64, request.height or 64)
        data, mime = media.encode_image(media.decode_image(png(size)), "png")
        return GeneratedAsset("image", data, mime, {"width": size[0], "height": size[1]})

    def generate_video(
        self, request: VideoGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        control = control or GenerationControl()
        steps = request.steps or 4
        for step in range(steps):
            if control.cancelled:
                self.cancelled += 1
            control.check()
            control.report(step + 1, steps)
            time.sleep(0.05)
        frames = [media.decode_image(png((64, 64), (10 * i, 0, 0))) for i in range(3)]
        data, mime = media.encode_video(frames, fps=request.fps or 3, format="webp")
        return GeneratedAsset("video", data, mime, {"width": 64, "height": 64})


def test_body_limit_and_unknown_job() -> None:
    app = create_app(VisionManager(SlowStub()), max_body_bytes=2000)
    with serving(app) as url:
        big = httpx.post(url + "/v1/images/generations", json={"prompt": "x" * 5000})
        assert big.status_code == 413 and "2000" in big.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: caught while streaming
            yield b'{"prompt": "'
            yield b"x" * 5000
            yield b'"}'

        streamed = httpx.post(url + "/v1/images/generations", content=chunks())
        assert streamed.status_code == 413
        small = httpx.post(url + "/v1/images/generations", json={"prompt": "x", "size": "72x64"})
        assert small.status_code == 200 and small.json()["size"] == "72x64"
        assert httpx.get(url + "/v1/videos/video_nope").status_code == 404
        models = httpx.get(url + "/v1/models").json()["data"]
        assert {m["id"] for m in models} == {"stub-image", "stub-video"}


def test_delete_cancels_a_running_video_job() -> None:
    stub = SlowStub()
    with serving(create_app(VisionManager(stub))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        video = client.videos.create(prompt="x", extra_body={"steps": 200})
        deadline = time.monotonic() + 10
        while client.videos.retrieve(video.id).progress < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        early = httpx.get(f"{url}/v1/videos/{video.id}/content")
        assert early.status_code == 409 and early.json()["error"]["code"] == "not_ready"
        assert client.videos.delete(video.id).deleted
        deadline = time.monotonic() + 5
        while not stub.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stub.cancelled == 1  # the engine saw the cancellation at its next step


def test_a_shared_device_limit_is_honoured() -> None:
    """``device=`` from outside: a request waits while another front end holds the device."""
    device = threading.BoundedSemaphore(1)
    with serving(create_app(VisionManager(SlowStub()), device=device)) as url:
        device.acquire()
        answers: list[int] = []
        worker = threading.Thread(
            target=lambda: answers.append(
                httpx.post(url + "/v1/images/generations", json={"prompt": "x"}).status_code
            )
        )
        worker.start()
        time.sleep(0.5)
        assert not answers  # still waiting for the device
        device.release()
        worker.join(10)
        assert answers == [200]


def test_non_loopback_bind_needs_a_token() -> None:
    with pytest.raises(InvalidRequestError, match="auth-token"):
        check_bind("0.0.0.0", None, insecure=False)
    check_bind("0.0.0.0", "secret", insecure=False)
    check_bind("0.0.0.0", None, insecure=True)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, None, insecure=False)


def test_form_values_are_converted() -> None:
    with serving(create_app(VisionManager(SlowStub()))) as url:
        form = {"prompt": "x", "steps": "2", "seed": "nope"}
        answer = httpx.post(url + "/v1/videos", data=form)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "seed"
        ok = httpx.post(url + "/v1/videos", files={"prompt": (None, "x"), "steps": (None, "1")})
        assert ok.status_code == 200 and ok.json()["model"] == "stub-video"
        bad = io.BytesIO(b"not an image")
        refused = httpx.post(
            url + "/v1/videos", data={"prompt": "x"}, files={"input_reference": bad}
        )
        assert refused.status_code == 400  # the stub cannot animate images
        assert refused.json()["error"]["code"] == "unsupported"


def test_serve_command_in_a_subprocess(tmp_path: Path) -> None:
    """``abstractvision serve``: one process, OpenAI API and MCP, one token from the env."""
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [
        *(sys.executable, "-m", "abstractvision.cli", "serve", "--backend", "openai"),
        *("--backend-option", "base_url=http://127.0.0.1:9/v1", "--backend-option"),
        *('models={"text_to_image": "remote-model"}', "--port", str(port)),
        *("--store", str(tmp_path), "--log-level", "WARNING"),
    ]
    env = {"ABSTRACTVISION_AUTH_TOKEN": TOKEN, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(url + "/v1/models", headers=_auth())
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
                time.sleep(0.1)
        assert [m["id"] for m in answer.json()["data"]] == ["remote-model"]
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.post(url + "/mcp", json={}).status_code == 401
        accept = {"Accept": "application/json, text/event-stream", **_auth()}
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        assert httpx.post(url + "/mcp", json=hello, headers=accept).status_code == 200
        missing = httpx.get(url + "/v1/nothing", headers=_auth())
        assert missing.status_code == 404 and "error" in missing.json()
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_help_lists_the_server_options() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "abstractvision.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: abstractvision serve")
    assert "--openai" in done.stdout and "--auth-token" in done.stdout
