"""abstractvision 0.3.x names, kept working as thin adapters over the current code.

The one place for compatibility (docs/migrating-from-0.3.md lists every item):

- types of 0.3.x that still mean something here: ``LoRAAdapterSpec`` (becomes an ``extra.loras``
  entry), ``ProviderModelInfo`` / ``ProviderAdapterInfo`` (what ``list_provider_models`` /
  ``list_provider_adapters`` return);
- ``legacy_extra``: the 0.3.x LoRA keys of ``extra`` (``loras_json``, ``lora``, ``lora_json``,
  entries with ``scale`` or ``path``) rewritten to ``extra["loras"]``;
- ``old_config_names``: a config class decorator that accepts 0.3.x keyword names, warns with a
  ``DeprecationWarning`` naming the new name, and maps each onto the current option.

Standard library only: importing this module loads nothing heavy.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import InvalidRequestError

__all__ = [
    "LoRAAdapterSpec",
    "ProviderAdapterInfo",
    "ProviderModelInfo",
    "legacy_extra",
    "lora_entries",
    "old_config_names",
]


@dataclass(frozen=True)
class LoRAAdapterSpec:
    """One LoRA of a call (0.3.x shape). ``scale`` is our ``weight``; ``source`` a path or hub id.

    ``"repo/id:file.safetensors"`` names a file inside a hub repo (as in 0.3.x).
    """

    source: str
    scale: float | None = None
    weight_name: str | None = None
    subfolder: str | None = None
    adapter_name: str | None = None
    target_role: str | None = None

    def to_lora(self) -> dict[str, Any]:
        """The ``extra["loras"]`` entry this adapter becomes."""
        return _entry(
            {
                "source": self.source,
                "scale": self.scale,
                "weight_name": self.weight_name,
                "subfolder": self.subfolder,
            }
        )


@dataclass(frozen=True)
class ProviderModelInfo:
    """A model a configured backend serves (``VisionManager.list_provider_models``)."""

    id: str
    object: str | None = "model"
    created: int | None = None
    owned_by: str | None = None
    capabilities: Sequence[str] = field(default_factory=tuple)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderAdapterInfo:
    """An adapter (LoRA) a configured backend may load (``list_provider_adapters``)."""

    id: str
    repo_id: str | None = None
    base_models: Sequence[str] = field(default_factory=tuple)
    compatible_models: Sequence[str] = field(default_factory=tuple)
    compatible_tasks: Sequence[str] = field(default_factory=tuple)
    suggested_target_roles: Sequence[str] = field(default_factory=tuple)
    raw: dict[str, Any] = field(default_factory=dict)


# --- extra["loras"] from the 0.3.x LoRA keys ----------------------------------------------------

_LORA_KEYS = ("loras_json", "lora_json", "lora")


def _entry(item: Any) -> dict[str, Any]:
    """One 0.3.x LoRA item (a string, a LoRAAdapterSpec or a dict) -> ``{source, weight, ...}``."""
    if isinstance(item, LoRAAdapterSpec):
        return item.to_lora()
    if isinstance(item, str):
        item = {"source": item}
    if not isinstance(item, Mapping):
        raise InvalidRequestError("extra.loras", item, "each LoRA must be {source, weight}")
    source = item.get("source") or item.get("path") or item.get("repo_id")
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequestError("extra.loras", dict(item), "each LoRA needs a source")
    weight_name = item.get("weight_name")
    repo, sep, inner = source.partition(":")
    if sep and "/" in repo and not repo.startswith(("/", ".", "~")) and inner:
        source, weight_name = repo, weight_name or inner  # "repo/id:file.safetensors"
    subfolder = item.get("subfolder")
    if subfolder and weight_name:
        weight_name = f"{str(subfolder).strip('/')}/{weight_name}"
    out: dict[str, Any] = {"source": source.strip()}
    weight = item.get("weight", item.get("scale"))
    out["weight"] = 1.0 if weight is None else weight
    if weight_name:
        out["weight_name"] = weight_name
    return out


def lora_entries(value: Any) -> list[dict[str, Any]]:
    """A 0.3.x LoRA list (JSON text, one item, or a list of items) -> ``extra["loras"]``."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except ValueError:
                raise InvalidRequestError("extra.loras_json", value, "must be JSON") from None
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [_entry(item) for item in items]


def legacy_extra(extra: Mapping[str, Any] | None, lora_adapters: Any = None) -> dict[str, Any]:
    """``extra`` with the 0.3.x LoRA keys (and ``lora_adapters=``) folded into ``loras``."""
    out = dict(extra or {})
    if lora_adapters:
        listed = out.get("loras")
        out["loras"] = [
            *(listed if isinstance(listed, (list, tuple)) else ()),
            *lora_entries(lora_adapters),
        ]
        if listed is not None and not isinstance(listed, (list, tuple)):
            out["loras_json"] = listed
    found = [key for key in _LORA_KEYS if key in out]
    old_shape = isinstance(out.get("loras"), (str, LoRAAdapterSpec)) or any(
        isinstance(item, (str, LoRAAdapterSpec))
        or (isinstance(item, Mapping) and ("scale" in item or "path" in item))
        for item in (out.get("loras") if isinstance(out.get("loras"), (list, tuple)) else ())
    )
    if not found and not old_shape:
        return out
    loras = lora_entries(out.pop("loras", None))
    for key in found:
        loras += lora_entries(out.pop(key))
    out["loras"] = loras
    return out


