"""The front end of a Ray Serve deployment, used like any other backend.

Each call goes to the ``VisionWorker`` deployment (see ``abstractvision.ray_serve``) as a stream:
progress events come back step by step into the caller's ``GenerationControl``, a cancel closes
the stream (Serve cancels the call on the replica that runs it, whose engine stops at its next
step), and the final item is the asset or the typed error the replica raised.

When a replica dies mid-call, ``on_replica_failure="retry"`` sends the call again (up to
``max_retries`` times) to a live replica with the same seed, so the retried result is the one
the first replica would have made; ``"fail"`` raises ``ReplicaLostError`` at once. Either way
nothing was stored: replicas never write, and the front end stores only a finished result.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..control import GenerationControl, ProgressEvent
from ..errors import (
    AbstractVisionError,
    BackendError,
    BusyError,
    GenerationCancelledError,
    InvalidRequestError,
    ReplicaLostError,
)
from ..ray_serve.deploy import app_running, connect, require_ray
from ..types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    VideoGenerationRequest,
    VisionBackendCapabilities,
    VisionRequest,
)
from ._common import choose_seed
from .base_backend import VisionBackend

__all__ = ["RayServeBackendConfig", "RayServeVisionBackend"]

log = logging.getLogger(__name__)

FAILURE_POLICIES = ("retry", "fail")


@dataclass
class RayServeBackendConfig:
    """Where the workers run and what to do when one dies.

    ``address``: the Ray cluster (``auto`` joins the one this machine belongs to, ``ray://host:
    10001`` a remote one, ``local`` starts one in this process). ``model_id``: the model asked
    for when a request names none (default: the workers' own). ``timeout_s``: longest a call may
    take on a replica before it is cancelled there (default: no limit; videos take minutes).
    """

    address: str = "auto"
    app_name: str = "abstractvision"
    model_id: str | None = None
    on_replica_failure: str = "retry"
    max_retries: int = 1
    timeout_s: float | None = None
    capabilities_ttl_s: float = 30.0
    busy_retry_after_s: int = 5
    connect_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.on_replica_failure not in FAILURE_POLICIES:
            raise InvalidRequestError(
                "on_replica_failure", self.on_replica_failure, "must be retry or fail"
            )
        if not isinstance(self.max_retries, int) or not 0 <= self.max_retries <= 10:
            raise InvalidRequestError("max_retries", self.max_retries, "must be 0..10")
        for name in ("timeout_s", "connect_timeout_s", "capabilities_ttl_s"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise InvalidRequestError(name, value, "must be a number of seconds >= 0")

    @property
    def attempts(self) -> int:
        return 1 + (self.max_retries if self.on_replica_failure == "retry" else 0)


class RayServeVisionBackend(VisionBackend):
    """Sends every task to the replicas of a running ``VisionWorker`` deployment."""

    def __init__(self, config: RayServeBackendConfig | None = None, *, handle: Any = None) -> None:
        self.config = config or RayServeBackendConfig()
        self._handle = handle
        self._lock = threading.Lock()
        self._caps_lock = threading.Lock()
        self._caps: VisionBackendCapabilities | None = None
        self._caps_at = 0.0

    @property
    def handle(self) -> Any:
        """The deployment handle (joins the cluster and waits for the app on first use)."""
        with self._lock:
            if self._handle is None:
                self._handle = self._connect()
            return self._handle

    def _connect(self) -> Any:
        ray = require_ray()
        connect(self.config.address)
        deadline = time.monotonic() + self.config.connect_timeout_s
        while not app_running(self.config.app_name):
            if time.monotonic() > deadline:
                raise BackendError(
                    f"Ray Serve app {self.config.app_name!r} is not running on the cluster at "
                    f"{self.config.address} (deploy it with `abstractvision serve --ray ADDRESS`)"
                )
            time.sleep(0.5)
        return ray.serve.get_app_handle(self.config.app_name)

    def get_capabilities(self) -> VisionBackendCapabilities:
        """The replicas' capabilities. Asked once, then refreshed in the background when older
        than ``capabilities_ttl_s``: the ask queues behind generations on a busy replica, and a
        call must not wait for that."""
        with self._caps_lock:
            if self._caps is None:
                self._caps, self._caps_at = self._ask("capabilities"), time.monotonic()
            elif time.monotonic() - self._caps_at > self.config.capabilities_ttl_s:
                self._caps_at = time.monotonic()  # one refresh at a time
                threading.Thread(target=self._refresh, name="ray-caps", daemon=True).start()
            return self._caps

    def _refresh(self) -> None:
        try:
            caps = self._ask("capabilities")
        except Exception:
            log.warning("could not refresh the replicas' capabilities", exc_info=True)
            return
        with self._caps_lock:
            self._caps, self._caps_at = caps, time.monotonic()

    def _ask(self, method: str) -> Any:
        """A read-only call to any replica; asked again if the replica that took it dies."""
        ray = require_ray()
        from ray.serve.exceptions import BackPressureError

        for _ in range(3):
            try:
                return getattr(self.handle, method).remote().result()
            except BackPressureError:
                raise self._busy() from None
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                log.warning("replica died answering %s; asking another", method)
        raise ReplicaLostError(f"three replicas died answering {method}")

    def _busy(self) -> BusyError:
        wait = self.config.busy_retry_after_s
        return BusyError(
            f"busy: every replica of {self.config.app_name!r} is full and so is the queue; "
            f"retry after {wait} s",
            wait,
        )

    def preload(self) -> None:
        self.get_capabilities()

    def generate_image(
        self, request: ImageGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._run(request, control)

    def edit_image(
        self, request: ImageEditRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._run(request, control)

    def generate_video(
        self, request: VideoGenerationRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._run(request, control)

    def image_to_video(
        self, request: ImageToVideoRequest, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._run(request, control)

    def upscale_image(
        self, request: Any, *, control: GenerationControl | None = None
    ) -> GeneratedAsset:
        return self._run(request, control)

    def _run(self, request: VisionRequest, control: GenerationControl | None) -> GeneratedAsset:
        control = control or GenerationControl()
        request = self._pinned(request)
        attempts = self.config.attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(request, control)
            except ReplicaLostError as exc:
                if attempt == attempts:
                    raise
                log.warning("%s; retrying (attempt %d of %d)", exc, attempt + 1, attempts)
                control.report(
                    0, None, f"replica lost; retrying on another ({attempt + 1}/{attempts})"
                )
        raise AssertionError("unreachable")

    def _pinned(self, request: VisionRequest) -> VisionRequest:
        """Fix the seed (a retry redoes the same image) and the default model, if any."""
        changes: dict[str, Any] = {}
        if getattr(request, "seed", 0) is None:
            changes["seed"] = choose_seed(None)
        if self.config.model_id and getattr(request, "model", "") is None:
            changes["model"] = self.config.model_id
        return dataclasses.replace(request, **changes) if changes else request

    def _attempt(self, request: VisionRequest, control: GenerationControl) -> GeneratedAsset:
        control.check()
        ray = require_ray()
        from ray.serve.exceptions import BackPressureError

        stream = self.handle.options(stream=True).run.remote(request)
        unregister = control.on_cancel(stream.cancel)
        expired = threading.Event()
        timer = None
        if self.config.timeout_s:
            timer = threading.Timer(self.config.timeout_s, lambda: (expired.set(), stream.cancel()))
            timer.daemon = True
            timer.start()
        try:
            for item in stream:
                if isinstance(item, ProgressEvent):
                    control.report(item.step, item.total, item.message)
                elif isinstance(item, AbstractVisionError):
                    raise item
                else:
                    return item
        except BackPressureError:
            raise self._busy() from None
        except ray.exceptions.TaskCancelledError:  # includes Serve's RequestCancelledError
            if expired.is_set():
                raise BackendError(
                    f"no result within timeout_s={self.config.timeout_s} s; the call was "
                    "cancelled on its replica and nothing was stored"
                ) from None
            raise GenerationCancelledError("generation cancelled by the caller") from None
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            if control.cancelled:
                raise GenerationCancelledError("generation cancelled by the caller") from None
            raise ReplicaLostError(
                f"the Ray Serve replica running this call died ({type(exc).__name__}); "
                "nothing was stored"
            ) from None
        finally:
            unregister()
            if timer is not None:
                timer.cancel()
        raise BackendError("the replica closed the stream without a result; nothing was stored")
