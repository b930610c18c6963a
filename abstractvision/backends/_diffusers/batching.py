"""Request coalescing: concurrent, compatible text->image calls become one batched pipeline call.

Callers with the same batch key (model, task, size, steps, guidance, negative prompt, LoRA set,
scheduler) join one open ``Batch``. Its first caller leads: it waits up to the window for the
batch to fill, then for the pipeline lock; only once it holds the lock is the batch closed, so
requests that arrive while the pipeline is busy ride along in the next call. Each request keeps
its own seed (one generator per prompt), gets every step event and can cancel alone; the call is
interrupted only when every request in it has cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...control import GenerationControl
from ...errors import GenerationCancelledError

_POLL_S = 0.05


@dataclass
class Item:
    """One caller's request inside a batch."""

    prompt: str
    seed: int
    control: GenerationControl
    output: Any = None
    error: BaseException | None = None


@dataclass
class Batch:
    """Requests that will run as one pipeline call."""

    items: list[Item] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class BatchControl(GenerationControl):
    """Fans step events out to every live request; counts as cancelled once all have cancelled."""

    def __init__(self, controls: Sequence[GenerationControl]) -> None:
        super().__init__()
        self.controls = list({id(c): c for c in controls}.values())  # one report per caller

    @property
    def cancelled(self) -> bool:
        return all(c.cancelled for c in self.controls)

    def report(self, step: int, total: int | None, message: str = "") -> None:
        for control in self.controls:
            if not control.cancelled:
                control.report(step, total, message)

    def check(self) -> None:
        if self.cancelled:
            raise GenerationCancelledError("every request in the batch was cancelled")


# run(items) -> one output per item, called with the pipeline lock held
BatchRunner = Callable[[list[Item]], list[Any]]


class Coalescer:
    """Groups concurrent calls by key into batches of at most ``max_size`` (thread-safe)."""

    def __init__(self, max_size: int, window_s: float) -> None:
        self.max_size = max_size
        self.window_s = window_s
        self._lock = threading.Lock()
        self._open: dict[Hashable, Batch] = {}

    def submit(self, key: Hashable, item: Item, lock: Any, run: BatchRunner) -> Any:
        """Run ``item`` in a batch under ``lock``; returns its output or raises its error."""
        with self._lock:
            batch = self._open.get(key)
            leader = batch is None
            if batch is None:
                batch = self._open[key] = Batch()
            batch.items.append(item)
            if len(batch.items) >= self.max_size:
                batch.full.set()
                del self._open[key]
        if leader:
            self._lead(key, batch, lock, run)
        else:
            while not batch.done.wait(_POLL_S):
                item.control.check()  # a cancelled follower leaves at once; the rest go on
        item.control.check()
        if item.error is not None:
            raise item.error
        return item.output

    def _lead(self, key: Hashable, batch: Batch, lock: Any, run: BatchRunner) -> None:
        batch.full.wait(self.window_s)
        try:
            with lock:
                with self._lock:
                    if self._open.get(key) is batch:
                        del self._open[key]
                    live = [i for i in batch.items if not i.control.cancelled]
                if not live:
                    return
                try:
                    outputs = run(live)
                except Exception as exc:
                    for item in live:
                        item.error = exc
                else:
                    for item, output in zip(live, outputs, strict=True):
                        item.output = output
        finally:
            batch.done.set()