# --- 0.3.x config keyword names -----------------------------------------------------------------

# convert(value, kwargs) -> the new name it set (for the warning); None when the value is a current
# one (kept, no warning); "" when an empty 0.3.x value was dropped (no warning). It may raise
# InvalidRequestError.
Converter = Callable[[Any, dict[str, Any]], "str | None"]


def rename(new: str, note: str = "") -> Converter:
    """A 0.3.x option that is now called ``new`` (``note``: what differs, for the warning)."""

    def convert(value: Any, kwargs: dict[str, Any]) -> str:
        if value is None:  # unset: nothing to carry over, nothing to warn about
            return ""
        kwargs.setdefault(new, value)
        return f"{new}{f' ({note})' if note else ''}"

    return convert


def _apply(table: Mapping[str, Converter], kwargs: dict[str, Any], owner: str) -> None:
    """Rewrite the 0.3.x keywords of ``kwargs`` in place, warning for each one in use."""
    for old in [k for k in kwargs if k in table]:
        value = kwargs.pop(old)
        new = table[old](value, kwargs)
        if new is None:  # a current value of a current option (the converter may have
            kwargs.setdefault(old, value)  # rewritten it)
        if not new:  # "" : an empty 0.3.x value, dropped without a warning
            continue
        warnings.warn(
            f"{owner}({old}={value!r}) is 0.3.x usage; "
            + (new if new.startswith("it has no effect") else f"use {new}"),
            DeprecationWarning,
            stacklevel=4,
        )


