"""0.3.34's documented Python examples (its README and docs/) run as written against 0.4.

Each snippet is kept word for word, with one substitution where it names something that is on
the internet: its ``http://localhost:1234/v1`` becomes our own OpenAI-compatible server on
127.0.0.1 (a tiny Diffusers model behind it), and the Diffusers example's hub id becomes a tiny
local model folder. MLX-Gen examples are left out (no MLX backend in 0.4).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_servers import image_size, serving

from abstractvision import VisionManager

pytestmark = pytest.mark.slow

PLACEHOLDER_URL = "http://localhost:1234/v1"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def openai_url(tiny_sd_dir: Path) -> Iterator[str]:
    """Our OpenAI-compatible server; it takes the README's ``YOUR_KEY`` and keyless calls alike."""
    from abstractvision.backends.huggingface_diffusers import HuggingFaceDiffusersVisionBackend
    from abstractvision.openai_server import create_app

    local = HuggingFaceDiffusersVisionBackend(model_id=str(tiny_sd_dir), device="cpu")
    with serving(create_app(VisionManager(local))) as url:
        yield url + "/v1"


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LocalAssetStore()`` with no folder writes under the user's home: keep it in tmp."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def run(snippet: str, **substitutions: str) -> dict[str, Any]:
    code = textwrap.dedent(snippet)
    for old, new in substitutions.items():
        assert old in code, old
        code = code.replace(old, new)
    namespace: dict[str, Any] = {}
    exec(compile(code, "<0.3.34 example>", "exec"), namespace)
    return namespace


README_REGISTRY = """
from abstractvision import VisionModelCapabilitiesRegistry

reg = VisionModelCapabilitiesRegistry()
assert reg.supports("runwayml/stable-diffusion-v1-5", "text_to_image")
assert reg.supports("Qwen/Qwen-Image-Edit-2511", "image_to_image")

print(reg.list_tasks())
print(reg.models_for_task("text_to_image"))
print(reg.models_for_task("image_to_image"))
"""

README_OPENAI = """
from abstractvision import LocalAssetStore, VisionManager, VisionModelCapabilitiesRegistry, is_artifact_ref
from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

reg = VisionModelCapabilitiesRegistry()

backend = OpenAICompatibleVisionBackend(
    config=OpenAICompatibleBackendConfig(
        base_url="http://localhost:1234/v1",
        api_key="YOUR_KEY",      # optional for local servers
        model_id="REMOTE_MODEL", # optional (server-dependent)
    )
)

vm = VisionManager(
    backend=backend,
    store=LocalAssetStore(),         # enables artifact-ref outputs
    model_id="Qwen/Qwen-Image-Edit-2511",  # optional: capability gating
    registry=reg,                   # optional: reuse loaded registry
)

out = vm.generate_image("a cinematic photo of a red fox in snow")
assert is_artifact_ref(out)
print(out)  # {"$artifact": "...", "content_type": "...", ...}

png_bytes = vm.store.load_bytes(out["$artifact"])  # type: ignore[union-attr]
"""

README_TOOLS = """
from abstractvision.integrations.abstractcore import make_vision_tools

tools = make_vision_tools(vision_manager=vm, model_id="Qwen/Qwen-Image-Edit-2511")
"""

API_PROVIDER_MODELS = """
from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

backend = OpenAICompatibleVisionBackend(
    config=OpenAICompatibleBackendConfig(base_url="http://localhost:1234/v1")
)
for model in backend.list_provider_models(task="text_to_image"):
    print(model.id)
"""

API_OPENAI = """
from abstractvision import LocalAssetStore, VisionManager, is_artifact_ref
from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

backend = OpenAICompatibleVisionBackend(
    config=OpenAICompatibleBackendConfig(base_url="http://localhost:1234/v1")
)
store = LocalAssetStore()
vm = VisionManager(backend=backend, store=store)

ref = vm.generate_image("a studio photo of an espresso machine", width=768, height=768, steps=20)
assert is_artifact_ref(ref)
png_bytes = store.load_bytes(ref["$artifact"])
"""

API_DIFFUSERS = """
from abstractvision import LoRAAdapterSpec, VisionManager
from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend

backend = HuggingFaceDiffusersVisionBackend(
    config=HuggingFaceDiffusersBackendConfig(
        model_id="runwayml/stable-diffusion-v1-5",
        device="auto",
        allow_download=False,
    )
)
vm = VisionManager(backend=backend)
asset = vm.generate_image("a watercolor painting of a lighthouse", width=512, height=512, steps=10)
"""

