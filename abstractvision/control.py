"""One small object that carries progress reporting and cancellation from caller to engine.

The caller (VisionManager user, MCP job, CLI) creates a ``GenerationControl``; the backend calls
``report()`` at every engine step and ``check()`` (or reads ``cancelled``) wherever it can stop.
Engines without a step hook (an sd.cpp worker, an HTTP job) register ``on_cancel`` callbacks.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from .errors import BusyError, GenerationCancelledError

__all__ = ["DeviceLimit", "DeviceSlot", "GenerationControl", "ProgressEvent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report: ``step`` of ``total`` (total None when unknown)."""

    step: int
    total: int | None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.step / self.total)


class GenerationControl:
    """Progress callback + cancellation flag, safe to share between threads."""

    def __init__(self, on_progress: Callable[[ProgressEvent], None] | None = None) -> None:
        self._on_progress = on_progress
        self._cancelled = threading.Event()
        self._cancel_callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.last_event: ProgressEvent | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask the generation to stop at its next step. Idempotent."""
        with self._lock:
            if self._cancelled.is_set():
                return
            self._cancelled.set()
            callbacks = list(self._cancel_callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a failing canceller must not hide the cancellation
                log.exception("cancel callback failed")

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (at once if already). Returns an unregister function."""
        with self._lock:
            already = self._cancelled.is_set()
            if not already:
                self._cancel_callbacks.append(callback)
        if already:
            callback()

        def unregister() -> None:
            with self._lock:
                if callback in self._cancel_callbacks:
                    self._cancel_callbacks.remove(callback)

        return unregister

    def check(self) -> None:
        """Raise ``GenerationCancelledError`` if cancellation was asked for."""
        if self._cancelled.is_set():
            raise GenerationCancelledError("generation cancelled by the caller")

    def report(self, step: int, total: int | None, message: str = "") -> None:
        """Report progress; a failing progress callback is logged, never raised into the engine."""
        event = ProgressEvent(
            step=step, total=total, message=message or _default_message(step, total)
        )
        self.last_event = event
        if self._on_progress is not None:
            try:
                self._on_progress(event)
            except Exception:
                log.exception("progress callback failed")


def _default_message(step: int, total: int | None) -> str:
    return f"step {step}/{total}" if total else f"step {step}"


class DeviceLimit:
    """At most ``max_concurrency`` generations on the device and ``max_queue`` waiting for it.

    ``admit()`` counts a generation in (or raises ``BusyError`` with a retry estimate) without
    blocking; entering the returned slot waits for the device. ``with limit:`` does both.
    """

    def __init__(self, max_concurrency: int = 1, max_queue: int = 32) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._device = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self.admitted = 0
        self._mean_s = 5.0  # running mean of a generation's device time
        self._held = threading.local()  # slots entered by ``with limit:`` in this thread

    def admit(self) -> DeviceSlot:
        """Count one generation in; ``BusyError`` when the queue is full."""
        with self._lock:
            if self.admitted >= self.max_concurrency + self.max_queue:
                waiting = self.admitted - self.max_concurrency
                retry = max(1, math.ceil(self._mean_s * (waiting + 1) / self.max_concurrency))
                raise BusyError(
                    f"busy: {self.admitted} generations are running or queued "
                    f"(queue limit {self.max_queue}); retry after {retry} s",
                    retry,
                )
            self.admitted += 1
        return DeviceSlot(self)

    def _done(self, held_s: float | None) -> None:
        with self._lock:
            self.admitted -= 1
            if held_s is not None:
                self._mean_s = 0.8 * self._mean_s + 0.2 * held_s

    def __enter__(self) -> DeviceSlot:
        slot = self.admit().__enter__()
        self._held.__dict__.setdefault("slots", []).append(slot)
        return slot

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._held.slots.pop().close()


class DeviceSlot:
    """One admitted generation: entering waits for the device; leaving frees both counts."""

    def __init__(self, limit: DeviceLimit) -> None:
        self._limit = limit
        self._started: float | None = None
        self._closed = False

    def __enter__(self) -> DeviceSlot:
        self._limit._device.acquire()
        self._started = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Leave the device (if entered) and the count; idempotent."""
        if self._closed:
            return
        self._closed = True
        held = None
        if self._started is not None:
            held = time.monotonic() - self._started
            self._limit._device.release()
        self._limit._done(held)
