"""The warm pipeline cache: loaded models kept across calls, bounded by a memory budget (LRU).

One ``Entry`` per loaded model folder holds the pipeline loaded from disk plus the task
pipelines derived from it with ``from_pipe`` (same weights, other ``__call__``), and one lock:
a model family is never run by two threads at once. Entries are evicted least recently used
first when the estimated size of all entries passes the budget; an entry in use by a thread
is only dropped from the cache and is freed when that call ends.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One loaded model: base pipeline, derived task pipelines, LoRA state, lock, size."""

    key: str
    pipe: Any
    size_bytes: int
    load_s: float
    lock: threading.RLock = field(default_factory=threading.RLock)
    derived: dict[str, Any] = field(default_factory=dict)
    loras: dict[str, str] = field(default_factory=dict)  # source -> adapter name, LRU order
    active_loras: tuple[Any, ...] = ()  # loras.LoraSet
    default_scheduler: Any = None
    schedulers: dict[str, Any] = field(default_factory=dict)


def pipeline_size_bytes(pipe: Any) -> int:
    """Bytes held by the parameters and buffers of every torch module of a pipeline."""
    import torch

    seen: set[int] = set()
    total = 0
    for component in getattr(pipe, "components", {}).values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in (*component.parameters(), *component.buffers()):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


class PipelineCache:
    """Thread-safe LRU of ``Entry`` objects with an optional byte budget."""

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.evictions = 0

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.size_bytes for e in self._entries.values())

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def get_or_load(self, key: str, load: Callable[[], Any]) -> tuple[Entry, bool]:
        """The cached entry, or a freshly loaded one (True) — one loader per key at a time."""
        entry = self.get(key)
        if entry is not None:
            return entry, False
        with self._lock:
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            entry = self.get(key)
            if entry is not None:
                return entry, False
            started = time.perf_counter()
            pipe = load()
            entry = Entry(key, pipe, pipeline_size_bytes(pipe), time.perf_counter() - started)
            with self._lock:
                self._entries[key] = entry
                evicted = self._evict_locked(keep=key)
            _release(evicted)
            log.info(
                "loaded %s in %.2fs (%.1f MB; cache %.1f MB)",
                key,
                entry.load_s,
                entry.size_bytes / 2**20,
                self.total_bytes() / 2**20,
            )
            return entry, True

    def _evict_locked(self, keep: str) -> list[Entry]:
        evicted: list[Entry] = []
        if self.budget_bytes is None:
            return evicted
        total = sum(e.size_bytes for e in self._entries.values())
        for key in list(self._entries):
            if total <= self.budget_bytes:
                break
            if key == keep:
                continue
            entry = self._entries.pop(key)
            total -= entry.size_bytes
            evicted.append(entry)
            self.evictions += 1
            log.info(
                "evicted %s (%.1f MB) to stay within the memory budget",
                key,
                entry.size_bytes / 2**20,
            )
        if total > self.budget_bytes:
            log.warning(
                "%s alone (%.1f MB) exceeds the memory budget (%.1f MB); kept loaded",
                keep,
                total / 2**20,
                self.budget_bytes / 2**20,
            )
        return evicted

    def drop(self, key: str | None = None) -> None:
        """Forget one entry (or all) and give the memory back to the device."""
        with self._lock:
            if key is None:
                evicted = list(self._entries.values())
                self._entries.clear()
            else:
                evicted = [e for e in (self._entries.pop(key, None),) if e is not None]
        _release(evicted)


def _release(entries: list[Entry]) -> None:
    if not entries:
        return
    for entry in entries:
        if entry.lock.acquire(blocking=False):  # in use: freed when that call lets go of it
            try:
                entry.derived.clear()
                entry.schedulers.clear()
                entry.pipe = None
            finally:
                entry.lock.release()
    entries.clear()
    gc.collect()
    empty_device_cache()
    return_host_memory()


def return_host_memory() -> bool:
    """Give the heap pages the freed weights leave behind back to the OS (glibc ``malloc_trim``):
    without it a process keeps the memory of every model it ever unloaded. False where there is
    no glibc (macOS, Windows, musl) or nothing was returned."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # no glibc
        return False


def empty_device_cache() -> None:
    """Return cached allocator blocks to the device (CUDA/MPS); a no-op on CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        mps = getattr(torch, "mps", None)
        if mps is not None and torch.backends.mps.is_available():
            mps.empty_cache()
    except Exception:  # freeing memory is best effort
        log.debug("empty_cache failed", exc_info=True)
