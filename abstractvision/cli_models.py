"""``pull``, ``rm``, ``models --installed``, and what every generation command shares: settings
from ``ABSTRACTVISION_*``, the default model, downloads before a run, quiet third-party logs,
a progress bar whose ETA starts after the first steps, and Ctrl-C that cancels at the next step.

``ROWS`` maps a command name to (help, configure, run) for ``cli.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from . import model_downloads
from .control import GenerationControl, ProgressEvent
from .errors import GenerationCancelledError

__all__ = [
    "EXIT_INTERRUPTED",
    "ROWS",
    "ProgressBar",
    "apply_settings",
    "cancel_on_interrupt",
    "installed",
    "prepare_model",
    "quiet_third_party",
]

EXIT_INTERRUPTED = 130
# options the CLI shares with the server (same ABSTRACTVISION_* names, read by mcp_server.config)
SHARED = ("backend", "model", "device", "backend_option", "allow_download", "quant")
log = logging.getLogger(__name__)


class ProgressBar:
    """``message [#####-----] 50% ETA 3s`` on one line of a terminal, else a line a second.

    The ETA is measured from the first progress event (not from the start of loading) and is
    shown once two events have arrived, so model loading does not inflate it.
    """

    def __init__(self, stream: Any, width: int = 24) -> None:
        self.stream = stream
        self.width = width
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._first: tuple[float, float] | None = None  # (time, fraction) of the first event
        self._series = ""
        self._printed = 0.0
        self._dirty = False

    def eta(self, fraction: float) -> float | None:
        now = time.monotonic()
        if self._first is None:
            self._first = (now, fraction)
            return None
        started, start_fraction = self._first
        done = fraction - start_fraction
        if done <= 0:
            return None
        return (now - started) / done * (1 - fraction)

    def __call__(self, event: ProgressEvent) -> None:
        series = event.message.split(":")[0] if event.message.startswith("downloading") else "run"
        if series != self._series:  # a download, then the generation: each has its own ETA
            self._series, self._first = series, None
        fraction = event.fraction
        if fraction is None:
            line = event.message
        else:
            eta = self.eta(fraction)
            done = int(fraction * self.width)
            bar = "#" * done + "-" * (self.width - done)
            when = f"ETA {eta:.0f}s" if eta is not None else "ETA ..."
            line = f"{event.message} [{bar}] {fraction:4.0%} {when}"
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
            self._dirty = True
        else:
            now = time.monotonic()
            last = fraction is not None and fraction >= 1
            if now - self._printed < 1.0 and not last and self._printed:
                return
            self._printed = now
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._dirty:
            self.stream.write("\n")
            self.stream.flush()
        self._dirty = False


def quiet_third_party(verbose: bool) -> None:
    """Silence torch/diffusers/transformers warnings and loading bars unless ``--verbose``."""
    if verbose:
        return
    for key, value in (
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("DIFFUSERS_VERBOSITY", "error"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
        ("TQDM_DISABLE", "1"),
        ("TORCH_LOGS", "-all"),  # torch's own log handler (import-time warnings)
    ):
        os.environ.setdefault(key, value)  # read by those libraries when they load
    for name in ("torch", "torchao", "diffusers", "transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


@contextlib.contextmanager
def cancel_on_interrupt(control: GenerationControl, stream: Any = None) -> Iterator[None]:
    """First Ctrl-C: cancel at the next step; a second one exits at once (130)."""
    stream = stream or sys.stderr
    if threading_main() is False:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if control.cancelled:
            os._exit(EXIT_INTERRUPTED)
        stream.write("\ninterrupted: stopping at the next step (Ctrl-C again to quit now)\n")
        stream.flush()
        control.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# --- shared settings -----------------------------------------------------------------------


def add_shared_flags(parser: argparse.ArgumentParser) -> None:
    """--allow-download, --quant, --verbose (the backend flags live in cli_generate)."""
    parser.add_argument(
        "--allow-download",
        action="store_true",
        default=None,
        help="download a Hub model that is not on disk first [env ABSTRACTVISION_ALLOW_DOWNLOAD]",
    )
    parser.add_argument("--quant", help="sd.cpp quantization to use or pull (Q4_0, Q8_0...)")
    parser.add_argument(
        "--verbose", action="store_true", help="show third-party warnings and loading bars"
    )


def apply_settings(args: argparse.Namespace) -> None:
    """Fill unset shared options from ``ABSTRACTVISION_*`` (the server's names), then defaults."""
    try:
        from mcp_server.config import env_settings
    except ImportError:  # pragma: no cover - the package ships with the distribution
        env: dict[str, Any] = {}
    else:
        env = env_settings([n for n in SHARED if hasattr(args, n)])
    for name, value in env.items():
        current = getattr(args, name, None)
        if current in (None, []):
            setattr(args, name, value)
    if getattr(args, "backend", None) is None and getattr(args, "model", None):
        args.backend = "diffusers"
    if hasattr(args, "allow_download") and args.allow_download is None:
        args.allow_download = False


def prepare_model(args: argparse.Namespace, stream: Any = None) -> None:
    """Pick the default model when none is named, then make sure it is on disk (or refuse)."""
    from .startup import recommend

    stream = stream or sys.stderr
    local = args.backend in (None, *model_downloads.ENGINES)
    # --backend-option model=/diffusion_model=/upscale_model=FILE already names what to load
    named = {str(o).partition("=")[0] for o in getattr(args, "backend_option", None) or ()}
    if named & {"model", "model_id", "diffusion_model", "upscale_model"}:
        local = False
    if not args.model and local:
        task = getattr(args, "task", None)
        picked = recommend(args.backend, device=args.device, task=task and str(task.value))
        if picked is None:
            return
        args.backend, args.model = picked.engine, picked.model
        args.quant = args.quant or picked.quant
        stream.write(f"abstractvision: using {picked.model} on {picked.engine} ({picked.reason})\n")
    if args.backend is None:
        args.backend = "diffusers"
    if not args.model or args.backend not in model_downloads.ENGINES:
        return
    control = GenerationControl(ProgressBar(stream))
    with cancel_on_interrupt(control, stream):
        try:
            model_downloads.ensure_model(
                args.model,
                args.backend,
                allow_download=bool(args.allow_download),
                quant=args.quant,
                control=control,
            )
        finally:
            bar = control._on_progress
            if isinstance(bar, ProgressBar):
                bar.close()


# --- pull / rm / models --installed --------------------------------------------------------


def _configure_pull(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="Hub id, e.g. black-forest-labs/FLUX.2-klein-4B"
    )
    parser.add_argument(
        "--engine",
        "--backend",  # the name generation commands use (and 0.3.x's download --provider)
        choices=model_downloads.ENGINES,
        help="which engine's files: diffusers (default) or sdcpp [env ABSTRACTVISION_BACKEND]",
    )
    parser.add_argument("--quant", help="sd.cpp quantization (default: the registry's)")
    parser.add_argument("--revision", help="branch, tag or commit (Diffusers; default main)")
    parser.add_argument("--variant", help="Diffusers weight variant to prefer, e.g. fp16")
    parser.add_argument("--json", action="store_true", help="print a JSON result")


def _pull(args: argparse.Namespace) -> int:
    args.backend = args.engine
    apply_settings(args)
    engine = args.backend if args.backend in model_downloads.ENGINES else "diffusers"
    bar = ProgressBar(sys.stderr)
    control = GenerationControl(bar)
    try:
        with cancel_on_interrupt(control):
            pulled = model_downloads.pull(
                args.model,
                engine,
                quant=args.quant,
                revision=args.revision,
                variant=args.variant,
                control=control,
            )
    except GenerationCancelledError:
        bar.close()
        sys.stderr.write("abstractvision: pull interrupted; run it again to resume\n")
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    row = {
        "model": pulled.model,
        "engine": pulled.engine,
        "quant": pulled.quant,
        "variant": pulled.variant,
        "paths": pulled.paths,
        "size_bytes": pulled.total_bytes,
        "downloaded_bytes": pulled.downloaded_bytes,
        "files": pulled.files,
        "repo_files": pulled.repo_files,
        "repo_bytes": pulled.repo_bytes,
    }
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    size = model_downloads.format_bytes(pulled.total_bytes)
    got = model_downloads.format_bytes(pulled.downloaded_bytes)
    print(f"{pulled.model} ({pulled.engine}): {size} on disk, {got} downloaded")
    if pulled.repo_files > pulled.files:
        whole = model_downloads.format_bytes(pulled.repo_bytes)
        print(f"  {pulled.files} of the repo's {pulled.repo_files} files ({whole}): what it loads")
    for role, path in pulled.paths.items():
        print(f"  {role}: {path}")
    use = f"--backend {pulled.engine} --model {pulled.model}"
    print(f'use it: abstractvision t2i {use} "a prompt"  |  abstractvision-mcp {use}')
    return 0


def _configure_rm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="Hub id of a model on disk")
    parser.add_argument("--json", action="store_true", help="print a JSON result")


def _rm(args: argparse.Namespace) -> int:
    done = model_downloads.remove_model(args.model)
    if args.json:
        print(
            json.dumps(
                {"removed": done.removed, "kept": done.kept, "freed_bytes": done.freed_bytes}
            )
        )
        return 0
    for repo in done.removed:
        print(f"removed {repo}")
    for repo in done.kept:
        print(f"kept {repo}")
    print(f"freed {model_downloads.format_bytes(done.freed_bytes)}")
    return 0


def installed(args: argparse.Namespace) -> int:
    """``abstractvision models --installed``: repos in the Hub cache with their sizes."""
    rows = model_downloads.installed_models()
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    if not rows:
        print("no models on disk; get one with `abstractvision pull MODEL`")
        return 0
    width = max(len(r.repo_id) for r in rows)
    for row in rows:
        note = f"  (sd.cpp files of {', '.join(row.used_by)})" if row.used_by else ""
        if row.partial_bytes:
            note += f"  [+{model_downloads.format_bytes(row.partial_bytes)} partial]"
        size = model_downloads.format_bytes(row.size_bytes)
        print(f"{row.repo_id:<{width}}  {size:>9}  {row.files:>4} files{note}")
    total = model_downloads.format_bytes(sum(r.size_bytes for r in rows))
    print(f"{'total':<{width}}  {total:>9}")
    return 0


Row = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
ROWS: dict[str, Row] = {
    "pull": ("download a model for one engine (only the files it loads)", _configure_pull, _pull),
    "rm": ("remove a downloaded model from disk", _configure_rm, _rm),
}
