"""One small object that carries progress reporting and cancellation from caller to engine.

The caller (VisionManager user, MCP job, CLI) creates a ``GenerationControl``; the backend calls
``report()`` at every engine step and ``check()`` (or reads ``cancelled``) wherever it can stop.
Engines without a step hook (an sd.cpp worker, an HTTP job) register ``on_cancel`` callbacks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .errors import GenerationCancelledError

__all__ = ["GenerationControl", "ProgressEvent"]

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
