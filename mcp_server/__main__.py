"""``abstractvision-mcp`` / ``python -m mcp_server``: parse config, log to stderr, serve."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, *, prog: str = "abstractvision-mcp") -> int:
    """Run the server; ``prog`` names the command in help and errors."""
    import importlib.util

    missing = [m for m in ("mcp", "uvicorn", "starlette") if importlib.util.find_spec(m) is None]
    if missing:  # the server is an extra; the library installs without it
        sys.stderr.write(
            f"{prog}: the MCP server needs the 'mcp' extra ({', '.join(missing)} missing): "
            "pip install 'abstractvision[mcp]'\n"
        )
        return 2
    from .config import load_config

    try:
        config = load_config(argv, prog=prog)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .defaults import prepare

    for line in prepare(config):  # backend, model, on disk or not: always said at start
        sys.stderr.write(f"{prog}: {line}\n")
    from .server import serve

    with contextlib.suppress(KeyboardInterrupt):
        serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
