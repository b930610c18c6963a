"""The stdio transport around the SDK's: malformed JSON-RPC gets an error, EOF ends the process.

Two gaps of ``mcp.server.stdio.stdio_server`` (mcp 2.x) are closed here:

- A line that is not a JSON-RPC 2.0 message (unparseable JSON, JSON-RPC 1.0, a batch,
  ``method: null``, an object id, array params) is dropped by the SDK with a DEBUG log, so the
  client waits until its own timeout. Over HTTP the same lines get 400 with -32700/-32600. Here
  each one is answered on stdout with a JSON-RPC error: -32700 (parse error, id null) or -32600
  (invalid request, with the id when the line carried a usable one) and a reason in words.
- When stdin closes, the client has gone: the process must end even if a worker thread is deep
  in a model load or a generation that no cancellation reaches. ``serve_stdio`` cancels the
  session at EOF and a watchdog ends the process ``EXIT_GRACE_S`` later whatever is still
  running (``os._exit`` after flushing stdout and stderr); a clean shutdown that finishes first
  exits at once, without waiting for busy non-daemon threads either.

fd 0 is diverted to the null device while serving, as the SDK does, so child processes never
read the protocol stream; fd 1 is diverted to stderr and the protocol written to a private,
non-blocking copy of it straight from the event loop (the SDK's own stdout costs two worker
thread round trips per message).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

__all__ = ["EXIT_GRACE_S", "check_line", "serve_stdio"]

log = logging.getLogger(__name__)

EXIT_GRACE_S = 2.0  # after stdin closes, the process ends within this even if work is stuck


def _usable_id(message: Any) -> str | int | None:
    if isinstance(message, dict):
        value = message.get("id")
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
    return None


def _invalid_reason(message: Any) -> str | None:
    """Why ``message`` (parsed JSON) is not a JSON-RPC 2.0 message the SDK takes, or None."""
    if isinstance(message, list):
        return "batches are not supported; send one JSON-RPC message per line"
    if not isinstance(message, dict):
        return "a message must be a JSON object"
    if message.get("jsonrpc") != "2.0":
        return 'jsonrpc must be "2.0" (JSON-RPC 1.0 and messages without it are not supported)'
    if "id" in message and _usable_id(message) is None:
        return "id must be a string or an integer"
    if "method" in message and not isinstance(message["method"], str):
        return "method must be a string"
    if "params" in message and not isinstance(message["params"], dict | type(None)):
        return "params must be an object"
    try:
        types.jsonrpc_message_adapter.validate_python(message, by_name=False)
    except Exception:
        return "not a valid JSON-RPC request, notification or response"
    return None


def check_line(line: str) -> types.JSONRPCError | None:
    """The error answering ``line``, or None when it is a JSON-RPC message to pass on."""
    if not line.strip():
        return None  # blank lines are ignored, as the SDK does
    try:
        message = json.loads(line)
    except ValueError as exc:
        return types.JSONRPCError(
            jsonrpc="2.0",
            id=None,
            error=types.ErrorData(code=types.PARSE_ERROR, message=f"Parse error: {exc}"),
        )
    reason = _invalid_reason(message)
    if reason is None:
        return None
    return types.JSONRPCError(
        jsonrpc="2.0",
        id=_usable_id(message),
        error=types.ErrorData(code=types.INVALID_REQUEST, message=f"Invalid Request: {reason}"),
    )


class _CheckedLines:
    """Async iterator of stdin's lines for the SDK: malformed ones are answered, not passed on.

    Lines are read by a worker thread (abandoned on cancel). At EOF ``on_eof`` runs.
    """

    def __init__(self, source: BinaryIO, on_eof: Callable[[], None]) -> None:
        self.source = source
        self.on_eof = on_eof
        self.errors: MemoryObjectSendStream[SessionMessage] | None = None

    def __aiter__(self) -> _CheckedLines:
        return self

    async def __anext__(self) -> str:
        while True:
            raw = await anyio.to_thread.run_sync(self.source.readline, abandon_on_cancel=True)
            if not raw:
                self.on_eof()
                if self.errors is not None:
                    await self.errors.aclose()  # the answers already queued still go out
                raise StopAsyncIteration
            line = raw.decode("utf-8", errors="replace")
            error = check_line(line)
            if error is None:
                if line.strip():
                    return line
                continue
            log.warning("malformed JSON-RPC on stdin answered with %s", error.error.code)
            if self.errors is not None:
                await self.errors.send(SessionMessage(error))


@contextlib.contextmanager
def _divert_stdin() -> Any:
    """A private duplicate of fd 0 to read from; fd 0 itself points at the null device."""
    try:
        stdin_fd = sys.stdin.fileno()
        private = os.dup(stdin_fd)
        null = os.open(os.devnull, os.O_RDONLY)
    except (AttributeError, OSError, ValueError):  # no real stdin: read what sys.stdin has
        yield sys.stdin.buffer
        return
    os.set_inheritable(private, False)
    os.dup2(null, stdin_fd)
    os.close(null)
    try:
        with os.fdopen(private, "rb", buffering=0, closefd=False) as source:
            yield source
    finally:
        with contextlib.suppress(OSError):
            os.dup2(private, stdin_fd)
        with contextlib.suppress(OSError):
            os.close(private)


class _DirectStdout:
    """stdout for the SDK's writer without a thread per frame (two per message otherwise).

    The frame is written with ``os.write`` on a non-blocking private copy of fd 1; when the pipe
    is full (a large result the client reads slowly) the loop waits until it can write more.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        while data:
            try:
                data = data[os.write(self.fd, data) :]
            except BlockingIOError:
                await anyio.wait_writable(self.fd)

    async def flush(self) -> None:
        return None


