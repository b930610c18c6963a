"""AbstractCore 2.30 (the real package) runs vision on our backends through its plugin entry point.

No LLM is called: ``create_llm`` only builds the host; ``llm.vision`` and
``llm.generate(output=...)`` go to the capability plugin, which runs our Diffusers backend on a
tiny local model. AbstractCore's server is served by uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import abstractcore  # noqa: F401  scripts/test installs it (--no-deps beside mcp 2); a miss fails
import httpx
import pytest
from http_servers import half_mask, image_size, png, serving

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("ABSTRACTVISION_", "ABSTRACTCORE_VISION", "OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture
def llm(tiny_sd_dir):  # type: ignore[no-untyped-def]
    from abstractcore import create_llm

    return create_llm(
        "openai",
        model="gpt-4o-mini",
        api_key="sk-unused",  # no text generation happens
        vision_backend="diffusers",
        vision_model_id=str(tiny_sd_dir),
        vision_device="cpu",
    )


def test_it_is_abstractcore_2_30_that_loads_our_plugin() -> None:
    assert importlib.metadata.version("abstractcore") == "2.30.0"
    names = {
        ep.value
        for ep in importlib.metadata.entry_points(group="abstractcore.capabilities_plugins")
    }
    assert "abstractvision.integrations.abstractcore_plugin:register" in names


def test_pip_resolves_abstractcore_2_30_beside_this_checkout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``pip install abstractcore==2.30.0 <checkout>`` resolves and keeps our version: none of
    our base requirements conflicts with AbstractCore's (pip asks the package index)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), "abstractcore==2.30.0", root],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    planned = {
        item["metadata"]["name"].lower(): item for item in json.loads(report.read_text())["install"]
    }
    assert planned["abstractcore"]["metadata"]["version"] == "2.30.0"
    ours = planned["abstractvision"]
    assert ours["metadata"]["version"].startswith("0.4"), ours["metadata"]["version"]
    assert ours["download_info"]["url"].startswith("file://"), ours["download_info"]["url"]


def test_t2i_returns_png_bytes_from_our_diffusers_backend(llm, tiny_sd_dir) -> None:  # type: ignore[no-untyped-def]
    out = llm.vision.t2i("a red cube", width=64, height=64, steps=2, seed=1)
    assert isinstance(out, bytes) and out.startswith(PNG) and image_size(out) == (64, 64)
    assert llm.vision.backend_id == "abstractvision:openai"
    again = llm.vision.t2i("a red cube", width=64, height=64, steps=2, seed=1)
    assert again == out  # same seed, same image, on the warm backend

    # a batch: image k is the single call with seeds[k]
    batch = llm.vision.t2i_batch("a red cube", width=64, height=64, steps=2, seeds=[1, 2])
    assert len(batch) == 2 and batch[0] == out and batch[1] != out

    loaded = llm.vision.list_loaded_models()
    assert [(r["backend_kind"], r["model"]) for r in loaded] == [("diffusers", str(tiny_sd_dir))]
    gone = llm.vision.unload_resident_model({"model": str(tiny_sd_dir)})
    assert gone["state"] == "unloaded" and llm.vision.list_loaded_models() == []


def test_edit_with_mask_and_runtime_artifact_store(llm) -> None:  # type: ignore[no-untyped-def]
    from abstractruntime.storage.artifacts import InMemoryArtifactStore

    store = InMemoryArtifactStore()
    ref = llm.vision.i2i(
        "make it blue", png(), mask=half_mask(), steps=2, seed=3, artifact_store=store, run_id="r1"
    )
    assert "$artifact" in ref
    stored = store.load(ref["$artifact"])
    data = stored if isinstance(stored, bytes) else stored.content
    assert data.startswith(PNG)
    # a ref as the input image, read back through the same store
    again = llm.vision.i2i("sharper", ref, steps=2, seed=3, artifact_store=store)
    assert "$artifact" in again and again["$artifact"] != ref["$artifact"]


def test_generate_with_image_output_goes_through_the_plugin(llm) -> None:  # type: ignore[no-untyped-def]
    result = llm.generate(
        "a red cube", output={"modality": "image", "width": 64, "height": 64, "steps": 2, "seed": 1}
    )
    (item,) = result.outputs["image"]
    assert item.backend_id == "abstractvision:openai" and item.data.startswith(PNG)


def test_bad_value_is_refused_with_field_value_and_limit(llm) -> None:  # type: ignore[no-untyped-def]
    from abstractvision import InvalidRequestError

    with pytest.raises(InvalidRequestError) as info:
        llm.vision.t2i("a red cube", width=65, steps=2)
    assert info.value.field == "width" and "multiple of 8" in info.value.limit


def test_abstractcore_server_images_and_vision_models(
    tiny_sd_dir, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ABSTRACTCORE_SERVER_ALLOW_UNAUTHENTICATED", "1")
    monkeypatch.setenv("ABSTRACTVISION_DIFFUSERS_DEVICE", "cpu")
    # a registry model in the HF cache: AbstractCore's catalogue reads spec.provider/.license
    snapshot = tmp_path / "hub" / "models--stabilityai--sd-turbo" / "snapshots" / "abc"
    (snapshot / "unet").mkdir(parents=True)
    (snapshot / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (snapshot / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    from abstractcore.server.app import app

    with serving(app) as base, httpx.Client(base_url=base, timeout=120) as http:
        body = {
            "prompt": "a red cube",
            "model": f"diffusers/{tiny_sd_dir}",
            "width": 64,
            "height": 64,
            "steps": 2,
            "seed": 1,
        }
        r = http.post("/v1/images/generations", json=body)
        assert r.status_code == 200, r.text
        data = base64.b64decode(r.json()["data"][0]["b64_json"])
        assert data.startswith(PNG) and image_size(data) == (64, 64)
        r = http.get("/v1/vision/models")
        assert r.status_code == 200, r.text
        assert r.json()["registry_available"] is True
        assert "stabilityai/sd-turbo" in {m["id"] for m in r.json()["models"]}


def test_plugin_registration_is_import_light() -> None:
    code = (
        "import sys, json\n"
        "from abstractvision.integrations.abstractcore_plugin import register\n"
        "calls = []\n"
        "class R:\n"
        "    def register_vision_backend(self, **kw): calls.append(kw['backend_id'])\n"
        "register(R())\n"
        "heavy = [m for m in ('torch', 'diffusers', 'PIL', 'pydantic', 'mcp') if m in sys.modules]\n"
        "print(json.dumps([calls, heavy]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    calls, heavy = json.loads(out.stdout)
    assert calls == ["abstractvision:openai", "abstractvision:openai-compatible"]
    assert heavy == []


def test_make_vision_tools_are_abstractcore_tools_over_the_manager(tiny_sd_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from abstractvision import LocalAssetStore, VisionManager
    from abstractvision.backends import create_backend
    from abstractvision.integrations import make_vision_tools

    vm = VisionManager(
        backend=create_backend("diffusers", model_id=str(tiny_sd_dir), device="cpu"),
        store=LocalAssetStore(tmp_path),
    )
    tools = {t._tool_definition.name: t for t in make_vision_tools(vision_manager=vm)}
    assert {"vision_text_to_image", "vision_image_to_image", "vision_list_adapters"} <= set(tools)
    assert "vision_text_to_video" not in tools  # the tiny SD model cannot
    ref = tools["vision_text_to_image"](prompt="a red cube", width=64, height=64, steps=2, seed=1)
    assert vm.store.load_bytes(ref["$artifact"]).startswith(PNG)
    edited = tools["vision_image_to_image"](prompt="blue", image_artifact=ref, steps=2, seed=1)
    assert "$artifact" in edited
    bad = tools["vision_text_to_image"](prompt="x", width=65)
    assert bad["field"] == "width"


def test_available_providers_keeps_the_shape_abstractcore_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from abstractcore import create_llm

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ABSTRACTVISION_ASSUME_OFFLINE", "1")
    llm = create_llm("openai", model="gpt-4o-mini", api_key="sk-unused")
    out = llm.vision.available_providers()
    assert {"openai-compatible", "diffusers", "sdcpp"} <= set(out["available_providers"])
    assert "openai" not in out["available_providers"]  # offline, and no vision key
    assert out["details"]["openai-compatible"]["reachable"] is True
    assert llm.vision.list_provider_models() == []  # an endpoint, but no model configured


def test_upscale_image_through_abstractcore(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from abstractcore import create_llm
    from tiny_upscalers import build_tiny_ldm_sr

    ldm = build_tiny_ldm_sr(tmp_path / "ldm-sr")
    llm = create_llm(
        "openai",
        model="gpt-4o-mini",
        api_key="sk-unused",
        vision_backend="diffusers",
        vision_model_id=str(ldm),
        vision_device="cpu",
    )
    out = llm.vision.upscale_image(png(), resolution="4x", steps=2, seed=3)
    assert out.startswith(PNG) and image_size(out) == (256, 256)


def test_abstractcore_server_job_reports_our_progress(
    tiny_sd_dir, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """AbstractCore's job endpoint calls our backend itself with 0.3.x progress hooks in
    ``extra``: the job succeeds and its progress is the engine's steps; a masked edit too."""
    import time

    monkeypatch.setenv("ABSTRACTCORE_SERVER_ALLOW_UNAUTHENTICATED", "1")
    monkeypatch.setenv("ABSTRACTVISION_DIFFUSERS_DEVICE", "cpu")
    from abstractcore.server.app import app

    body = {"prompt": "a red cube", "model": f"diffusers/{tiny_sd_dir}", "steps": 2, "seed": 1}
    with serving(app) as base, httpx.Client(base_url=base, timeout=120) as http:
        r = http.post("/v1/vision/jobs/images/generations", json={**body, "width": 64})
        assert r.status_code == 200, r.text
        url = f"/v1/vision/jobs/{r.json()['job_id']}"
        job = http.get(url).json()
        for _ in range(600):  # until the job's thread is done
            if job["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
            job = http.get(url).json()
        form = {"prompt": "blue", "model": body["model"], "steps": "2", "seed": "1"}
        files = {
            "image": ("a.png", png(), "image/png"),
            "mask": ("m.png", half_mask(), "image/png"),
        }
        edit = http.post("/v1/images/edits", data=form, files=files)
    assert edit.status_code == 200, edit.text
    assert image_size(base64.b64decode(edit.json()["data"][0]["b64_json"])) == (64, 64)
    assert job["state"] == "succeeded", job.get("error")
    event = job["progress"]["last_event"]
    assert (event["step"], event["total_steps"], event["progress_source"]) == (2, 2, "provider")


# --- provider="endpoint:<id>": AbstractCore endpoint profiles --------------------------------


@pytest.fixture
def relay() -> Iterator[dict[str, Any]]:
    """A stand-in OpenAI-compatible image service on loopback that records each request's path,
    Authorization header and model, and answers with a real PNG."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[tuple[str, str | None, str | None]] = []

    async def images(request: Request) -> JSONResponse:
        if request.url.path.endswith("/edits"):
            model = (await request.form()).get("model")
        else:
            model = (await request.json()).get("model")
        seen.append((request.url.path, request.headers.get("authorization"), model))
        return JSONResponse({"data": [{"b64_json": base64.b64encode(png()).decode()}]})

    routes = [Route(f"/v1/images/{p}", images, methods=["POST"]) for p in ("generations", "edits")]
    with serving(Starlette(routes=routes)) as url:
        yield {"base_url": url + "/v1", "seen": seen}


def _profile(relay: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A profile as AbstractCore's resolvers hand it over (``private_resolution()`` shape)."""
    return {
        "id": "relay",
        "provider": "openai-compatible",
        "provider_family": "openai-compatible",
        "base_url": relay["base_url"],
        "api_key": "relay-key",
        "enabled": True,
        **changes,
    }


def _host_llm(**kwargs: Any) -> Any:
    from abstractcore import create_llm

    return create_llm("openai", model="gpt-4o-mini", api_key="sk-unused", **kwargs)


def test_endpoint_profile_of_the_host_routes_t2i_and_i2i(
    relay, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The resolver a host attaches to the LLM (as AbstractRuntime does) names the endpoint; the
    calls reach it with the profile's key, never the environment's OpenAI key or base URL."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    llm = _host_llm()
    asked: list[str] = []

    def resolve(spec: str) -> dict[str, Any] | None:
        asked.append(spec)
        return _profile(relay) if spec == "endpoint:relay" else None

    llm.resolve_provider_endpoint_profile = resolve
    out = llm.vision.t2i("a red cube", provider="endpoint:relay", model="gpt-image-2")
    assert out.startswith(PNG) and image_size(out) == (64, 64)
    edited = llm.vision.i2i("make it blue", png(), provider="endpoint:relay", model="gpt-image-2")
    assert edited.startswith(PNG)
    assert asked[0] == "endpoint:relay"
    assert relay["seen"] == [
        ("/v1/images/generations", "Bearer relay-key", "gpt-image-2"),
        ("/v1/images/edits", "Bearer relay-key", "gpt-image-2"),
    ]
    (record,) = llm.vision.list_loaded_models({"provider": "endpoint:relay"})
    assert (record["backend_kind"], record["model"]) == ("openai-compatible", "gpt-image-2")
    gone = llm.vision.unload_resident_model({"load_id": record["load_id"]})
    assert gone["state"] == "unloaded" and llm.vision.list_loaded_models() == []


def test_endpoint_profile_from_the_ambient_resolver_without_a_key(
    relay, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """AbstractCore's ambient resolver (a host's context) is consulted when the LLM has none; an
    OpenAI-compatible profile without a key sends none (OPENAI_API_KEY is not borrowed)."""
    from abstractcore.providers.endpoint_context import use_provider_endpoint_profile_resolver

    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    llm = _host_llm()
    with use_provider_endpoint_profile_resolver(lambda spec: _profile(relay, api_key="")):
        assert llm.vision.t2i("a cube", provider="endpoint:relay", model="m1").startswith(PNG)
    assert relay["seen"] == [("/v1/images/generations", None, "m1")]


def test_endpoint_profile_from_abstractcore_config(relay, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A profile in AbstractCore's config file (the LLM's ``_abstractcore_config_file``); its first
    allowed model is the default; a rotated key gets a new backend, so the new key is sent."""
    from abstractcore.config.manager import ConfigurationManager

    config_file = tmp_path / "abstractcore.json"
    manager = ConfigurationManager(config_file=str(config_file), apply_env=False)
    profile = dict(
        provider_family="openai-compatible",
        base_url=relay["base_url"],
        allowed_models=["cfg-model"],
    )
    manager.set_provider_profile("cfgrelay", api_key="key-1", **profile)
    llm = _host_llm(_abstractcore_config_file=str(config_file))
    assert llm.vision.t2i("a cube", provider="endpoint:cfgrelay").startswith(PNG)
    manager.set_provider_profile("cfgrelay", api_key="key-2", **profile)
    assert llm.vision.t2i("a cube", provider="endpoint:cfgrelay").startswith(PNG)
    assert relay["seen"] == [
        ("/v1/images/generations", "Bearer key-1", "cfg-model"),
        ("/v1/images/generations", "Bearer key-2", "cfg-model"),
    ]


def test_endpoint_profile_refusals_name_the_profile_never_the_key(relay) -> None:  # type: ignore[no-untyped-def]
    from abstractvision import InvalidRequestError

    llm = _host_llm()
    profiles = {
        "endpoint:claude": _profile(relay, provider="anthropic", provider_family="anthropic"),
        "endpoint:off": _profile(relay, enabled=False),
        "endpoint:nourl": _profile(relay, base_url=""),
    }
    llm.resolve_provider_endpoint_profile = profiles.get
    for spec, limit in [
        ("endpoint:missing", "unknown or disabled"),
        ("endpoint:off", "unknown or disabled"),
        ("endpoint:claude", "'openai' or 'openai-compatible'"),
        ("endpoint:nourl", "no base_url"),
    ]:
        with pytest.raises(InvalidRequestError) as info:
            llm.vision.t2i("x", provider=spec, model="m")
        assert (info.value.field, info.value.value) == ("provider", spec)
        assert limit in info.value.limit and "relay-key" not in str(info.value)
    assert relay["seen"] == []


def test_openai_endpoint_profile_without_base_url_is_the_openai_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An 'openai' profile may leave out base_url (api.openai.com) and model (gpt-image-1); it
    needs a key of its own or OPENAI_API_KEY. Loading builds the backend and calls nothing."""
    from abstractvision import InvalidRequestError

    llm = _host_llm()
    profiles = {
        "endpoint:myopenai": {"provider_family": "openai", "base_url": "", "api_key": ""},
        "endpoint:compatible": {"provider_family": "openai-compatible", "base_url": ""},
    }
    llm.resolve_provider_endpoint_profile = profiles.get
    with pytest.raises(InvalidRequestError, match="no API key"):
        llm.vision.list_provider_adapters(provider="endpoint:myopenai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert llm.vision.list_provider_adapters(provider="endpoint:myopenai") == []
    with pytest.raises(InvalidRequestError, match="no base_url"):  # only 'openai' has a default
        llm.vision.list_provider_adapters(provider="endpoint:compatible")


def test_openai_endpoint_profile_without_a_key_uses_openai_api_key(
    relay, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    llm = _host_llm()
    profile = {"provider_family": "openai", "base_url": relay["base_url"], "api_key": ""}
    llm.resolve_provider_endpoint_profile = lambda spec: profile
    assert llm.vision.t2i("a cube", provider="endpoint:myopenai").startswith(PNG)
    assert relay["seen"] == [("/v1/images/generations", "Bearer sk-env", "gpt-image-1")]


# --- residency: model switches, resident models, records (0.3.x semantics) -------------------


@pytest.fixture
def local_llm():  # type: ignore[no-untyped-def]
    return _host_llm(vision_backend="diffusers", vision_device="cpu")


def _ids(records: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    return [(r["load_id"], r["state"], r["tasks"]) for r in records]


VIDEO = {"width": 64, "height": 64, "num_frames": 4, "steps": 1, "seed": 1}
IMAGE = {"width": 64, "height": 64, "steps": 2, "seed": 1}


def test_a_switch_unloads_the_previous_local_model_but_not_a_resident_one(
    local_llm, tiny_sd_dir, tiny_animatediff_dir
) -> None:  # type: ignore[no-untyped-def]
    from abstractvision import InvalidRequestError

    vision, sd, video = local_llm.vision, str(tiny_sd_dir), str(tiny_animatediff_dir)
    assert vision.t2i("a cube", model=sd, **IMAGE).startswith(PNG)
    (record,) = vision.list_loaded_models()
    assert (record["provider"], record["backend_kind"], record["source"]) == (
        "huggingface",
        "diffusers",
        "request",
    )
    assert _ids([record]) == [(f"diffusers/{sd}", "active", ["text_to_image"])]
    vision.t2v("a cube", model=video, **VIDEO)
    assert _ids(vision.list_loaded_models()) == [
        (f"diffusers/{video}", "active", ["text_to_video"])
    ]

    # preloaded (AbstractCore's task names and provider aliases): kept across switches
    state = vision.load_resident_model({"task": "image_generation", "provider": "hf", "model": sd})
    assert (state["state"], state["task"], state["loaded_new"]) == (
        "resident",
        "text_to_image",
        True,
    )
    assert vision.load_resident_model({"provider": "diffusers", "model": sd})["loaded_new"] is False
    vision.t2v("a cube", model=video, **VIDEO)
    assert vision.i2i("blue", png(), model=sd, steps=2, seed=1).startswith(PNG)  # video goes
    assert _ids(vision.list_loaded_models()) == [
        (f"diffusers/{sd}", "resident", ["image_to_image", "text_to_image"])
    ]
    assert vision.list_resident_models({"task": "i2i", "provider": "huggingface"})

    vision.load_resident_model({"model": video, "task": "t2v"})
    with pytest.raises(InvalidRequestError, match="Ambiguous unload request"):
        vision.unload_resident_model({"provider": "diffusers"})
    gone = vision.unload_resident_model({"task": "t2v"})
    assert (gone["load_id"], gone["state"], gone["resident"]) == (
        f"diffusers/{video}",
        "unloaded",
        False,
    )
    assert [r["load_id"] for r in vision.list_loaded_models()] == [f"diffusers/{sd}"]


def test_a_model_running_a_call_is_not_unloaded_by_a_switch(
    local_llm, tiny_sd_dir, tiny_animatediff_dir
) -> None:  # type: ignore[no-untyped-def]
    """Call A (on_progress held at its first step) and call B on another local model: B does not
    unload A's model under it; A finishes; the next switch unloads it. AbstractCore's 0.3.x
    progress keywords report each step."""
    import threading

    vision, sd, video = local_llm.vision, str(tiny_sd_dir), str(tiny_animatediff_dir)
    started, b_done = threading.Event(), threading.Event()
    events: list[tuple[str, int, int]] = []
    steps: list[tuple[int, int]] = []
    waited: list[bool] = []
    result: list[bytes] = []

    def on_progress(event: Any) -> None:
        events.append((event.phase, event.step, event.total_steps))
        if not started.is_set():
            started.set()
            waited.append(b_done.wait(120))

    def call_a() -> None:
        result.append(
            vision.t2i(
                "a cube",
                model=sd,
                on_progress=on_progress,
                progress_callback=lambda step, total: steps.append((step, total)),
                **IMAGE,
            )
        )

    thread = threading.Thread(target=call_a)
    thread.start()
    assert started.wait(120)
    vision.t2v("a cube", model=video, **VIDEO)
    b_done.set()
    thread.join(120)
    assert waited == [True] and result and result[0].startswith(PNG)
    assert events == [("denoise", 1, 2), ("denoise", 2, 2)] and steps == [(1, 2), (2, 2)]
    assert {r["model"] for r in vision.list_loaded_models()} == {sd, video}
    vision.t2v("a cube", model=video, **VIDEO)  # A's model is idle now: this switch unloads it
    assert [r["model"] for r in vision.list_loaded_models()] == [video]


def test_residency_of_a_remote_service_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from abstractvision.errors import CapabilityNotSupportedError

    llm = _host_llm(vision_base_url="http://127.0.0.1:9/v1")
    with pytest.raises(CapabilityNotSupportedError, match="only available for in-process local"):
        llm.vision.load_resident_model({"task": "text_to_image", "model": "server/default"})
    assert llm.vision.list_loaded_models() == []


def test_0_3_x_keywords_and_catalogue_shape_through_a_0_3_x_backend() -> None:
    """A 0.3.x custom backend (vision_backend_instance) reads ``request.guidance_2`` /
    ``flow_shift`` given as AbstractCore keywords, and gets its own progress hooks in ``extra``;
    its catalogue comes back as JSON (lists) with a long raw value cut."""
    from abstractvision.types import GeneratedAsset, ProviderModelInfo

    seen: list[Any] = []

    def hook(event: Any) -> None:
        return None

    class OldBackend:  # 0.3.x duck-typed backend
        def generate_video(self, request: Any) -> GeneratedAsset:
            seen.append(request)
            return GeneratedAsset(
                media_type="video",
                data=b"\x00\x00\x00\x18ftypmp42",
                mime_type="video/mp4",
                metadata={},
            )

        def list_provider_models(self, *, task: str | None = None) -> list[ProviderModelInfo]:
            raw = {"note": "x" * 5000, "tags": list(range(80))}
            return [ProviderModelInfo(id="m", capabilities=("text_to_video",), raw=raw)]

    llm = _host_llm(vision_backend_instance=OldBackend())
    llm.vision.t2v_batch("move", seeds=[7, 8], guidance_2=3.0, flow_shift=5.0, on_progress=hook)
    assert [(r.seed, r.guidance_2, r.flow_shift) for r in seen] == [(7, 3.0, 5.0), (8, 3.0, 5.0)]
    assert seen[0].extra["on_progress"] is hook
    (info,) = llm.vision.list_provider_models()
    json.dumps(info)
    assert info["capabilities"] == ["text_to_video"]
    assert info["raw"]["note"].endswith("...<truncated>") and len(info["raw"]["note"]) < 4200
    assert len(info["raw"]["tags"]) == 51 and info["raw"]["tags"][-1] == "...<truncated>"


def test_a_hub_model_without_provider_runs_on_local_diffusers(tiny_sd_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No vision backend configured (the default is the OpenAI API) and ``model="owner/name"``:
    the call runs on local Diffusers from the Hub cache, as 0.3.x routed it; with a base URL
    configured the id goes to that service (which may host it)."""
    import shutil

    from abstractvision import model_cache

    shutil.copytree(tiny_sd_dir, tmp_path / "sd")
    cache = str(tmp_path / "hub")
    model_cache.ensure_hf_repo_snapshot(
        "tiny-org/tiny-sd", source_dir=tmp_path / "sd", cache_dir=cache
    )
    llm = _host_llm(vision_device="cpu", vision_cache_dir=cache)
    assert llm.vision.t2i("a cube", model="tiny-org/tiny-sd", **IMAGE).startswith(PNG)
    (record,) = llm.vision.list_loaded_models()
    assert (record["load_id"], record["backend_kind"]) == (
        "diffusers/tiny-org/tiny-sd",
        "diffusers",
    )

    from abstractvision.errors import BackendError

    remote = _host_llm(vision_base_url="http://127.0.0.1:9/v1", vision_timeout_s=5)
    with pytest.raises(BackendError, match=r"127\.0\.0\.1:9/v1/images/generations"):
        remote.vision.t2i("a cube", model="tiny-org/tiny-sd")  # the service was asked
    assert remote.vision.list_loaded_models() == []


def test_0_3_x_sdcpp_binary_setting_warns_that_it_has_no_effect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``vision_sdcpp_bin`` (0.3.x's sd-cli) reaches the sd.cpp config, which says why it does
    nothing (0.4 runs the bindings) instead of dropping it silently. Nothing loads."""
    llm = _host_llm(
        vision_backend="sdcpp",
        vision_sdcpp_model=str(tmp_path / "model.gguf"),
        vision_sdcpp_bin="/opt/sd-cli",
    )
    with pytest.warns(DeprecationWarning, match=r"sd_cli_path='/opt/sd-cli'.*no effect"):
        assert llm.vision.list_provider_adapters() == []


def test_make_vision_tools_without_abstractcore_names_the_package(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """abstractvision does not depend on AbstractCore: without it (the import fails),
    make_vision_tools raises OptionalDependencyMissingError (an ImportError) naming it."""
    from abstractvision import LocalAssetStore, OptionalDependencyMissingError, VisionManager
    from abstractvision.integrations import make_vision_tools

    monkeypatch.setitem(sys.modules, "abstractcore", None)  # the fault: AbstractCore absent
    vm = VisionManager(store=LocalAssetStore(tmp_path))
    with pytest.raises(OptionalDependencyMissingError, match="abstractcore") as info:
        make_vision_tools(vision_manager=vm)
    assert isinstance(info.value, ImportError)


def test_reference_images_as_abstractcore_passes_them(build_model_once, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """AbstractCore hands media over as file paths, reference images beside ``extra`` or in it:
    each reaches a FLUX.2 edit as an image (the result differs from the edit without them), and
    a 0.3.x backend gets them, as bytes, in ``extra`` as it did."""
    import tiny_families

    from abstractvision.types import GeneratedAsset

    klein = build_model_once(
        "family-flux2-klein", lambda p: tiny_families.build_family("flux2-klein", p)
    )
    image, ref_a, ref_b = tmp_path / "in.png", tmp_path / "a.png", tmp_path / "b.png"
    image.write_bytes(png())
    ref_a.write_bytes(png(color=(250, 250, 0)))
    ref_b.write_bytes(png((64, 96), (0, 0, 250)))
    b64 = base64.b64encode(ref_b.read_bytes()).decode()
    llm = _host_llm(vision_backend="diffusers", vision_model_id=str(klein), vision_device="cpu")
    call = {"steps": 2, "seed": 4}
    fast = {"max_sequence_length": 32}
    plain = llm.vision.i2i("a cube", str(image), extra=fast, **call)
    with_refs = llm.vision.i2i(
        "a cube",
        str(image),
        reference_images=[str(ref_a)],
        extra={**fast, "reference_images": [f"data:image/png;base64,{b64}"]},
        **call,
    )
    assert plain.startswith(PNG) and with_refs.startswith(PNG) and with_refs != plain

    seen: list[Any] = []

    class OldBackend:  # 0.3.x duck-typed backend
        def edit_image(self, request: Any) -> GeneratedAsset:
            seen.append(request)
            return GeneratedAsset(
                media_type="image", data=png(), mime_type="image/png", metadata={}
            )

    old = _host_llm(vision_backend_instance=OldBackend())
    old.vision.i2i("x", str(image), reference_images=[str(ref_a), {"b64": b64}])
    assert seen[0].extra["reference_images"] == [ref_a.read_bytes(), ref_b.read_bytes()]
    assert seen[0].image == image.read_bytes()
