"""frankenstein demo: the pipeline on embedded tiny models."""

from __future__ import annotations

import argparse
from pathlib import Path



def add_arguments(p: argparse.ArgumentParser) -> None:
    from frankenstein_tasks.demo import STAGES

    stages = "\n".join(f"  {s.name:<14} {s.description}" for s in STAGES)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = (
        "Build a tiny Base / IN / RL trio offline and run every stage of the analysis on it, writing "
        "results under --out. Stages:\n" + stages
    )
    p.add_argument("--out", default="frankenstein_demo", help="output folder (default ./frankenstein_demo)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages (the tiny models are always built)")


def run(args: argparse.Namespace) -> int:
    from frankenstein_tasks.demo import STAGES, run_demo
    from surgery.errors import FrankensteinError
    from surgery.loading import resolve_device

    known = {s.name for s in STAGES}
    unknown = sorted(set(args.only or []) - known)
    if unknown:
        raise FrankensteinError(f"unknown stage {', '.join(unknown)}; stages: {', '.join(sorted(known))}")
    summary = run_demo(Path(args.out), device=resolve_device(args.device), only=args.only)
    print(f"demo finished: {len(summary['stages'])} stages ran; summary in {Path(args.out) / 'demo.json'}")
    return 0
