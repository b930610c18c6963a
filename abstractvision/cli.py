"""The ``abstractvision`` command: look up what the registry knows, or run a server.

Every subcommand is one function registered in ``COMMANDS``; adding one (``t2i``, ``i2v``...)
means writing its function and adding a row. Results go to stdout, errors to stderr: exit 2 for
an unknown model or task (the message says what exists), 1 for other failures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__, cli_doctor, cli_generate, cli_models, cli_repl, compat
from .errors import AbstractVisionError, InvalidRequestError, UnknownModelError
from .model_capabilities import ModelCapabilities, VisionModelCapabilitiesRegistry
from .types import Task

__all__ = ["COMMANDS", "main"]

TASK_NAMES = [t.value for t in Task]


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, how it adds its arguments, and what it runs."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _registry(args: argparse.Namespace) -> VisionModelCapabilitiesRegistry:
    return VisionModelCapabilitiesRegistry(args.registry)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _summary(model: ModelCapabilities) -> dict[str, Any]:
    return {
        "id": model.id,
        "display_name": model.display_name,
        "family": model.family,
        "license": model.license.id if model.license.id != "other" else model.license.name,
        "tasks": [t.value for t in model.tasks],
    }


def _models(args: argparse.Namespace) -> int:
    if args.installed:  # what is on disk, not what the registry knows
        return cli_models.installed(args)
    registry = _registry(args)
    models = [registry.get(m) for m in registry.list_models(args.task)]
    if args.backend:  # 0.3.x's `model-catalog --provider X`: the models one engine runs
        models = [m for m in models if getattr(m.engines, args.backend) is not None]
    rows = [_summary(m) for m in models]
    kind = "gguf" if args.backend == "sdcpp" else "diffusers"
    presets = [[p for p in m.downloads if p.target == kind] if args.backend else [] for m in models]
    if args.json and args.backend:
        for row, listed in zip(rows, presets, strict=True):
            row["downloads"] = [p.to_dict() for p in listed]
    if args.json:
        _print_json(rows)
        return 0
    if args.backend:  # 0.3.x model-presets: the engine, and the repos it downloads from
        engines = sorted({p.engine for listed in presets for p in listed}) or [args.backend]
        print(f"provider/engine: {', '.join(engines)}")
    width = max((len(r["id"]) for r in rows), default=0)
    for row, listed in zip(rows, presets, strict=True):
        repos = [p.repo_id for p in listed if p.repo_id != row["id"]]
        also = f"  ({kind}: {', '.join(dict.fromkeys(repos))})" if repos else ""
        print(f"{row['id']:<{width}}  {', '.join(row['tasks'])}{also}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    registry = _registry(args)
    infos = [registry.get_task(t) for t in registry.list_tasks()]
    if args.json:
        _print_json(
            [{"name": i.name, "description": i.description, "models": i.models} for i in infos]
        )
        return 0
    width = max(len(i.name) for i in infos)
    for info in infos:
        print(f"{info.name:<{width}}  {len(info.models):>3} models  {info.description}")
    return 0


def _show_model(args: argparse.Namespace) -> int:
    model = _registry(args).get(args.model_id)
    data = model.model_dump(mode="json", exclude_none=True, by_alias=True)
    memory = _model_memory(model)
    if memory:
        data["memory"] = memory
    if args.json:
        _print_json(data)
        return 0
    licence = model.license.name or model.license.id
    print(f"{model.display_name} ({model.id})")
    print(f"  family:  {model.family}")
    print(f"  license: {licence}")
    if model.aliases:
        print(f"  aliases: {', '.join(model.aliases)}")
    if memory:
        parts = ", ".join(f"{k} {v:g}B" for k, v in model.parameters_b.items())
        print(
            f"  memory:  {memory['default_gib']} GiB of weights at {memory['default_dtype']} "
            f"({model.total_parameters_b:g}B parameters: {parts}); activations come on top"
        )
    print(f"  engines: {', '.join(k for k, v in data['engines'].items() if v)}")
    if model.notes:
        print(f"  notes:   {model.notes}")
    for task, spec in model.tasks.items():
        print(f"  {task.value}:")
        for name, param in spec.params.items():
            rule = f", {param.frame_rule}" if param.frame_rule else ""
            step = f", multiple of {param.multiple_of}" if param.multiple_of else ""
            print(f"    {name}: default {param.default} ({param.min}..{param.max}{step}{rule})")
    if model.multi_view is not None:
        print(
            f"  multi_view: LoRA {model.multi_view.lora}; angles {', '.join(model.multi_view.angles)}"
        )
    if model.controls:  # control_image: built in, or with --backend-option controlnet=REPO
        ways = [f"{c.type} ({f'controlnet={c.controlnet}' if c.controlnet else 'built in'})"
                for c in model.controls]  # fmt: skip
        print(f"  controls: {'; '.join(ways)}")
    return 0


def _model_memory(model: Any) -> dict[str, Any]:
    """Weights memory computed from the registry's published parameter counts."""
    if not model.parameters_b:
        return {}
    engine = model.engines.diffusers
    dtype = engine.torch_dtype if engine and engine.torch_dtype else "bfloat16"
    gib = {name: round(model.memory_bytes(name) / 2**30, 1) for name in ("float32", "bfloat16")}
    return {
        "parameters_b": model.total_parameters_b,
        "default_dtype": dtype,
        "default_gib": round(model.memory_bytes(dtype) / 2**30, 1),
        "weights_gib": gib,
    }


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASK_NAMES, help="only models that can run this task")
    parser.add_argument(
        "--backend",
        choices=("diffusers", "sdcpp"),
        help="only models this engine runs (with --json: the repos it downloads from)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--installed", action="store_true", help="models on disk (Hub cache) with their sizes"
    )