def old_config_names(table: Mapping[str, Converter]) -> Callable[[type], type]:
    """Class decorator: the config also takes the 0.3.x keyword names in ``table``."""

    def wrap(cls: type) -> type:
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            _apply(table, kwargs, cls.__name__)
            init(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[method-assign]
        cls.old_names = MappingProxyType(dict(table))  # type: ignore[attr-defined]
        return cls

    return wrap


def legacy_params(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` for ``cls.from_dict`` with its 0.3.x keywords rewritten (VisionManager calls)."""
    table = getattr(cls, "old_names", None)
    if table:
        params = dict(params)
        _apply(table, params, cls.__name__)
    return params


def cpu_offload(value: Any, kwargs: dict[str, Any]) -> str:
    """0.3.x ``cpu_offload``: none | model | sequential | auto (by free GPU memory at load)."""
    mode = str(value).strip().lower()
    choices = {
        "none": False,
        "off": False,
        "false": False,
        "model": True,
        "on": True,
        "true": True,
        "auto": "auto",
    }
    if mode == "sequential":
        kwargs.setdefault("enable_sequential_cpu_offload", True)
        return "enable_sequential_cpu_offload=True"
    if mode not in choices:
        raise InvalidRequestError("cpu_offload", value, "must be auto, model, sequential or none")
    kwargs.setdefault("enable_model_cpu_offload", choices[mode])
    return f"enable_model_cpu_offload={choices[mode]!r}"


def none_means(option: str, current: Any) -> Converter:
    """``option`` is current, but its 0.3.x value ``None`` is now spelled ``current``."""

    def convert(value: Any, kwargs: dict[str, Any]) -> str | None:
        if value is not None:
            return None
        kwargs[option] = current
        return f"{option}={current!r}"

    return convert


def ignored(reason: str) -> Converter:
    """A 0.3.x option whose behaviour is now built in; the warning says why nothing is needed."""

    def convert(value: Any, kwargs: dict[str, Any]) -> str:
        return "" if value is None else f"it has no effect: {reason}"

    return convert


# stable-diffusion.cpp: sd-cli flags of 0.3.x ``extra_args`` -> config fields of the bindings
_SDCPP_FLAGS: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "--sampling-method": ("sampler", str),
    "--scheduler": ("scheduler", str),
    "--steps": ("steps", int),
    "--cfg-scale": ("guidance_scale", float),
    "--flow-shift": ("flow_shift", float),
    "-W": ("width", int),
    "--width": ("width", int),
    "-H": ("height", int),
    "--height": ("height", int),
    "-t": ("n_threads", int),
    "--threads": ("n_threads", int),
    "--vae-tiling": ("vae_tiling", None),
    "--offload-to-cpu": ("offload_params_to_cpu", None),
    "--clip-on-cpu": ("keep_clip_on_cpu", None),
    "--vae-on-cpu": ("keep_vae_on_cpu", None),
    "--diffusion-fa": ("flash_attn", None),
    "--fps": ("fps", int),
    "--video-frames": ("num_frames", int),
    "--lora-model-dir": ("lora_dir", str),
    "-v": ("verbose", None),
    "--verbose": ("verbose", None),
}


def sdcpp_extra_args(value: Any, kwargs: dict[str, Any]) -> str:
    """0.3.x ``extra_args`` (sd-cli flags) -> the matching config fields; unknown flags refused."""
    args = shlex.split(value) if isinstance(value, str) else [str(a) for a in value or ()]
    names: list[str] = []
    i = 0
    while i < len(args):
        flag = args[i]
        if flag not in _SDCPP_FLAGS:
            known = ", ".join(sorted(_SDCPP_FLAGS))
            raise InvalidRequestError(
                "extra_args", flag, f"not a supported sd-cli flag; known: {known}"
            )
        name, parse = _SDCPP_FLAGS[flag]
        if parse is None:
            kwargs.setdefault(name, True)
            i += 1
        else:
            if i + 1 >= len(args):
                raise InvalidRequestError("extra_args", flag, "needs a value")
            try:
                kwargs.setdefault(name, parse(args[i + 1]))
            except ValueError:
                raise InvalidRequestError(
                    "extra_args", args[i + 1], f"not a value for {flag}"
                ) from None
            i += 2
        names.append(name)
    return ", ".join(names)  # "" for no flags: nothing to warn about


# --- VisionBackend subclasses written for 0.3.x ---------------------------------------------------

_TASK_OF_METHOD = {
    "generate_image": "text_to_image",
    "edit_image": "image_to_image",
    "generate_angles": "multi_view_image",
    "generate_video": "text_to_video",
    "image_to_video": "image_to_video",
    "upscale_image": "image_upscale",
}


class AnyKeys(dict):  # type: ignore[type-arg]
    """``extra_keys`` of a 0.3.x backend: it declared none and took any (``key in`` is True)."""

    def __contains__(self, key: object) -> bool:
        return True


def _takes_control(fn: Callable[..., Any]) -> bool:
    return accepts_keyword(fn, "control")


def _without_control(fn: Callable[..., Any], task: str) -> Callable[..., Any]:
    from .errors import CapabilityNotSupportedError

    @functools.wraps(fn)
    def method(self: Any, request: Any, *, control: Any = None) -> Any:
        if control is not None:
            control.check()  # a 0.3.x method cannot report steps; a cancel before it still counts
        try:
            return fn(self, request)
        except NotImplementedError:
            raise CapabilityNotSupportedError(f"{type(self).__name__} cannot run {task}") from None

    method.legacy = True  # type: ignore[attr-defined]
    return method


def permissive_capabilities(backend: Any) -> Any:
    """0.3.x default (no ``get_capabilities``): the tasks the class implements, any extra key."""
    from .backends.base_backend import VisionBackend
    from .types import VisionBackendCapabilities

    cls = type(backend)
    tasks = [
        task
        for name, task in _TASK_OF_METHOD.items()
        if getattr(cls, name, None) is not getattr(VisionBackend, name, None)
    ]
    return VisionBackendCapabilities(supported_tasks=tasks, extra_keys=AnyKeys())


# 0.3.x progress hooks a host puts in ``extra`` when it calls a backend itself (AbstractCore's
# server jobs do): ``progress_callback(step, total)``, ``on_progress(event)``.
PROGRESS_HOOKS = ("on_progress", "progress_callback", "progress_event_callback")


def progress_forwarder(hooks: Mapping[str, Any]) -> Callable[[Any], None]:
    """A ``GenerationControl`` callback that reports each ``ProgressEvent`` to 0.3.x hooks.

    ``on_progress`` / ``progress_event_callback`` get an event with ``phase``, ``step``,
    ``total_steps``, ``progress`` and ``message`` attributes (0.3.x's event names)."""
    from types import SimpleNamespace

    steps = hooks.get("progress_callback")
    events = [
        hooks[k] for k in ("on_progress", "progress_event_callback") if callable(hooks.get(k))
    ]

    def forward(event: Any) -> None:
        if callable(steps):
            steps(event.step, event.total)
        if events:
            old = SimpleNamespace(
                phase="denoise",
                step=event.step,
                total_steps=event.total,
                progress=event.fraction,
                message=event.message,
            )
            for callback in events:
                callback(old)

    return forward


def _with_progress_hooks(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A task method that takes 0.3.x progress hooks out of ``request.extra`` (an engine would
    refuse the unknown keys) and, when the caller gave no control, reports progress to them."""
    import dataclasses

    @functools.wraps(fn)
    def method(self: Any, request: Any, *, control: Any = None, **kwargs: Any) -> Any:
        extra = getattr(request, "extra", None)
        if extra and any(callable(extra.get(k)) for k in PROGRESS_HOOKS):
            hooks = {k: extra[k] for k in PROGRESS_HOOKS if callable(extra.get(k))}
            rest = {k: v for k, v in extra.items() if k not in hooks}
            request = dataclasses.replace(request, extra=rest)
            if control is None:
                from .control import GenerationControl

                control = GenerationControl(progress_forwarder(hooks))
        return fn(self, request, control=control, **kwargs)

    return method


def adapt_legacy_backend(cls: type) -> None:
    """Called for every VisionBackend subclass: a 0.3.x one (task methods without ``control``)
    gets wrappers that take ``control``; its capabilities accept any extra key, and a
    ``get_capabilities`` returning None (0.3.x: no constraints) gives the permissive default.
    A current one's task methods take 0.3.x progress hooks out of ``extra``."""
    legacy = False
    for name, task in _TASK_OF_METHOD.items():
        fn = cls.__dict__.get(name)
        if callable(fn) and not _takes_control(fn):
            setattr(cls, name, _without_control(fn, task))  # it reads its own hooks in extra
            legacy = True
        elif callable(fn):
            setattr(cls, name, _with_progress_hooks(fn))
    caps_fn = cls.__dict__.get("get_capabilities")
    if not legacy or not callable(caps_fn):
        return

    @functools.wraps(caps_fn)
    def get_capabilities(self: Any) -> Any:
        caps = caps_fn(self)
        if caps is None:
            return permissive_capabilities(self)
        if not caps.extra_keys:
            import dataclasses

            caps = dataclasses.replace(caps, extra_keys=AnyKeys())
        return caps

    cls.get_capabilities = get_capabilities  # type: ignore[attr-defined]


# --- the MLX-Gen backend of 0.3.x ----------------------------------------------------------------


@dataclass(frozen=True)
class MFluxBackendConfig:
    """The 0.3.x MLX-Gen backend's options (accepted so callers that build it get a clear error)."""

    model: str | None = None
    base_model: str | None = None
    model_dir: str | None = None
    cache_dir: str | None = None
    lora_paths: Sequence[str] = ()
    lora_scales: Sequence[float] = ()
    lora_target_roles: Sequence[str] = ()
    allow_download: bool = False
    default_width: int = 1024
    default_height: int = 1024


class MFluxVisionBackend:
    """abstractvision 0.4 has no MLX-Gen backend: constructing one raises
    ``OptionalDependencyMissingError`` (what 0.3.x raised where MLX-Gen was not installed), so
    hosts that import it (AbstractCore's server) keep working and report why it cannot run."""

    def __init__(self, config: MFluxBackendConfig | None = None, **_: Any) -> None:
        from .errors import OptionalDependencyMissingError

        raise OptionalDependencyMissingError(
            "the MLX-Gen (mflux) backend is not part of abstractvision 0.4: use the diffusers "
            "backend (PyTorch; MPS on Apple silicon), sdcpp (Metal) or an OpenAI-compatible service"
        )


# The 0.3.x keyword names of each config class (applied with ``old_config_names`` in its module).
DIFFUSERS_CONFIG = {
    "cpu_offload": cpu_offload,
    "torch_dtype": none_means("torch_dtype", "auto"),
    "auto_retry_fp32": ignored(
        "torch_dtype='auto' picks float32 on CPU and bfloat16/float16 only where the device runs "
        "them; pass torch_dtype='float32' to force full precision"
    ),
    "use_safetensors": ignored("safetensors weights are always preferred; .bin only if absent"),
    "low_cpu_mem_usage": ignored("Diffusers always loads with low CPU memory usage"),
}
SDCPP_CONFIG = {
    "sd_cli_path": ignored("the engine runs through the stable-diffusion-cpp-python bindings"),
    "extra_args": sdcpp_extra_args,
    "capabilities_model_id": rename("model_name"),
    "timeout_s": rename("generate_timeout_s"),
    "cwd": ignored("no sd-cli process is started"),
}


def _sync_video(task: str) -> Converter:
    """0.3.x's video path: the same synchronous endpoint (POST, video in the answer)."""

    def convert(value: Any, kwargs: dict[str, Any]) -> str | None:
        if not value:
            return ""
        kwargs["sync_video_paths"] = {**dict(kwargs.get("sync_video_paths") or {}), task: value}
        return f"sync_video_paths={{{task!r}: ...}} (or videos_path for the OpenAI video-jobs API)"

    return convert


OPENAI_CONFIG = {
    "image_generations_path": rename("images_generations_path"),
    "image_edits_path": rename("images_edits_path"),
    "text_to_video_path": _sync_video("text_to_video"),
    "image_to_video_path": _sync_video("image_to_video"),
    "image_to_video_mode": rename("sync_image_to_video_mode"),
}


# --- request constructors: the 0.3.x keywords (AbstractCore's server builds requests with them) --


def _to_extra(key: str) -> Converter:
    def convert(value: Any, kwargs: dict[str, Any]) -> str:
        if value is None:
            return ""
        kwargs["extra"] = {**dict(kwargs.get("extra") or {}), key: value}
        return f"extra={{{key!r}: ...}}"

    return convert


def _lora_adapters(value: Any, kwargs: dict[str, Any]) -> str:
    if not value:
        return ""
    kwargs["extra"] = legacy_extra(kwargs.get("extra"), value)
    return "extra={'loras': [{'source', 'weight'}]}"


def _extra(value: Any, kwargs: dict[str, Any]) -> None:
    """``extra`` itself is current; its 0.3.x LoRA keys become ``loras`` (no warning)."""
    if isinstance(value, Mapping):
        kwargs["extra"] = legacy_extra({**value, **dict(kwargs.get("extra") or {})})
    return None


def _resolution(value: Any, kwargs: dict[str, Any]) -> str:
    """0.3.x ``resolution``: ``"2x"`` (or a small number) is the factor, ``scale`` here; a larger
    number was SeedVR2's shortest edge in pixels, which a whole factor cannot promise."""
    from .types import LIMITS

    if value is None:
        return ""
    text = str(value).strip().lower()
    try:
        number = int(text.rstrip("x"))
    except ValueError:
        raise InvalidRequestError("resolution", value, "must be like 2 or '2x'") from None
    if not text.endswith("x") and number > LIMITS.max_upscale_scale:
        raise InvalidRequestError(
            "resolution",
            value,
            "a shortest edge in pixels (0.3.x SeedVR2); 0.4 upscales by a whole factor: pass "
            f"scale=2..{LIMITS.max_upscale_scale} (e.g. 2 for a 512 px image to reach 1024)",
        )
    kwargs.setdefault("scale", number)
    return "scale"


def old_request_names(cls: type) -> type:
    """The request dataclass ``cls`` also takes its 0.3.x constructor keywords."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    table: dict[str, Converter] = {"lora_adapters": _lora_adapters, "extra": _extra}
    if "num_frames" in names:
        table.update(guidance_2=_to_extra("guidance_scale_2"), flow_shift=_to_extra("flow_shift"))
    if "scale" in names:
        table.update(
            resolution=_resolution,
            softness=_to_extra("softness"),
            quantize=_to_extra("quantize"),
            vae_tiling=_to_extra("vae_tiling"),
        )
    # a 0.3.x custom backend reads these back from the request it is handed
    read_back = {"lora_adapters": _read_lora_adapters}
    if "num_frames" in names:
        read_back.update(
            guidance_2=_read_extra("guidance_scale_2"), flow_shift=_read_extra("flow_shift")
        )
    for name, getter in read_back.items():
        if name not in names and not hasattr(cls, name):
            setattr(cls, name, property(getter, doc=f"0.3.x name, read from extra ({name})"))
    return old_config_names(table)(cls)


def _read_extra(key: str) -> Callable[[Any], Any]:
    return lambda request: (request.extra or {}).get(key)


def _read_lora_adapters(request: Any) -> tuple[LoRAAdapterSpec, ...]:
    """``extra["loras"]`` as 0.3.x ``LoRAAdapterSpec``s (``scale`` is the LoRA's weight)."""
    loras = legacy_extra(request.extra or {}).get("loras") or ()
    return tuple(
        LoRAAdapterSpec(source=e["source"], scale=e.get("weight"), weight_name=e.get("weight_name"))
        for e in loras
        if isinstance(e, Mapping) and e.get("source")
    )


def as_backend(obj: Any) -> Any:
    """A ``VisionBackend`` for ``obj``: itself, or an adapter over a duck-typed 0.3.x backend
    (any object with ``generate_image(request)`` and friends, ``get_capabilities`` optional)."""
    from .backends.base_backend import VisionBackend

    return obj if isinstance(obj, VisionBackend) else _duck_class()(obj)


@functools.cache
def _duck_class() -> type:
    import dataclasses

    from .backends.base_backend import VisionBackend
    from .errors import CapabilityNotSupportedError
    from .types import VisionBackendCapabilities

    class DuckTypedBackend(VisionBackend):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def get_capabilities(self) -> Any:
            get = getattr(self.inner, "get_capabilities", None)
            caps = get() if callable(get) else None
            if caps is None:
                tasks = [
                    t for m, t in _TASK_OF_METHOD.items() if callable(getattr(self.inner, m, None))
                ]
                return VisionBackendCapabilities(supported_tasks=tasks, extra_keys=AnyKeys())
            return caps if caps.extra_keys else dataclasses.replace(caps, extra_keys=AnyKeys())

        def list_provider_models(self, *, task: str | None = None) -> Any:
            own = getattr(self.inner, "list_provider_models", None)
            return own(task=task) if callable(own) else super().list_provider_models(task=task)

        def list_provider_adapters(
            self, *, model: str | None = None, task: str | None = None
        ) -> Any:
            own = getattr(self.inner, "list_provider_adapters", None)
            return own(model=model, task=task) if callable(own) else []

        def preload(self) -> None:
            getattr(self.inner, "preload", lambda: None)()

        def unload(self) -> None:
            getattr(self.inner, "unload", lambda: None)()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    def task_method(name: str, task: str) -> Callable[..., Any]:
        def method(self: Any, request: Any, *, control: Any = None) -> Any:
            fn = getattr(self.inner, name, None)
            if not callable(fn):
                raise CapabilityNotSupportedError(f"{type(self.inner).__name__} cannot run {task}")
            if _takes_control(fn):
                return fn(request, control=control)
            return _without_control(lambda _self, r: fn(r), task)(self, request, control=control)

        return method

    for name, task in _TASK_OF_METHOD.items():
        if name != "generate_angles":  # the generic multi-view route stays available
            setattr(DuckTypedBackend, name, task_method(name, task))
    return DuckTypedBackend


# 0.3.x backends could rewrite a request before it ran (e.g. fill in a model's defaults)
_NORMALIZE_HOOKS = {
    "text_to_image": "normalize_image_generation_request",
    "image_to_image": "normalize_image_edit_request",
    "text_to_video": "normalize_video_generation_request",
    "image_to_video": "normalize_image_to_video_request",
    "image_upscale": "normalize_image_upscale_request",
}


def normalized(backend: Any, request: Any) -> Any:
    """``request`` after the backend's 0.3.x ``normalize_*_request`` hook, when it has one.

    The hook must return a request of the same type; it is then validated like any other."""
    hook = getattr(backend, _NORMALIZE_HOOKS.get(request.task.value, ""), None)
    if not callable(hook):
        return request
    out = hook(request)
    if not isinstance(out, type(request)):
        name = _NORMALIZE_HOOKS[request.task.value]
        raise InvalidRequestError(
            name, type(out).__name__, f"must return a {type(request).__name__}"
        )
    return out


def batch_seeds(count: int | None, seeds: Sequence[int] | None, seed: int | None) -> list[int]:
    """The seed of each item of a 0.3.x video batch: ``seeds``, else ``count`` from ``seed`` on
    (a random start when unset), as image batches do."""
    from .backends._common import choose_seed
    from .types import LIMITS

    if seeds:
        planned = [int(s) for s in seeds]
        if count is not None and count != len(planned):
            raise InvalidRequestError("count", count, f"must match len(seeds) ({len(planned)})")
    else:
        n = 1 if count is None else count
        if not isinstance(n, int) or not 1 <= n <= LIMITS.max_batch:
            raise InvalidRequestError("count", count, f"must be 1..{LIMITS.max_batch}")
        start = choose_seed(seed)
        planned = [(start + k) % (LIMITS.max_seed + 1) for k in range(n)]
    if len(planned) > LIMITS.max_batch:
        raise InvalidRequestError("seeds", len(planned), f"at most {LIMITS.max_batch} seeds")
    return planned


# --- runtime stores written for 0.3.x ------------------------------------------------------------


def accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes the keyword ``name`` (or ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)


def sniff_type(data: bytes) -> str:
    """The MIME type of generated media from its first bytes (for stores that keep none)."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    return "application/octet-stream"


# --- the 0.3.x command line ----------------------------------------------------------------------

_OLD_COMMANDS = {
    "download": "pull",
    "download-model": "pull",
    "catalog": "models",
    "model-catalog": "models",
    "download-catalog": "models",
    "model-presets": "models",
    "download-vision-model": "pull",
    "vision-models": "models",
    "playground": "serve",  # the playground is the page at / of the server
}
# after an old catalogue/download name: --target gguf|diffusers names the engine's files; the
# 8-bit preset policy (--all, --allow-non-8bit) and --max-workers have no 0.4 counterpart
_OLD_TARGETS = {"gguf": "sdcpp", "diffusers": "diffusers", "auto": None}
_CATALOGUE_DROPPED = ("--all", "--allow-non-8bit")
_OLD_PROVIDERS = {
    "huggingface": "diffusers",
    "hf": "diffusers",
    "sd-cpp": "sdcpp",
    "stable-diffusion.cpp": "sdcpp",
    "openai-compatible": "openai",
}
_RENAMED_FLAGS = {"--provider": "--backend", "--frames": "--num-frames"}
_EXTRA_FLAGS = {"--guidance-2": "guidance_scale_2", "--flow-shift": "flow_shift"}
_EXTRA_FLAGS["--softness"] = "softness"
_EXTRA_FLAGS["--max-sequence-length"] = "max_sequence_length"
_DROPPED_FLAGS = ("--open", "--all-targets", "--no-vae-tiling")  # whole-frame decode: the default
_DROPPED_FLAGS += ("--diffusers-auto-retry-fp32", "--diffusers-no-auto-retry-fp32")
# 0.3.x's backend flags -> today's flags and --backend-option names (--base-url alone: openai)
_RENAMED_FLAGS.update({"--diffusers-device": "--device", "--sdcpp-model": "--model"})
_RENAMED_FLAGS["--store-dir"] = "--store"
_RENAMED_SWITCHES = {"--diffusers-allow-download": "--allow-download"}
_BACKEND_OPTIONS = {"--base-url": "base_url", "--api-key": "api_key", "--timeout-s": "timeout_s"}
_BACKEND_OPTIONS.update({"--images-generations-path": "images_generations_path"})
_BACKEND_OPTIONS.update({"--images-edits-path": "images_edits_path"})
_BACKEND_OPTIONS.update({"--image-to-video-mode": "sync_image_to_video_mode"})
_BACKEND_OPTIONS.update({"--diffusers-torch-dtype": "torch_dtype"})
_BACKEND_OPTIONS.update({f"--sdcpp-{k.replace('_', '-')}": k for k in ("diffusion_model", "vae")})
_BACKEND_OPTIONS.update({f"--sdcpp-{k.replace('_', '-')}": k for k in ("llm", "llm_vision")})
_VIDEO_PATHS = {"--text-to-video-path": "text_to_video", "--image-to-video-path": "image_to_video"}
_DROPPED_WITH_VALUE = ("--sdcpp-bin",)  # sd-cli: 0.4 runs the stable-diffusion-cpp bindings
_SEED_LIST = re.compile(r"^\d+(,\d+)*$")
# 0.3.x spellings of the same flag; the 0.3.x Namespace names (``legacy_namespace``) of a flag
_FLAG_ALIASES = {"--lora-path": "--lora", "--lora-paths": "--lora", "--lora-scales": "--lora-scale"}
_FLAG_ALIASES.update({"--lora-target-roles": "--lora-target-role", "--model-id": "--model"})
_OLD_LISTS = {"--lora": "lora_paths", "--lora-scale": "lora_scales"}
_OLD_LISTS.update({"--lora-adapter-name": "lora_adapter_name"})
_OLD_LISTS.update({"--lora-target-role": "lora_target_roles"})
_OLD_LISTS.update({"--lora-weight-name": "lora_weight_name", "--lora-subfolder": "lora_subfolder"})
_OLD_SCALARS = {flag: flag[2:].replace("-", "_") for flag in ("--provider", *_EXTRA_FLAGS)}


def legacy_argv(argv: Sequence[str]) -> list[str]:
    """``legacy_args(argv)``'s command line."""
    return legacy_args(argv)[0]


def legacy_args(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """0.3.x command lines -> today's flags (one note on stderr says what was rewritten), and the
    0.3.x values by their 0.3.x Namespace names (for ``legacy_namespace``).

    ``--provider`` -> ``--backend`` (huggingface -> diffusers, openai-compatible -> openai),
    ``--model-id`` -> ``--model``, ``--frames`` -> ``--num-frames``, ``--lora SRC`` (with
    ``--lora-scale`` / ``--lora-weight-name`` / ``--lora-subfolder``, one per ``--lora``) ->
    ``--extra loras=[...]``, ``--guidance-2`` / ``--flow-shift`` / ``--softness`` /
    ``--max-sequence-length`` -> ``--extra``, ``--resolution 2x`` -> ``--scale 2``, repeated
    ``--reference-image X`` and ``--seeds 1,2 --seeds 3`` -> one ``--reference-images`` /
    ``--seeds`` list (placed last, so it cannot swallow the prompt), ``download`` /
    ``download-model`` / ``download-vision-model`` -> ``pull``, ``catalog`` / ``model-catalog``
    / ``download-catalog`` / ``model-presets`` / ``vision-models`` -> ``models`` (after these,
    ``--target gguf|diffusers`` -> ``--backend sdcpp|diffusers``; ``--target auto``, ``--all``,
    ``--allow-non-8bit``, ``--max-workers`` are dropped); ``--open``, ``--all-targets``,
    ``--lora-target-role``, ``--lora-adapter-name`` are dropped. The backend flags:
    ``--base-url`` / ``--api-key`` / ``--timeout-s`` / ``--images-*-path`` /
    ``--image-to-video-mode`` / ``--diffusers-torch-dtype`` / ``--sdcpp-diffusion-model`` /
    ``--sdcpp-vae`` / ``--sdcpp-llm(-vision)`` -> ``--backend-option`` (``--base-url`` without
    ``--provider`` means ``--backend openai``), ``--text-to-video-path`` /
    ``--image-to-video-path`` -> ``sync_video_paths``, ``--diffusers-device`` -> ``--device``,
    ``--sdcpp-model`` -> ``--model``, ``--store-dir`` -> ``--store``,
    ``--diffusers-allow-download`` -> ``--allow-download``; ``--sdcpp-bin``,
    ``--diffusers-(no-)auto-retry-fp32`` and ``--no-vae-tiling`` (whole-frame decode is the
    default) are dropped. Raises InvalidRequestError for a ``--lora-scale`` that is not a number.
    """
    import sys

    args = list(argv)
    old_command = bool(args) and args[0] in _OLD_COMMANDS
    old: dict[str, Any] = {"cmd": args[0]} if old_command else {}  # 0.3.x: the name as typed
    if old_command:
        args[0] = _OLD_COMMANDS[args[0]]
    out: list[str] = []
    references: list[str] = []
    video_paths: dict[str, str] = {}
    seeds: list[str] = []
    old_seeds = False
    seen: list[str] = []
    i = 0
    while i < len(args):
        given, eq, inline = args[i].partition("=")
        flag = _FLAG_ALIASES.get(given, given)
        value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
        step = 1 if eq else 2
        if flag in _OLD_LISTS and value is not None:
            if flag == "--lora-scale":
                try:
                    value = float(value)  # type: ignore[assignment]
                except ValueError:
                    raise InvalidRequestError("--lora-scale", value, "must be a number") from None
            old.setdefault(_OLD_LISTS[flag], []).append(value)
        elif flag in _OLD_SCALARS and value is not None:
            old[_OLD_SCALARS[flag]] = value
        elif old.get("cmd") == "playground" and flag in ("--host", "--port") and value:
            old[flag[2:]] = int(value) if flag == "--port" and value.isdigit() else value
        if flag == "--model" and given != flag and value is not None:
            out += [flag, value]
        elif flag in _RENAMED_FLAGS and value is not None:
            value = _OLD_PROVIDERS.get(value, value) if flag == "--provider" else value
            out += [_RENAMED_FLAGS[flag], value]
        elif flag in _EXTRA_FLAGS and value is not None:
            out += ["--extra", f"{_EXTRA_FLAGS[flag]}={value}"]
        elif flag in _BACKEND_OPTIONS and value is not None:
            out += ["--backend-option", f"{_BACKEND_OPTIONS[flag]}={value}"]
        elif flag in _VIDEO_PATHS and value is not None:
            video_paths[_VIDEO_PATHS[flag]] = value
        elif flag in _DROPPED_WITH_VALUE and value is not None:
            pass
        elif args[i] in _RENAMED_SWITCHES:
            out.append(_RENAMED_SWITCHES[args[i]])
            step = 1
        elif flag == "--resolution" and value is not None:
            out += ["--scale", value.lower().rstrip("x")]
        elif flag in _OLD_LISTS and value is not None:
            pass  # LoRA items are built below; adapter names and target roles are dropped
        elif flag == "--reference-image" and value is not None:
            references.append(value)
        elif flag == "--seeds" and value is not None and _SEED_LIST.match(value):
            # 0.3.x: one value per --seeds (commas allowed); 0.4: --seeds 1 2 3
            taken = [inline] if eq else []
            j = i + 1
            while not eq and j < len(args) and _SEED_LIST.match(args[j]):
                taken.append(args[j])
                j += 1
            step = 1 if eq else j - i
            old_seeds = old_seeds or bool(seeds) or any("," in t for t in taken)
            seeds += taken
            i += step
            continue
        elif old_command and flag == "--target" and value in _OLD_TARGETS:
            out += ["--backend", _OLD_TARGETS[value]] if _OLD_TARGETS[value] else []
        elif old_command and flag == "--max-workers" and value is not None:
            pass
        elif args[i] in _DROPPED_FLAGS or (old_command and args[i] in _CATALOGUE_DROPPED):
            step = 1
        else:
            out.append(args[i])
            i += 1
            continue
        seen.append(given)
        i += step
    paths = old.get("lora_paths", [])
    if paths:

        def nth(key: str, k: int) -> Any:
            values = old.get(key, [])
            return values[k] if k < len(values) else None

        items = [
            {
                "source": source,
                "scale": nth("lora_scales", k),
                "weight_name": nth("lora_weight_name", k),
                "subfolder": nth("lora_subfolder", k),
            }
            for k, source in enumerate(paths)
        ]
        out += ["--extra", "loras=" + json.dumps([_entry(item) for item in items])]
    if video_paths:
        out += ["--backend-option", "sync_video_paths=" + json.dumps(video_paths)]
    if "--base-url" in seen and not any(a.partition("=")[0] == "--backend" for a in out):
        out += ["--backend", "openai"]  # 0.3.x: a base URL alone meant the OpenAI-compatible API
    if references:
        out += ["--reference-images", *references]
    if seeds:
        out += ["--seeds", *(n for t in seeds for n in t.split(","))]
        if old_seeds:
            seen.append("--seeds")
            old["seeds"] = seeds  # 0.3.x's Namespace kept each --seeds value as typed
    if seen or (argv and args[0] != argv[0]):
        names = ", ".join(dict.fromkeys(([argv[0]] if args[0] != argv[0] else []) + seen))
        print(
            f"abstractvision: note: 0.3.x usage rewritten ({names}); see docs/migrating-from-0.3.md",
            file=sys.stderr,
        )
    return out, old


# 0.3.x showed progress for these by default (images only with --progress)
_PROGRESS_ON = ("text_to_video", "image_to_video", "image_upscale")


def legacy_namespace(ns: argparse.Namespace, old: Mapping[str, Any]) -> argparse.Namespace:
    """A generation command's Namespace, with 0.3.x's names for its values added (``progress``,
    ``provider``, ``lora_paths`` ..., ``guidance_2``, ``flow_shift``, ``seeds`` as typed,
    ``reference_images`` a list) and 0.3.x's defaults for those not given. 0.4 reads its own names;
    ``show_progress`` (``--progress`` / ``--no-progress``) is the one behind ``progress``.
    Any command: ``cmd`` is the 0.3.x command name as typed (``download-model``, ``playground``
    with its ``host`` / ``port``)."""
    for name in ("cmd", "host", "port"):
        if name in old:
            setattr(ns, name, old[name])
    if not hasattr(ns, "show_progress"):  # not a generation command
        return ns
    from .backends import parse_value  # the reading ``--extra K=V`` gives the same value

    task = getattr(ns.task, "value", ns.task)
    ns.progress = task in _PROGRESS_ON if ns.show_progress is None else ns.show_progress
    ns.provider = old.get("provider", ns.backend)
    for name in _OLD_LISTS.values():
        setattr(ns, name, list(old[name]) if name in old else None)
    for name in _OLD_SCALARS.values():
        if name != "provider":
            setattr(ns, name, parse_value(old[name]) if name in old else None)
    if "seeds" in old:
        ns.seeds = list(old["seeds"])
    if getattr(ns, "reference_images", []) is None:
        ns.reference_images = []
    return ns


class LegacyArgumentParser(argparse.ArgumentParser):
    """``cli.build_parser()``'s parser: it reads 0.3.x command lines too (``legacy_args``) and its
    Namespace also carries 0.3.x's names (``legacy_namespace``). Subcommand parsers are plain."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        import sys

        argv, old = legacy_args(sys.argv[1:] if args is None else args)
        ns, unknown = super().parse_known_args(argv, namespace)
        if unknown and isinstance(getattr(ns, "rest", None), list):  # serve/mcp own their options
            ns.rest, unknown = [*unknown, *ns.rest], []  # (argparse leaves leading ones out)
        return legacy_namespace(ns, old), unknown
