"""AbstractCore capability plugin: ``llm.vision.*`` on abstractvision's backends.

AbstractCore (>= 2.30) finds ``register`` through the ``abstractcore.capabilities_plugins`` entry
point and calls it with its ``CapabilityRegistry``. The capability it gets is a thin adapter:
each call picks (or reuses) a backend, runs it through ``VisionManager`` (validation, gating,
storage) and hands back PNG/MP4 bytes, or an artifact ref when AbstractCore passes its
``artifact_store``.

Which backend, in order (``create_llm(..., vision_backend="diffusers", vision_model_id=...)`` sets
the ``vision_*`` keys; the environment is the fallback):

- ``vision_backend_instance`` / ``vision_backend_factory`` in the owner's config (a ready backend);
- ``vision_backend`` or ``ABSTRACTVISION_PROVIDER`` / ``ABSTRACTVISION_BACKEND``: ``diffusers``
  (aliases huggingface, hf), ``sdcpp`` (sd-cpp, stable-diffusion.cpp), ``openai`` or
  ``openai-compatible``; per call, ``provider=`` overrides it;
- unset: ``openai-compatible`` when a base URL is configured, else the hosted OpenAI API
  (needs ``OPENAI_API_KEY``), as in abstractvision 0.3.x; a call's Hugging Face repo id
  (``model="owner/name"``, no provider) then runs on local Diffusers, as in 0.3.x (the OpenAI
  API serves no such model).

The model: ``model=`` of the call, else ``vision_model_id`` / ``ABSTRACTVISION_MODEL`` /
``ABSTRACTVISION_MODEL_ID`` (stable-diffusion.cpp: ``vision_sdcpp_model`` /
``ABSTRACTVISION_SDCPP_MODEL``). A later call with the same model finds its backend warm. Local
engines (Diffusers, stable-diffusion.cpp) hold the model in this process, so, as in 0.3.x, a call
on another local model unloads the previous one once no call uses it, unless it was loaded with
``load_resident_model`` (which keeps it until ``unload_resident_model``); remote services hold no
model here and stay as they are. ``list_loaded_models`` reports each (``state`` ``active`` or
``resident``, ``load_id`` ``<engine>/<model>``, the ``tasks`` it ran).

``provider="endpoint:<id>"`` names an AbstractCore endpoint profile (an OpenAI or OpenAI-compatible
connection: base URL and key): the call goes to that endpoint. The profile comes from the resolver
the host attached to the owner (``resolve_provider_endpoint_profile``), else AbstractCore's ambient
resolver (``abstractcore.providers.endpoint_context``), else AbstractCore's own provider profiles.
An OpenAI-compatible profile never borrows ``OPENAI_API_KEY``; a key never appears in an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..compat import PROGRESS_HOOKS, as_backend, legacy_extra, progress_forwarder
from ..errors import (
    AbstractVisionError,
    BackendError,
    CapabilityNotSupportedError,
    InvalidRequestError,
)

__all__ = ["BACKEND_ID", "LEGACY_BACKEND_ID", "AbstractVisionCapability", "register"]

log = logging.getLogger(__name__)

BACKEND_ID = "abstractvision:openai"
LEGACY_BACKEND_ID = "abstractvision:openai-compatible"
OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_IMAGE_MODEL = "gpt-image-1"
DIFFUSERS_DEFAULT_MODEL = "runwayml/stable-diffusion-v1-5"  # 0.3.x's default (from the cache)

_ENGINE_ALIASES = {
    "diffusers": "diffusers",
    "huggingface": "diffusers",
    "hf": "diffusers",
    "hf-diffusers": "diffusers",
    "sdcpp": "sdcpp",
    "sd-cpp": "sdcpp",
    "stable-diffusion.cpp": "sdcpp",
    "stable-diffusion-cpp": "sdcpp",
    "stable_diffusion_cpp": "sdcpp",
    "openai": "openai",
    "openai-compatible": "openai-compatible",
    "openai_compatible": "openai-compatible",
    "compatible": "openai-compatible",
}
_MLX = ("mlx-gen", "mlx_gen", "mlx", "mflux")
_SDCPP_FILES = ("diffusion_model", "vae", "llm", "llm_vision", "clip_l", "clip_g", "t5xxl")
_INJECTED = ("injected", None)  # the _backends key of a backend passed in by the owner
# settings whose absence means "no backend configured" (discovery answers empty, calls fail)
_SETTINGS_FIELDS = ("OPENAI_API_KEY", "vision_base_url", "vision_model_id")
# keyword arguments AbstractCore passes that are not request parameters
_ROUTING = ("artifact_store", "run_id", "tags", "metadata", "provider", "model")


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


class _Settings:
    """The owner's ``vision_*`` config keys, then ``ABSTRACTVISION_*`` / ``OPENAI_*`` variables."""

    def __init__(self, owner: Any) -> None:
        config = getattr(owner, "config", None)
        self._config = config if isinstance(config, Mapping) else {}

    def get(self, key: str, *env: str) -> str | None:
        value = _text(self._config.get(key))
        for name in env:
            value = value or _text(os.environ.get(name))
        return value

    def flag(self, key: str, *env: str, default: bool = False) -> bool:
        value = self.get(key, *env)
        return default if value is None else value.lower() in ("1", "true", "yes", "on")

    def raw(self, key: str) -> Any:
        return self._config.get(key)


