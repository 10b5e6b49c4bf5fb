"""frankenstein transfer RESULTS...: the transfer table of IN, RL and the splices, and the attention shift."""

from __future__ import annotations

import argparse
from pathlib import Path

from frankenstein_tasks.commands._options import add_cuts, cuts_of
from surgery.errors import FrankensteinError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Read lmms-eval runs of the frank_transfer tasks (frank_general_vqa, frank_math_vqa, "
        "frank_math500_rea or their _paper variants) for IN, RL and the Frankenstein splices, and write "
        "transfer_table.csv / .md / .png: M_vis, M_v2r and M_rea per model with 95% intervals, and each "
        "model's difference from IN (paired over items when the runs were logged with --log_samples). "
        "Which model a run evaluated comes from its results file: splice=VARIANT (with in=, rl=) in its "
        "model_args, or pretrained=X compared with those in=/rl= (or --in/--rl), or X's "
        "mergekit_config.yml. Runs of frank_attention_shift with probe=attention for IN and RL also give "
        "attention_shift.csv / .png: RL - IN attention mass on visual tokens per decoder layer."
    )
    p.add_argument("results", nargs="*", metavar="RESULTS",
                   help="lmms-eval *_results.json files or --output_path folders (searched for every run)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--label", action="append", default=[], metavar="NAME=RESULTS",
                   help="say which model a run evaluated (NAME: IN, RL, a variant, or any label); repeatable")
    p.add_argument("--in", dest="in_model", metavar="IN", help="the IN checkpoint, when no splice run names it")
    p.add_argument("--rl", dest="rl_model", metavar="RL", help="the RL checkpoint, when no splice run names it")
    add_cuts(p, "for identifying merged checkpoints (default: the splice runs' cuts, else thirds)")


def _labels(pairs: list[str]) -> tuple[dict[Path, str], list[Path]]:
    """--label NAME=RESULTS: results file -> name, and the paths given there (runs to read as well)."""
    from analysis.lmms_runs import find_runs

    labels: dict[Path, str] = {}
    paths = []
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise FrankensteinError(f"--label {pair!r} is not NAME=RESULTS")
        paths.append(Path(path))
        for run in find_runs([path]):
            labels[run.path.resolve()] = name.strip()
    return labels, paths


def run(args: argparse.Namespace) -> int:
    from analysis.attention_shift import (
        attention_shift,
        has_attention_curve,
        write_attention_shift,
    )
    from analysis.lmms_runs import find_runs
    from analysis.model_identity import IN, RL, identify_runs
    from analysis.transfer_table import METRICS, transfer_table, write_transfer_table

    labels, labelled = _labels(args.label)
    if not args.results and not labelled:
        raise FrankensteinError("name at least one lmms-eval results file or output folder")
    runs = find_runs([*args.results, *labelled])
    identities = identify_runs(runs, labels=labels, in_model=args.in_model, rl_model=args.rl_model, cuts=cuts_of(args))
    for r in runs:
        print(f"{identities[r.path].label:<11} {r.path}  ({identities[r.path].reason})")
    out = Path(args.out)
    holds_metrics = [r for r in runs if any(f"{m},none" in v for v in r.results.values() for m in METRICS)]
    attention: dict[str, object] = {}
    for r in (r for r in runs if has_attention_curve(r)):
        label = identities[r.path].label
        if label in attention:
            raise FrankensteinError(f"two attention runs of {label}: {attention[label].path} and {r.path}; pass one")
        attention[label] = r
    if not holds_metrics and not (IN in attention and RL in attention):
        raise FrankensteinError("the runs hold no transfer metric and no IN and RL attention curves; nothing to tabulate")
    written = {}
    if holds_metrics:
        table = transfer_table(holds_metrics, identities)
        written.update(write_transfer_table(table, out))
        print(Path(written["markdown"]).read_text(encoding="utf-8"))
    if IN in attention and RL in attention:
        shift = attention_shift(attention[IN], attention[RL])
        written.update({f"attention_{k}": v for k, v in write_attention_shift(shift, out).items()})
        top = max(range(len(shift.layers)), key=lambda j: shift.shift[j].value)
        print(f"attention shift RL - IN over {shift.n} items: largest at layer {shift.layers[top]} "
              f"({shift.shift[top].value:+.4f} [{shift.shift[top].low:+.4f}, {shift.shift[top].high:+.4f}])")
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return 0
