"""Checks of a request against the model before anything loads or runs.

``VisionManager`` calls the backend's ``check_request`` for every request (for multi-view: the
reference and the edits it will make) before the engine starts, so a call the pipeline would
fail on is refused at once, by every front end, without a job, a load or a generated
reference: an ``extra.scheduler`` that is unknown or does not suit the model, and an edit whose
``steps x strength`` leaves no denoising step. Both read only small JSON files and pipeline
classes (no weights); what cannot be known without loading is left to the run.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from pathlib import Path
from typing import Any

from ...errors import CapabilityNotSupportedError, InvalidRequestError
from . import families, loading
from .run import SCHEDULERS

log = logging.getLogger(__name__)


def check_request(backend: Any, request: Any) -> None:
    """Raise the error the run would raise for ``request``, where it can be known now."""
    task = getattr(request, "task", None)
    task = getattr(task, "value", task)
    if task not in (families.T2I, families.I2I):
        return
    scheduler = (getattr(request, "extra", None) or {}).get("scheduler")
    if scheduler is not None and (not isinstance(scheduler, str) or scheduler not in SCHEDULERS):
        raise InvalidRequestError(
            "extra.scheduler", scheduler, f"must be one of {', '.join(SCHEDULERS)}"
        )
    info = backend._model_for(task, request.model)  # the run's own model errors
    if scheduler is not None:
        _check_scheduler_fits(backend, info, scheduler)
    if task == families.I2I and request.steps is not None:
        masked = getattr(request, "mask", None) is not None
        kind = loading.kind_of(task, masked, info)
        _check_denoise_steps(_edit_class(info, kind), request.steps, request.strength)


def _edit_class(info: families.ModelInfo, kind: str) -> Any:
    """The pipeline class an edit runs on (no instance: derive() would make the same)."""
    import diffusers
    from diffusers.pipelines import auto_pipeline as auto

    own = families.IMAGE_PIPELINES.get(info.class_name, {})
    if kind in own:
        return getattr(diffusers, own[kind], None)
    mapping = (
        auto.AUTO_INPAINT_PIPELINES_MAPPING
        if kind == loading.INPAINT
        else auto.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING
    )
    try:
        return auto._get_task_class(mapping, info.class_name, False)
    except Exception:  # no counterpart: the run says so
        return None


def _check_denoise_steps(cls: Any, steps: int, strength: float | None) -> None:
    """The rule of ``run.denoise_steps`` on the class's own default strength."""
    if cls is None:
        return
    param = inspect.signature(cls.__call__).parameters.get("strength")
    if param is None:
        return
    if strength is None:
        strength = None if param.default is inspect.Parameter.empty else param.default
    if strength is None or min(int(steps * strength), steps) >= 1:
        return
    need = "strength > 0" if strength <= 0 else f"steps >= {math.ceil(1 / strength)}"
    raise InvalidRequestError(
        "steps", steps, f"with strength {strength} no denoising step is left: use {need}"
    )


def _check_scheduler_fits(backend: Any, info: families.ModelInfo, name: str) -> None:
    """The model's scheduler (from its scheduler_config.json) must list ``name`` as compatible."""
    current = _scheduler_class(backend, info)
    if current is None:
        return
    import diffusers

    cls = getattr(diffusers, current, None)
    found = cls._get_compatibles() if hasattr(cls, "_get_compatibles") else ()
    compatible = {c.__name__ for c in found} | {current}
    if SCHEDULERS[name][0] not in compatible:
        fits = sorted(n for n, (c, _) in SCHEDULERS.items() if c in compatible)
        raise CapabilityNotSupportedError(
            f"scheduler {name!r} does not suit this model; use one of: {', '.join(fits) or 'none'}"
        )


def _scheduler_class(backend: Any, info: families.ModelInfo) -> str | None:
    config = backend.config
    try:
        index = families.find_model_index(
            info.source,
            allow_download=False,
            cache_dir=config.cache_dir,
            revision=config.revision,
        )
        path = Path(index).parent / "scheduler" / "scheduler_config.json"
        return str(json.loads(path.read_text(encoding="utf-8"))["_class_name"])
    except Exception:  # not readable without loading: the run checks it
        log.debug("no scheduler config for %s", info.source, exc_info=True)
        return None
