"""Generation jobs: worker threads behind a per-device limit, progress log, cancel, retention.

A job runs in its own thread and takes a slot of the device semaphore before calling the engine,
so the event loop never blocks and at most ``max_concurrency`` generations share the device.
Waiters poll the job (cheap, loop-agnostic) and forward every new progress event in order.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from abstractvision import AbstractVisionError, GenerationControl, ProgressEvent
from abstractvision.control import DeviceLimit, DeviceSlot
from abstractvision.errors import GenerationCancelledError

log = logging.getLogger(__name__)

FINISHED = ("succeeded", "failed", "cancelled")
_POLL_S = 0.02


@dataclass
class Job:
    """One generation. ``events`` is the full progress log; ``result`` the ref(s) on success."""

    id: str
    task: str
    control: GenerationControl
    status: str = "queued"
    events: list[ProgressEvent] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def done(self) -> bool:
        return self.status in FINISHED

    def progress(self) -> dict[str, Any]:
        last = self.events[-1] if self.events else None
        if last is None:
            return {"step": 0, "total": None, "message": self.status}
        return {"step": last.step, "total": last.total, "message": last.message}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_id": self.id,
            "task": self.task,
            "status": self.status,
            "progress": self.progress(),
        }
        if self.error:
            out["error"] = self.error
        return out


Runner = Callable[[GenerationControl], Any]
ProgressSink = Callable[[ProgressEvent], Awaitable[None]]


class JobManager:
    """Starts jobs, lets callers wait with progress, cancels, forgets old finished jobs."""

    def __init__(
        self,
        max_concurrency: int = 1,
        ttl_s: float = 3600.0,
        max_jobs: int = 256,
        max_queue: int = 32,
    ) -> None:
        self.device = DeviceLimit(max_concurrency, max_queue)  # shared with --openai
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._counter = itertools.count(1)
        # Called (in the worker thread) when a job ends, e.g. the playground's artifact feed.
        self.finished_listeners: list[Callable[[Job], None]] = []

    def submit(self, task: str, runner: Runner, slot: DeviceSlot | None = None) -> Job:
        """Start ``runner(control)`` in a worker thread; returns the job at once.

        Raises ``BusyError`` (nothing started) when ``max_queue`` calls already wait; ``slot``
        is a place the caller was admitted to beforehand (``device.admit()``).
        """
        slot = slot or self.device.admit()
        job_id = f"job-{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        control = GenerationControl(on_progress=lambda event: job.events.append(event))
        job = Job(id=job_id, task=task, control=control)
        with self._lock:
            self._prune()
            self._jobs[job_id] = job
        threading.Thread(
            target=self._work, args=(job, runner, slot), name=job_id, daemon=True
        ).start()
        return job

    def _work(self, job: Job, runner: Runner, slot: DeviceSlot) -> None:
        with slot:
            if job.control.cancelled:
                self._finish(job, "cancelled", error="cancelled before it started")
                return
            job.status = "running"
            try:
                result = runner(job.control)
            except GenerationCancelledError:
                self._finish(job, "cancelled", error="cancelled; nothing was stored")
            except AbstractVisionError as exc:
                self._finish(job, "failed", error=str(exc), error_type=type(exc).__name__)
            except Exception as exc:  # an engine bug must not kill the worker silently
                self._finish(
                    job, "failed", error=f"engine failed: {exc}", error_type="BackendError"
                )
            else:
                job.result = result
                self._finish(job, "succeeded")

    def _finish(
        self, job: Job, status: str, *, error: str | None = None, error_type: str | None = None
    ) -> None:
        job.error, job.error_type = error, error_type
        job.finished = time.time()
        job.status = status
        for listener in list(self.finished_listeners):
            try:
                listener(job)
            except Exception:
                log.exception("job listener failed")

    def _prune(self) -> None:
        now = time.time()
        finished = sorted(
            (j for j in self._jobs.values() if j.finished is not None),
            key=lambda j: j.finished or 0,
        )
        excess = len(finished) - self._max_jobs
        for i, job in enumerate(finished):
            if i < excess or now - (job.finished or now) > self._ttl_s:
                del self._jobs[job.id]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            self._prune()
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def cancel(self, job: Job) -> None:
        job.control.cancel()

    async def wait(
        self,
        job: Job,
        timeout_s: float,
        on_progress: ProgressSink | None = None,
        *,
        cursor: int = 0,
        cancel_on_abort: bool = False,
    ) -> int:
        """Wait until the job ends or ``timeout_s`` passes, forwarding each new event in order.

        Returns the new cursor (events sent so far). With ``cancel_on_abort`` a cancelled wait
        (the MCP request was cancelled) cancels the job too.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        try:
            while True:
                events = job.events
                while cursor < len(events):
                    if on_progress is not None:
                        await on_progress(events[cursor])
                    cursor += 1
                if job.done or time.monotonic() >= deadline:
                    if job.done:  # events appended just before finishing
                        while cursor < len(job.events):
                            if on_progress is not None:
                                await on_progress(job.events[cursor])
                            cursor += 1
                    return cursor
                await anyio.sleep(_POLL_S)
        except anyio.get_cancelled_exc_class():
            if cancel_on_abort:
                job.control.cancel()
            raise
