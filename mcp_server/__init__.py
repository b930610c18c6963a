"""The abstractvision MCP server (tools, resources, artifacts; stdio, SSE, streamable HTTP)."""
