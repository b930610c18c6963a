"""Generation subcommands (``t2i``, ``i2i``, ``t2v``, ``i2v``, ``angles``) and ``tools``.

Task flags come from the request dataclasses (``request_field_schemas``): a new request field is a
new flag with no edit here. ``ROWS`` maps a command name to (help, configure, run) for ``cli.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .artifacts import MediaStore
from .backends import BACKENDS, backend_options, create_backend, parse_key_values
from .control import GenerationControl, ProgressEvent
from .errors import AbstractVisionError, UnknownModelError
from .inputs import ImageResolver
from .object_store import open_store
from .tools import FORMATS, tool_result, tool_specs
from .types import REQUEST_TYPES, GeneratedAsset, Task, request_field_schemas
from .vision_manager import VisionManager

__all__ = ["ROWS"]

TASK_COMMANDS: dict[str, Task] = {
    "t2i": Task.TEXT_TO_IMAGE,
    "i2i": Task.IMAGE_TO_IMAGE,
    "t2v": Task.TEXT_TO_VIDEO,
    "i2v": Task.IMAGE_TO_VIDEO,
    "angles": Task.MULTI_VIEW_IMAGE,
}
_SUFFIX_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}
_SUFFIX_FORMATS.update({".mp4": "mp4", ".gif": "gif"})
_SKIP = ("prompt", "model", "extra")  # positional, backend-level, --extra


def _angle(text: str) -> Any:
    return json.loads(text) if text.lstrip().startswith("{") else text


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """--backend, --model, --device, --backend-option: which engine and model to build."""
    parser.add_argument("--backend", choices=list(BACKENDS), default="diffusers", help="engine")
    parser.add_argument("--model", help="model: Hub id or local folder")
    parser.add_argument("--device", help="torch device for local engines (cpu, cuda, mps)")
    parser.add_argument(
        "--backend-option", action="append", default=[], metavar="K=V", help="backend option"
    )


def _help(schema: dict[str, Any]) -> str:
    text = str(schema.get("description", ""))
    if "minimum" in schema or "maximum" in schema:
        text += f" ({schema.get('minimum', '')}..{schema.get('maximum', '')})"
    return text.replace("%", "%%")


def _configure_task(task: Task) -> Callable[[argparse.ArgumentParser], None]:
    def configure(parser: argparse.ArgumentParser) -> None:
        cls = REQUEST_TYPES[task]
        fields = request_field_schemas(cls)
        required = set(fields["required"])
        props = fields["properties"]
        parser.add_argument(
            "prompt", nargs=None if "prompt" in required else "?", help=_help(props["prompt"])
        )
        for name, schema in props.items():
            if name in _SKIP:
                continue
            flag = "--" + name.replace("_", "-")
            kind = schema.get("type")
            options: dict[str, Any] = {"help": _help(schema), "dest": name}
            if name in cls.image_fields:
                options.update(metavar="IMAGE", required=name in required)
            elif kind == "boolean":
                options.update(action="store_true", default=None)
            elif kind == "array":
                options.update(nargs="+", type=_angle, metavar="ANGLE")
            elif "enum" in schema:
                options["choices"] = schema["enum"]
            elif kind in ("integer", "number"):
                options["type"] = int if kind == "integer" else float
            parser.add_argument(flag, **options)
        parser.add_argument("--extra", action="append", default=[], metavar="K=V")
        add_backend_flags(parser)
        out = parser.add_mutually_exclusive_group()
        out.add_argument("-o", "--output", metavar="PATH", help="write the result to this file")
        out.add_argument(
            "--store",
            metavar="DIR|URL",
            help="store the result in this artifact store (a folder or s3://bucket/prefix)",
        )
        parser.add_argument(
            "--store-option",
            action="append",
            default=[],
            metavar="K=V",
            help="option of a URL --store, e.g. endpoint_url=... (repeatable)",
        )
        parser.add_argument("--json", action="store_true", help="print a JSON result")
        parser.set_defaults(task=task)

    return configure


def build_manager(args: argparse.Namespace, store: MediaStore | None) -> VisionManager:
    """The backend the flags name, behind a manager (with ``store``, results are refs)."""
    options = backend_options(
        args.backend, args.backend_option, model=args.model, device=args.device
    )
    return VisionManager(backend=create_backend(args.backend, **options), store=store)


class ProgressBar:
    """A one-line bar on a terminal: ``message [#####-----] 50% ETA 3s``."""

    def __init__(self, stream: Any, width: int = 24) -> None:
        self.stream = stream
        self.width = width
        self.start = time.monotonic()

    def __call__(self, event: ProgressEvent) -> None:
        fraction = event.fraction
        if fraction is None:
            self.stream.write(f"\r{event.message}\x1b[K")
        else:
            done = int(fraction * self.width)
            elapsed = time.monotonic() - self.start
            eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
            bar = "#" * done + "-" * (self.width - done)
            line = f"{event.message} [{bar}] {fraction:4.0%} ETA {eta:.0f}s"
            self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _params(args: argparse.Namespace, store: MediaStore | None) -> dict[str, Any]:
    cls = REQUEST_TYPES[args.task]
    names = [n for n in request_field_schemas(cls)["properties"] if n not in _SKIP]
    params = {n: getattr(args, n) for n in [*names, "prompt"] if getattr(args, n) is not None}
    if args.extra:
        params["extra"] = parse_key_values(args.extra, "--extra")
    if args.output and "output_format" not in params:
        fmt = _SUFFIX_FORMATS.get(Path(args.output).suffix.lower())
        if fmt is not None:
            params["output_format"] = fmt
    resolver = ImageResolver(store, roots=[Path.cwd(), "/"], allow_private_urls=True)
    return resolver.resolve_request(cls, params)


def _write(path: Path, assets: list[GeneratedAsset]) -> list[dict[str, Any]]:
    rows = []
    for index, asset in enumerate(assets):
        target = path
        if len(assets) > 1:
            label = asset.metadata.get("angle") or asset.metadata.get("role") or index
            target = path.with_name(f"{path.stem}-{index}-{label}{path.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(asset.data)
        keys = ("width", "height", "num_frames", "fps", "seed", "model", "role", "angle")
        facts = {k: asset.metadata[k] for k in keys if asset.metadata.get(k) is not None}
        rows.append({"path": str(target), "content_type": asset.mime_type, **facts})
    return rows


def _run_task(args: argparse.Namespace) -> int:
    try:
        return _generate(args)
    except UnknownModelError as exc:
        if "allow_download" not in str(exc):
            raise
        hint = f"{exc}; here: --backend-option allow_download=true (or `hf download {args.model}`)"
        if args.json:
            print(json.dumps({"error": hint, "kind": type(exc).__name__}))
        raise UnknownModelError(hint) from None
    except AbstractVisionError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "kind": type(exc).__name__}))
        raise


