"""The `frankenstein` command line: help and bad input (the demo itself: test_demo.py)."""

from __future__ import annotations

import re

from conftest import cli_path, run_cli


def listed_commands(help_text: str) -> list[str]:
    """The subcommand entries of argparse's COMMAND list: a name indented by four spaces (its help
    follows on the same line or, for a long name, the next one; wrapped help lines are indented more)."""
    return [m.group(1) for m in re.finditer(r"^ {4}(\S+)(?: {2,}\S.*)?$", help_text, flags=re.MULTILINE)]


def test_help_lists_commands():
    from frankenstein_tasks.cli import COMMANDS

    result = run_cli([cli_path("frankenstein"), "--help"])
    assert result.returncode == 0
    listed = listed_commands(result.stdout)
    for command in ("demo", "run", "report", "make-tiny", "layout", "transfer", "lm-eval"):
        assert command in listed, (command, result.stdout)
    assert listed == list(COMMANDS), result.stdout


def test_no_command_prints_help_and_fails():
    result = run_cli([cli_path("frankenstein")])
    assert result.returncode == 2 and "COMMAND" in result.stdout


def test_demo_rejects_unknown_stage(tmp_path):
    result = run_cli([cli_path("frankenstein"), "demo", "--out", str(tmp_path), "--only", "nonsense"])
    assert result.returncode == 2 and "unknown stage nonsense" in result.stderr


def test_demo_on_a_trio_refuses_bad_input_in_one_line(tmp_path):
    (tmp_path / "trio" / "base").mkdir(parents=True)
    for args, message in (
        (["--models", str(tmp_path / "trio")], f"{tmp_path / 'trio' / 'base'} has no config.json"),
        (["--models", str(tmp_path / "trio"), "--items", "0"], "--items must be at least 1, got 0"),
    ):
        result = run_cli([cli_path("frankenstein"), "demo", "--out", str(tmp_path / "out"), *args])
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"frankenstein: error: {message}"), result.stderr
        assert not (tmp_path / "out" / "models").exists()
