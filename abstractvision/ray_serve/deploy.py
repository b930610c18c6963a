"""Deploying the workers: options, the Serve application, and connecting to a cluster.

``WorkerOptions`` holds what Ray Serve needs to place and size the replicas; ``build_app`` turns
an engine name, its backend options and worker options into a Serve application (it is also the
``import_path`` of a Serve config file); ``deploy`` connects to a cluster and runs the app unless
it is already running there, so several front ends can start with the same command.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..backends import parse_key_values, parse_value
from ..errors import InvalidRequestError, OptionalDependencyMissingError

__all__ = ["WorkerOptions", "build_app", "connect", "deploy", "deployed_backend", "worker_options"]

if TYPE_CHECKING:
    from ..backends.ray_serve import RayServeVisionBackend

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "VisionWorker"
LOCAL_ENGINES = ("diffusers", "sdcpp")  # what a replica can host


@dataclass(frozen=True)
class WorkerOptions:
    """How the replicas are placed and sized (``--ray-option KEY=VALUE``).

    ``max_replicas`` > ``min_replicas`` turns on Serve autoscaling between the two, aiming at
    ``target_ongoing_requests`` per replica; otherwise ``num_replicas`` replicas run. Each replica
    takes ``max_ongoing_requests`` calls (one on the device, the rest queued inside it); each front
    end queues ``max_queued_requests`` more (at least 1), past which callers get a busy answer.
    A replica whose cancelled job is still running ``cancel_grace_s`` later fails its health
    check and is replaced (``None``: never).
    """

    app_name: str = "abstractvision"
    num_replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 1.0
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    max_ongoing_requests: int = 2
    max_queued_requests: int = 32
    health_check_period_s: float = 10.0
    cancel_grace_s: float | None = 300.0
    preload: bool = True
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, low in (
            ("num_replicas", 1),
            ("max_ongoing_requests", 1),
            ("max_queued_requests", 1),
            ("min_replicas", 0),
            ("max_replicas", 1),
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < low):
                raise InvalidRequestError(name, value, f"must be an integer >= {low}")
        for name in ("num_gpus", "num_cpus", "target_ongoing_requests", "health_check_period_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise InvalidRequestError(name, value, "must be a number >= 0")
        grace = self.cancel_grace_s
        if grace is not None and (not isinstance(grace, (int, float)) or grace <= 0):
            raise InvalidRequestError("cancel_grace_s", grace, "must be a number > 0 or null")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise InvalidRequestError(
                "max_replicas", self.max_replicas, "give min_replicas and max_replicas together"
            )
        if self.min_replicas is not None and self.max_replicas < self.min_replicas:  # type: ignore[operator]
            raise InvalidRequestError(
                "max_replicas", self.max_replicas, f"must be >= min_replicas ({self.min_replicas})"
            )

    def deployment_options(self) -> dict[str, Any]:
        """The keyword arguments of ``Deployment.options`` for these settings."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.env:
            actor["runtime_env"] = {"env_vars": {str(k): str(v) for k, v in self.env.items()}}
        options: dict[str, Any] = {
            "name": DEPLOYMENT_NAME,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "health_check_period_s": self.health_check_period_s,
        }
        if self.max_replicas is not None:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.num_replicas
        return options


def worker_options(items: Sequence[str] = (), **overrides: Any) -> WorkerOptions:
    """``WorkerOptions`` from ``KEY=VALUE`` items, refusing unknown keys by name."""
    values = {**parse_key_values(items, "--ray-option"), **overrides}
    known = {f.name for f in dataclasses.fields(WorkerOptions)}
    for key, value in values.items():
        if key not in known:
            raise InvalidRequestError(
                key, value, f"not a Ray worker option; known: {', '.join(sorted(known))}"
            )
    return WorkerOptions(**values)


def require_ray() -> Any:
    """The ``ray`` module with ``ray.serve`` loaded, or the error naming the extra to install."""
    try:
        import ray
        import ray.serve
    except ImportError:
        raise OptionalDependencyMissingError("ray", "ray", feature="Ray Serve") from None
    return ray


def build_app(args: Mapping[str, Any]) -> Any:
    """A Serve application from plain arguments (the builder a Serve config file names).

    ``args``: ``engine`` (diffusers or sdcpp), ``backend_options`` (that engine's config), and any
    ``WorkerOptions`` field.
    """
    serve = require_ray().serve
    from .worker import VisionWorker

    # ``serve run MODULE:build_app key=value`` passes text; a config file passes typed values
    args = {
        k: parse_value(v) if isinstance(v, str) and k != "engine" else v for k, v in args.items()
    }
    engine = str(args.pop("engine", "diffusers"))
    if engine not in LOCAL_ENGINES:
        raise InvalidRequestError("engine", engine, f"must be one of {', '.join(LOCAL_ENGINES)}")
    backend_options = dict(args.pop("backend_options", None) or {})
    options = worker_options(**args)
    deployment = serve.deployment(VisionWorker).options(**options.deployment_options())
    return deployment.bind(engine, backend_options, options.preload, options.cancel_grace_s)


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:10001``, a GCS address) once;
    ``local`` starts a private one-machine cluster in this process."""
    ray = require_ray()

    if ray.is_initialized():
        return
    ray.init(
        address=None if address == "local" else address,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
    )


def app_running(app_name: str) -> bool:
    serve = require_ray().serve
    try:
        app = serve.status().applications.get(app_name)
    except Exception:  # Serve not started on this cluster yet
        return False
    return app is not None and str(app.status).endswith("RUNNING")


def deploy(
    address: str | None,
    engine: str,
    backend_options: Mapping[str, Any],
    options: WorkerOptions,
    *,
    redeploy: bool = False,
) -> None:
    """Run the workers on the cluster, unless ``options.app_name`` already runs there."""
    serve = require_ray().serve
    connect(address)
    if not redeploy and app_running(options.app_name):
        log.info("Ray Serve app %r already running; attaching", options.app_name)
        return
    started = time.monotonic()
    serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy on the cluster's ports
    app = build_app(
        {**dataclasses.asdict(options), "engine": engine, "backend_options": dict(backend_options)}
    )
    serve.run(app, name=options.app_name, route_prefix=None)
    log.info("Ray Serve app %r deployed in %.1f s", options.app_name, time.monotonic() - started)


def deployed_backend(
    address: str,
    engine: str,
    backend_options: Mapping[str, Any],
    items: Sequence[str] = (),
) -> RayServeVisionBackend:
    """Deploy (or attach to) the workers, then a front-end backend that talks to them.

    ``items`` are ``KEY=VALUE`` options of either side: ``RayServeBackendConfig`` keys
    (``on_replica_failure``, ``max_retries``...) go to the front end, the rest are
    ``WorkerOptions``.
    """
    from ..backends.ray_serve import RayServeBackendConfig, RayServeVisionBackend

    values = parse_key_values(items, "--ray-option")
    front_keys = {f.name for f in dataclasses.fields(RayServeBackendConfig)} - {"app_name"}
    front = {k: values.pop(k) for k in list(values) if k in front_keys}
    options = worker_options(**values)
    deploy(address, engine, backend_options, options)
    config = RayServeBackendConfig(address=address, app_name=options.app_name, **front)
    return RayServeVisionBackend(config)