def _generate(args: argparse.Namespace) -> int:
    store: MediaStore | None = None
    if args.store or args.store_option:  # options alone are refused by open_store
        store = open_store(args.store, parse_key_values(args.store_option, "--store-option"))
    params = _params(args, store)
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() and not args.json else None
    control = GenerationControl(bar)
    try:
        result = build_manager(args, store).run(args.task, params, control=control)
    finally:
        if bar is not None:
            bar.close()
    if store is not None:
        out: Any = tool_result(result)
        lines = [r["uri"] for r in (result if isinstance(result, list) else [result])]
    else:
        assets = result if isinstance(result, list) else [result]
        default = f"{args.task.value}-{time.strftime('%Y%m%d-%H%M%S')}"
        ext = "." + assets[-1].mime_type.split("/")[-1].replace("jpeg", "jpg")
        out = _write(Path(args.output or default + ext), assets)  # type: ignore[arg-type]
        lines = [r["path"] for r in out]
    print(json.dumps(out, indent=2) if args.json else "\n".join(lines))
    return 0


def _configure_tools(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="openai", help="tool spec format")
    parser.add_argument("--all", action="store_true", help="every task, not only the backend's")
    add_backend_flags(parser)


def _tools(args: argparse.Namespace) -> int:
    manager = build_manager(args, None) if args.model else None
    print(json.dumps(tool_specs(args.format, manager, all_tasks=args.all), indent=2))
    return 0


Row = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
ROWS: dict[str, Row] = {
    name: (f"{task.value}: {task.value.replace('_', ' ')}", _configure_task(task), _run_task)
    for name, task in TASK_COMMANDS.items()
}
ROWS["tools"] = ("print tool specs for OpenAI / Anthropic / MCP", _configure_tools, _tools)
