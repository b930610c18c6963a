"""The child side: a process that holds one stable-diffusion.cpp context and serves requests.

It runs in its own process because the native library can crash the process (segfault, abort)
and has no cancel: the parent ends this process to stop a generation. Messages on the pipe:

    parent -> child   (load_kwargs, verbose)  once, first
                      (op, kwargs)          op: "image" | "video" | "upscale" | "exit"
    child -> parent   ("ready", info)       once, after the model loaded
                      ("progress", step, total)
                      ("result", [((width, height), RGB bytes), ...])
                      ("error", kind, message, detail)   kind: load | invalid | engine | missing

The parent starts it as ``python -m abstractvision.backends._sdcpp.worker FD`` and sends the
load arguments first. The bindings are imported in ``main``, never at import time.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import sys
import time
from typing import Any

_LOG_TAIL = 12  # engine warnings/errors kept for error messages
_ENGINE_LOG = logging.getLogger("abstractvision.sdcpp.engine")


def _quiet_stdout() -> None:
    """Point fd 1 at stderr: the native library and the bindings print, and the parent's
    stdout may be a protocol stream (MCP over stdio)."""
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def _quiet_progress(sd_cpp: Any) -> Any:
    """A progress callback that prints nothing (the library draws a bar while loading without
    one); generation installs its own. Returned so the ctypes object outlives the call."""

    @sd_cpp.sd_progress_callback  # type: ignore[untyped-decorator]
    def silent(step: int, steps: int, seconds: float, data: Any) -> None:
        return None

    import ctypes

    sd_cpp.sd_set_progress_callback(silent, ctypes.c_void_p(0))
    return silent


def _install_log_callback(sd_cpp: Any, verbose: bool) -> tuple[collections.deque[str], Any]:
    """Route engine logs: keep the last warnings/errors (for error messages), echo to stderr."""
    import ctypes

    tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)

    @sd_cpp.sd_log_callback  # type: ignore[untyped-decorator]
    def on_log(level: int, text: bytes, _data: Any) -> None:
        line = text.decode("utf-8", errors="replace").rstrip()
        if level >= 2 and line:  # SD_LOG_WARN, SD_LOG_ERROR
            tail.append(line)
        if verbose or level >= 3:
            sys.stderr.write(line + "\n")

    sd_cpp.sd_set_log_callback(on_log, ctypes.c_void_p(0))
    return tail, on_log  # the caller keeps ``on_log`` alive


def _exit_with_parent() -> None:
    """End this process when the parent dies, even mid-generation (the C call cannot be left)."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(fd: int) -> None:
    """Entry point of the worker process: ``fd`` is its end of the socket pair."""
    from multiprocessing.connection import Connection

    _quiet_stdout()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent()
    conn = Connection(fd)
    try:
        load_kwargs, verbose = conn.recv()
    except (EOFError, OSError):
        return
    try:
        import stable_diffusion_cpp
        import stable_diffusion_cpp.stable_diffusion as sd_module
        import stable_diffusion_cpp.stable_diffusion_cpp as sd_cpp
    except ImportError as exc:
        conn.send(("error", "missing", str(exc), None))
        return
    tail, _keep = _install_log_callback(sd_cpp, verbose)
    _quiet_load = _quiet_progress(sd_cpp) if not verbose else None  # no native loading bar
    started = time.perf_counter()
    try:
        sd = stable_diffusion_cpp.StableDiffusion(**load_kwargs, verbose=True)
    except Exception as exc:  # the bindings raise on bad option values
        conn.send(("error", "load", f"{type(exc).__name__}: {exc}", list(tail)))
        return
    logging.getLogger("stable-diffusion-cpp-python").setLevel(logging.ERROR)  # no stdout chatter
    ctx = sd._model.model
    upscaler = getattr(sd, "_upscaler", None) is not None and sd._upscaler.upscaler is not None
    upscaler_only = not (load_kwargs.get("model_path") or load_kwargs.get("diffusion_model_path"))
    if not ctx and not (upscaler and upscaler_only):
        conn.send(("error", "load", "the engine could not load the model", list(tail)))
        return
    conn.send(
        (
            "ready",
            {
                "load_s": time.perf_counter() - started,
                "image": bool(ctx) and bool(sd_cpp.sd_ctx_supports_image_generation(ctx)),
                "video": bool(ctx) and bool(sd_cpp.sd_ctx_supports_video_generation(ctx)),
                "upscale": upscaler,
                "pid": os.getpid(),
            },
        )
    )
    maps = {"sample_method": sd_module.SAMPLE_METHOD_MAP, "scheduler": sd_module.SCHEDULER_MAP}
    while True:
        try:
            op, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        if op == "exit":
            return
        reply = _serve(sd, op, kwargs, maps, conn, tail)
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return  # the parent is gone
        except Exception as exc:  # an unpicklable reply must not end the worker
            conn.send(("error", "engine", f"cannot send the result: {exc}", None))


def _serve(
    sd: Any,
    op: str,
    kwargs: dict[str, Any],
    maps: dict[str, dict[str, Any]],
    conn: Any,
    tail: collections.deque[str],
) -> tuple[Any, ...]:
    for key, known in maps.items():
        value = kwargs.get(key)
        if value is not None and (value not in known or value.endswith("_count")):
            names = ", ".join(k for k in known if not k.endswith("_count"))
            return ("error", "invalid", key, (value, f"must be one of {names}"))

    def on_progress(step: int, steps: int, _time: float) -> None:
        conn.send(("progress", int(step), int(steps)))

    tail.clear()
    # A callback on every call: the bindings register it process-wide, and a later call without
    # one would find the freed callback of this call and crash.
    kwargs = {**kwargs, "progress_callback": on_progress}
    try:
        if op == "image":
            images = sd.generate_image(**kwargs)
        elif op == "video":
            images = sd.generate_video(**kwargs)
        elif op == "upscale":  # ESRGAN at its own factor; the parent resizes to the asked one
            images = sd.upscale(kwargs["images"], progress_callback=on_progress)
        else:
            return ("error", "engine", f"unknown operation {op!r}", None)
    except Exception as exc:  # NULL result, bad argument: the engine said why in its log
        return ("error", "engine", f"{type(exc).__name__}: {exc}", list(tail))
    if not images:
        return ("error", "engine", "the engine returned no image", list(tail))
    frames = [image.convert("RGB") for image in images]  # .info holds unpicklable ctypes values
    return ("result", [(f.size, f.tobytes()) for f in frames])


if __name__ == "__main__":
    main(int(sys.argv[1]))
