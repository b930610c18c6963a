"""Generation subcommands (``t2i``, ``i2i``, ``t2v``, ``i2v``, ``angles``) and ``tools``.

Task flags come from the request dataclasses (``request_field_schemas``): a new request field is a
new flag with no edit here. ``ROWS`` maps a command name to (help, configure, run) for ``cli.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import cli_models
from .artifacts import MediaStore
from .backends import BACKENDS, backend_options, create_backend, parse_key_values
from .control import GenerationControl
from .errors import AbstractVisionError, GenerationCancelledError, UnknownModelError
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
    "upscale": Task.IMAGE_UPSCALE,
}
_SUFFIX_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}
_SUFFIX_FORMATS.update({".mp4": "mp4", ".gif": "gif"})
_SKIP = ("prompt", "model", "extra")  # positional, backend-level, --extra


def _angle(text: str) -> Any:
    return json.loads(text) if text.lstrip().startswith("{") else text


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """--backend, --model, --device, --backend-option: which engine and model to build."""
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="engine (default: the recommended one for this machine) [env ABSTRACTVISION_BACKEND]",
    )
    parser.add_argument(
        "--model",
        help="model: Hub id or local folder (default: the registry's recommended one for this "
        "machine) [env ABSTRACTVISION_MODEL]",
    )
    parser.add_argument(
        "--device",
        help="torch device for local engines (cpu, cuda, mps) [env ABSTRACTVISION_DEVICE]",
    )
    parser.add_argument(
        "--backend-option", action="append", default=[], metavar="K=V", help="backend option"
    )
    cli_models.add_shared_flags(parser)


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
            elif name in cls.image_list_fields:
                options.update(nargs="+", metavar="IMAGE")
            elif kind == "boolean":
                options.update(action="store_true", default=None)
            elif kind == "array" and schema.get("items", {}).get("type") == "integer":
                options.update(nargs="+", type=int, metavar="N")  # --seeds 1 2 3
            elif kind == "array":
                options.update(nargs="+", type=_angle, metavar="ANGLE")
            elif "enum" in schema:
                options["choices"] = schema["enum"]
            elif kind in ("integer", "number"):
                options["type"] = int if kind == "integer" else float
            parser.add_argument(flag, **options)
        if task in _VIDEO_BATCH:  # several videos: VisionManager.generate_video_batch & co
            parser.add_argument("--count", type=int, help="videos to make (seed, seed+1, ...)")
            parser.add_argument("--seeds", nargs="+", type=int, metavar="N", help="one per seed")
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
        parser.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            dest="show_progress",
            help="progress on stderr even when it is not a terminal (--no-progress: never; "
            "default: on a terminal, without --json)",
        )
        parser.set_defaults(task=task)

    return configure


def build_manager(args: argparse.Namespace, store: MediaStore | None) -> VisionManager:
    """The backend the flags name, behind a manager (with ``store``, results are refs)."""
    backend = args.backend or "diffusers"
    options = backend_options(backend, args.backend_option, model=args.model, device=args.device)
    return VisionManager(backend=create_backend(backend, **options), store=store)


def _manager(args: argparse.Namespace, store: MediaStore | None) -> VisionManager:
    """A new manager, or the prompt's warm one (``cli_repl``: ``args.manager_cache``)."""
    cache = getattr(args, "manager_cache", None)
    if cache is None:
        return build_manager(args, store)
    if cache.manager is None:
        cache.manager = build_manager(args, store)
    return cache.manager


ProgressBar = cli_models.ProgressBar  # one bar for downloads and steps


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
    rows: list[dict[str, Any]] = []
    try:
        return _write_all(path, assets, rows)
    except BaseException:  # no partial output: remove what this call wrote
        for row in rows:
            Path(row["path"]).unlink(missing_ok=True)
        raise


