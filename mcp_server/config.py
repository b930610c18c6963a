"""Server configuration: one option table feeds the CLI, ``ABSTRACTVISION_*`` env and a file.

Precedence: command line > environment > config file (``--config``, TOML or JSON) > default.
This is the only module that reads the environment.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from abstractvision.backends import BACKENDS, backend_options
from abstractvision.ray_serve.deploy import LOCAL_ENGINES

ENV_PREFIX = "ABSTRACTVISION_"
TRANSPORTS = ("stdio", "sse", "streamable-http")
PREVIEWS = ("none", "thumbnail", "full")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServerConfig:
    """Everything the server needs; each field is a ``--flag`` and an ``ABSTRACTVISION_*`` var."""

    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "diffusers"
    model: str | None = None
    device: str | None = None
    backend_option: list[str] = field(default_factory=list)
    ray: str | None = None
    ray_option: list[str] = field(default_factory=list)
    store: str | None = None
    store_option: list[str] = field(default_factory=list)
    runtime_store: str | None = None
    preview: str = "thumbnail"
    preview_max_side: int = 256
    preview_max_bytes: int = 40_000
    max_concurrency: int = 1
    max_queue: int = 32
    wait_s: float = 45.0
    job_ttl_s: float = 3600.0
    max_jobs: int = 256
    input_root: list[str] = field(default_factory=list)
    allow_private_urls: bool = False
    allow_url_host: list[str] = field(default_factory=list)
    url_timeout_s: float = 20.0
    max_input_bytes: int = 20 * 1024 * 1024
    auth_token: str | None = None
    insecure: bool = False
    allowed_host: list[str] = field(default_factory=list)
    allowed_origin: list[str] = field(default_factory=list)
    openai: bool = False
    playground: bool = True
    all_tools: bool = False
    probe: bool = True
    preload: bool = False
    allow_download: bool = False
    quant: str | None = None
    log_level: str = "INFO"
    # names of the options set by flag, env or file (the rest are defaults); not an option
    given: ClassVar[frozenset[str]] = frozenset()

    @property
    def max_body_bytes(self) -> int:
        """HTTP request body cap: one base64 image at the input limit plus JSON overhead."""
        return self.max_input_bytes * 4 // 3 + 1024 * 1024

    def backend_options(self) -> dict[str, Any]:
        """The backend's config options: ``--backend-option`` pairs plus model/device."""
        return backend_options(
            self.backend, self.backend_option, model=self.model, device=self.device
        )


