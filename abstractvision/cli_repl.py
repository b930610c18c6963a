"""``abstractvision cli`` (or ``repl``): the 0.3.x interactive prompt, over today's subcommands.

Each line is one CLI command run in this process (``/t2i a red cube --steps 4`` is
``abstractvision t2i "a red cube" --steps 4``); what the prompt adds is state kept between lines:
the backend chosen with ``/backend``, defaults set with ``/set``, the store of ``/store``, and one
warm model: a generation reuses the manager (and its loaded pipeline) while the backend is the same.
A line without a leading ``/`` is a ``/t2i`` prompt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any

from .errors import AbstractVisionError

__all__ = ["Repl", "run"]

HELP = """\
Commands (each generation command takes the flags of the command of the same name):
  /t2i <prompt> [--width N --steps N --seed N ...]    text to image (a line without / is a prompt)
  /i2i <prompt> --image PATH [--mask PATH ...]        edit an image
  /t2v <prompt> [--num-frames N --fps N ...]          text to video
  /i2v [prompt] --image PATH [...]                    image to video
  /upscale --image PATH [--scale 2]                   upscale an image
  /angles <prompt> --image PATH                       multi-view images
  /backend diffusers <model_id_or_path> [device] [torch_dtype]
  /backend sdcpp <model.gguf> [sd_cli_path]
  /backend sdcpp <diffusion_model.gguf> <vae.safetensors> <llm.gguf> [sd_cli_path]
  /backend openai <base_url> [api_key] [model_id]
  /backend off                  back to the default (ABSTRACTVISION_BACKEND / the machine's pick)
  /set <name> <value>           a default flag for every generation (width, steps, seed, ...)
  /unset <name>   /defaults     drop one default; show them
  /store <dir|default>          keep results in an artifact store (default: files in this folder)
  /models [task]  /tasks  /show-model <id>     what the registry knows
  /config         /help         /exit (or /quit, /q, Ctrl-D)
"""

_GENERATION = ("t2i", "i2i", "t2v", "i2v", "upscale", "angles")
_LISTING = {"models": "models", "catalog": "models", "model-catalog": "models"}
_LISTING.update({"tasks": "tasks", "show-model": "show-model"})
_DIFFUSERS_DTYPE = "torch_dtype"


class Repl:
    """The prompt's state and one handler per command; ``handle(line)`` runs one line."""

    def __init__(self, *, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.backend: str | None = None
        self.model: str | None = None
        self.device: str | None = None
        self.options: dict[str, str] = {}
        self.sd_cli_path: str | None = None  # shown by /config; the bindings run the model
        self.defaults: dict[str, str] = {}
        self.store: str | None = None
        self.manager: Any = None  # the warm VisionManager of the current backend
        self._manager_key: tuple[Any, ...] | None = None
        self.handlers: dict[str, Callable[[list[str]], None]] = {
            "help": lambda _: self.say(HELP.rstrip()),
            "config": lambda _: self.say(json.dumps(self.config(), indent=2)),
            "backend": self.set_backend,
            "set": self.set_default,
            "unset": lambda args: [self.defaults.pop(a.replace("-", "_"), None) for a in args],
            "defaults": lambda _: self.say(json.dumps(self.defaults, indent=2)),
            "store": self.set_store,
        }

    def say(self, text: str) -> None:
        print(text, file=self.out)

    def config(self) -> dict[str, Any]:
        """The state, under 0.3.x's key names."""
        sdcpp = self.backend == "sdcpp"
        return {
            "backend_kind": self.backend or "",
            "model_id": None if sdcpp else self.model,
            "base_url": self.options.get("base_url"),
            "diffusers_device": self.device,
            "diffusers_torch_dtype": self.options.get(_DIFFUSERS_DTYPE),
            "sdcpp_model": self.model if sdcpp else None,
            "sdcpp_diffusion_model": self.options.get("diffusion_model") if sdcpp else None,
            "sdcpp_vae": self.options.get("vae") if sdcpp else None,
            "sdcpp_llm": self.options.get("llm") if sdcpp else None,
            "sdcpp_bin": self.sd_cli_path,
            "store_dir": self.store,
            "defaults": dict(self.defaults),
            "model_loaded": self.manager is not None,
        }

    def set_backend(self, args: list[str]) -> None:
        if not args:
            raise ValueError("usage: /backend diffusers|sdcpp|openai ... (or /backend off)")
        kind, rest = args[0].lower(), args[1:]
        kind = {"huggingface": "diffusers", "sd-cpp": "sdcpp", "openai-compatible": "openai"}.get(
            kind, kind
        )
        model = device = cli = None
        options: dict[str, str] = {}
        if kind == "off":
            kind = None
        elif kind == "diffusers" and 1 <= len(rest) <= 3:
            model, device = rest[0], (rest[1] if len(rest) > 1 else None)
            if len(rest) > 2:
                options[_DIFFUSERS_DTYPE] = rest[2]
        elif kind == "sdcpp" and len(rest) in (3, 4) and not rest[1].endswith(".gguf"):
            options = dict(zip(("diffusion_model", "vae", "llm"), rest, strict=False))
            cli = rest[3] if len(rest) > 3 else None
        elif kind == "sdcpp" and len(rest) in (1, 2):
            model, cli = rest[0], (rest[1] if len(rest) > 1 else None)
        elif kind == "openai" and 1 <= len(rest) <= 3:
            options = dict(zip(("base_url", "api_key"), rest, strict=False))
            model = rest[2] if len(rest) > 2 else None
        else:
            raise ValueError(f"/backend {' '.join(args)}: see /help for the forms it takes")
        self.backend, self.model, self.device, self.options = kind, model, device, options
        self.sd_cli_path = cli
        self.drop_manager()
        if cli:
            print(
                "abstractvision: note: sd-cli is not used in 0.4; the stable-diffusion-cpp "
                "bindings run the model",
                file=sys.stderr,
            )

    def set_default(self, args: list[str]) -> None:
        if len(args) < 2:
            raise ValueError("usage: /set <name> <value>")
        self.defaults[args[0].replace("-", "_")] = " ".join(args[1:])

    def set_store(self, args: list[str]) -> None:
        if len(args) != 1:
            raise ValueError("usage: /store <dir|default>")
        self.store = None if args[0] == "default" else args[0]
        self.drop_manager()

    def drop_manager(self) -> None:
        if self.manager is not None:
            unload = getattr(self.manager.backend, "unload", None)
            if callable(unload):
                unload()
        self.manager, self._manager_key = None, None

    def generate(self, command: str, args: list[str]) -> None:
        """Run the subcommand; the prompt's state and ``/set`` fill only the flags not given."""
        from . import cli

        parser = cli.build_parser()
        options = [f"--backend-option={k}={v}" for k, v in self.options.items()]
        argv = [command, *options, *args]  # the line's own --backend-option come later and win
        ns, unknown = parser.parse_known_args(argv)
        fill = {name: shlex.split(value) for name, value in self.defaults.items()}
        state = {"backend": self.backend, "model": self.model, "device": self.device}
        state["store"] = self.store if getattr(ns, "output", None) is None else None
        fill.update({name: [value] for name, value in state.items() if value is not None})
        added = [token for name, tokens in fill.items() if getattr(ns, name, False) is None
                 for token in ("--" + name.replace("_", "-"), *tokens)]  # fmt: skip
        if added:  # a default for a flag this command lacks (fps for /t2i) is left out
            ns, unknown = parser.parse_known_args([*argv, *added])
        flags = [token for token in unknown if token.startswith("-")]
        if flags:
            parser.error(f"unrecognized arguments: {' '.join(flags)}")
        if unknown:  # 0.3.x: every word that is not a flag or its value is the prompt
            ns.prompt = " ".join(t for t in [ns.prompt, *unknown] if t)
        key = (ns.backend, ns.model, ns.device, tuple(ns.backend_option), ns.store)
        if key != self._manager_key:
            self.drop_manager()
        ns.manager_cache = self  # cli_generate builds the manager once and keeps it here
        self._manager_key = key
        cli.COMMANDS[command].run(ns)

    def handle(self, line: str) -> bool:
        """Run one line; False when it asks to quit."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            line = "/t2i " + line
        tokens = shlex.split(line)
        command, args = tokens[0][1:].lower(), tokens[1:]
        if command in ("exit", "quit", "q"):
            return False
        if command in self.handlers:
            self.handlers[command](args)
        elif command in _GENERATION:
            self.generate(command, args)
        elif command in _LISTING:
            from . import cli

            task = ["--task", args[0]] if command != "show-model" and args else []
            cli.main([_LISTING[command], *(task or args)])
        else:
            raise ValueError(f"/{command}: unknown command (/help lists them)")
        return True


def run(_: argparse.Namespace | None = None) -> int:
    """The prompt loop: errors are printed and the prompt goes on; Ctrl-D or /exit ends it."""
    if sys.stdin.isatty():  # line editing and history for input(), where readline exists
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401
    repl = Repl()
    repl.say("AbstractVision CLI: /help lists the commands, /exit quits.")
    while True:
        try:
            line = input("abstractvision> ")
        except (EOFError, KeyboardInterrupt):
            repl.say("")
            repl.drop_manager()
            return 0
        try:
            if not repl.handle(line):
                repl.drop_manager()
                return 0
        except SystemExit:  # argparse printed its usage error; the prompt stays
            continue
        except KeyboardInterrupt:  # outside a generation (which cancels itself): a new line
            repl.say("")
        except (AbstractVisionError, ValueError) as exc:
            print(f"abstractvision: error: {exc}", file=sys.stderr)
        except Exception as exc:  # an engine's own failure: say it, keep the prompt
            print(f"abstractvision: error: {type(exc).__name__}: {exc}", file=sys.stderr)