def _write_all(
    path: Path, assets: list[GeneratedAsset], rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    for index, asset in enumerate(assets):
        target = path
        if len(assets) > 1:
            seed = asset.metadata.get("seed")
            label = asset.metadata.get("angle") or asset.metadata.get("role") or f"seed{seed}"
            target = path.with_name(f"{path.stem}-{index}-{label}{path.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(asset.data)
        os.replace(partial, target)
        keys = ("width", "height", "num_frames", "fps", "seed", "model", "role", "angle")
        facts = {k: asset.metadata[k] for k in keys if asset.metadata.get(k) is not None}
        rows.append({"path": str(target), "content_type": asset.mime_type, **facts})
    return rows


_VIDEO_BATCH = {
    Task.TEXT_TO_VIDEO: "generate_video_batch",
    Task.IMAGE_TO_VIDEO: "image_to_video_batch",
}


def _run(
    vm: VisionManager, args: argparse.Namespace, params: dict[str, Any], control: GenerationControl
) -> Any:
    """One request, or a video batch when ``--count`` / ``--seeds`` are given for a video task."""
    method = _VIDEO_BATCH.get(args.task)
    if method is None or (args.count is None and not args.seeds):
        return vm.run(args.task, params, control=control)
    first = params.pop("prompt" if args.task is Task.TEXT_TO_VIDEO else "image")
    run = getattr(vm, method)
    return run(first, count=args.count, seeds=args.seeds, control=control, **params)


def _run_task(args: argparse.Namespace) -> int:
    try:
        return _generate(args)
    except UnknownModelError as exc:
        hint = str(exc)
        if "allow_download" in hint:  # the engine's own words: say it in this command's flags
            hint = f"{exc}; here: --allow-download (or `abstractvision pull {args.model}`)"
        if args.json:
            print(json.dumps({"error": hint, "kind": type(exc).__name__}))
        raise UnknownModelError(hint) from None
    except AbstractVisionError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "kind": type(exc).__name__}))
        raise


def _generate(args: argparse.Namespace) -> int:
    cli_models.quiet_third_party(args.verbose)
    cli_models.apply_settings(args)  # ABSTRACTVISION_* as the server reads them
    if getattr(args, "seeds", None):  # 0.3.x's Namespace (build_parser) keeps "11,12" as typed
        args.seeds = [int(n) for s in args.seeds for n in str(s).split(",")]
    store: MediaStore | None = None
    if args.store or args.store_option:  # options alone are refused by open_store
        store = open_store(args.store, parse_key_values(args.store_option, "--store-option"))
    params = _params(args, store)
    REQUEST_TYPES[args.task](**params)  # its bounds first: a bad value fails before any model
    try:
        cli_models.prepare_model(args)  # the default model; pulled first when allowed
    except GenerationCancelledError:
        sys.stderr.write("abstractvision: download interrupted; run again to resume\n")
        return cli_models.EXIT_INTERRUPTED
    show = args.show_progress  # --progress / --no-progress; unset: on a terminal, without --json
    if show is None:
        show = sys.stderr.isatty() and not args.json
    bar = ProgressBar(sys.stderr) if show else None
    control = GenerationControl(bar)
    try:
        with cli_models.cancel_on_interrupt(control):
            result = _run(_manager(args, store), args, params, control)
    except GenerationCancelledError:
        if bar is not None:
            bar.close()
        sys.stderr.write("abstractvision: cancelled; nothing was written\n")
        return cli_models.EXIT_INTERRUPTED
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
    cli_models.apply_settings(args)
    manager = build_manager(args, None) if args.model else None
    print(json.dumps(tool_specs(args.format, manager, all_tasks=args.all), indent=2))
    return 0


Row = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
ROWS: dict[str, Row] = {
    name: (f"{task.value}: {task.value.replace('_', ' ')}", _configure_task(task), _run_task)
    for name, task in TASK_COMMANDS.items()
}
ROWS["tools"] = ("print tool specs for OpenAI / Anthropic / MCP", _configure_tools, _tools)
