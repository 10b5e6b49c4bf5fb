"""Report sections: does the RL update transfer (METHOD.md 3), from the transfer stage's lmms-eval outputs.

For IN, RL and the six splices (named by the blocks taken from RL): M_vis, M_v2r and M_rea with
their 95 % intervals as a table and a dot-and-interval plot, their differences from IN, and the 2x2
transition matrices (right/wrong under condition A, then B) of the two-condition tasks. The same
models' lm-eval leaderboard scores (the `leaderboard` stage) close the transfer section
(`analysis.report.leaderboard`).

The differences of the M metrics from the same run's IN are `analysis.transfer_table.difference`, the
one `frankenstein transfer` reports: paired over the items both samples logs hold, with a bootstrap
interval, or, where a log lacks the outcome records, from the two intervals (marked unpaired).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.report import leaderboard
from analysis.report.document import Note, Section, Table, fmt, fmt_interval
from analysis.report.drawing import figure_legend, save_with_data, subplots
from analysis.report.runs import RunFolder
from analysis.report.shapes import (
    CELLS,
    TRANSITION_STATS,
    TaskEstimate,
    TaskTransitions,
    estimates,
    transitions,
)
from analysis.lmms_runs import Run
from analysis.transfer_table import METRICS as M_SHORT
from analysis.transfer_table import Difference, Score, difference, item_outcomes
from analysis.transitions import Estimate
from surgery.splice import LABELS as LABEL_NAME
from surgery.splice import VARIANTS

STAGE = "transfer"
LABELS = ("in", "rl", *VARIANTS)
M_METRICS = {"m_vis": "M_vis (perception)", "m_v2r": "M_v2r (vision → reasoning)", "m_rea": "M_rea (reasoning)"}
CONDITIONS = {  # task name prefix -> (condition A, condition B) of its transitions
    "frank_general_vqa": ("image", "black image"),
    "frank_math_vqa": ("image", "black image + description"),
}


@dataclass(frozen=True)
class ModelResults:
    """What one model (IN, RL or a splice) of one run scored on the transfer tasks."""

    run: RunFolder
    label: str
    lmms: Run  # the results file they came from
    estimates: list[TaskEstimate]  # every estimate of every task (accuracy_a and accuracy_b occur in several)
    transitions: list[TaskTransitions]

    def get(self, metric: str) -> TaskEstimate | None:
        """The estimate of an M metric (each is reported by one task), or None."""
        return next((e for e in self.estimates if e.metric == metric), None)

    def of(self, task: str, metric: str) -> TaskEstimate | None:
        return next((e for e in self.estimates if (e.task, e.metric) == (task, metric)), None)


def gather(runs: Sequence[RunFolder]) -> tuple[list[ModelResults], list[str]]:
    found, missing = [], []
    for run in runs:
        got = []
        for label in run.members(STAGE, LABELS):
            lmms = run.lmms(STAGE, label)
            if lmms is not None:
                got.append(ModelResults(run, label, lmms, estimates(lmms), transitions(lmms)))
        if not got:
            missing.append(f"{run.label}: {STAGE} {run.stage_missing(STAGE) or f'not run (no results under {run.path / STAGE})'}.")
        found += got
    return found, missing


def label_name(label: str) -> str:
    return LABEL_NAME.get(label, label.replace("_", "+"))


# ---------------------------------------------------------------------------------------------
# M_vis / M_v2r / M_rea
# ---------------------------------------------------------------------------------------------

METRICS_CAPTION = (
    "Which splice keeps RL's gains: M_vis, M_v2r and M_rea (dots) with 95 % intervals (bars) for IN, RL and the six "
    "splices named by the decoder blocks taken from RL, one colour per run; the dotted vertical line is the run's IN, "
    "so a splice whose bar lies right of it carries over part of RL's improvement."
)
METRICS_HEADER = [
    "run", "recipe", "model", "task", "metric", "value", "low", "high", "n",
    "difference_vs_in", "difference_low", "difference_high", "difference_paired", "difference_n",
]


def build_metrics(runs: Sequence[RunFolder], folder: Path) -> Section:
    section = Section("transfer", "Transfer: M_vis, M_v2r, M_rea for IN, RL and the splices")
    models, missing = gather(runs)
    section.add(*(Note(m) for m in missing))
    if models:
        diffs = _differences(models)
        rows = _metric_rows(models, diffs)
        fig = _interval_figure(models)
        section.add(save_with_data(fig, folder, "transfer_metrics", METRICS_CAPTION, METRICS_HEADER, rows))
        section.add(*_metric_tables(models, diffs))
    return section.add(*leaderboard.parts(runs, folder))  # the same models on lm-eval's leaderboard tasks


Differences = dict[tuple[int, str, str], Difference]  # (model's place in `models`, task, metric) -> vs IN


def _differences(models: Sequence[ModelResults]) -> Differences:
    """Every estimate's difference from the same run's IN (IN itself and undefined ones absent), computed once.

    M metrics get the transfer table's difference (paired where both samples logs hold the outcome
    records); other estimates their point difference, without an interval.
    """
    scores: dict[tuple[int, str, str], Score] = {}

    def score(i: int, e: TaskEstimate) -> Score:  # each samples log read once per metric
        if (i, e.task, e.metric) not in scores:
            m, est = models[i], e.estimate
            items = item_outcomes(m.lmms, e.task, e.metric, required=False)
            scores[(i, e.task, e.metric)] = Score(m.label, e.metric, est.value, est.low, est.high, e.n, e.task, m.lmms.path, items)
        return scores[(i, e.task, e.metric)]

    out: Differences = {}
    for i, m in enumerate(models):
        base = next((j for j, x in enumerate(models) if x.run is m.run and x.label == "in"), None)
        if m.label == "in" or base is None:
            continue
        for e in m.estimates:
            ref = models[base].of(e.task, e.metric)
            if ref is None or ref.estimate.value is None or e.estimate.value is None:
                continue
            if e.metric in M_METRICS:
                out[(i, e.task, e.metric)] = difference(score(i, e), score(base, ref))
            else:
                out[(i, e.task, e.metric)] = Difference(e.estimate.value - ref.estimate.value, None, None, min(e.n, ref.n), False)
    return out


def _metric_rows(models: Sequence[ModelResults], diffs: Differences) -> list[list[Any]]:
    rows = []
    for i, m in enumerate(models):
        for e in sorted(m.estimates, key=lambda e: (e.task, e.metric)):
            est, d = e.estimate, diffs.get((i, e.task, e.metric))
            diff = [d.value, d.low, d.high, d.paired if d.low is not None else None, d.n] if d else [None] * 5
            rows.append([m.run.label, m.run.recipe, m.label, e.task, e.metric, est.value, est.low, est.high, e.n, *diff])
    return rows


def _metric_tables(models: Sequence[ModelResults], diffs: Differences) -> list[Table]:
    header = ["run", "model", *M_SHORT.values()]
    values, rows, unpaired = [], [], False
    for i, m in enumerate(models):
        cells = [m.get(k) for k in M_METRICS]
        values.append([m.run.label, label_name(m.label), *(fmt_interval(c.estimate.value, c.estimate.low, c.estimate.high) if c else "–" for c in cells)])
        if m.label != "in":
            shown = []
            for e in cells:
                d = diffs.get((i, e.task, e.metric)) if e else None
                unpaired |= d is not None and not d.paired
                shown.append("–" if d is None else _signed(d.value) + (f" [{fmt(d.low)}, {fmt(d.high)}]" if d.low is not None else "") + ("" if d.paired else " †"))
            rows.append([m.run.label, label_name(m.label), *shown])
    note = " († unpaired: from the two intervals, the samples logs hold no outcome records)." if unpaired else "."
    return [
        Table(header, values, caption="Value [95 % interval] per model; n per task in transfer_metrics.csv."),
        Table(["run", "model", *(f"{v} − IN" for v in M_SHORT.values())], rows,
              caption="Difference from the same run's IN [95 % interval], paired over the items both runs answered" + note),
    ]


def _signed(value: float | None) -> str:
    return "–" if value is None else ("+" if value > 0 else "") + fmt(value)


def _interval_figure(models: Sequence[ModelResults]) -> Any:
    runs = list(dict.fromkeys(m.run for m in models))
    labels = [lab for lab in LABELS if any(m.label == lab for m in models)] + sorted({m.label for m in models} - set(LABELS))
    metrics = [k for k in M_METRICS if any(m.get(k) for m in models)] or list(M_METRICS)
    fig, axes = subplots(1, len(metrics), width=4.2, height=0.42 * len(labels) + 1.4, sharey=True)
    step = 0.6 / max(len(runs), 1)
    for ax, metric in zip(axes[0], metrics):
        for r, run in enumerate(runs):
            offset = (r - (len(runs) - 1) / 2) * step
            for y, label in enumerate(labels):
                m = next((x for x in models if x.run is run and x.label == label), None)
                e = m.get(metric) if m else None
                if e is None or e.estimate.value is None:
                    continue
                _dot(ax, e.estimate, y + offset, run.color, run.label)
            base = next((x.get(metric) for x in models if x.run is run and x.label == "in"), None)
            if base is not None and base.estimate.value is not None:
                ax.axvline(base.estimate.value, color=run.color, ls=":", lw=1)
        ax.set_title(M_METRICS[metric], fontsize=10)
        ax.set_xlabel("share of items", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0, 0].set_yticks(range(len(labels)), [label_name(lab) for lab in labels])
    axes[0, 0].set_ylim(len(labels) - 0.5, -0.5)  # IN at the top
    figure_legend(fig, axes[0])
    return fig


def _dot(ax: Any, est: Estimate, y: float, color: str, label: str) -> None:
    if est.low is not None and est.high is not None:
        ax.errorbar(est.value, y, xerr=[[est.value - est.low], [est.high - est.value]], fmt="o", ms=5, color=color, capsize=3, lw=1.3, label=label)
    else:
        ax.plot(est.value, y, "o", ms=5, color=color, label=label)


# ---------------------------------------------------------------------------------------------
# Transition matrices
# ---------------------------------------------------------------------------------------------

TRANSITIONS_CAPTION = (
    "How items move between the two conditions of each task: for every model the 2x2 counts of items right (T) or "
    "wrong (F) under condition A (rows) and condition B (columns), darker = more items, with the share of all items "
    "in brackets; for general-vqa TF / n is M_vis (right only with the image), for math-targeted-vqa TT / n is M_v2r "
    "(right with the image and with its description instead)."
)
TRANSITIONS_HEADER = ["run", "recipe", "model", "task", "n", *CELLS, *(f"{s}{part}" for s in TRANSITION_STATS for part in ("", "_low", "_high"))]


def build_transitions(runs: Sequence[RunFolder], folder: Path) -> Section:
    section = Section("transitions", "Transfer: transition matrices between conditions")
    models, missing = gather(runs)
    section.add(*(Note(m) for m in missing))
    with_counts = [m for m in models if m.transitions]
    for run in runs:
        if any(m.run is run for m in models) and not any(m.run is run for m in with_counts):
            section.add(Note(f"{run.label}: the transfer results hold no transition counts."))
    for run in dict.fromkeys(m.run for m in with_counts):
        mine = [m for m in with_counts if m.run is run]
        rows = [[m.run.label, m.run.recipe, m.label, t.task, t.n, *(t.cells[c] for c in CELLS), *_stat_cells(t)] for m in mine for t in m.transitions]
        caption = TRANSITIONS_CAPTION if len(runs) == 1 else f"{run.label}: {TRANSITIONS_CAPTION}"
        name = "transitions" if len(runs) == 1 else f"transitions_{runs.index(run) + 1}"
        section.add(save_with_data(_matrix_figure(mine), folder, name, caption, TRANSITIONS_HEADER, rows))
    if with_counts:
        section.add(_transition_table(with_counts))
    return section


def _stat_cells(t: TaskTransitions) -> list[float | None]:
    return [getattr(t.stats[s], part) for s in TRANSITION_STATS for part in ("value", "low", "high")]


def _conditions(task: str) -> tuple[str, str]:
    return next((c for prefix, c in CONDITIONS.items() if task.startswith(prefix)), ("condition A", "condition B"))


def _matrix_figure(models: Sequence[ModelResults], per_row: int = 4) -> Any:
    """Per task, the models' 2x2 matrices, `per_row` to a row so the counts stay legible."""
    tasks = sorted({t.task for m in models for t in m.transitions})
    lines = -(-len(models) // per_row)
    cols = min(per_row, len(models))
    fig, axes = subplots(len(tasks) * lines, cols, width=2.3, height=2.3)
    for ax in axes.ravel():
        ax.axis("off")
    for r, task in enumerate(tasks):
        a, b = _conditions(task)
        for k, m in enumerate(models):
            ax = axes[r * lines + k // per_row, k % per_row]
            t = next((x for x in m.transitions if x.task == task), None)
            if t is None:
                continue
            ax.axis("on")
            _matrix(ax, t)
            net = t.stats["net_gain"].value
            net = t.cells["FT"] - t.cells["TF"] if net is None else net
            ax.set_title(f"{task.removeprefix('frank_')}: {label_name(m.label)}  (net {net:+g})", fontsize=8)
            ax.set_ylabel(f"A: {a}", fontsize=7)
            ax.set_xlabel(f"B: {b}", fontsize=7)
    return fig


def _matrix(ax: Any, t: TaskTransitions) -> None:
    grid = [[t.cells["TT"], t.cells["TF"]], [t.cells["FT"], t.cells["FF"]]]
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=max(t.n, 1))
    for i in range(2):
        for j in range(2):
            count = grid[i][j]
            share = f"({count / t.n:.0%})" if t.n else ""
            ax.text(j, i, f"{count}\n{share}", ha="center", va="center", fontsize=8, color="white" if count > 0.6 * t.n else "black")
    ax.set_xticks([0, 1], ["T", "F"], fontsize=8)
    ax.set_yticks([0, 1], ["T", "F"], fontsize=8)


def _transition_table(models: Sequence[ModelResults]) -> Table:
    header = ["run", "model", "task", "n", "TT", "TF", "FT", "FF", "net gain", "side-effect rate", "lift rate"]
    rows = []
    for m in models:
        for t in m.transitions:
            stats = [fmt_interval(t.stats[s].value, t.stats[s].low, t.stats[s].high, digits=0 if s == "net_gain" else 3) for s in TRANSITION_STATS]
            rows.append([m.run.label, label_name(m.label), t.task, str(t.n), *(str(t.cells[c]) for c in CELLS), *stats])
    return Table(header, rows, caption="Counts per cell; net gain FT − TF, side-effect rate TF / (TT + TF), lift rate FT / (FF + FT), with 95 % intervals.")
