"""The ``abstractvision`` command, run as a real subprocess and in-process through ``main``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import abstractvision
from abstractvision.cli import COMMANDS, build_parser, main
from abstractvision.model_capabilities import PACKAGED_PATH, VisionModelCapabilitiesRegistry
from abstractvision.types import Task

REGISTRY = VisionModelCapabilitiesRegistry()
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "abstractvision.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )


# --- as a subprocess ------------------------------------------------------------------------


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"abstractvision {abstractvision.__version__}"


def test_tasks_lists_every_task_with_its_model_count() -> None:
    done = run_cli("tasks")
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [t.value for t in Task]
    t2v = next(line for line in lines if line.startswith("text_to_video"))
    assert f"{len(REGISTRY.models_for_task('text_to_video'))} models" in t2v


def test_models_json_for_one_task() -> None:
    done = run_cli("models", "--task", "image_to_video", "--json")
    assert done.returncode == 0
    rows = json.loads(done.stdout)
    assert [r["id"] for r in rows] == REGISTRY.models_for_task("image_to_video")
    assert all("image_to_video" in r["tasks"] for r in rows)
    assert {"id", "display_name", "family", "license", "tasks"} <= set(rows[0])


def test_show_model_with_a_slashed_id() -> None:
    done = run_cli("show-model", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    assert done.returncode == 0
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in done.stdout
    assert "num_frames: default 81 (5..129, 4k+1)" in done.stdout


def test_unknown_model_exits_2_and_suggests() -> None:
    done = run_cli("show-model", "Qwen/Qwen-Imag")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "unknown model 'Qwen/Qwen-Imag'" in done.stderr
    assert "did you mean: Qwen/Qwen-Image" in done.stderr


def test_unknown_task_exits_2_and_lists_the_tasks() -> None:
    done = run_cli("models", "--task", "text_to_sound")
    assert done.returncode == 2
    assert done.stdout == ""
    assert all(t.value in done.stderr for t in Task)


def test_a_broken_registry_exits_1_naming_the_field(tmp_path: Path) -> None:
    doc = json.loads(PACKAGED_PATH.read_text(encoding="utf-8"))
    doc["models"][0]["license"] = {"id": "other"}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    done = run_cli("--registry", str(path), "models")
    assert done.returncode == 1
    assert "models.0.license" in done.stderr and str(path) in done.stderr


def test_installed_console_script_runs() -> None:
    script = Path(sys.executable).with_name("abstractvision")
    assert script.exists(), "scripts/setup installs the console scripts into the venv"
    done = subprocess.run(
        [str(script), "tasks", "--json"], capture_output=True, text=True, env=ENV, timeout=120
    )
    assert done.returncode == 0
    assert [t["name"] for t in json.loads(done.stdout)] == [t.value for t in Task]


# --- in-process ---------------------------------------------------------------------------------


def test_main_models_plain(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == REGISTRY.list_models()


def test_main_tasks_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {t["name"]: t["models"] for t in data} == {
        t.value: REGISTRY.models_for_task(t) for t in Task
    }


def test_main_show_model_json_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-model", "Qwen/Qwen-Image-Edit-2511", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["id"] == "Qwen/Qwen-Image-Edit-2511"
    assert data["multi_view"]["lora"] == "fal/Qwen-Image-Edit-2511-Multiple-Angles-LoRA"
    assert set(data["tasks"]) == {"image_to_image", "multi_view_image"}


def test_main_show_model_plain_mentions_multi_view(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-model", "Qwen/Qwen-Image-Edit-2511"]) == 0
    out = capsys.readouterr().out
    assert "multi_view: LoRA fal/Qwen-Image-Edit-2511-Multiple-Angles-LoRA" in out
    assert "license: apache-2.0" in out


def test_main_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-model", "nobody/nothing"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown model 'nobody/nothing'" in captured.err


def test_main_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["frobnicate"], ["models", "--task", "nope"], ["show-model"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
    assert "usage: abstractvision" in capsys.readouterr().err


def test_every_command_in_the_table_is_wired() -> None:
    parser = build_parser()
    help_text = parser.format_help()
    for name, command in COMMANDS.items():
        assert name in help_text and command.help in help_text
    assert {"models", "tasks", "show-model"} <= set(COMMANDS)


def test_mcp_and_serve_delegate_to_the_server_entry_point(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["mcp", "--transport", "stdio", "--openai"]) == 2
    assert "abstractvision mcp: --openai needs an HTTP transport" in capsys.readouterr().err
    assert main(["serve", "--transport", "stdio"]) == 2  # serve turns --openai on
    assert "abstractvision serve: --openai" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["mcp", "--help"])
    assert info.value.code == 0 and "--backend-option" in capsys.readouterr().out


def test_the_library_never_imports_mcp_server() -> None:
    """Every abstractvision module but the CLI (an application entry) imports without it."""
    script = """
import importlib, pkgutil, sys
import abstractvision
skip = {"abstractvision.cli"}
for info in pkgutil.walk_packages(abstractvision.__path__, "abstractvision."):
    if info.name not in skip:
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an optional engine that is not installed
            print("skipped", info.name, exc, file=sys.stderr)
bad = sorted(m for m in sys.modules if m == "mcp_server" or m.startswith("mcp_server."))
assert not bad, bad
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
