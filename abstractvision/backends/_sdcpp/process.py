"""The parent side of the worker: start it, wait for messages with timeouts, end it.

Every wait watches both the pipe and the process sentinel, so a worker that dies (segfault,
abort, kill) is seen at once instead of blocking on a pipe that will never answer.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ...errors import BackendError, InvalidRequestError, OptionalDependencyMissingError
from . import worker

log = logging.getLogger(__name__)

# The worker is a fresh interpreter (not fork: the parent's threads and locks would be copied;
# not multiprocessing 'spawn': it re-runs the caller's __main__ script in the child).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()


class WorkerDied(Exception):
    """The worker process ended; ``str()`` says how (exit code or signal)."""


class WorkerTimeout(Exception):
    """The worker did not answer in time; it has been stopped."""


class Worker:
    """One worker process holding one loaded model."""

    def __init__(self, load_kwargs: dict[str, Any], *, verbose: bool = False) -> None:
        self._load_kwargs = load_kwargs
        self._verbose = verbose
        self._conn: Any = None
        self._process: Any = None
        self._kill_lock = threading.Lock()
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float | None) -> dict[str, Any]:
        """Spawn and wait until the model is loaded; returns what the worker reported."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        with self._kill_lock, ours, theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", worker.__name__, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=2,  # never our stdout: it may be the MCP stdio stream
                pass_fds=(theirs.fileno(),),
                env=env,
                start_new_session=True,  # a terminal's Ctrl-C is for the parent to handle
            )
            self._conn = Connection(os.dup(ours.fileno()))
        _LIVE.add(self)
        try:
            self._conn.send((self._load_kwargs, self._verbose))
        except OSError:
            raise WorkerDied(self._death()) from None
        message = self._receive(timeout_s, None)
        if message[0] != "ready":
            self.kill()
            raise BackendError(f"unexpected first message from the worker: {message[0]!r}")
        self.info = message[1]
        return self.info

    def request(
        self,
        op: str,
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None,
        on_progress: Callable[[int, int], None] | None,
    ) -> Any:
        """Send one request and wait for its result, forwarding progress as it comes."""
        try:
            self._conn.send((op, kwargs))
        except (OSError, ValueError):
            raise WorkerDied(self._death()) from None
        return self._receive(timeout_s, on_progress)[1]

    def images(self, op: str, kwargs: dict[str, Any], **options: Any) -> list[Any]:
        """``request`` for a generation: the frames as RGB PIL images."""
        from PIL import Image

        frames = self.request(op, kwargs, **options)
        return [Image.frombytes("RGB", size, data) for size, data in frames]

    def _receive(
        self, timeout_s: float | None, on_progress: Callable[[int, int], None] | None
    ) -> tuple[Any, ...]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not wait([self._conn], timeout=remaining):  # EOF counts as ready
                self.kill()
                raise WorkerTimeout(f"no answer within {timeout_s:g} s")
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                raise WorkerDied(self._death()) from None
            if message[0] == "progress":
                if on_progress is not None:
                    on_progress(message[1], message[2])
                continue
            if message[0] == "error":
                _raise_worker_error(*message[1:])
            return tuple(message)

    def _death(self) -> str:
        """How the process ended, in words (waits briefly for it to finish exiting)."""
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return "its pipe closed while it was still running; it was stopped"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by signal {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exited with code {code}"

    def kill(self) -> None:
        """End the process now (SIGKILL); safe from any thread, idempotent."""
        with self._kill_lock:
            process = self._process
            if process is not None and process.poll() is None:
                with contextlib.suppress(OSError):
                    process.kill()

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to exit (frees the model), kill it if it does not, release the pipe."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(("exit", {}))
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout_s)
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_s)
        with contextlib.suppress(OSError):
            self._conn.close()
        _LIVE.discard(self)


@atexit.register
def _kill_all() -> None:
    """Workers do not outlive the interpreter that started them."""
    for live in list(_LIVE):
        live.kill()


def _raise_worker_error(kind: str, message: str, detail: Any) -> None:
    if kind == "missing":
        raise OptionalDependencyMissingError(
            "stable-diffusion-cpp-python", "sdcpp", feature="the stable-diffusion.cpp backend"
        )
    if kind == "invalid":
        value, limit = detail
        raise InvalidRequestError(f"extra.{_EXTRA_NAMES.get(message, message)}", value, limit)
    log_tail = "; ".join(detail or ())
    raise EngineError(kind, message, log_tail)


_EXTRA_NAMES = {"sample_method": "sampler", "scheduler": "scheduler"}


class EngineError(Exception):
    """A failure the worker reported (load or generation); the backend words it for the caller."""

    def __init__(self, kind: str, message: str, log_tail: str) -> None:
        self.kind = kind
        self.message = message
        self.log_tail = log_tail
        super().__init__(message + (f" (engine log: {log_tail})" if log_tail else ""))
