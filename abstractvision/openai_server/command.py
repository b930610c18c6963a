"""``abstractvision serve``: the OpenAI-compatible API (and, with ``--mcp``, MCP at /mcp) in one process.

With ``--mcp`` both protocols share one backend object, so the weights are loaded once. The MCP
server lives in the separate ``mcp_server`` package; it is imported only when asked for.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

from ..backends import BACKENDS, create_backend
from ..backends.base_backend import VisionBackend
from ..errors import InvalidRequestError
from ..vision_manager import VisionManager
from .app import check_bind, serve

__all__ = ["configure", "run"]

TOKEN_ENV = "ABSTRACTVISION_AUTH_TOKEN"


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--backend", default="diffusers", choices=list(BACKENDS), help="engine")
    add("--model", help="default model: Hub id, local folder, or the remote model name")
    add("--device", help="torch device for local engines (cpu, cuda, mps)")
    add(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend config option, VALUE parsed as JSON when it parses (repeatable), "
        'e.g. base_url=http://host/v1 or models={"text_to_video": "..."}',
    )
    add("--host", default="127.0.0.1", help="bind address")
    add("--port", type=int, default=8000, help="port")
    add("--auth-token", default=os.environ.get(TOKEN_ENV), help=f"bearer token [env {TOKEN_ENV}]")
    add("--insecure", action="store_true", help="allow a non-loopback bind without a token")
    add("--max-concurrency", type=int, default=1, help="generations on the device at once")
    add("--max-body-mb", type=int, default=64, help="largest request body, MiB")
    add("--mcp", action="store_true", help="also serve MCP (streamable HTTP /mcp, SSE /sse)")
    add("--store", help="artifact folder of the MCP server (with --mcp)")
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in args.backend_option:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidRequestError("--backend-option", item, "must be KEY=VALUE")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    if args.model:
        options.setdefault("model_id", args.model)
    if args.device:
        options.setdefault("device", args.device)
    return options


def _mcp_app(args: argparse.Namespace, backend: VisionBackend) -> Any:
    """The MCP server's HTTP app on the same backend; our bearer check guards it."""
    from mcp_server.config import ServerConfig
    from mcp_server.engine import Engine
    from mcp_server.http import build_app
    from mcp_server.server import create_server

    config = ServerConfig(
        transport="streamable-http",
        host=args.host,
        port=args.port,
        backend=args.backend,
        model=args.model,
        store=args.store,
        max_concurrency=args.max_concurrency,
        insecure=True,  # the bind was checked here, with our token
    )
    return build_app(create_server(config, engine=Engine(config, backend=backend)), config)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    check_bind(args.host, args.auth_token, args.insecure)
    backend = create_backend(args.backend, **_options(args))
    serve(
        VisionManager(backend),
        host=args.host,
        port=args.port,
        auth_token=args.auth_token,
        insecure=args.insecure,
        log_level=args.log_level,
        max_concurrency=args.max_concurrency,
        max_body_bytes=args.max_body_mb * 1024 * 1024,
        mcp_app=_mcp_app(args, backend) if args.mcp else None,
    )
    return 0
