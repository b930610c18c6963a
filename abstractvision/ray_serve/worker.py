"""The replica: one local engine with its warm model cache, driven over a Ray Serve stream.

``run`` is an async generator. For one request it yields, in order: a ``ProgressEvent`` naming
the replica, the engine's step events as they happen, then exactly one final item, either the
``GeneratedAsset`` (with ``replica_id`` in its metadata) or the ``AbstractVisionError`` the engine
raised. The engine runs in a thread; when the caller cancels the stream, Serve cancels this
coroutine and the engine is told to stop at its next step. Replicas never write artifacts: the
front end that took the call stores the result, so a replica killed mid-job leaves nothing behind.

``check_health`` (called by Serve every ``health_check_period_s``) fails when a cancelled job is
still running ``cancel_grace_s`` later: an engine stuck in native code (a hung device) that no
longer reaches a step boundary. Serve then stops the replica and starts a fresh one; the calls
queued on it fail over like those of a killed replica.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..backends import create_backend
from ..backends.base_backend import TASK_METHODS
from ..control import GenerationControl, ProgressEvent
from ..errors import AbstractVisionError, BackendError
from ..types import GeneratedAsset, VisionBackendCapabilities, VisionRequest

__all__ = ["VisionWorker", "WorkerItem"]

log = logging.getLogger(__name__)

WorkerItem = ProgressEvent | GeneratedAsset | AbstractVisionError


class VisionWorker:
    """Hosts ``create_backend(engine, **options)``; Ray Serve wraps it as a deployment."""

    def __init__(
        self,
        engine: str,
        options: Mapping[str, Any],
        preload: bool = True,
        cancel_grace_s: float | None = None,
    ) -> None:
        from ray import get_runtime_context, serve

        self.backend = create_backend(engine, **dict(options))
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        self.identity = {
            "replica_id": self.replica_id,
            "replica_node_id": get_runtime_context().get_node_id(),
            "replica_pid": os.getpid(),
        }
        self.served_jobs = 0  # calls answered with a result or a typed error
        self.cancelled_jobs = 0
        self.cancel_grace_s = cancel_grace_s
        self.stopping: dict[int, float] = {}  # id of a cancelled, still running job -> when
        if preload:
            self.backend.preload()
        log.info("replica %s ready (%s)", self.replica_id, engine)

    def capabilities(self) -> VisionBackendCapabilities:
        return self.backend.get_capabilities()

    def info(self) -> dict[str, Any]:
        """Who this replica is and how many calls it answered or had cancelled (for operators)."""
        return {
            **self.identity,
            "served_jobs": self.served_jobs,
            "cancelled_jobs": self.cancelled_jobs,
        }

    async def check_health(self) -> None:  # on the event loop that runs the jobs
        if self.cancel_grace_s is None or not self.stopping:
            return
        waited = time.monotonic() - min(self.stopping.values())
        if waited > self.cancel_grace_s:
            raise RuntimeError(
                f"replica {self.replica_id}: a job cancelled {waited:.0f} s ago is still running "
                f"(cancel_grace_s={self.cancel_grace_s}); the engine is stuck, replace the replica"
            )

    async def run(self, request: VisionRequest) -> AsyncIterator[WorkerItem]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[ProgressEvent] = asyncio.Queue()

        def forward(event: ProgressEvent) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        control = GenerationControl(on_progress=forward)
        method = getattr(self.backend, TASK_METHODS[request.task])
        work = asyncio.ensure_future(asyncio.to_thread(method, request, control=control))
        yield ProgressEvent(0, None, f"running on replica {self.replica_id} (pid {os.getpid()})")
        try:
            while not work.done():
                waiter = asyncio.ensure_future(events.get())
                await asyncio.wait({waiter, work}, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done():
                    yield waiter.result()
                else:
                    waiter.cancel()
            while not events.empty():
                yield events.get_nowait()
        except BaseException:  # cancelled by the caller (or the stream closed): stop the engine
            control.cancel()
            self.cancelled_jobs += 1
            self.stopping[id(work)] = time.monotonic()
            work.add_done_callback(self._stopped)
            raise
        self.served_jobs += 1
        yield self._outcome(work)

    def _stopped(self, work: asyncio.Future[GeneratedAsset]) -> None:
        self.stopping.pop(id(work), None)
        work.exception()  # retrieved: a cancelled job's error is expected

    def _outcome(
        self, work: asyncio.Future[GeneratedAsset]
    ) -> GeneratedAsset | AbstractVisionError:
        try:
            asset = work.result()
        except AbstractVisionError as exc:
            return exc
        except Exception as exc:  # an engine bug: a typed error, the replica stays up
            log.exception("engine failed on replica %s", self.replica_id)
            return BackendError(f"engine failed on replica {self.replica_id}: {exc}")
        return dataclasses.replace(asset, metadata={**asset.metadata, **self.identity})
