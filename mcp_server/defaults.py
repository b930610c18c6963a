"""Start-up defaults and model downloads for the server (logic in ``abstractvision.startup``).

``prepare(config)`` runs once at start: with no ``--model`` it picks the registry's recommended
model for this machine (and the engine too, when ``--backend`` was not given), and returns the
lines to print on stderr (backend, model, on disk or not, missing extra). ``ensure(config, model,
control)`` runs before each generation: a Hub model not on disk is downloaded with progress when
``--allow-download`` is set, else the call is refused with the ``abstractvision pull`` to run.
"""

from __future__ import annotations

from typing import Any

from abstractvision.model_downloads import ENGINES, ensure_model
from abstractvision.startup import missing_extra, recommend, startup_report

from .config import ServerConfig

__all__ = ["ensure", "prepare", "runnable"]


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
