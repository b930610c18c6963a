"""Configuration: every flag from the environment and a file; unsafe binds refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_server.config import load_config


def test_precedence_cli_env_file(tmp_path: Path) -> None:
    file = tmp_path / "av.json"
    file.write_text(json.dumps({"port": 9001, "preview": "none", "max-concurrency": 3}))
    env = {"ABSTRACTVISION_PORT": "9002", "ABSTRACTVISION_INPUT_ROOT": "/a,/b",
           "ABSTRACTVISION_ALLOW_PRIVATE_URLS": "true", "ABSTRACTVISION_CONFIG": str(file)}  # fmt: skip
    cfg = load_config(["--preview", "full"], environ=env)
    assert cfg.port == 9002 and cfg.preview == "full" and cfg.max_concurrency == 3
    assert cfg.input_root == ["/a", "/b"] and cfg.allow_private_urls is True
    assert load_config([], environ={}).transport == "stdio"


def test_backend_options() -> None:
    cfg = load_config(
        ["--model", "m", "--device", "cpu", "--backend-option", "allow_download=true"], environ={}
    )
    assert cfg.backend_options() == {"allow_download": True, "model_id": "m", "device": "cpu"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--transport", "streamable-http", "--host", "0.0.0.0"],
        ["--store", "a", "--runtime-store", "file:/b"],
        ["--max-concurrency", "0"],
    ],
)
def test_refused(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        load_config(argv, environ={})


def test_public_bind_with_token_or_insecure() -> None:
    base = ["--transport", "sse", "--host", "0.0.0.0"]
    assert load_config([*base, "--insecure"], environ={}).insecure
    assert load_config(base, environ={"ABSTRACTVISION_AUTH_TOKEN": "t"}).auth_token == "t"


def test_unknown_file_option(tmp_path: Path) -> None:
    file = tmp_path / "av.toml"
    file.write_text('colour = "red"\n')
    with pytest.raises(ValueError, match="colour"):
        load_config(["--config", str(file)], environ={})
