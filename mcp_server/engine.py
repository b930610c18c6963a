"""The server's view of the library: store, lazily built backend, manager, registry.

Nothing here imports torch: the backend object is created on first need (``create_backend`` imports
the engine module, which loads heavy packages only when a model is loaded), and ``preload`` runs
in a background thread so start-up never waits for weights.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from abstractvision import (
    LIMITS,
    FsspecAssetStore,
    LocalAssetStore,
    MediaStore,
    RuntimeArtifactStoreAdapter,
    Task,
    VisionBackendCapabilities,
    VisionManager,
    VisionModelCapabilitiesRegistry,
    tool_schemas,
)
from abstractvision.backends import VisionBackend, create_backend, parse_key_values
from abstractvision.object_store import open_store
from abstractvision.types import REQUEST_TYPES

from . import defaults
from .config import ServerConfig

log = logging.getLogger(__name__)


def build_store(config: ServerConfig) -> MediaStore:
    """``--store DIR|URL`` (default ~/.abstractvision/assets) or ``--runtime-store SPEC``."""
    spec = config.runtime_store
    if not spec:
        return open_store(config.store, parse_key_values(config.store_option, "--store-option"))
    if spec.startswith("file:"):
        from abstractruntime.storage.artifacts import FileArtifactStore

        return RuntimeArtifactStoreAdapter(FileArtifactStore(spec[len("file:") :]))
    if spec == "memory":
        from abstractruntime.storage.artifacts import InMemoryArtifactStore

        return RuntimeArtifactStoreAdapter(InMemoryArtifactStore())
    module_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise ValueError(f"--runtime-store {spec!r}: use file:/DIR, memory or module:factory")
    factory = getattr(importlib.import_module(module_name), attr)
    made = factory() if callable(factory) else factory
    if isinstance(made, (LocalAssetStore, FsspecAssetStore, RuntimeArtifactStoreAdapter)):
        return made
    return RuntimeArtifactStoreAdapter(made)


class Engine:
    """One backend behind one manager, built on first use; thread-safe."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        backend: VisionBackend | None = None,
        store: MediaStore | None = None,
        registry: VisionModelCapabilitiesRegistry | None = None,
    ) -> None:
        self.config = config
        self.store = store if store is not None else build_store(config)
        self.registry = registry if registry is not None else VisionModelCapabilitiesRegistry()
        self._backend = backend
        self._manager: VisionManager | None = None
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._caps: VisionBackendCapabilities | None = None
        self._preloading = False

    @property
    def backend(self) -> VisionBackend:
        """The one backend object (made on first need; importing it loads no weights)."""
        with self._lock:
            if self._backend is None:
                self._backend = _build_backend(self.config)
            return self._backend

    @property
    def manager(self) -> VisionManager:
        backend = self.backend
        with self._lock:
            if self._manager is None:
                self._manager = VisionManager(backend=backend, store=self.store)
            return self._manager

    def capabilities(self, *, fresh: bool = False) -> VisionBackendCapabilities:
        """What the backend will do (cached; ``fresh`` re-asks, e.g. for loaded models).

        May be slow and import the engine (the Diffusers backend inspects the model with torch):
        call it from a worker thread, never from tools/list.
        """
        with self._probe_lock:
            if not defaults.runnable(self.config):  # the engine's extra is missing: no task
                self._caps = VisionBackendCapabilities(supported_tasks=[], models={})
            elif self._caps is None or fresh:
                self._caps = self.manager.capabilities()
            return self._caps

    @property
    def probed(self) -> bool:
        """Whether the backend's real capabilities are known (tools/list is exact)."""
        return self._caps is not None

    def advertised(self) -> VisionBackendCapabilities:
        """Capabilities for tools/list without loading anything: the real ones once known,
        before that the registry's tasks for ``--model`` (every task for an unknown model; a
        call for a task the backend turns out not to support is refused with a clear message).
        """
        if self._caps is not None:
            return self._caps
        if not defaults.runnable(self.config):  # the engine's extra is missing
            return VisionBackendCapabilities(supported_tasks=[], models={})
        model = self.config.model
        tasks: list[str] | None = None
        if model and model in self.registry:
            tasks = [str(t) for t in self.registry.get(model).tasks]
        elif model and self.config.backend == "diffusers":
            tasks = _folder_tasks(model)
        models = {t.value: [model] for t in Task if model and (tasks is None or t.value in tasks)}
        return VisionBackendCapabilities(supported_tasks=tasks, models=models)

    def supported_tasks(self, *, advertised: bool = False) -> list[Task]:
        caps = self.advertised() if advertised else self.capabilities()
        return tool_schemas.available_tasks(caps)

    def models_for(self, task: Task, *, advertised: bool = False) -> list[str]:
        caps = self.advertised() if advertised else self.capabilities()
        return tool_schemas.models_for(caps, task)

    def check(self, task: Task, params: dict[str, Any]) -> None:
        """The library's checks before a job exists (``VisionManager.check``)."""
        REQUEST_TYPES[task].from_dict(params)  # the request's own errors come first
        if defaults.check_later(self.config, params.get("model"), task, params):
            return  # a model the job downloads first: the engine checks once it is on disk
        self.manager.check(task, params)

    def run(self, task: Task, params: dict[str, Any], control: Any) -> Any:
        defaults.ensure(self.config, params.get("model"), control)  # pull or refuse, first
        return self.manager.run(task, params, control=control)

    def preload_in_background(self) -> threading.Thread | None:
        if self._preloading:
            return None
        self._preloading = True

        def load() -> None:
            try:
                defaults.ensure(self.config, None, None)  # pulls now when downloads are allowed
                backend = self.manager.backend
                self.capabilities()
                if backend is not None:
                    backend.preload()
                log.info("model preloaded")
            except Exception:
                log.exception("preload failed; the first call will try again")

        thread = threading.Thread(target=load, name="abstractvision-preload", daemon=True)
        thread.start()
        return thread

    def describe(self) -> dict[str, Any]:
        """The abstractvision://backend document: tasks, limits, models loaded now."""
        caps = self.capabilities(fresh=True)
        limits = {
            k: getattr(caps, k)
            for k in ("max_width", "max_height", "max_frames", "max_fps")
            if getattr(caps, k) is not None
        }
        return {
            "backend": self.config.backend,
            "ray": self.config.ray,  # the cluster the engine runs on, when scaled out
            "default_model": self.config.model,
            "tasks": [t.value for t in self.supported_tasks()],
            "models": {k: list(v) for k, v in caps.models.items()},
            "loaded_models": list(caps.loaded_models),
            "supports_mask": caps.supports_mask,
            "extra_keys": dict(caps.extra_keys),
            "limits": {**_global_limits(), **limits},
            "max_concurrency": self.config.max_concurrency,
            "store": type(self.store).__name__,
        }


