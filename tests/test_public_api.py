"""The public surface: names, version, lazy imports, and that the checkout is what gets imported."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import abstractvision

ROOT = Path(__file__).resolve().parents[1]


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then the rest.
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_all_is_sorted_and_every_name_exists() -> None:
    assert abstractvision.__all__ == sorted(abstractvision.__all__, key=_isort_key)
    for name in abstractvision.__all__:
        assert hasattr(abstractvision, name), name


def test_names_existing_users_call_are_exported() -> None:
    for name in (
        "VisionManager",
        "VisionModelCapabilitiesRegistry",
        "LocalAssetStore",
        "RuntimeArtifactStoreAdapter",
        "is_artifact_ref",
        "BackendNotConfiguredError",
        "CapabilityNotSupportedError",
        "UnknownModelError",
        "OptionalDependencyMissingError",
    ):
        assert name in abstractvision.__all__
    manager = abstractvision.VisionManager
    for method in (
        "generate_image",
        "edit_image",
        "generate_video",
        "image_to_video",
        "generate_angles",
    ):
        assert callable(getattr(manager, method))


def test_engines_are_reachable_lazily_by_name() -> None:
    from abstractvision import backends

    assert set(backends.BACKENDS) == {"diffusers", "sdcpp", "openai", "ray"}
    for engine in backends.BACKENDS.values():
        assert engine.backend_class in backends.__all__ and engine.config_class in backends.__all__


def test_backend_options_map_model_to_each_engines_field_and_refuse_unknown_keys() -> None:
    from abstractvision import InvalidRequestError
    from abstractvision.backends import backend_options, create_backend

    assert backend_options("sdcpp", ["n_threads=2"], model="m.gguf") == {
        "n_threads": 2,
        "model": "m.gguf",
    }
    assert backend_options("diffusers", ['models={"text_to_video": "x"}'], model="m") == {
        "models": {"text_to_video": "x"},
        "model_id": "m",
    }
    with pytest.raises(InvalidRequestError, match="KEY=VALUE"):
        backend_options("diffusers", ["novalue"])
    with pytest.raises(InvalidRequestError) as info:
        create_backend("diffusers", model_idd="x")
    assert info.value.field == "model_idd" and "model_id" in info.value.limit


def test_version_matches_installed_metadata_and_is_past_the_old_library() -> None:
    assert importlib.metadata.version("abstractvision") == abstractvision.__version__
    major, minor, *_ = (int(p) for p in abstractvision.__version__.split("."))
    assert (major, minor) >= (0, 4)


def test_import_comes_from_this_checkout_even_with_the_runtime_extra_installed() -> None:
    # abstractruntime pulls abstractcore, which requires abstractvision>=0.3.34: pip must keep ours.
    importlib.metadata.version("abstractruntime")
    assert Path(abstractvision.__file__).resolve().parent == ROOT / "abstractvision"


def test_import_loads_no_engine() -> None:
    code = (
        "import sys, json, abstractvision, abstractvision.backends;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch','diffusers','transformers','stable_diffusion_cpp','mcp','mcp_server','numpy',"
        "'fsspec','s3fs','botocore'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