# name -> (help, choices); type and default come from the dataclass field.
HELP: dict[str, tuple[str, Sequence[str] | None]] = {
    "transport": ("protocol transport", TRANSPORTS),
    "host": ("HTTP bind address", None),
    "port": ("HTTP port", None),
    "backend": ("engine: diffusers, sdcpp or openai", None),
    "model": ("default model (Hub id or local folder)", None),
    "device": ("torch device for local engines (cpu, cuda, mps)", None),
    "backend_option": ("extra backend option KEY=VALUE (repeatable)", None),
    "ray": (
        "run the --backend engine as Ray Serve replicas on the cluster at ADDRESS (auto, "
        "ray://HOST:10001, local) and serve through them; deploys unless already running",
        None,
    ),
    "ray_option": (
        "Ray worker/front-end option KEY=VALUE: num_replicas, num_gpus, num_cpus, min_replicas, "
        "max_replicas, max_ongoing_requests, max_queued_requests, on_replica_failure, "
        "max_retries... (repeatable; see docs/ray.md)",
        None,
    ),
    "store": ("artifact store: a folder, or a URL (s3://bucket/prefix) shared by replicas", None),
    "store_option": ("URL store option KEY=VALUE, e.g. endpoint_url=... (repeatable)", None),
    "runtime_store": ("agent runtime store: file:/DIR or module:factory", None),
    "preview": ("inline preview in results", PREVIEWS),
    "preview_max_side": ("longest side of a thumbnail preview, px", None),
    "preview_max_bytes": ("byte budget of a thumbnail preview", None),
    "max_concurrency": ("generations running at once on the device", None),
    "max_queue": ("generations waiting for the device at most; more get a busy answer", None),
    "wait_s": ("seconds a task tool waits before returning a job handle", None),
    "job_ttl_s": ("seconds finished jobs stay queryable", None),
    "max_jobs": ("finished jobs kept at most", None),
    "input_root": ("folder image file paths may come from (repeatable)", None),
    "allow_private_urls": ("allow image URLs on loopback/private/link-local addresses", None),
    "allow_url_host": ("host name allowed even on a private address (repeatable)", None),
    "url_timeout_s": ("time cap of one image download", None),
    "max_input_bytes": ("size cap of one input image", None),
    "auth_token": ("bearer token required on HTTP transports", None),
    "insecure": ("allow a non-loopback bind without --auth-token", None),
    "allowed_host": ("extra Host header value allowed on HTTP (repeatable)", None),
    "allowed_origin": ("extra Origin allowed on HTTP (repeatable)", None),
    "openai": ("also serve the OpenAI-compatible API under /v1 (HTTP transports)", None),
    "playground": ("serve the playground page at / (HTTP transports; same token)", None),
    "all_tools": ("list every task tool, even those the backend cannot run", None),
    "probe": (
        "after a guessed tools/list, probe the backend in the background (imports the engine) "
        "and notify tools/list_changed",
        None,
    ),
    "preload": ("load the default model in the background after start", None),
    "allow_download": (
        "download a Hub model that is not on disk at the first call that needs it (with "
        "progress); without it the call says which `abstractvision pull` to run",
        None,
    ),
    "quant": ("quantization of the sd.cpp files to pull (Q4_0, Q8_0...)", None),
    "log_level": ("stderr log level", ("DEBUG", "INFO", "WARNING", "ERROR")),
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _kind(name: str) -> type:
    default = ServerConfig.__dataclass_fields__[name]
    if default.default_factory is not list:  # type: ignore[comparison-overlap]
        value = default.default
        if isinstance(value, bool):
            return bool
        if isinstance(value, (int, float)):
            return type(value)
        return str
    return list


def build_parser(prog: str = "abstractvision-mcp") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="abstractvision server: MCP over stdio, SSE or streamable HTTP; --openai adds "
        "the OpenAI-compatible API under /v1 on the same backend. Logs go to stderr.",
    )
    parser.add_argument("--config", help="TOML or JSON file with these options")
    for f in fields(ServerConfig):
        help_text, choices = HELP[f.name]
        help_text = f"{help_text} [env {env_name(f.name)}]"
        kind = _kind(f.name)
        if kind is bool:
            parser.add_argument(
                flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif kind is list:
            parser.add_argument(flag(f.name), action="append", default=None, help=help_text)
        else:
            parser.add_argument(flag(f.name), type=kind, choices=choices, help=help_text)
    return parser


def _coerce(name: str, raw: Any) -> Any:
    kind = _kind(name)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if kind is list:
        if isinstance(raw, str):
            return [p for p in raw.replace(os.pathsep, ",").split(",") if p]
        return [str(v) for v in raw]
    return kind(raw)


def _read_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        return dict(json.loads(text))
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise ValueError(f"{path}: TOML config needs Python 3.11+; use a .json file") from None
    return dict(tomllib.loads(text))


def load_config(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    prog: str = "abstractvision-mcp",
) -> ServerConfig:
    """Parse the command line, then fill unset options from env, then the config file."""
    env = os.environ if environ is None else environ
    args = vars(build_parser(prog).parse_args(argv))
    config_path = args.pop("config") or env.get(env_name("config"))
    from_file = _read_file(config_path) if config_path else {}
    values: dict[str, Any] = {}
    names = {f.name for f in fields(ServerConfig)}
    for key in from_file:
        if key.replace("-", "_") not in names:
            raise ValueError(f"{config_path}: unknown option {key!r}")
    for name in names:
        if args.get(name) is not None:
            values[name] = args[name]
        elif env_name(name) in env:
            values[name] = _coerce(name, env[env_name(name)])
        elif name in from_file or name.replace("_", "-") in from_file:
            values[name] = _coerce(name, from_file.get(name, from_file.get(name.replace("_", "-"))))
    given = frozenset(values)
    if "max_concurrency" not in values:  # a remote pool (Ray) queues for itself
        engine = BACKENDS.get("ray" if values.get("ray") else values.get("backend", "diffusers"))
        values["max_concurrency"] = engine.default_concurrency if engine else 1
    config = ServerConfig(**values)
    config.given = given  # type: ignore[misc]
    check(config)
    return config


def env_settings(names: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``ABSTRACTVISION_*`` values of these options that the environment sets, coerced.

    The ``abstractvision`` CLI reads its shared settings (model, backend, device...) here, so the
    environment is read in this module only.
    """
    env = os.environ if environ is None else environ
    return {n: _coerce(n, env[env_name(n)]) for n in names if env_name(n) in env}


def check(config: ServerConfig) -> None:
    """Refuse unsafe or impossible combinations before anything starts."""
    if config.transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
    if config.preview not in PREVIEWS:
        raise ValueError(f"preview must be one of {', '.join(PREVIEWS)}")
    if config.store and config.runtime_store:
        raise ValueError("give --store or --runtime-store, not both")
    if config.ray and config.backend not in LOCAL_ENGINES:
        raise ValueError(
            f"--ray runs a local engine on the cluster: --backend {' or '.join(LOCAL_ENGINES)}"
        )
    if config.max_concurrency < 1:
        raise ValueError("--max-concurrency must be >= 1")
    if config.max_queue < 0:
        raise ValueError("--max-queue must be >= 0")
    http = config.transport != "stdio"
    if config.openai and not http:
        raise ValueError("--openai needs an HTTP transport (--transport streamable-http or sse)")
    if http and config.host not in LOOPBACK_HOSTS and not config.auth_token and not config.insecure:
        raise ValueError(
            f"refusing to bind {config.host} without --auth-token (or pass --insecure)"
        )