def _build_backend(config: ServerConfig) -> VisionBackend:
    """The configured engine, or with ``--ray`` a front end to it deployed on a Ray cluster."""
    if config.ray:
        from abstractvision.ray_serve import deployed_backend

        return deployed_backend(
            config.ray, config.backend, config.backend_options(), config.ray_option
        )
    return create_backend(config.backend, **config.backend_options())


def _folder_tasks(model: str) -> list[str] | None:
    """The tasks of a local Diffusers folder by its pipeline class name (no import of diffusers):
    a video class its video task, an upscaler upscaling, any other class the image tasks."""
    import json
    from pathlib import Path

    from abstractvision.backends._diffusers.families import IMAGE_TASKS, VIDEO_PIPELINES

    try:
        index = Path(model).expanduser() / "model_index.json"
        name = str(json.loads(index.read_text(encoding="utf-8"))["_class_name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a hub id or no folder: every task until probed
    if name in VIDEO_PIPELINES:
        return [VIDEO_PIPELINES[name].task]
    if "Upscale" in name:
        return [Task.IMAGE_UPSCALE.value]
    return list(IMAGE_TASKS)


def _global_limits() -> dict[str, Any]:
    names = ("min_side", "max_side", "side_multiple", "max_pixels", "max_steps", "max_frames")
    return {n: getattr(LIMITS, n) for n in names}
