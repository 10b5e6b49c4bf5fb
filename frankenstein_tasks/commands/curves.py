"""frankenstein curves RESULTS: per-layer curves of a probe run as a table and plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from frankenstein_tasks.commands._options import add_cuts, cuts_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Read every per-layer curve (change_rate, source_adoption_rate, ...) from an lmms-eval results "
        "file or output folder written with --model frankenstein and a probe, and write curves.csv (task, "
        "metric, layer, unified index, value, stderr, n) and one PNG per metric. With --model the plots "
        "mark that model's early / mid / late blocks."
    )
    p.add_argument("results", help="an lmms-eval *_results.json, or the --output_path folder holding one")
    p.add_argument("-o", "--out", help="output folder (default: a 'curves' folder next to the results file)")
    p.add_argument("--model", help="checkpoint folder or hub id of the probed model, for block marks")
    add_cuts(p, "for the block marks")


def run(args: argparse.Namespace) -> int:
    from analysis.harness import read_curves, results_file, write_curves
    from analysis.plots import LayerAxis

    source = results_file(args.results)
    axis = None
    if args.model:
        from surgery.arch import layout_of_checkpoint

        axis = LayerAxis.from_layout(layout_of_checkpoint(args.model), cuts_of(args))
    out = Path(args.out) if args.out else source.parent / "curves"
    written = write_curves(source, out, axis)
    for c in read_curves(source):
        peak = max(range(len(c.value)), key=lambda j: c.value[j])
        print(f"{c.task:<28} {c.metric:<22} n={c.n:<4} peak {c.value[peak]:.3f} at layer {c.layers[peak]}")
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return 0
