"""``abstractvision-mcp`` / ``python -m mcp_server``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("abstractvision-mcp: the MCP server is not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
