"""The `frankenstein` command line: help and bad input (the demo itself: test_demo.py)."""

from __future__ import annotations

from conftest import cli_path, run_cli


def test_help_lists_commands():
    result = run_cli([cli_path("frankenstein"), "--help"])
    assert result.returncode == 0
    for command in ("demo", "run", "report", "make-tiny", "layout", "transfer", "lm-eval"):
        assert command in result.stdout


def test_no_command_prints_help_and_fails():
    result = run_cli([cli_path("frankenstein")])
    assert result.returncode == 2 and "COMMAND" in result.stdout


def test_demo_rejects_unknown_stage(tmp_path):
    result = run_cli([cli_path("frankenstein"), "demo", "--out", str(tmp_path), "--only", "nonsense"])
    assert result.returncode == 2 and "unknown stage nonsense" in result.stderr
