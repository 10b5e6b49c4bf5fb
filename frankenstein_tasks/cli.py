"""The `frankenstein` command line: a thin dispatcher over `frankenstein_tasks.commands`.

Only the chosen subcommand's module is imported, so `frankenstein --help` is instant. Bad input
raises `FrankensteinError`, printed here as one line with exit status 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from surgery.errors import FrankensteinError

# name -> (module in frankenstein_tasks.commands, one-line help). Order is the order of --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the whole analysis on the model organism, offline (results in ./frankenstein_demo)"),
    "run": ("run", "the whole analysis of a recipe from one config (resumable), with its report"),
    "make-tiny": ("make_tiny", "write an offline tiny Base / IN / RL Qwen2.5-VL trio (planted RL deltas, or --trained: the model organism)"),
    "layout": ("layout", "print the architecture facts of a checkpoint (layers, blocks, unified index)"),
    "data": ("data", "make-pairs: probe image pairs for the frank_vision_* tasks; cache-dataset: a local copy of "
                     "gsm8k / MATH-500 / MathVista where the tasks find it offline"),
    "merge-config": ("merge_config", "write mergekit recipes splicing IN/RL decoder blocks (six variants, any cuts)"),
    "freeze-params": ("freeze", "print the parameter names of one decoder block to freeze, as a list or a regex"),
    "curves": ("curves", "per-layer curves of an lmms-eval probe run as curves.csv and plots"),
    "delta": ("delta", "weight-delta energy and SVD per tensor and layer across Base -> IN -> RL (streaming)"),
    "transfer": ("transfer", "transfer table (M_vis, M_v2r, M_rea) of IN, RL and the splices, and the attention shift"),
    "report": ("report", "one HTML report (+ Markdown, figures, CSVs) from one or more run folders"),
    "lm-eval": ("lm_eval_cmd", "lm-eval's own CLI with the frankenstein model registered (any task, splices, sweeps per layer)"),
    "doctor": ("doctor", "installed versions of the stack (torch, transformers, lmms-eval, ...) against the tested set (the lock)"),
}

# Commands that hand every argument after their name to another program's CLI, unparsed.
PASS_THROUGH = {"lm-eval"}

DESCRIPTION = """\
Frankenstein analysis of what RL changes in a vision-language model (Qwen2.5-VL / Qwen2-VL).

Typical flow: `frankenstein demo` runs the whole analysis on the model organism; on real models,
`frankenstein layout Qwen/Qwen2.5-VL-7B-Instruct` shows the layers and blocks the analyses use.
The probes and benchmarks run inside lmms-eval: `lmms_eval --model frankenstein --tasks frank_... `.
Run `frankenstein COMMAND --help` for each command's options.
"""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors (a missing or unknown option, a bad value) as the one line every other
    bad input gives, `frankenstein: error: ...`, and exit status 2 (argparse's own, after a usage block)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"frankenstein: error: {message} (see {self.prog} --help)\n")


def _command_module(name: str):
    return importlib.import_module(f"frankenstein_tasks.commands.{COMMANDS[name][0]}")


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog="frankenstein", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            _command_module(name).add_arguments(p)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("frankenstein-vlm")
    except PackageNotFoundError:
        own = "(source tree)"
    return f"frankenstein-vlm {own}; `frankenstein doctor` lists the stack's versions against the tested set"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected in PASS_THROUGH and argv[0] == selected:
        args = argparse.Namespace(command=selected, passed_args=argv[1:])
        return _run(args)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(_command_module(args.command).run(args) or 0)
    except FrankensteinError as e:
        print(f"frankenstein: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("frankenstein: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
