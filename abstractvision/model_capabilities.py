"""The model capability registry: which tasks each known model can run, and with what defaults.

The data lives in ``assets/vision_model_capabilities.json`` (hand-maintained; its JSON Schema is
the sibling ``.schema.json``). It is validated on load by the pydantic models below, which mirror
that schema, so the runtime needs no ``jsonschema``; a test keeps the two in agreement. Loading
imports no engine and the packaged file is read once per process.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import compat, compat_registry
from .errors import (
    CapabilityNotSupportedError,
    InvalidRequestError,
    RegistryError,
    UnknownModelError,
)
from .types import Task

__all__ = [
    "ModelCapabilities",
    "ParamSpec",
    "RegistryError",
    "TaskCapabilities",
    "VisionModelCapabilitiesRegistry",
    "validate_capabilities_json",
]

HubId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")]
ClassName = Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]*$")]
Text = Annotated[str, Field(min_length=1)]
Number = int | float
PositiveB = Annotated[float, Field(gt=0, le=2000)]
ParamName = Literal[
    "width",
    "height",
    "steps",
    "guidance_scale",
    "true_cfg_scale",
    "strength",
    "num_frames",
    "fps",
    "scale",
    "guidance_scale_2",
]
# bytes per parameter at a dtype (memory figures in the registry are computed, not stored)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
SdcppFile = Literal[
    "model",
    "diffusion_model",
    "high_noise_diffusion_model",
    "vae",
    "clip_l",
    "clip_g",
    "t5xxl",
    "llm",
    "clip_vision",
    "upscale_model",
]
PACKAGED_PATH = Path(__file__).parent / "assets" / "vision_model_capabilities.json"
SCHEMA_PATH = PACKAGED_PATH.with_name("vision_model_capabilities.schema.json")
AngleName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_FRAME_RULE = re.compile(r"^([1-9][0-9]*)k\+([0-9]+)$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ParamSpec(_Frozen):
    """Type, range and default of one generation parameter for one model and task."""

    type: Literal["integer", "number"]
    min: Number | None = None
    max: Number | None = None
    default: Number | None = None
    multiple_of: Annotated[int, Field(ge=1)] | None = None
    frame_rule: Annotated[str, Field(pattern=_FRAME_RULE.pattern)] | None = None
    description: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        values = {"min": self.min, "max": self.max, "default": self.default}
        if self.type == "integer":
            for name, value in values.items():
                if value is not None and not isinstance(value, int):
                    raise ValueError(f"{name} must be an integer for an integer parameter")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.default is not None and not self.allows(self.default):
            raise ValueError(f"default {self.default} is outside this parameter's own rules")
        return self

    def allows(self, value: Number) -> bool:
        """Whether ``value`` is within range and obeys the multiple / frame rule."""
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            return False
        if self.multiple_of is not None and value % self.multiple_of:
            return False
        if self.frame_rule is not None:
            step, offset = self.frame_step()
            return isinstance(value, int) and value >= offset and (value - offset) % step == 0
        return True

    def frame_step(self) -> tuple[int, int]:
        """``(4, 1)`` for the rule ``4k+1``; ``(1, 0)`` when there is no rule."""
        match = _FRAME_RULE.match(self.frame_rule or "1k+0")
        assert match is not None  # the field pattern guarantees it
        return int(match.group(1)), int(match.group(2))


class LoraDefaults(_Frozen):
    """Values a LoRA needs when a call loads it and leaves them unset (e.g. a Lightning LoRA's
    step count). ``weight_name``: a glob on the LoRA's file name; None matches any file."""

    source: HubId
    weight_name: Text | None = None
    defaults: Annotated[dict[ParamName, Number], Field(min_length=1)]
    notes: Text | None = None


class TaskSpec(_Frozen):
    params: dict[ParamName, ParamSpec] = Field(default_factory=dict)
    notes: Text | None = None
    # defaults that replace the model's when the call loads one of these LoRAs (first match)
    loras: list[LoraDefaults] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lora_defaults_fit(self) -> TaskSpec:
        for lora in self.loras:
            for name, value in lora.defaults.items():
                spec = self.params.get(name)
                if spec is None or not spec.allows(value):
                    raise ValueError(
                        f"loras: {lora.source} {name}={value} is not a value of params"
                    )
        return self


