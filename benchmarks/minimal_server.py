"""The floor for start-up: a minimal ``mcp`` server with one tool, over stdio."""

from __future__ import annotations

from mcp.server import MCPServer

server = MCPServer("minimal")


@server.tool()
def echo(text: str) -> str:
    """Return ``text``."""
    return text


if __name__ == "__main__":
    server.run("stdio")
