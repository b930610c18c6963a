"""Start-up defaults and model downloads for the server (logic in ``abstractvision.startup``).

``prepare(config)`` runs once at start: with no ``--model`` it picks the registry's recommended
model for this machine (and the engine too, when ``--backend`` was not given), and returns the
lines to print on stderr (backend, model, on disk or not, missing extra). ``ensure(config, model,
control)`` runs before each generation: a Hub model not on disk is downloaded with progress when
``--allow-download`` is set, else the call is refused with the ``abstractvision pull`` to run.
"""

from __future__ import annotations

from typing import Any

from abstractvision.model_downloads import ENGINES, ensure_model, local_files, looks_like_hub_id
from abstractvision.startup import missing_extra, recommend, startup_report

from .config import ServerConfig

__all__ = ["check_later", "ensure", "prepare", "runnable"]


def prepare(config: ServerConfig) -> list[str]:
    """Fill in the default model (and engine) when none is named; the start-up lines."""
    picked = None
    if not config.model and not config.ray and config.backend in ENGINES:
        engine = config.backend if "backend" in config.given else None
        picked = recommend(engine, device=config.device)
        if picked is not None:
            config.backend, config.model = picked.engine, picked.model
            config.quant = config.quant or picked.quant
    return startup_report(
        config.backend,
        config.model,
        allow_download=config.allow_download,
        quant=config.quant,
        picked=picked,
    )


def runnable(config: ServerConfig) -> bool:
    """False when the local engine's extra is missing: no task tool is listed then."""
    return config.ray is not None or missing_extra(config.backend) is None


def check_later(config: ServerConfig, model: str | None, task: Any, params: Any) -> bool:
    """True for a Hub model not on disk that the job will download (``--allow-download``):
    only the request itself is checked now (bounds, types); the engine's checks need the files.
    Without downloads the missing model is refused here, naming the pull to run."""
    from abstractvision.types import REQUEST_TYPES

    name = model or config.model or ""
    if config.ray or config.backend not in ENGINES or not looks_like_hub_id(name):
        return False
    if local_files(name, config.backend, quant=config.quant) is not None:
        return False
    if not config.allow_download:
        ensure(config, name, None)  # raises UnknownModelError naming the pull
    REQUEST_TYPES[task].from_dict(params)
    return True


def ensure(config: ServerConfig, model: str | None, control: Any) -> None:
    """Download (or refuse) a Hub model that is not on disk, before the engine loads it."""
    if config.ray:
        return
    ensure_model(
        model or config.model or "",
        config.backend,
        allow_download=config.allow_download,
        quant=config.quant,
        control=control,
    )