class License(_Frozen):
    """An SPDX-like id, or ``other`` with the licence's name."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.+-]*$")]
    name: Text | None = None
    url: Annotated[str, Field(pattern=r"^https://")] | None = None

    @model_validator(mode="after")
    def _other_needs_name(self) -> License:
        if self.id == "other" and not self.name:
            raise ValueError("a licence with id 'other' needs a name")
        return self


class DiffusersEngine(_Frozen):
    """Diffusers pipeline classes per task; ``base_model`` when this id is an adapter."""

    pipelines: Annotated[dict[Task, ClassName], Field(min_length=1)]
    inpaint_pipeline: ClassName | None = None
    base_model: HubId | None = None
    adapter_class: ClassName | None = None
    torch_dtype: Literal["float16", "bfloat16", "float32"] | None = None


class SdcppSource(_Frozen):
    """Where one sd.cpp file comes from: a Hub repo and a file name (``{quant}`` = the quant)."""

    repo: HubId
    file: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.*{}/-]+$")]
    quant: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")] | None = None


class SdcppEngine(_Frozen):
    """Which files stable-diffusion.cpp needs: one ``model`` file, or separate components."""

    files: Annotated[list[SdcppFile], Field(min_length=1)]
    # role -> published file (read by ``abstractvision pull --engine sdcpp``)
    sources: dict[SdcppFile, SdcppSource] = Field(default_factory=dict)
    # "reference": image_to_image sends the image as a reference, not an init image. Only for
    # models whose files cannot say so (FLUX.1 Kontext has the FLUX.1 [dev] layout).
    edit_mode: Literal["auto", "reference"] = "auto"
    # Qwen-Image-Edit-2511 is trained with a zero timestep on its reference latents; sd.cpp only
    # does so when asked (--qwen-image-zero-cond-t), and edits degrade without it.
    zero_cond_t: bool = False

    @model_validator(mode="after")
    def _unique(self) -> SdcppEngine:
        if len(set(self.files)) != len(self.files):
            raise ValueError("files must not repeat")
        if set(self.sources) - set(self.files):
            raise ValueError("sources names a role that files does not list")
        for role, source in self.sources.items():
            if ("{quant}" in source.file) != (source.quant is not None):
                raise ValueError(f"sources.{role}: a {{quant}} file needs a default quant")
        return self


class Engines(_Frozen):
    diffusers: DiffusersEngine | None = None
    sdcpp: SdcppEngine | None = None
    remote: bool = False


class MultiViewSpec(_Frozen):
    """How to render views: a camera LoRA and a prompt template (read by the backend)."""

    lora: HubId
    lora_weight_name: Text | None = None
    lora_scale: Annotated[float, Field(gt=0, le=2)] = 1.0
    reference_model: HubId | None = None
    prompt_template: Annotated[str, Field(pattern=_PLACEHOLDER.pattern)]
    angles: Annotated[dict[AngleName, dict[str, Text]], Field(min_length=1)]

    @model_validator(mode="after")
    def _angles_fill_template(self) -> MultiViewSpec:
        wanted = set(_PLACEHOLDER.findall(self.prompt_template)) - {"angle"}
        for name, values in self.angles.items():
            missing = wanted - set(values)
            if missing:
                raise ValueError(f"angle {name!r} lacks {sorted(missing)} for prompt_template")
        return self

    def prompt_for(self, angle: str) -> str:
        """The camera prompt for one named angle, e.g. ``front`` or ``three_quarter``."""
        values = self.angles.get(angle)
        if values is None:
            known = ", ".join(self.angles)
            raise InvalidRequestError("angles", angle, f"unknown angle; known: {known}")
        return self.prompt_template.format(angle=angle, **values)


class ControlSpec(_Frozen):
    """One control image a model takes: built in (``controlnet`` None: FLUX.1 Canny/Depth take
    it as input channels) or through a ControlNet repo (the Diffusers ``controlnet`` option)."""

    type: Literal["canny", "depth", "pose", "lineart", "scribble", "tile", "segmentation"]
    controlnet: HubId | None = None


class ModelCapabilities(_Frozen):
    """Everything the registry knows about one model."""

    id: HubId
    display_name: Text
    family: Text
    license: License
    engines: Engines
    tasks: Annotated[dict[Task, TaskSpec], Field(min_length=1)]
    notes: Text | None = None
    multi_view: MultiViewSpec | None = None
    # other ids that name this model (a renamed or mirrored repo); they resolve to this entry
    aliases: list[HubId] = Field(default_factory=list)
    # published parameter counts in billions, per component (transformer, text_encoder, vae, ...)
    parameters_b: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], PositiveB] = Field(
        default_factory=dict
    )
    # control images it takes (types.ControlType values), built in or via a ControlNet repo
    controls: list[ControlSpec] = Field(default_factory=list)

    # 0.3.x field names, read by AbstractCore's vision catalogue
    @property
    def model_id(self) -> str:
        return self.id

    @property
    def provider(self) -> str:
        """Where the weights are distributed: every registry id is a Hugging Face repo."""
        return "huggingface"

    @property
    def downloads(self) -> tuple[Any, ...]:
        """0.3.x's download presets of this model, derived from its engine facts."""
        from .model_downloads import registry_presets

        return registry_presets(self)

    @property
    def total_parameters_b(self) -> float:
        """All published parameters together, in billions (0.0 when unknown)."""
        return round(sum(self.parameters_b.values()), 3)

    def memory_bytes(self, dtype: str | None = None) -> int | None:
        """Bytes the weights take at ``dtype`` (default: the Diffusers default dtype, else bf16).

        Weights only: activations come on top and grow with the output size and frame count.
        None when the registry has no parameter counts for this model.
        """
        if not self.parameters_b:
            return None
        engine = self.engines.diffusers
        name = dtype or (engine.torch_dtype if engine and engine.torch_dtype else "bfloat16")
        if name not in DTYPE_BYTES:
            raise InvalidRequestError("dtype", name, f"must be one of {', '.join(DTYPE_BYTES)}")
        return int(sum(self.parameters_b.values()) * 1e9 * DTYPE_BYTES[name])

    @model_validator(mode="after")
    def _coherent(self) -> ModelCapabilities:
        if (self.multi_view is None) == (Task.MULTI_VIEW_IMAGE in self.tasks):
            raise ValueError("multi_view is required exactly when multi_view_image is a task")
        diffusers = self.engines.diffusers
        stray = set(diffusers.pipelines) - set(self.tasks) if diffusers else set()
        if stray:
            raise ValueError(f"diffusers pipelines for tasks not listed: {sorted(map(str, stray))}")
        return self


