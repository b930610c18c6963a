"""The playground page's files (plain HTML/JS/CSS in ``static/``, no build step, no CDN).

The MCP HTTP app serves them at ``/`` (``mcp_server.playground``); this package only ships them,
so ``import abstractvision`` never loads anything for it.
"""