def _add_tasks(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _add_show_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_id", metavar="ID", help="model id, e.g. black-forest-labs/FLUX.1-schnell"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


# Commands run by the MCP server's entry point, whose one option table parses everything after
# the command name (``--help`` included). The CLI is an application: it may import mcp_server.
SERVER_PREFIX: dict[str, tuple[str, ...]] = {
    "serve": ("--transport", "streamable-http", "--openai"),
    "mcp": (),
}


def _add_rest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="server options (see --help)")


def _server(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from mcp_server.__main__ import main as server_main

        return server_main([*SERVER_PREFIX[name], *args.rest], prog=f"abstractvision {name}")

    return run


COMMANDS: dict[str, Command] = {
    "models": Command("list known models", _add_models, _models),
    "tasks": Command("list tasks and how many models run each", _add_tasks, _tasks),
    "show-model": Command(
        "show one model's engines, licence and parameters", _add_show_model, _show_model
    ),
    "serve": Command(
        "serve MCP and the OpenAI-compatible API over HTTP",
        _add_rest,
        _server("serve"),
    ),
    "mcp": Command("run the MCP server (stdio by default)", _add_rest, _server("mcp")),
    "cli": Command("interactive prompt: one warm model, /help", lambda _: None, cli_repl.run),
    **{
        name: Command(*row)
        for name, row in {**cli_generate.ROWS, **cli_doctor.ROWS, **cli_models.ROWS}.items()
    },
}


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser; it also reads 0.3.x command lines, and its Namespace also has 0.3.x's
    names (``args.cmd``, ``args._fn(args)`` runs the command, ``args.progress`` ...:
    ``compat.legacy_namespace``)."""
    parser = compat.LegacyArgumentParser(prog="abstractvision", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"abstractvision {__version__}")
    parser.add_argument(
        "--registry",
        metavar="PATH",
        help="capability registry JSON to use instead of the packaged one",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=argparse.ArgumentParser
    )
    for name, command in COMMANDS.items():
        subparser = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(subparser)
        subparser.set_defaults(cmd=name, _fn=command.run)  # 0.3.x's names
    sub.add_parser("repl", help="the same as cli").set_defaults(cmd="repl", _fn=cli_repl.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (argparse itself exits 2 on bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SERVER_PREFIX:  # the server's parser owns every option after it
        return COMMANDS[argv[0]].run(argparse.Namespace(rest=argv[1:]))
    try:
        args = build_parser().parse_args(argv)  # 0.3.x flags and command names too
        return args._fn(args)
    except (UnknownModelError, InvalidRequestError) as exc:
        print(f"abstractvision: error: {exc}", file=sys.stderr)
        return 2
    except AbstractVisionError as exc:
        print(f"abstractvision: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