class _TaskInfo(_Frozen):
    description: Text


class Recommendation(_Frozen):
    """A default model for machines of one kind: the first row that fits is used."""

    engine: Literal["diffusers", "sdcpp"]
    model: HubId
    devices: Annotated[list[Literal["cuda", "mps", "cpu"]], Field(min_length=1)]
    min_memory_gb: Annotated[float, Field(ge=0)]  # free device (or system) memory needed
    quant: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")] | None = None


class _Document(_Frozen):
    schema_ref: str | None = Field(default=None, alias="$schema")
    schema_version: Literal[1]
    tasks: dict[Task, _TaskInfo]
    models: Annotated[list[ModelCapabilities], Field(min_length=1)]
    recommended: list[Recommendation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> _Document:
        missing = [t.value for t in Task if t not in self.tasks]
        if missing:
            raise ValueError(f"tasks lacks {missing}")
        ids = [m.id for m in self.models] + [a for m in self.models for a in m.aliases]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate model ids or aliases: {dupes}")
        by_id = {m.id: m for m in self.models}
        for row in self.recommended:
            engines = by_id[row.model].engines if row.model in by_id else None
            if engines is None or getattr(engines, row.engine) is None:
                raise ValueError(f"recommended {row.model} is not a known {row.engine} model")
        return self


@dataclass(frozen=True)
class TaskCapabilities:
    """One task: its description and the models that can run it."""

    name: str
    description: str
    models: tuple[str, ...]


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise RegistryError(f"duplicate key {key!r} in a JSON object")
    return dict(pairs)


def _parse(text: str, source: str) -> _Document:
    try:
        doc = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
        if compat_registry.is_v03_document(doc):  # models keyed by id: 0.3.x's layout
            raise RegistryError(compat_registry.v03_problem(doc))
        return _Document.model_validate_json(text, strict=True)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{source}: not valid JSON: {exc}") from None
    except RegistryError as exc:
        raise RegistryError(f"{source}: {exc}") from None
    except ValidationError as exc:
        lines = [
            f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        ]
        raise RegistryError(f"{source} is not a valid registry: " + "; ".join(lines)) from None


@functools.cache
def _packaged() -> _Document:
    return _parse(PACKAGED_PATH.read_text(encoding="utf-8"), PACKAGED_PATH.name)


def _task(task: str | Task) -> Task:
    try:
        return Task(str(task))
    except ValueError:
        known = ", ".join(t.value for t in Task)
        raise InvalidRequestError("task", task, f"unknown task; known: {known}") from None


def validate_capabilities_json(data: Any) -> None:
    """Check a registry document (parsed JSON); a ``RegistryError`` (a ValueError) names the
    bad field. (0.3.x name; the registry validates its file the same way when loaded.)"""
    _parse(json.dumps(data), "capabilities JSON")


@compat.old_config_names({"asset_path": compat.rename("path")})
class VisionModelCapabilitiesRegistry:
    """Read-only view of the registry. ``path=None`` uses the packaged file (cached)."""

    def schema_version(self) -> str:
        """The registry document's schema version (0.3.x API)."""
        return str(self._doc.schema_version)

    def iter_task_specs(self, model_id: str) -> Iterable[TaskSpec]:
        """The task specs of one model (0.3.x API)."""
        return self.get(model_id).tasks.values()

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            self._doc = _packaged()
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise RegistryError(f"cannot read registry {path}: {exc}") from None
            self._doc = _parse(text, str(path))
        self._models = {m.id: m for m in self._doc.models}
        self._aliases = {a: m.id for m in self._doc.models for a in m.aliases}

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models or model_id in self._aliases

    def canonical_id(self, model_id: str) -> str:
        """The registry id for ``model_id`` (an alias resolves to its entry); others unchanged."""
        return self._aliases.get(model_id, model_id)

    def _lookup(self, model_id: str) -> ModelCapabilities | None:
        model = self._models.get(self.canonical_id(model_id))
        if model is None and isinstance(model_id, str):
            model = self._models.get(self._old_name(model_id) or "")
        return model

    def _old_name(self, name: str) -> str | None:
        """``get``/``supports`` as in 0.3.x: an id in other letter case, or the key or repo of a
        0.3.x download preset (``flux2-klein-4b``), names its registry entry."""
        folded = {k.lower(): self._aliases.get(k, k) for k in [*self._models, *self._aliases]}
        if name.strip().lower() in folded:
            return folded[name.strip().lower()]
        if not name.strip() or name.startswith(("~", "/", ".")) or _is_existing_path(name):
            return None  # a local path, never a preset key
        try:
            from .model_downloads import find_model_preset

            upstream = find_model_preset(name, require_8bit=False).upstream_repo_id
        except (ImportError, ValueError, LookupError):
            return None
        return self._aliases.get(upstream, upstream) if upstream in self else None

    def list_tasks(self) -> list[str]:
        return [t.value for t in Task]

    def get_task(self, task: str | Task) -> TaskCapabilities:
        name = _task(task)
        info = self._doc.tasks[name]
        return TaskCapabilities(name.value, info.description, tuple(self.models_for_task(name)))

    def list_models(self, task: str | Task | None = None) -> list[str]:
        """Model ids in file order, optionally only those that can run ``task``."""
        if task is None:
            return list(self._models)
        wanted = _task(task)
        return [m.id for m in self._models.values() if wanted in m.tasks]

    def models_for_task(self, task: str | Task) -> list[str]:
        return self.list_models(task)

    def get(self, model_id: str) -> ModelCapabilities:
        model = self._lookup(model_id)
        if model is None:
            lowered = {m.lower(): m for m in self._models}
            found = difflib.get_close_matches(str(model_id).lower(), list(lowered), n=3, cutoff=0.5)
            close = [lowered[m] for m in found]
            hint = f"; did you mean: {', '.join(close)}?" if close else ""
            raise UnknownModelError(
                f"unknown model {model_id!r}{hint} ('abstractvision models' lists them all)"
            )
        return model

    def recommended(self) -> list[Recommendation]:
        """Default models by machine kind, best first (``model_downloads.recommend`` picks)."""
        return list(self._doc.recommended)

    def supports(self, model_id: str, task: str | Task) -> bool:
        wanted = _task(task)
        model = self._lookup(model_id)
        return model is not None and wanted in model.tasks

    def require_support(self, model_id: str, task: str | Task) -> ModelCapabilities:
        wanted = _task(task)
        model = self.get(model_id)
        if wanted not in model.tasks:
            can = ", ".join(t.value for t in model.tasks)
            raise CapabilityNotSupportedError(
                f"model {model_id!r} cannot run {wanted.value}; it can run: {can}"
            )
        return model

    def param_spec(self, model_id: str, task: str | Task) -> dict[str, ParamSpec]:
        """Parameters (name -> spec) the model documents for the task."""
        return dict(self.require_support(model_id, task).tasks[_task(task)].params)


def _is_existing_path(name: str) -> bool:
    """True when ``name`` is a file or folder here; a name no OS accepts (NUL, too long) is not."""
    try:
        return Path(name).exists()
    except (OSError, ValueError):
        return False
