"""The packaged capability registry: its data, its schema, and the lookup API."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from abstractvision.errors import (
    CapabilityNotSupportedError,
    InvalidRequestError,
    UnknownModelError,
)
from abstractvision.model_capabilities import (
    PACKAGED_PATH,
    SCHEMA_PATH,
    ParamSpec,
    RegistryError,
    VisionModelCapabilitiesRegistry,
)
from abstractvision.types import LIMITS, MultiAngleRequest, Task

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REGISTRY = VisionModelCapabilitiesRegistry()
DOC: dict[str, Any] = json.loads(PACKAGED_PATH.read_text(encoding="utf-8"))
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
TASKS = [t.value for t in Task]


# --- the data against the schema, and the schema against the pydantic models ---------------


def test_schema_is_valid_draft_2020_12_and_accepts_the_packaged_registry() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    errors = [f"{e.json_path}: {e.message}" for e in VALIDATOR.iter_errors(DOC)]
    assert errors == []


def test_schema_task_names_are_the_task_enum() -> None:
    assert SCHEMA["$defs"]["task"]["enum"] == TASKS
    assert sorted(SCHEMA["properties"]["tasks"]["required"]) == sorted(TASKS)
    assert list(DOC["tasks"]) == TASKS


def _model(doc: dict[str, Any], model_id: str) -> dict[str, Any]:
    return next(m for m in doc["models"] if m["id"] == model_id)


def _sd15(doc: dict[str, Any]) -> dict[str, Any]:
    return _model(doc, "stable-diffusion-v1-5/stable-diffusion-v1-5")


def _multi_view(doc: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in doc["models"] if "multi_view" in m)["multi_view"]


def _set(path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        path(doc)[key] = value

    return mutate


def _drop(path: Callable[[dict[str, Any]], dict[str, Any]], key: str) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        del path(doc)[key]

    return mutate


def _t2i_params(doc: dict[str, Any]) -> dict[str, Any]:
    return _sd15(doc)["tasks"]["text_to_image"]["params"]


# Each breaks the document in one way that both the JSON Schema and the pydantic models refuse.
BROKEN: dict[str, Any] = {
    "unknown top-level key": _set(lambda d: d, "extra", 1),
    "schema_version 2": _set(lambda d: d, "schema_version", 2),
    "no models": _set(lambda d: d, "models", []),
    "task list lacks one": _drop(lambda d: d["tasks"], "multi_view_image"),
    "unknown task described": _set(lambda d: d["tasks"], "text_to_sound", {"description": "x"}),
    "model without family": _drop(_sd15, "family"),
    "model id without owner": _set(_sd15, "id", "stable-diffusion-v1-5"),
    "empty display name": _set(_sd15, "display_name", ""),
    "unknown model field": _set(_sd15, "homepage", "https://example.org"),
    "licence other without name": _set(_sd15, "license", {"id": "other"}),
    "licence id with spaces": _set(_sd15, "license", {"id": "Apache 2.0"}),
    "model task unknown": _set(lambda d: _sd15(d)["tasks"], "text_to_sound", {"params": {}}),
    "no tasks": _set(_sd15, "tasks", {}),
    "param of type string": _set(_t2i_params, "width", {"type": "string"}),
    "unknown param name": _set(_t2i_params, "cfg", {"type": "number"}),
    "integer param with fractional default": _set(
        _t2i_params, "width", {"type": "integer", "default": 512.5}
    ),
    "min given as text": _set(_t2i_params, "steps", {"type": "integer", "min": "1"}),
    "bad frame rule": _set(_t2i_params, "steps", {"type": "integer", "frame_rule": "4n+1"}),
    "multiple_of zero": _set(_t2i_params, "width", {"type": "integer", "multiple_of": 0}),
    "pipeline class in lower case": _set(
        lambda d: _sd15(d)["engines"]["diffusers"]["pipelines"], "text_to_image", "sdpipeline"
    ),
    "no pipelines": _set(lambda d: _sd15(d)["engines"]["diffusers"], "pipelines", {}),
    "unknown dtype": _set(lambda d: _sd15(d)["engines"]["diffusers"], "torch_dtype", "fp8"),
    "unknown sd.cpp file": _set(lambda d: _sd15(d)["engines"]["sdcpp"], "files", ["unet"]),
    "repeated sd.cpp file": _set(lambda d: _sd15(d)["engines"]["sdcpp"], "files", ["vae", "vae"]),
    "remote as text": _set(lambda d: _sd15(d)["engines"], "remote", "yes"),
    "unknown engine": _set(lambda d: _sd15(d)["engines"], "onnx", {}),
    "multi_view without lora": _drop(_multi_view, "lora"),
    "template without placeholder": _set(_multi_view, "prompt_template", "a camera"),
    "angle name with capitals": _set(lambda d: _multi_view(d)["angles"], "Front", {}),
    "lora scale zero": _set(_multi_view, "lora_scale", 0),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_schema_and_pydantic_refuse_the_same_broken_documents(
    breakage: str, tmp_path: Path
) -> None:
    doc = copy.deepcopy(DOC)
    BROKEN[breakage](doc)
    assert list(VALIDATOR.iter_errors(doc)), f"the schema accepted: {breakage}"
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RegistryError):
        VisionModelCapabilitiesRegistry(path)


def test_an_unbroken_copy_is_accepted_by_both(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(DOC), encoding="utf-8")
    assert not list(VALIDATOR.iter_errors(DOC))
    assert VisionModelCapabilitiesRegistry(path).list_models() == REGISTRY.list_models()


# Cross-field rules JSON Schema cannot state: pydantic refuses them, the schema says so in words.
PYDANTIC_ONLY: dict[str, Any] = {
    "min above max": _set(_t2i_params, "steps", {"type": "integer", "min": 10, "max": 5}),
    "default outside range": _set(
        _t2i_params, "steps", {"type": "integer", "min": 1, "max": 5, "default": 9}
    ),
    "default breaks frame rule": _set(
        _t2i_params, "steps", {"type": "integer", "default": 80, "frame_rule": "4k+1"}
    ),
    "duplicate model id": lambda d: d["models"].append(copy.deepcopy(_sd15(d))),
    "multi_view without the task": lambda d: _sd15(d).update(
        multi_view=copy.deepcopy(_multi_view(d))
    ),
    "pipeline for an unlisted task": _set(
        lambda d: _sd15(d)["engines"]["diffusers"]["pipelines"], "text_to_video", "WanPipeline"
    ),
    "angle missing a placeholder": _set(
        lambda d: _multi_view(d)["angles"], "odd", {"azimuth": "x"}
    ),
}


@pytest.mark.parametrize("breakage", sorted(PYDANTIC_ONLY))
def test_cross_field_rules_are_enforced_on_load(breakage: str, tmp_path: Path) -> None:
    doc = copy.deepcopy(DOC)
    PYDANTIC_ONLY[breakage](doc)
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RegistryError):
        VisionModelCapabilitiesRegistry(path)
    assert "cannot" in SCHEMA["description"]


def test_a_broken_file_names_the_file_and_the_bad_field(tmp_path: Path) -> None:
    doc = copy.deepcopy(DOC)
    _t2i_params(doc)["width"]["min"] = "small"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        VisionModelCapabilitiesRegistry(path)
    message = str(info.value)
    assert str(path) in message
    assert "models.0.tasks.text_to_image.params.width.min" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"schema_version": 1, "schema_version": 1}', "duplicate key 'schema_version'"),
        ("[]", "not a valid registry"),
    ],
)
def test_unparsable_files_are_refused_clearly(text: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError, match=words):
        VisionModelCapabilitiesRegistry(path)


def test_a_missing_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        VisionModelCapabilitiesRegistry(tmp_path / "absent.json")


# --- documents in 0.3.x's layout (models keyed by id): 0.3.x's own rules name what is broken ---

_V03_TASK = {"inputs": ["text"], "outputs": ["image"], "params": {"prompt": {"required": True}}}
V03: dict[str, Any] = {
    "schema_version": "1.0",
    "tasks": {"text_to_image": {"description": "t2i"}, "image_to_image": {"description": "i2i"}},
    "models": {
        "org/base": {
            "provider": "huggingface",
            "license": "mit",
            "tasks": {"text_to_image": _V03_TASK},
        },
        "org/lora": {
            "provider": "huggingface",
            "license": "mit",
            "tasks": {"image_to_image": {**_V03_TASK, "requires": {"base_model_id": "org/base"}}},
        },
    },
}
_BASE_T2I = ("models", "org/base", "tasks", "text_to_image")


def _v03_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(V03)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (("schema_version",), None, "<root>: missing schema_version"),
        (
            ("models", "org/base", "tasks", "not_a_task"),
            _V03_TASK,
            "models['org/base']['tasks']['not_a_task']: unknown task (the document's tasks are: "
            "text_to_image, image_to_image)",
        ),
        (
            (*_BASE_T2I, "params", "prompt", "required"),
            "yes",
            "['prompt']['required']: must be true or false, got 'yes'",
        ),
        (
            ("models", "org/lora", "tasks", "image_to_image", "requires", "base_model_id"),
            "missing/base",
            "['requires']['base_model_id']: 'missing/base' is no model of this document",
        ),
        ((*_BASE_T2I, "requires"), {"gpu": "yes"}, "['requires']['gpu']: unknown key"),
        ((*_BASE_T2I, "params"), None, "['text_to_image']['params']: missing"),
        ((*_BASE_T2I, "inputs"), "text", "['text_to_image']['inputs']: must be a list"),
        (
            ("models", "org/base", "license"),
            "",
            "models['org/base']['license']: must be a non-empty",
        ),
    ],
)
def test_a_v03_document_is_refused_naming_its_broken_rule(
    path: tuple[str, ...], value: Any, words: str, tmp_path: Path
) -> None:
    from abstractvision.model_capabilities import validate_capabilities_json

    doc = _v03_with(path, value)
    with pytest.raises(ValueError) as info:  # RegistryError is a ValueError, as in 0.3.x
        validate_capabilities_json(doc)
    assert isinstance(info.value, RegistryError)
    assert words in str(info.value)
    assert "0.3.x-format registry" in str(info.value)
    file = tmp_path / "old.json"
    file.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RegistryError) as loaded:
        VisionModelCapabilitiesRegistry(file)
    assert str(file) in str(loaded.value) and words in str(loaded.value)


def test_a_v03_document_that_keeps_its_rules_is_refused_for_its_layout(tmp_path: Path) -> None:
    from abstractvision.model_capabilities import validate_capabilities_json

    with pytest.raises(RegistryError) as info:
        validate_capabilities_json(V03)
    assert str(info.value) == (
        "capabilities JSON: a 0.3.x-format registry (models keyed by id); 0.4 reads "
        "schema_version 1 with a list of models, each with id, display_name, family, license, "
        "engines and tasks (see abstractvision/assets/vision_model_capabilities.schema.json)"
    )
    validate_capabilities_json(DOC)  # the 0.4 layout is checked by the schema models, and passes


# --- the facts ------------------------------------------------------------------------------


def _diffusers_class_names() -> list[str]:
    names: set[str] = set()
    for model_id in REGISTRY.list_models():
        engine = REGISTRY.get(model_id).engines.diffusers
        if engine is not None:
            names.update(engine.pipelines.values())
            names.update(n for n in (engine.inpaint_pipeline, engine.adapter_class) if n)
    return sorted(names)


def test_every_named_diffusers_class_exists_in_the_installed_diffusers() -> None:
    import diffusers

    names = _diffusers_class_names()
    assert len(names) > 20
    missing = [name for name in names if not hasattr(diffusers, name)]
    assert missing == []


def test_every_task_has_at_least_one_model() -> None:
    for task in Task:
        assert REGISTRY.models_for_task(task), task


def test_the_families_that_matter_are_covered() -> None:
    families = {REGISTRY.get(m).family for m in REGISTRY.list_models()}
    assert {
        "stable-diffusion-1",
        "stable-diffusion-2",
        "sdxl",
        "sd3",
        "flux1",
        "flux2",
        "qwen-image",
        "z-image",
        "wan",
        "ltx-video",
        "cogvideox",
        "hunyuanvideo",
        "stable-video-diffusion",
        "animatediff",
    } <= families


def test_defaults_and_ranges_stay_within_the_library_limits() -> None:
    caps = {
        "width": (LIMITS.min_side, LIMITS.max_side),
        "height": (LIMITS.min_side, LIMITS.max_side),
        "steps": (1, LIMITS.max_steps),
        "guidance_scale": (0, LIMITS.max_guidance_scale),
        "true_cfg_scale": (0, LIMITS.max_guidance_scale),
        "strength": (0, 1),
        "num_frames": (1, LIMITS.max_frames),
        "fps": (1, LIMITS.max_fps),
        "scale": (2, LIMITS.max_upscale_scale),
    }
    for model_id in REGISTRY.list_models():
        for task in REGISTRY.get(model_id).tasks:
            for name, spec in REGISTRY.param_spec(model_id, task).items():
                low, high = caps[name]
                where = f"{model_id} {task} {name}"
                assert spec.default is not None, where
                assert spec.min is not None and spec.min >= low, where
                assert spec.max is not None and spec.max <= high, where
                if name in ("width", "height"):
                    assert spec.multiple_of and spec.multiple_of % LIMITS.side_multiple == 0


def test_video_frame_rules() -> None:
    wan = REGISTRY.param_spec("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "text_to_video")["num_frames"]
    assert wan.frame_step() == (4, 1)
    assert wan.allows(81) and wan.allows(5) and not wan.allows(80) and not wan.allows(133)
    ltx = REGISTRY.param_spec("Lightricks/LTX-Video", Task.TEXT_TO_VIDEO)["num_frames"]
    assert ltx.frame_step() == (8, 1) and ltx.allows(161) and not ltx.allows(160)
    svd = REGISTRY.param_spec("stabilityai/stable-video-diffusion-img2vid-xt", "image_to_video")
    assert svd["num_frames"].frame_step() == (1, 0) and svd["num_frames"].default == 25


@given(k=st.integers(min_value=0, max_value=300), step=st.integers(1, 16), off=st.integers(0, 8))
def test_frame_rule_accepts_exactly_its_progression(k: int, step: int, off: int) -> None:
    spec = ParamSpec(type="integer", frame_rule=f"{step}k+{off}")
    assert spec.allows(step * k + off)
    if step > 1:
        assert not spec.allows(step * k + off + 1)


def test_multi_view_data_covers_the_default_angles() -> None:
    models = REGISTRY.models_for_task(Task.MULTI_VIEW_IMAGE)
    assert "Qwen/Qwen-Image-Edit-2511" in models
    for model_id in models:
        view = REGISTRY.get(model_id).multi_view
        assert view is not None
        for angle in MultiAngleRequest.__dataclass_fields__["angles"].default:
            prompt = view.prompt_for(angle)
            assert "{" not in prompt and prompt.startswith("<sks> ")
    view = REGISTRY.get("Qwen/Qwen-Image-Edit-2511").multi_view
    assert view is not None
    assert view.prompt_for("back") == "<sks> back view eye-level shot medium shot"
    with pytest.raises(InvalidRequestError, match="known: front"):
        view.prompt_for("upside_down")
    assert all(
        REGISTRY.get(m).multi_view is None for m in REGISTRY.list_models() if m not in models
    )


def test_adapters_name_their_base_model() -> None:
    engine = REGISTRY.get("guoyww/animatediff-motion-adapter-v1-5-2").engines.diffusers
    assert engine is not None and engine.adapter_class == "MotionAdapter"
    assert engine.base_model in REGISTRY


# --- the API ----------------------------------------------------------------------------------


def test_lookups_with_slashed_ids() -> None:
    ids = REGISTRY.list_models()
    assert len(ids) == len(set(ids)) >= 25
    assert all(i.count("/") == 1 for i in ids)
    model = REGISTRY.get("stabilityai/stable-diffusion-3.5-large")
    assert model.id == "stabilityai/stable-diffusion-3.5-large"
    assert model.license.id == "other" and model.license.name
    assert "stabilityai/stable-diffusion-3.5-large" in REGISTRY
    assert "stable-diffusion-3.5-large" not in REGISTRY


def test_tasks_and_model_lists() -> None:
    assert REGISTRY.list_tasks() == TASKS
    info = REGISTRY.get_task("text_to_video")
    assert info.name == "text_to_video" and info.description
    assert list(info.models) == REGISTRY.models_for_task(Task.TEXT_TO_VIDEO)
    for task in TASKS:
        subset = REGISTRY.list_models(task)
        assert subset == REGISTRY.models_for_task(task)
        assert all(REGISTRY.supports(m, task) for m in subset)
        assert set(subset) <= set(REGISTRY.list_models())
    schnell = REGISTRY.param_spec("black-forest-labs/FLUX.1-schnell", "text_to_image")
    assert schnell["steps"].default == 4 and schnell["guidance_scale"].default == 0


def test_require_support_errors_say_what_exists() -> None:
    with pytest.raises(UnknownModelError, match=r"did you mean: black-forest-labs/FLUX\.1-schnell"):
        REGISTRY.require_support("black-forest-labs/flux.1-schnel", "text_to_image")
    with pytest.raises(CapabilityNotSupportedError) as info:
        REGISTRY.require_support("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "text_to_image")
    assert "it can run: text_to_video" in str(info.value)
    with pytest.raises(InvalidRequestError, match="unknown task; known: text_to_image"):
        REGISTRY.require_support("Qwen/Qwen-Image", "text_to_sound")
    with pytest.raises(InvalidRequestError):
        REGISTRY.supports("Qwen/Qwen-Image", "text_to_sound")
    with pytest.raises(CapabilityNotSupportedError):
        REGISTRY.param_spec("THUDM/CogVideoX-5b-I2V", "text_to_video")
    assert REGISTRY.require_support("Qwen/Qwen-Image", Task.TEXT_TO_IMAGE).id == "Qwen/Qwen-Image"
    assert not REGISTRY.supports("nobody/nothing", "text_to_image")


def test_entries_are_immutable_and_shared() -> None:
    model = REGISTRY.get("Qwen/Qwen-Image")
    with pytest.raises(ValidationError):
        model.family = "other"  # type: ignore[misc]
    assert VisionModelCapabilitiesRegistry().get("Qwen/Qwen-Image") is model


def test_loading_imports_no_engine() -> None:
    code = (
        "import sys; import abstractvision.model_capabilities as m; m.VisionModelCapabilitiesRegistry();"
        "print(any(n.split('.')[0] in ('torch', 'diffusers') for n in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False"]


@given(st.text(max_size=300))
@example("~0")  # names no OS path accepts: ~user of nobody, NUL, too long
@example("~nobody-here/x")
@example("a\x00b")
@example("x" * 300)
def test_any_string_as_a_model_id_is_an_unknown_model(model_id: str) -> None:
    if model_id in REGISTRY:
        return
    assert REGISTRY.supports(model_id, "text_to_image") is False
    with pytest.raises(UnknownModelError):
        REGISTRY.get(model_id)
    with pytest.raises(UnknownModelError):
        REGISTRY.require_support(model_id, Task.IMAGE_TO_VIDEO)


@given(st.text(max_size=100))
def test_any_string_as_a_task_is_a_known_task_or_an_invalid_request(task: str) -> None:
    if task in TASKS:
        assert REGISTRY.get_task(task).name == task
        return
    with pytest.raises(InvalidRequestError):
        REGISTRY.list_models(task)
