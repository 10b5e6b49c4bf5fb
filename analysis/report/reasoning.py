"""Report section: which decoder layers the reasoning benchmarks need (METHOD.md 1b), from zero ablation.

Accuracy with each single decoder layer ablated, per dataset (GSM8K, MATH-500, or their paper
subsets), against the unablated accuracy; with `scoring=logprob` runs, the drop of the reference
answer's log-likelihood per ablated layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.report.document import Section, Table, fmt
from analysis.report.drawing import (
    group_note,
    group_suffix,
    layout_groups,
    save_with_data,
    write_csv,
)
from analysis.report.probe_curves import (
    CURVE_HEADER,
    RoleCurves,
    curve_rows,
    gather,
    grid_figure,
)
from analysis.report.runs import RunFolder


@dataclass(frozen=True)
class CurveFigure:
    name: str
    metrics: dict[str, str]  # metric -> y label
    reference: dict[str, str]  # drawn metric -> scalar metric drawn as its reference line
    caption: str


FIGURES = {  # stage -> its figure
    "reasoning": CurveFigure(
        "reasoning_ablation",
        {"accuracy_by_layer": "accuracy, layer ablated"},
        {"accuracy_by_layer": "accuracy"},
        "Which decoder layers the model cannot reason without: accuracy per dataset when that one layer is skipped "
        "(markers, ±1 standard error band) against the unablated accuracy (thin horizontal line of the same colour "
        "and style); the deeper a curve dips below its line, the more that layer is needed.",
    ),
    "reasoning_logprob": CurveFigure(
        "reasoning_logprob",
        {"answer_logprob_drop": "log-prob drop (answer)", "answer_logprob_per_token_drop": "log-prob drop per token"},
        {},
        "How much less likely the reference answer becomes when one decoder layer is skipped: the drop of its summed "
        "(top) and per-token (bottom) log-likelihood under teacher forcing, per dataset, ±1 standard error; higher "
        "means the layer matters more, and unlike accuracy it moves even when the answer stays right.",
    ),
}


def build(runs: Sequence[RunFolder], folder: Path) -> Section:
    section = Section("reasoning", "Reasoning: zero ablation per layer")
    accuracy_sets: list[RoleCurves] = []
    for stage, spec in FIGURES.items():
        sets, notes = gather(runs, stage, list(spec.metrics), references=sorted(set(spec.reference.values())))
        section.add(*notes)
        if stage == "reasoning":
            accuracy_sets = sets
        if not sets:
            continue
        groups = layout_groups([r for r in runs if any(s.run is r for s in sets)])
        for i, group in enumerate(groups):
            mine = [s for s in sets if s.run in group]
            fig = grid_figure(mine, spec.metrics, task_title=_task_title, reference=spec.reference)
            caption = spec.caption + group_note(groups, group)
            section.add(save_with_data(fig, folder, spec.name + group_suffix(groups, i), caption, CURVE_HEADER, curve_rows(mine)))
    if accuracy_sets:
        section.add(summary_table(accuracy_sets, folder))
    return section


def summary_table(sets: Sequence[RoleCurves], folder: Path) -> Table:
    header = ["run", "role", "dataset", "n", "accuracy (unablated)", "lowest ablated accuracy", "at decoder layer", "largest drop"]
    rows = []
    for s in sets:
        for task in s.tasks:
            curve = s.curves.get(("accuracy_by_layer", task))
            ref = s.references.get(("accuracy", task))
            if curve is None or not curve.value:
                continue
            j = min(range(len(curve.value)), key=lambda k: curve.value[k])
            drop = None if ref is None else ref[0] - curve.value[j]
            rows.append([s.run.label, s.role, task, curve.n, ref[0] if ref else None, curve.value[j], curve.layers[j], drop])
    data = write_csv(folder / "reasoning_summary.csv", header, rows)
    shown = [[str(r[0]), str(r[1]), str(r[2]), fmt(r[3]), fmt(r[4]), fmt(r[5]), fmt(r[6]), fmt(r[7])] for r in rows]
    return Table(header, shown, caption="Per dataset: unablated accuracy and the single layer whose ablation hurts most.", data=data)


def _task_title(task: str) -> str:
    return task.removeprefix("frank_")
