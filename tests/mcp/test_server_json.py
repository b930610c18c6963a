"""server.json stays a valid MCP Registry manifest in sync with the package and the CLI."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import tomllib

import abstractvision
from abstractvision.cli import COMMANDS, SERVER_PREFIX
from mcp_server.config import ServerConfig, build_parser, env_name, flag

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((ROOT / "server.json").read_text())


def test_identity_and_version() -> None:
    assert MANIFEST["$schema"].endswith("/2025-12-11/server.schema.json")
    assert re.fullmatch(r"io\.github\.[A-Za-z0-9-]+/abstractvision", MANIFEST["name"])
    assert 1 <= len(MANIFEST["description"]) <= 100
    assert MANIFEST["version"] == abstractvision.__version__
    assert MANIFEST["repository"]["source"] == "github"


def test_pypi_stdio_package() -> None:
    (package,) = MANIFEST["packages"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert package["registryType"] == "pypi" and package["identifier"] == project["name"]
    assert package["version"] == abstractvision.__version__
    assert package["runtimeHint"] == "uvx" and package["transport"] == {"type": "stdio"}
    pinned = [a["value"] for a in package["runtimeArguments"] if a.get("name") == "--from"]
    assert pinned and pinned[0].endswith(f"=={abstractvision.__version__}")
    assert "abstractvision-mcp" in project["scripts"]
    (command,) = [a["value"] for a in package["packageArguments"] if a["type"] == "positional"]
    assert command in COMMANDS and SERVER_PREFIX[command] == ()  # `abstractvision mcp` = the server


def test_environment_variables_match_cli_flags() -> None:
    (package,) = MANIFEST["packages"]
    ours = {
        v["name"]
        for v in package["environmentVariables"]
        if v["name"].startswith("ABSTRACTVISION_")
    }
    known = {env_name(f.name) for f in fields(ServerConfig)}
    assert ours and ours <= known, ours - known
    options = {o for action in build_parser()._actions for o in action.option_strings}
    for name in ours:
        assert flag(name.removeprefix("ABSTRACTVISION_").lower()) in options
    for var in package["environmentVariables"]:
        assert var["description"] and set(var) <= {
            "name", "description", "isRequired", "isSecret", "default", "placeholder", "choices",
            "format", "value", "variables",
        }  # fmt: skip


def test_remotes_point_at_served_paths() -> None:
    kinds = {r["type"]: r["url"] for r in MANIFEST["remotes"]}
    assert kinds["streamable-http"].endswith("/mcp") and kinds["sse"].endswith("/sse")
    for remote in MANIFEST["remotes"]:
        (header,) = remote["headers"]
        assert header["name"] == "Authorization" and header["isSecret"] is True
