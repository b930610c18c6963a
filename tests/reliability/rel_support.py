"""Shared helpers of the reliability tests: the MCP test backend, store snapshots, free ports."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

_MCP_CONFTEST = Path(__file__).resolve().parent.parent / "mcp" / "conftest.py"
_spec = importlib.util.spec_from_file_location("rel_mcp_conftest", _MCP_CONFTEST)
assert _spec is not None and _spec.loader is not None
mcp_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mcp_conftest)

FaultBackend = mcp_conftest.FaultBackend
config = mcp_conftest.config
connect = mcp_conftest.connect
text = mcp_conftest.text

ENV = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "")}
PYTHON = sys.executable


def snapshot(folder: Path) -> dict[str, str]:
    """name -> sha256 of every file under ``folder`` (hidden temp files included)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def check_store(folder: Path) -> list[dict[str, Any]]:
    """Every visible artifact's bytes match its sha256 and size; returns their metadata."""
    metas = []
    for meta_path in folder.glob("*.json"):
        meta = json.loads(meta_path.read_text())
        data = (folder / meta["content_file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"], meta_path
        assert len(data) == meta["size_bytes"], meta_path
        assert meta["artifact_id"] == meta_path.stem == meta["sha256"][:32]
        metas.append(meta)
    return metas


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
