"""frankenstein demo: `frankenstein run` on a built-in config, on the trained model organism."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from frankenstein_tasks.run.stages import stages_help

    stages = stages_help()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = (
        "Take the tiny Qwen2.5-VL Base -> IN -> RL model organism that ships with the package (it really\n"
        "counts and computes; expanded under $FRANKENSTEIN_CACHE on first use), write its held-out\n"
        "evaluation sets in the hub datasets' schemas, and run every stage of `frankenstein run` on it offline. Writes OUT/demo.yaml\n"
        "(rerun or edit it with `frankenstein run`), one folder per stage, and the report OUT/report/.\n"
        "With --models TRIO, the same on any Base / IN / RL trio folder (base/, in/, rl/) instead of the\n"
        "organism, e.g. a tiny Qwen3-VL or InternVL from `frankenstein make-tiny OUT --arch qwen3_vl`.\n"
        "Stages:\n" + stages
    )
    p.add_argument("--out", default="frankenstein_demo", help="output folder (default ./frankenstein_demo)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages")
    p.add_argument("--organism", default="default", help="organism setting: default, or test (smaller, for CI)")
    p.add_argument("--models", metavar="TRIO", help="a trio folder (base/, in/, rl/) to analyse instead of the organism")
    p.add_argument("--items", type=int, default=None, metavar="N", help="items per evaluation set (default 40)")


def run(args: argparse.Namespace) -> int:
    from frankenstein_tasks.run.harness import OFFLINE_ENV

    os.environ.update(OFFLINE_ENV)  # offline before datasets / huggingface_hub read their settings at import
    from frankenstein_tasks.demo import run_demo
    from frankenstein_tasks.run.stages import STAGES
    from surgery.errors import FrankensteinError
    from surgery.loading import resolve_device

    unknown = sorted(set(args.only or []) - set(STAGES))
    if unknown:
        raise FrankensteinError(f"unknown stage {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    if args.items is not None and args.items < 1:
        raise FrankensteinError(f"--items must be at least 1, got {args.items}")
    if Path(args.out).exists() and not Path(args.out).is_dir():  # before the organism trains
        raise FrankensteinError(f"--out {args.out} is a file; the demo writes a folder")
    from frankenstein_tasks.demo import DEMO_ITEMS

    out = run_demo(Path(args.out), device=resolve_device(args.device), organism=args.organism, stages=args.only,
                   trio=Path(args.models) if args.models else None, items=args.items or DEMO_ITEMS)
    print(f"demo finished: report in {out / 'report' / 'report.html'}")
    return 0