def _engine_name(value: str | None) -> str | None:
    if value is None:
        return None
    name = value.strip().lower()
    if name in _MLX:
        raise CapabilityNotSupportedError(
            f"vision backend {value!r}: abstractvision 0.4 has no MLX-Gen backend; use diffusers "
            "(PyTorch, MPS on Apple silicon), sdcpp (Metal) or openai-compatible"
        )
    if name not in _ENGINE_ALIASES:
        known = ", ".join(sorted(set(_ENGINE_ALIASES.values())))
        raise InvalidRequestError("provider", value, f"unknown vision backend; known: {known}")
    return _ENGINE_ALIASES[name]


class AbstractVisionCapability:
    """AbstractCore's ``VisionCapability`` over ``VisionManager`` and our backends."""

    def __init__(self, owner: Any, *, backend_id: str = BACKEND_ID) -> None:
        self._owner = owner
        self.backend_id = backend_id
        self._settings = _Settings(owner)
        self._lock = threading.RLock()
        self._backends: dict[tuple[Any, ...], Any] = {}
        self._loaded: dict[str, dict[str, Any]] = {}  # load_id -> record
        self._keys: dict[str, tuple[Any, ...]] = {}  # load_id -> key in _backends
        self._endpoint_kinds: dict[str, str] = {}  # "endpoint:<id>" -> openai | openai-compatible
        self._busy: dict[int, int] = {}  # id(backend) -> calls running on it
        self._retired: dict[int, Any] = {}  # id(backend) -> backend to unload when not busy

    # --- backend selection ---------------------------------------------------------------

    def _configured_name(self) -> str | None:
        s = self._settings
        return _engine_name(
            s.get("vision_backend", "ABSTRACTVISION_PROVIDER", "ABSTRACTVISION_BACKEND")
        )

    def _configured_engine(self) -> str:
        name = self._configured_name()
        if name is not None:
            return name
        base_url = self._settings.get("vision_base_url", "OPENAI_BASE_URL")
        if self.backend_id == LEGACY_BACKEND_ID or base_url:
            return "openai-compatible"
        return "openai"

    def _default_model(self, engine: str) -> str | None:
        s = self._settings
        if engine == "sdcpp":
            return s.get("vision_sdcpp_model", "ABSTRACTVISION_SDCPP_MODEL") or s.get(
                "vision_model_id", "ABSTRACTVISION_MODEL", "ABSTRACTVISION_MODEL_ID"
            )
        env = ("ABSTRACTVISION_MODEL", "ABSTRACTVISION_MODEL_ID")
        if engine == "diffusers":
            env += ("ABSTRACTVISION_DIFFUSERS_MODEL_ID",)
        model = s.get("vision_model_id", *env)
        if engine.startswith("openai"):
            model = model or s.get(
                "vision_openai_model", "OPENAI_IMAGE_MODEL_ID", "OPENAI_IMAGE_MODEL"
            )
            if engine == "openai":
                model = model or OPENAI_IMAGE_MODEL
        return model

    def _injected(self) -> Any:
        """A ready backend from the owner's config (duck-typed 0.3.x ones are adapted)."""
        instance = self._settings.raw("vision_backend_instance")
        factory = self._settings.raw("vision_backend_factory")
        if instance is None and callable(factory):
            instance = factory(self._owner)
        return None if instance is None else as_backend(instance)

    def _resolve(self, provider: Any = None, model: Any = None) -> tuple[str, str | None, Any]:
        """(engine, model, backend) for a call; creates the backend on first use."""
        provider, model = _text(provider), _text(model)
        if provider is not None and provider.lower().startswith("endpoint:"):
            return self._endpoint(provider, model)
        if provider is None and model is not None and "/" in model:
            head, _, rest = model.partition("/")  # AbstractCore's "diffusers/<model>" form
            if head.lower() in _ENGINE_ALIASES or head.lower() in _MLX:
                provider, model = head, rest
        with self._lock:
            injected = self._backends.get(_INJECTED) if provider is None else None
            if provider is None and injected is None:
                injected = self._injected()
                if injected is not None:
                    self._backends[_INJECTED] = injected
            if injected is not None:  # named after vision_backend when that is set, as in 0.3.x
                return self._configured_name() or "injected", model, injected
            engine = _engine_name(provider) or self._configured_engine()
            if provider is None and engine == "openai" and _hub_id(model):
                engine = "diffusers"  # as in 0.3.x: the OpenAI API serves no "owner/name" model
            model = model or self._default_model(engine)
            key = (engine, model)
            backend = self._backends.get(key)
            if backend is None:
                backend = self._backends[key] = as_backend(self._create(engine, model))
            return engine, model, backend

    def _endpoint(self, spec: str, model: str | None) -> tuple[str, str | None, Any]:
        """(``endpoint:<id>``, model, backend) for an endpoint profile; one backend per
        (profile, base URL, key, model): a rotated key gets a new one (the key kept as a digest)."""
        from ..backends import create_backend

        profile = _endpoint_profile(self._owner, spec)
        family, base_url, api_key = profile["family"], profile["base_url"], profile["api_key"]
        if family == "openai":
            base_url = base_url or OPENAI_BASE_URL
            api_key = api_key or _text(os.environ.get("OPENAI_API_KEY"))
            if api_key is None:
                raise InvalidRequestError(
                    "provider",
                    spec,
                    "the OpenAI endpoint profile has no API key (nor OPENAI_API_KEY)",
                )
        elif not base_url:
            raise InvalidRequestError("provider", spec, "the endpoint profile has no base_url")
        model = model or profile["model"] or (OPENAI_IMAGE_MODEL if family == "openai" else None)
        name = spec.strip().lower()
        digest = hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else ""
        key = (name, base_url, digest, model)
        with self._lock:
            self._endpoint_kinds[name] = family
            backend = self._backends.get(key)
            if backend is None:
                options: dict[str, Any] = {
                    "base_url": base_url,
                    "api_key": api_key,
                    "model_id": model,
                }
                timeout = self._settings.get("vision_timeout_s", "ABSTRACTVISION_TIMEOUT_S")
                if timeout:
                    options["timeout_s"] = float(timeout)
                options = {k: v for k, v in options.items() if v is not None}
                backend = self._backends[key] = create_backend("openai", **options)
        return name, model, backend

    def _create(self, engine: str, model: str | None) -> Any:
        from ..backends import create_backend

        s = self._settings
        timeout = s.get("vision_timeout_s", "ABSTRACTVISION_TIMEOUT_S")
        if engine == "diffusers":
            model = model or DIFFUSERS_DEFAULT_MODEL
            options: dict[str, Any] = {
                "model_id": model,
                "device": s.get("vision_device", "ABSTRACTVISION_DIFFUSERS_DEVICE") or "auto",
                "torch_dtype": s.get("vision_torch_dtype", "ABSTRACTVISION_DIFFUSERS_TORCH_DTYPE")
                or "auto",
                "allow_download": s.flag(
                    "vision_allow_download", "ABSTRACTVISION_DIFFUSERS_ALLOW_DOWNLOAD"
                ),
            }
            cache_dir = s.get("vision_cache_dir", "ABSTRACTVISION_DIFFUSERS_CACHE_DIR")
            if cache_dir:
                options["cache_dir"] = cache_dir
            return create_backend("diffusers", **options)
        if engine == "sdcpp":
            from ..backends import StableDiffusionCppBackendConfig, StableDiffusionCppVisionBackend

            files = {
                role: s.get(f"vision_sdcpp_{role}", f"ABSTRACTVISION_SDCPP_{role.upper()}")
                for role in _SDCPP_FILES
            }
            kwargs: dict[str, Any] = {k: v for k, v in files.items() if v}
            if model and not (files["diffusion_model"] and model == files["diffusion_model"]):
                kwargs["model"] = model
            extra_args = s.get("vision_sdcpp_extra_args", "ABSTRACTVISION_SDCPP_EXTRA_ARGS")
            if extra_args:
                kwargs["extra_args"] = extra_args  # 0.3.x sd-cli flags, mapped by compat
            sd_cli = s.get("vision_sdcpp_bin", "ABSTRACTVISION_SDCPP_BIN")
            if sd_cli:  # 0.3.x's sd-cli: the config warns that it has no effect (bindings only)
                kwargs["sd_cli_path"] = sd_cli
            return StableDiffusionCppVisionBackend(config=StableDiffusionCppBackendConfig(**kwargs))
        base_url = s.get("vision_base_url", "OPENAI_BASE_URL")
        if engine == "openai":
            base_url = base_url or OPENAI_BASE_URL
        if base_url is None:
            raise InvalidRequestError(
                "vision_base_url",
                None,
                "Missing vision_base_url / OPENAI_BASE_URL: the openai-compatible backend needs "
                "the service's base URL, e.g. http://127.0.0.1:8000/v1",
            )
        api_key = s.get("vision_api_key", "OPENAI_API_KEY")
        if engine == "openai" and api_key is None:
            raise InvalidRequestError(
                "OPENAI_API_KEY", None, "the OpenAI image API needs an API key"
            )
        options = {"base_url": base_url, "api_key": api_key, "model_id": model}
        options["models_path"] = s.get("vision_models_path", "ABSTRACTVISION_MODELS_PATH")
        if timeout:
            options["timeout_s"] = float(timeout)
        sync = {  # 0.3.x's synchronous video endpoints, when configured
            task: s.get(f"vision_{task}_path", f"ABSTRACTVISION_{task.upper()}_PATH")
            for task in ("text_to_video", "image_to_video")
        }
        if any(sync.values()):
            options["sync_video_paths"] = {k: v for k, v in sync.items() if v}
            mode = s.get("vision_image_to_video_mode", "ABSTRACTVISION_IMAGE_TO_VIDEO_MODE")
            if mode:
                options["sync_image_to_video_mode"] = mode
        return create_backend("openai", **{k: v for k, v in options.items() if v is not None})

    # --- running one call ----------------------------------------------------------------

    def _manager(self, backend: Any, kwargs: dict[str, Any]) -> Any:
        from ..artifacts import RuntimeArtifactStoreAdapter
        from ..vision_manager import VisionManager

        store = kwargs.get("artifact_store")
        adapter = None
        if store is not None:
            adapter = RuntimeArtifactStoreAdapter(
                store, run_id=kwargs.get("run_id"), tags=kwargs.get("tags")
            )
        return VisionManager(backend=backend, store=adapter)

    def _image(self, field: str, value: Any, store: Any) -> bytes | None:
        """bytes, an artifact ref (needs the call's artifact_store), a data URL, base64 or a path."""
        if value is None or isinstance(value, (bytes, bytearray)):
            return bytes(value) if value is not None else None
        from ..artifacts import RuntimeArtifactStoreAdapter
        from ..inputs import ImageResolver

        adapter = RuntimeArtifactStoreAdapter(store) if store is not None else None
        # an in-process caller: its own files are as readable to it as to us
        return ImageResolver(adapter, roots=[Path("/")]).resolve(field, value)

    def _images(
        self, request_type: Any, vm: Any, params: dict[str, Any], store: Any
    ) -> dict[str, Any]:
        """The call's other image inputs (``mask``, ``reference_image``, ``reference_images``) as
        bytes, from any form ``_image`` reads (AbstractCore passes file paths). Reference images
        may also come in ``extra`` (AbstractCore puts them there beside an ``extra``; 0.3.x
        tools as ``{"b64": ...}``); a 0.3.x backend (any extra key) gets them there, ours in
        the request's field."""
        for name in request_type.image_fields:
            if params.get(name) is not None:
                params[name] = self._image(name, params[name], store)
        for name in request_type.image_list_fields:
            extra = dict(params.get("extra") or {})
            items = [*_listed(params.pop(name, None)), *_listed(extra.pop(name, None))]
            if not items:
                continue
            images = [
                self._image(
                    f"{name}.{i}", v["b64"] if isinstance(v, Mapping) and "b64" in v else v, store
                )
                for i, v in enumerate(items)
            ]
            if name in vm.capabilities().extra_keys:
                extra[name] = images
            else:
                params[name] = images
            params.pop("extra", None)
            if extra:
                params["extra"] = extra
        return params

    def _params(self, request_type: type, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Request parameters; unknown keywords go to ``extra`` (as in 0.3.x), LoRAs mapped, and
        the request's 0.3.x keywords (``guidance_2``, ``flow_shift``, ``resolution``...) become
        what its constructor makes of them (``extra.guidance_scale_2``, ...)."""
        names = {f.name for f in dataclasses.fields(request_type)}
        table = getattr(request_type, "old_names", {})
        params: dict[str, Any] = {}
        old: dict[str, Any] = {}
        extra = dict(kwargs.pop("extra", None) or {})
        loras = kwargs.pop("lora_adapters", None)
        for key, value in kwargs.items():
            if key in _ROUTING or value is None:
                continue
            if key in names:
                params[key] = list(value) if key == "seeds" else value
            elif key in table:
                old[key] = value
            else:
                extra[key] = value
        extra = legacy_extra(extra, loras)
        if extra:
            params["extra"] = extra
        for key, value in old.items():
            table[key](value, params)
        return params

    def _single(
        self, method: str, request_type: type, task: str, first: tuple, kwargs: dict
    ) -> Any:
        """One VisionManager call on the backend for (provider, model); results as AbstractCore
        expects them: bytes without an artifact_store, artifact refs with one."""
        engine, model, backend = self._resolve(kwargs.get("provider"), kwargs.get("model"))
        self._acquire(backend, switch=True)
        try:
            vm = self._manager(backend, kwargs)
            # 0.3.x progress hooks, on_progress(event) / progress_callback(step, total): a 0.3.x
            # backend reads them in extra; for ours they become the call's progress callback
            hooks = {k: kwargs[k] for k in PROGRESS_HOOKS if callable(kwargs.get(k))}
            progress = None
            if hooks and not all(k in vm.capabilities().extra_keys for k in hooks):
                progress = progress_forwarder({k: kwargs.pop(k) for k in hooks})
            params = self._params(request_type, kwargs)
            params = self._images(request_type, vm, params, kwargs.get("artifact_store"))
            out = getattr(vm, method)(*first, on_progress=progress, **params)
            self._touch(engine, model, backend, task, resident=False)
        finally:
            self._release(backend)
        return _plain(out)

    # --- AbstractCore's VisionCapability --------------------------------------------------

    def t2i(self, prompt: str, **kwargs: Any) -> Any:
        from ..types import ImageGenerationRequest

        return self._single(
            "generate_image", ImageGenerationRequest, "text_to_image", (prompt,), kwargs
        )

    def i2i(self, prompt: str, image: Any, **kwargs: Any) -> Any:
        from ..types import ImageEditRequest

        data = self._image("image", image, kwargs.get("artifact_store"))
        return self._single(
            "edit_image", ImageEditRequest, "image_to_image", (prompt, data), kwargs
        )

    def t2v(self, prompt: str, **kwargs: Any) -> Any:
        from ..types import VideoGenerationRequest

        return self._single(
            "generate_video", VideoGenerationRequest, "text_to_video", (prompt,), kwargs
        )

    def i2v(self, image: Any, **kwargs: Any) -> Any:
        from ..types import ImageToVideoRequest

        data = self._image("image", image, kwargs.get("artifact_store"))
        return self._single(
            "image_to_video", ImageToVideoRequest, "image_to_video", (data,), kwargs
        )

    def generate_angles(self, prompt: str, **kwargs: Any) -> list[Any]:
        from ..types import MultiAngleRequest

        return self._single(
            "generate_angles", MultiAngleRequest, "multi_view_image", (prompt,), kwargs
        )

    multi_view_image = generate_angles

    def upscale_image(self, image: Any, **kwargs: Any) -> Any:
        from .. import types

        request_type = getattr(types, "ImageUpscaleRequest", None)
        if request_type is None:
            raise CapabilityNotSupportedError("image upscaling is not available in this build")
        data = self._image("image", image, kwargs.get("artifact_store"))
        resolution = kwargs.pop("resolution", None)  # 0.3.x: "2x" or 2 -> scale
        if resolution is not None and kwargs.get("scale") is None:
            try:
                kwargs["scale"] = int(str(resolution).lower().rstrip("x"))
            except ValueError:
                raise InvalidRequestError(
                    "resolution", resolution, "must be like 2 or '2x'"
                ) from None
        return self._single("upscale_image", request_type, "image_upscale", (data,), kwargs)

    image_upscale = upscale_image

    def _batch(self, single: Callable[..., Any], first: tuple, kwargs: dict[str, Any]) -> list[Any]:
        """Videos: ``count`` results, seed k = ``seeds[k]`` or ``seed + k`` (random base if unset).

        Each is a single call (the same validation and storage) on the warm backend. (Images go
        through ``VisionManager.generate_image_batch``, which stores nothing unless all succeed.)
        """
        count = int(kwargs.pop("count", None) or 1)
        seeds = kwargs.pop("seeds", None)
        if seeds is not None:
            seeds = [int(s) for s in seeds]
            count = len(seeds)
        from ..types import LIMITS

        if not 1 <= count <= LIMITS.max_batch:
            raise InvalidRequestError("count", count, f"must be 1..{LIMITS.max_batch}")
        if seeds is None:
            base = kwargs.pop("seed", None)
            base = int(base) if base is not None else int.from_bytes(os.urandom(4), "big") >> 1
            seeds = [(base + k) % (LIMITS.max_seed + 1) for k in range(count)]
        return [single(*first, **{**kwargs, "seed": seed}) for seed in seeds]

    def t2i_batch(self, prompt: str, **kwargs: Any) -> list[Any]:
        from ..types import ImageGenerationRequest

        _count_or_seeds(kwargs)
        return self._single(
            "generate_image_batch", ImageGenerationRequest, "text_to_image", (prompt,), kwargs
        )

    def i2i_batch(self, prompt: str, image: Any, **kwargs: Any) -> list[Any]:
        from ..types import ImageEditRequest

        _count_or_seeds(kwargs)
        data = self._image("image", image, kwargs.get("artifact_store"))
        return self._single(
            "edit_image_batch", ImageEditRequest, "image_to_image", (prompt, data), kwargs
        )

    def t2v_batch(self, prompt: str, **kwargs: Any) -> list[Any]:
        return self._batch(self.t2v, (prompt,), kwargs)

    def i2v_batch(self, image: Any, **kwargs: Any) -> list[Any]:
        return self._batch(self.i2v, (image,), kwargs)

    # --- residency ----------------------------------------------------------------------------

    def _key_of(self, backend: Any) -> tuple[Any, ...] | None:
        return next((k for k, b in self._backends.items() if b is backend), None)

    def _acquire(self, backend: Any, *, switch: bool = False) -> None:
        """Mark ``backend`` in use. ``switch``: a call on a local model first unloads the other
        local backends that are neither resident nor running a call."""
        idle: list[Any] = []
        with self._lock:
            self._busy[id(backend)] = self._busy.get(id(backend), 0) + 1
            key = self._key_of(backend)
            if not (switch and _local(key)):
                return
            resident = {self._keys.get(i) for i, r in self._loaded.items() if r["resident"]}
            for other, held in list(self._backends.items()):
                if held is backend or other == _INJECTED or not _local(other) or other in resident:
                    continue
                if self._busy.get(id(held)):  # its call goes on; a later switch unloads it
                    continue
                idle += self._retire_locked(other)
        _unload(idle)

    def _release(self, backend: Any) -> None:
        with self._lock:
            left = self._busy.get(id(backend), 0) - 1
            if left > 0:
                self._busy[id(backend)] = left
                return
            self._busy.pop(id(backend), None)
            retired = self._retired.pop(id(backend), None)
        _unload([retired] if retired is not None else [])

    def _retire_locked(self, key: tuple[Any, ...]) -> list[Any]:
        """Forget the backend under ``key`` and its records; [it] when idle (to unload), else []."""
        backend = self._backends.pop(key, None)
        for load_id in [i for i, k in self._keys.items() if k == key]:
            self._keys.pop(load_id, None)
            self._loaded.pop(load_id, None)
        if backend is None:
            return []
        if self._busy.get(id(backend)):
            self._retired[id(backend)] = backend
            return []
        return [backend]

    def _touch(
        self, engine: str, model: str | None, backend: Any, task: str, *, resident: bool
    ) -> dict:
        load_id = f"{engine}/{model or 'default'}"
        task = _task_name(task) or ""
        now = time.time()
        with self._lock:
            key = self._key_of(backend)
            record = self._loaded.get(load_id)
            if record is None or key is None:
                kind = self._endpoint_kinds.get(engine, engine)
                record = {
                    "load_id": load_id,
                    "provider": "huggingface" if kind == "diffusers" else engine,  # as in 0.3.x
                    "backend_kind": kind,
                    "model": model,
                    "task": task,
                    "tasks": [],
                    "scope": "process",
                    "loaded": True,
                    "resident": resident,
                    "source": "explicit_preload" if resident else "request",
                    "loaded_at": now,
                    "error": None,
                }
                if key is None:  # unloaded while this call ran: nothing to list
                    return {**record, "state": "unloaded", "loaded": False, "loaded_at": None}
                self._loaded[load_id] = record
                self._keys[load_id] = key
            record["last_used_at"] = now
            record["resident"] = record["resident"] or resident
            record["state"] = "resident" if record["resident"] else "active"
            record["task"] = task or record["task"]
            if task:
                record["tasks"] = sorted({*record["tasks"], task})
            return dict(record, tasks=list(record["tasks"]))

    def load_resident_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Load a local model now and keep it until ``unload_resident_model`` (model switches
        do not unload it). Remote services hold no model here: refused."""
        request = dict(request or {})
        provider = request.get("provider") or request.get("backend") or request.get("backend_kind")
        engine, model, backend = self._resolve(provider, request.get("model"))
        with self._lock:
            key = self._key_of(backend)
            new = f"{engine}/{model or 'default'}" not in self._loaded
        if not _local(key):
            raise CapabilityNotSupportedError(
                f"load_resident_model: model residency is only available for in-process local "
                f"AbstractVision backends (diffusers, sdcpp); {engine!r} is a remote service"
            )
        self._acquire(backend)
        try:
            backend.preload()
            record = self._touch(engine, model, backend, request.get("task") or "", resident=True)
        finally:
            self._release(backend)
        return {**record, "loaded_new": new}

    def list_loaded_models(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        filters = {k: v for k, v in dict(filters or {}).items() if v is not None}
        with self._lock:
            records = [dict(r, tasks=list(r["tasks"])) for r in self._loaded.values()]
        out = [r for r in records if all(_matches(r, k, v) for k, v in filters.items())]
        return sorted(out, key=lambda r: r["load_id"])

    def list_resident_models(
        self, filters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return self.list_loaded_models({**dict(filters or {}), "resident": True})

    def unload_resident_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Unload the one model ``request`` names (load_id, provider, model, task); a backend
        that is running a call is unloaded when that call ends."""
        request = {k: v for k, v in dict(request or {}).items() if v is not None}
        names = ("load_id", "provider", "backend", "backend_kind", "model", "task")
        selectors = {k: request[k] for k in names if k in request}
        if not selectors:
            raise InvalidRequestError(
                "load_id", None, "name the model to unload (load_id or model)"
            )
        matched = self.list_loaded_models(selectors)
        if len(matched) > 1:
            ids = ", ".join(r["load_id"] for r in matched)
            raise InvalidRequestError(
                "load_id",
                None,
                f"Ambiguous unload request: it matches {ids}; name one load_id",
            )
        if not matched:
            return {
                **selectors,
                "state": "unloaded",
                "loaded": False,
                "resident": False,
                "error": None,
            }
        record = matched[0]
        with self._lock:
            key = self._keys.get(record["load_id"])
            idle = self._retire_locked(key) if key is not None else []
        _unload(idle)
        return {
            **record,
            "state": "unloaded",
            "loaded": False,
            "resident": False,
            "loaded_at": None,
        }

    load_model = load_resident_model
    unload_model = unload_resident_model

    # --- discovery ----------------------------------------------------------------------------

    def list_provider_models(self, *, task: str | None = None) -> list[dict[str, Any]]:
        """The models the configured backend serves (per task), as ``ProviderModelInfo`` dicts;
        none when no backend is configured (no key for the default OpenAI API, no base URL)."""
        try:
            engine, _, backend = self._resolve()
        except InvalidRequestError as exc:
            if exc.field in _SETTINGS_FIELDS:
                return []
            raise
        from ..backends.openai_compatible import OpenAICompatibleVisionBackend

        offline = self._settings.flag(
            "", "ABSTRACTVISION_ASSUME_OFFLINE", "ABSTRACTCORE_ASSUME_OFFLINE"
        )
        if (
            offline
            and isinstance(backend, OpenAICompatibleVisionBackend)
            and not backend.config.models
        ):
            return []  # offline: the service's own catalogue is not asked (as 0.3.x)
        try:
            infos = self._manager(backend, {}).list_provider_models(task=task)
        except AbstractVisionError:
            raise
        except Exception as exc:  # a 0.3.x-style backend's own catalog call
            raise BackendError(f"the provider model catalog failed: {exc}") from exc
        return [{**_json_safe(dataclasses.asdict(info)), "provider": engine} for info in infos]

    def list_provider_adapters(
        self, *, model: str | None = None, task: str | None = None, provider: str | None = None
    ) -> list[dict[str, Any]]:
        engine, _, backend = self._resolve(provider, model)
        vm = self._manager(backend, {})
        return [
            {**_json_safe(dataclasses.asdict(info)), "provider": engine}
            for info in vm.list_provider_adapters(model=model, task=task)
        ]

    def available_providers(self, *, task: str | None = None) -> dict[str, Any]:
        """Which engines this install can run, without loading or calling any (0.3.x shape:
        ``providers``, ``available_providers``, ``details``). ``ABSTRACTVISION_ASSUME_OFFLINE``
        marks remote services unreachable, except an OpenAI-compatible one on this machine."""
        from urllib.parse import urlsplit

        s = self._settings
        base_url = s.get("vision_base_url", "OPENAI_BASE_URL")
        api_key = s.get("vision_api_key", "OPENAI_API_KEY")
        offline = s.flag("", "ABSTRACTVISION_ASSUME_OFFLINE", "ABSTRACTCORE_ASSUME_OFFLINE")
        host = (urlsplit(base_url).hostname or "") if base_url else ""
        local_url = host in ("localhost", "127.0.0.1", "::1")
        diffusers = all(importlib.util.find_spec(m) is not None for m in ("diffusers", "torch"))
        installed = {
            "openai": True,
            "openai-compatible": True,
            "diffusers": diffusers,
            "huggingface": diffusers,  # the 0.3.x name of the diffusers engine
            "sdcpp": importlib.util.find_spec("stable_diffusion_cpp") is not None,
        }
        reachable = {
            "openai": bool(api_key) and not offline,
            "openai-compatible": bool(base_url) and (local_url or not offline),
        }
        available = [p for p, ok in installed.items() if ok and reachable.get(p, True)]
        details = {
            p: {
                "id": p,
                "provider": p,
                "installed": installed[p],
                "remote": p in reachable,
                "local": p not in reachable,
                "reachable": reachable.get(p),
            }
            for p in installed
        }
        return {
            "task": task,
            "backend_id": self.backend_id,
            "providers": list(installed),
            "available_providers": available,
            "details": details,
            "base_url": base_url,
            "has_api_key": bool(api_key),
        }

    list_available_providers = available_providers


def _count_or_seeds(kwargs: dict[str, Any]) -> None:
    """AbstractCore sends count=1 beside seeds; the seeds set the count."""
    if kwargs.get("seeds") is not None:
        kwargs.pop("count", None)
    else:
        kwargs["count"] = kwargs.get("count") or 1


def _matches(record: Mapping[str, Any], key: str, value: Any) -> bool:
    if key in ("provider", "backend", "backend_kind"):
        value = str(value)
        if value in (record["provider"], record["backend_kind"]):
            return True
        if value.lower().startswith("endpoint:") or value == "injected":
            return record["provider"] == value.lower()
        return record["backend_kind"] == _engine_name(value)
    if key == "resident":
        return bool(record["resident"]) == bool(value)
    if key == "task":
        return _task_name(value) in record["tasks"]
    if key in ("load_id", "model", "state"):
        return record.get(key) == value
    return True


_TASK_ALIASES = {  # the task names AbstractCore's residency API uses (0.3.x took them too)
    "image": "text_to_image",
    "image_generation": "text_to_image",
    "t2i": "text_to_image",
    "i2i": "image_to_image",
    "image_edit": "image_to_image",
    "t2v": "text_to_video",
    "video_generation": "text_to_video",
    "i2v": "image_to_video",
    "upscale": "image_upscale",
    "upscale_image": "image_upscale",
    "super_resolution": "image_upscale",
}


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _hub_id(model: str | None) -> bool:
    """Whether ``model`` reads as a Hugging Face repo id ("owner/name"), not a path or URL."""
    return (
        model is not None
        and model.count("/") == 1
        and "://" not in model
        and "\\" not in model
        and not model.startswith(("/", ".", "~"))
        and all(model.split("/"))
    )


def _task_name(value: Any) -> str | None:
    name = (_text(value) or "").lower().replace("-", "_")
    return _TASK_ALIASES.get(name, name) or None


def _local(key: tuple[Any, ...] | None) -> bool:
    """Whether the backend under ``key`` holds its model in this process (not a remote service)."""
    return key is not None and (key == _INJECTED or key[0] in ("diffusers", "sdcpp"))


def _unload(backends: list[Any]) -> None:
    """Unload retired backends; a failure is logged (the call that retired them goes on)."""
    for backend in backends:
        try:
            backend.unload()
        except Exception:
            log.warning("unloading %s failed", type(backend).__name__, exc_info=True)


def _endpoint_profile(owner: Any, spec: str) -> dict[str, Any]:
    """``endpoint:<id>`` -> {family, base_url, api_key, model}: the first of the owner's resolver,
    AbstractCore's ambient resolver and AbstractCore's provider profiles that knows it."""
    resolvers = [getattr(owner, "resolve_provider_endpoint_profile", None)]
    try:
        from abstractcore.providers.endpoint_context import (
            current_provider_endpoint_profile_resolver,
        )

        resolvers.append(current_provider_endpoint_profile_resolver())
    except ImportError:
        pass
    payload: Any = None
    for resolver in resolvers:
        if not callable(resolver):
            continue
        try:
            payload = resolver(spec)
        except Exception as exc:  # the host's code: a miss, named without its message (secrets)
            log.warning("endpoint profile resolver failed for %r (%s)", spec, type(exc).__name__)
            payload = None
        if isinstance(payload, Mapping):
            break
        payload = None
    if payload is None:
        payload = _configured_profile(owner, spec)
    if not isinstance(payload, Mapping) or payload.get("enabled") is False:
        raise InvalidRequestError(
            "provider",
            spec,
            "unknown or disabled endpoint profile: neither the host's endpoint-profile resolver "
            "nor AbstractCore's provider profiles know it",
        )
    family = str(payload.get("provider_family") or payload.get("provider") or "")
    family = family.strip().lower().replace("_", "-")
    if family not in ("openai", "openai-compatible"):
        raise InvalidRequestError(
            "provider",
            spec,
            f"the endpoint profile's provider family is {family or 'unset'!r}; image and video "
            "generation needs an 'openai' or 'openai-compatible' profile",
        )
    allowed = payload.get("allowed_models")
    first = allowed[0] if isinstance(allowed, (list, tuple)) and allowed else None
    return {
        "family": family,
        "base_url": _text(payload.get("base_url")),
        "api_key": _text(payload.get("api_key")),
        "model": _text(first),
    }


def _configured_profile(owner: Any, spec: str) -> Any:
    """The profile in AbstractCore's config (the owner's config file when it names one)."""
    try:
        config_file = _text(getattr(owner, "_abstractcore_config_file", None))
        if config_file:
            from abstractcore.config.manager import ConfigurationManager

            manager = ConfigurationManager(config_file=config_file, apply_env=False)
        else:
            from abstractcore.config import get_config_manager

            manager = get_config_manager()
        profile = manager.resolve_provider_profile(spec)
        return profile.private_resolution() if profile is not None else None
    except ImportError:
        return None
    except Exception as exc:  # an unreadable config: a miss, named (never its content)
        log.warning(
            "AbstractCore provider profiles unreadable for %r (%s)", spec, type(exc).__name__
        )
        return None


_RAW_MAX_STRING, _RAW_MAX_ITEMS, _RAW_MAX_DEPTH = 4096, 50, 4


def _json_safe(value: Any, depth: int = 0) -> Any:
    """A catalogue entry as JSON (lists, not tuples), a service's raw metadata bounded (long
    strings cut with ``...<truncated>``, at most 50 items per level, 4 levels), as in 0.3.x."""
    if isinstance(value, str):
        return (
            value if len(value) <= _RAW_MAX_STRING else value[:_RAW_MAX_STRING] + "...<truncated>"
        )
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if depth > _RAW_MAX_DEPTH:
        return "...<truncated>"
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {str(k): _json_safe(v, depth + 1) for k, v in items[:_RAW_MAX_ITEMS]}
        if len(items) > _RAW_MAX_ITEMS:
            out["...<truncated>"] = f"{len(items) - _RAW_MAX_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out_list = [_json_safe(v, depth + 1) for v in items[:_RAW_MAX_ITEMS]]
        return out_list + (["...<truncated>"] if len(items) > _RAW_MAX_ITEMS else [])
    return _json_safe(str(value), depth)


def _plain(out: Any) -> Any:
    """A ``GeneratedAsset`` becomes its bytes (what AbstractCore expects); refs pass as they are."""
    if isinstance(out, list):
        return [_plain(item) for item in out]
    data = getattr(out, "data", None)
    return bytes(data) if isinstance(data, (bytes, bytearray)) else out


def register(registry: Any) -> None:
    """Register the vision capability with AbstractCore's ``CapabilityRegistry``."""
    hint = (
        "OpenAI HTTP (api.openai.com, OPENAI_API_KEY) by default. Set vision_backend (create_llm "
        "keyword) or ABSTRACTVISION_PROVIDER to diffusers, sdcpp, openai-compatible or openai, and "
        "vision_model_id / ABSTRACTVISION_MODEL to the model."
    )
    registry.register_vision_backend(
        backend_id=BACKEND_ID,
        factory=lambda owner: AbstractVisionCapability(owner, backend_id=BACKEND_ID),
        priority=0,
        description="abstractvision: Diffusers, stable-diffusion.cpp or OpenAI-compatible image/video",
        install_hint="pip install 'abstractvision[diffusers]'",
        config_hint=hint,
    )
    registry.register_vision_backend(
        backend_id=LEGACY_BACKEND_ID,
        factory=lambda owner: AbstractVisionCapability(owner, backend_id=LEGACY_BACKEND_ID),
        priority=-1,
        description="abstractvision, defaulting to an OpenAI-compatible endpoint (OPENAI_BASE_URL)",
        config_hint="Compatibility backend id (0.3.x): an OpenAI-compatible endpoint by default. "
        + hint,
    )


_AbstractVisionCapability = AbstractVisionCapability  # the 0.3.x name (its tests build it)
