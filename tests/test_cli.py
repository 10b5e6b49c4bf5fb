"""The `frankenstein` command line: help, demo."""

from __future__ import annotations

import json

import pytest

from conftest import cli_path, run_cli


def test_help_lists_commands():
    result = run_cli([cli_path("frankenstein"), "--help"])
    assert result.returncode == 0
    for command in ("demo", "make-tiny", "layout"):
        assert command in result.stdout


def test_no_command_prints_help_and_fails():
    result = run_cli([cli_path("frankenstein")])
    assert result.returncode == 2 and "COMMAND" in result.stdout


@pytest.mark.cli
def test_demo_runs_every_listed_stage(tmp_path):
    from frankenstein_tasks.demo import STAGES

    out = tmp_path / "demo"
    result = run_cli([cli_path("frankenstein"), "demo", "--out", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "demo.json").read_text())
    assert [s["name"] for s in summary["stages"]] == [s.name for s in STAGES]
    assert (out / "models" / "rl" / "model.safetensors").is_file()
    assert f"{len(STAGES)} stages ran" in result.stdout


def test_demo_rejects_unknown_stage(tmp_path):
    result = run_cli([cli_path("frankenstein"), "demo", "--out", str(tmp_path), "--only", "nonsense"])
    assert result.returncode == 2 and "unknown stage nonsense" in result.stderr
