"""Generation jobs: a bounded worker pool behind the device limit, pushed progress, owners, cancel.

A job runs on one of ``max_concurrency`` pool threads and takes a slot of the device semaphore
(shared with ``--openai``) before calling the engine, so the event loop never blocks and at most
``max_concurrency`` generations share the device; the rest wait in the pool's queue.

Every change of a job (a progress event, a log record, the end) is pushed to the coroutines
waiting on it: each waiter parks on an ``asyncio.Event`` that the worker thread sets through
``loop.call_soon_threadsafe``, so a waiter wakes the moment something happens and costs nothing
while nothing does.

A job belongs to an ``owner`` (see ``owners.py``): lookups with an owner see only that owner's
jobs; ``owner=None`` is for in-process callers that act for every owner (the playground page).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from abstractvision import AbstractVisionError, GenerationControl, ProgressEvent
from abstractvision.control import DeviceLimit, DeviceSlot
from abstractvision.errors import GenerationCancelledError

log = logging.getLogger(__name__)

FINISHED = ("succeeded", "failed", "cancelled")
# The job whose worker is running in this thread (log records are routed to it; see logs.py).
CURRENT_JOB: contextvars.ContextVar[Job | None] = contextvars.ContextVar("job", default=None)


@dataclass(eq=False)
class Job:
    """One generation. ``events`` is the progress log; ``result`` the ref(s) on success."""

    id: str
    task: str
    control: GenerationControl
    owner: str | None = None
    status: str = "queued"
    events: list[ProgressEvent] = field(default_factory=list)
    logs: list[tuple[str, str, str]] = field(default_factory=list)  # (level, logger, message)
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    finished: float | None = None
    # what the front end made of the result once (the MCP CallToolResult), reused by every read
    memo: dict[str, Any] = field(default_factory=dict)
    _waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(
        default_factory=set, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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

    # --- change notification (any thread -> waiting coroutines) ----------------------------

    def changed(self) -> None:
        """Wake every waiter; called from the worker thread or the loop."""
        self.updated = time.time()
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed; its waiter is gone
                with self._lock:
                    self._waiters.discard((loop, event))

    def watch(
        self, event: asyncio.Event | None = None
    ) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        """Set ``event`` (a new one by default) on every change; ``unwatch`` the returned key."""
        key = (asyncio.get_running_loop(), event or asyncio.Event())
        with self._lock:
            self._waiters.add(key)
        return key

    def unwatch(self, key: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._lock:
            self._waiters.discard(key)


Runner = Callable[[GenerationControl], Any]
ProgressSink = Callable[[ProgressEvent], Awaitable[None]]
LogSink = Callable[[str, str, str], Awaitable[None]]


class JobManager:
    """Starts jobs on the pool, lets callers wait with progress, cancels, forgets old jobs."""

    def __init__(
        self,
        max_concurrency: int = 1,
        ttl_s: float = 3600.0,
        max_jobs: int = 256,
        max_queue: int = 32,
    ) -> None:
        self.device = DeviceLimit(max_concurrency, max_queue)  # shared with --openai
        self.ttl_s = ttl_s
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self._pool = ThreadPoolExecutor(max(1, max_concurrency), thread_name_prefix="av-job")
        # Called (in the worker thread) when a job ends, e.g. the playground's artifact feed.
        self.finished_listeners: list[Callable[[Job], None]] = []

    def submit(
        self, task: str, runner: Runner, slot: DeviceSlot | None = None, *, owner: str | None = None
    ) -> Job:
        """Queue ``runner(control)`` on the pool; returns the job at once.

        Raises ``BusyError`` (nothing started) when ``max_queue`` calls already wait; ``slot``
        is a place the caller was admitted to beforehand (``device.admit()``).
        """
        slot = slot or self.device.admit()
        job_id = f"job-{uuid.uuid4().hex}"  # unguessable: it is also the MCP task id

        def on_progress(event: ProgressEvent) -> None:
            job.events.append(event)
            job.changed()

        job = Job(id=job_id, task=task, control=GenerationControl(on_progress), owner=owner)
        job.control.on_cancel(job.changed)
        with self._lock:
            self._prune()
            self._jobs[job_id] = job
        try:
            self._pool.submit(self._work, job, runner, slot)
        except RuntimeError:  # the pool was shut down (server stopping)
            slot.close()
            self._finish(job, "cancelled", error="the server is stopping")
        return job

    def _work(self, job: Job, runner: Runner, slot: DeviceSlot) -> None:
        token = CURRENT_JOB.set(job)
        try:
            with slot:
                if job.control.cancelled:
                    self._finish(job, "cancelled", error="cancelled before it started")
                    return
                job.status = "running"
                job.changed()
                try:
                    result = runner(job.control)
                except GenerationCancelledError:
                    self._finish(job, "cancelled", error="cancelled; nothing was stored")
                except AbstractVisionError as exc:
                    self._finish(job, "failed", error=str(exc), error_type=type(exc).__name__)
                except Exception as exc:  # an engine bug must not kill the worker silently
                    log.exception("job %s: the engine raised", job.id)
                    self._finish(
                        job, "failed", error=f"engine failed: {exc}", error_type="InternalError"
                    )
                else:
                    job.result = result
                    self._finish(job, "succeeded")
        finally:
            CURRENT_JOB.reset(token)

    def _finish(
        self, job: Job, status: str, *, error: str | None = None, error_type: str | None = None
    ) -> None:
        # logged before the status changes, so a waiter forwarding the job's logs gets it
        log.info("%s %s %s in %.2f s", job.task, job.id, status, time.time() - job.created)
        job.error, job.error_type = error, error_type
        job.finished = time.time()
        job.status = status
        job.changed()
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
            if i < excess or now - (job.finished or now) > self.ttl_s:
                del self._jobs[job.id]

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when unknown, expired or (with ``owner``) someone else's."""
        with self._lock:
            self._prune()
            job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    def list(self, owner: str | None = None) -> list[Job]:
        with self._lock:
            self._prune()
            jobs = [j for j in self._jobs.values() if owner is None or j.owner == owner]
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def cancel(self, job: Job) -> None:
        job.control.cancel()

    def shutdown(self) -> None:
        """Cancel every job and stop the pool (queued jobs finish as cancelled at once)."""
        for job in self.list():
            job.control.cancel()
        self._pool.shutdown(wait=False, cancel_futures=False)

    async def wait(
        self,
        job: Job,
        timeout_s: float,
        on_progress: ProgressSink | None = None,
        *,
        cursor: int = 0,
        cancel_on_abort: bool = False,
        on_log: LogSink | None = None,
        log_cursor: int | None = None,
    ) -> int:
        """Wait until the job ends or ``timeout_s`` passes, forwarding each new event in order.

        Returns the new cursor (events sent so far). A negative ``cursor`` starts at the latest
        event (a late reader gets where the job is, not its history). With ``cancel_on_abort``
        a cancelled wait (the MCP request was cancelled) cancels the job too. ``on_log`` gets
        the job's log records from ``log_cursor`` on (default: only new ones).
        """
        if cursor < 0:
            cursor = max(0, len(job.events) - 1)
        logs_at = len(job.logs) if log_cursor is None else log_cursor
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        key = job.watch()
        event = key[1]
        try:
            while True:
                event.clear()  # before reading: a change after this point sets it again
                while cursor < len(job.events):
                    if on_progress is not None:
                        await on_progress(job.events[cursor])
                    cursor += 1
                while on_log is not None and logs_at < len(job.logs):
                    await on_log(*job.logs[logs_at])
                    logs_at += 1
                if job.done and cursor >= len(job.events):
                    return cursor
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return cursor
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        except asyncio.CancelledError:
            if cancel_on_abort:
                job.control.cancel()
            raise
        finally:
            job.unwatch(key)