@contextlib.contextmanager
def _claim_stdout() -> Any:
    """A non-blocking private duplicate of fd 1 for the protocol; fd 1 itself goes to stderr,
    so stray prints of libraries and children never reach the wire. None without a real fd 1."""
    try:
        sys.stdout.flush()
        stdout_fd = sys.stdout.fileno()
        private = os.dup(stdout_fd)
        os.dup2(sys.stderr.fileno(), stdout_fd)
    except (AttributeError, OSError, ValueError):
        yield None
        return
    os.set_inheritable(private, False)
    os.set_blocking(private, False)
    try:
        yield _DirectStdout(private)
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(private, True)
            os.dup2(private, stdout_fd)
        with contextlib.suppress(OSError):
            os.close(private)


def _flush_and_exit(code: int = 0) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _start_watchdog(grace_s: float) -> None:
    """End the process ``grace_s`` from now unless it has ended by then."""
    timer = threading.Timer(grace_s, _flush_and_exit)
    timer.daemon = True
    timer.name = "abstractvision-exit-watchdog"
    timer.start()


def serve_stdio(server: Server[Any], *, grace_s: float = EXIT_GRACE_S) -> None:
    """Run ``server`` on stdin/stdout until stdin closes; then end the process promptly."""
    eof = threading.Event()

    def on_eof() -> None:
        if not eof.is_set():
            eof.set()
            log.info("stdin closed; exiting (at most %g s)", grace_s)
            _start_watchdog(grace_s)

    async def run() -> None:
        with _divert_stdin() as source, _claim_stdout() as stdout:
            lines = _CheckedLines(source, on_eof)
            # One outgoing queue for the session's messages and the error answers, so neither
            # can close stdout while the other still has something to say.
            out, outgoing = anyio.create_memory_object_stream[SessionMessage](64)
            lines.errors = out.clone()
            session_out = out.clone()
            out.close()
            async with (
                stdio_server(stdin=lines, stdout=stdout) as (read, write),  # type: ignore[arg-type]
                anyio.create_task_group() as group,
            ):

                async def forward() -> None:
                    async with outgoing, write:
                        async for message in outgoing:
                            await write.send(message)

                group.start_soon(forward)
                # Ends when stdin does (the SDK closes ``read``); the watchdog started at EOF
                # bounds how long in-flight work may hold it.
                async with session_out:
                    await server.run(read, session_out, server.create_initialization_options())

    anyio.run(run)
    # The session is over. Threads still busy (a model load, a generation) would hold the
    # interpreter's exit for as long as they run: end now instead.
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if busy:
        _flush_and_exit(0)
