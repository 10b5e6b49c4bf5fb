"""frankenstein report RUN... [--out REPORT]: one HTML report and a Markdown summary from run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from surgery.errors import FrankensteinError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Read the result files of one or more run folders written by `frankenstein run` (run.json, "
        "delta/delta.json and the lmms-eval results of each stage) and write REPORT/report.html (one "
        "self-contained file: images inlined, no network, no script), REPORT/report.md (the key numbers as "
        "tables) and REPORT/figures/ (every figure as PNG next to a CSV of the numbers it draws). Several run "
        "folders overlay in the same figures, one colour per recipe. Stages that did not run show as "
        "'not run'. Nothing is recomputed and no model is loaded."
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s), each holding a run.json")
    p.add_argument(
        "-o", "--out", metavar="REPORT",
        help="report folder, replaced if it holds an earlier report (default: RUN/report for a single run; "
        "required with several)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    if args.out is None and len(args.runs) > 1:
        raise FrankensteinError(f"{len(args.runs)} run folders need --out REPORT (where the combined report goes)")
    out = Path(args.out) if args.out else Path(args.runs[0]) / "report"
    files = write_report(args.runs, out, progress=not args.quiet)
    print(f"wrote {files.html} and {files.markdown} ({len(files.figures)} figures, {len(files.data)} CSV files)")
    return 0