API_REGISTRY = """
from abstractvision import VisionModelCapabilitiesRegistry

reg = VisionModelCapabilitiesRegistry()
print(reg.list_tasks())
print(reg.models_for_task("text_to_image"))

reg.require_support("runwayml/stable-diffusion-v1-5", "text_to_image")
"""

ARTIFACTS = """
from abstractvision import LocalAssetStore, VisionManager
from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

store = LocalAssetStore()
backend = OpenAICompatibleVisionBackend(config=OpenAICompatibleBackendConfig(base_url="http://localhost:1234/v1"))
vm = VisionManager(backend=backend, store=store)

ref = vm.generate_image("a watercolor painting of a lighthouse")
blob = store.load_bytes(ref["$artifact"])  # type: ignore[index]
"""


def test_readme_registry_example() -> None:
    ns = run(README_REGISTRY)
    assert "text_to_image" in ns["reg"].list_tasks()
    assert "Qwen/Qwen-Image-Edit-2511" in ns["reg"].models_for_task("image_to_image")


def test_readme_openai_example_then_its_tools(openai_url: str, tiny_sd_dir: Path) -> None:
    # As written it gates a text_to_image call on an edit-only model: 0.3.34's registry lists
    # Qwen-Image-Edit-2511 for image_to_image only too, so it refused the call the same way.
    from abstractvision.errors import CapabilityNotSupportedError

    served = {PLACEHOLDER_URL: openai_url, "REMOTE_MODEL": str(tiny_sd_dir)}
    with pytest.raises(CapabilityNotSupportedError, match="cannot run text_to_image"):
        run(README_OPENAI, **served)
    t2i_model = {'"Qwen/Qwen-Image-Edit-2511"': '"Qwen/Qwen-Image-2512"'}
    ns = run(README_OPENAI, **served, **t2i_model)
    assert ns["png_bytes"].startswith(PNG)
    _tools(ns)  # the README runs it with the vm above
    names = {t._tool_definition.name for t in ns["tools"]}
    assert "vision_image_to_image" in names  # the edit model's task


def _tools(ns: dict[str, Any]) -> None:
    exec(compile(textwrap.dedent(README_TOOLS), "<0.3.34 example>", "exec"), ns)


def test_api_provider_models_example(openai_url: str, capsys: pytest.CaptureFixture) -> None:
    run(API_PROVIDER_MODELS, **{PLACEHOLDER_URL: openai_url})
    assert capsys.readouterr().out.strip()  # our server lists the model it runs


def test_models_path_names_where_the_service_lists_models(openai_url: str) -> None:
    """0.3.x's ``models_path`` (and ABSTRACTVISION_MODELS_PATH in the AbstractCore plugin)."""
    from abstractvision.backends import OpenAICompatibleBackendConfig as Config
    from abstractvision.backends import OpenAICompatibleVisionBackend as Backend
    from abstractvision.errors import BackendError

    root = openai_url.removesuffix("/v1")
    listed = Backend(config=Config(base_url=openai_url)).list_provider_models()
    moved = Backend(config=Config(base_url=root, models_path="/v1/models")).list_provider_models()
    assert [m.id for m in moved] == [m.id for m in listed] and listed
    with pytest.raises(BackendError, match="404"):
        Backend(config=Config(base_url=root, models_path="/nope")).list_provider_models()


def test_api_openai_example(openai_url: str) -> None:
    # 768x768 at 20 steps as written; the tiny model makes that quick
    ns = run(API_OPENAI, **{PLACEHOLDER_URL: openai_url})
    assert image_size(ns["png_bytes"]) == (768, 768)


def test_api_diffusers_example_on_a_local_folder(tiny_sd_dir: Path) -> None:
    ns = run(API_DIFFUSERS, **{"runwayml/stable-diffusion-v1-5": str(tiny_sd_dir)})
    asset = ns["asset"]
    assert asset.mime_type == "image/png" and image_size(asset.data) == (512, 512)


def test_api_registry_example() -> None:
    ns = run(API_REGISTRY)
    caps = ns["reg"].require_support("runwayml/stable-diffusion-v1-5", "text_to_image")
    assert caps.model_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"


def test_artifacts_example(openai_url: str) -> None:
    ns = run(ARTIFACTS, **{PLACEHOLDER_URL: openai_url})
    assert ns["blob"].startswith(PNG)
