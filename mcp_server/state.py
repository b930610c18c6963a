"""What every handler shares: config, engine (store + backend), jobs and the input resolver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ServerConfig
from .engine import Engine
from .inputs import ImageInputs
from .jobs import JobManager


@dataclass
class ServerState:
    config: ServerConfig
    engine: Engine
    jobs: JobManager
    inputs: ImageInputs
    tool_cache: tuple[Any, list[Any]] | None = None  # (capabilities it was built for, tools)

    @classmethod
    def create(cls, config: ServerConfig, engine: Engine | None = None) -> ServerState:
        engine = engine if engine is not None else Engine(config)
        jobs = JobManager(
            config.max_concurrency, config.job_ttl_s, config.max_jobs, config.max_queue
        )
        return cls(config, engine, jobs, ImageInputs(config, engine.store))
