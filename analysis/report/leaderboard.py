"""Report part: IN, RL and the six splices on lm-eval leaderboard tasks (the `leaderboard` stage).

Shown inside the transfer section: a splice's M metrics say whether RL's visual-reasoning gain
carries over; its leaderboard scores say what the splice costs or gains on the benchmarks everyone
reports. Each model's scores are read from its lm-eval results file (`RUN/leaderboard/<label>/`):
the headline rows are the tasks and groups the run named (a group without scores of its own is shown
by its members), every metric with lm-eval's standard error; the CSV holds every row of every task.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.lmms_runs import Run
from analysis.report.document import Block, Note, Table, fmt
from analysis.report.drawing import figure_legend, save_with_data, subplots
from analysis.report.runs import RunFolder
from surgery.splice import LABELS as LABEL_NAME
from surgery.splice import VARIANTS

STAGE = "leaderboard"
LABELS = ("in", "rl", *VARIANTS)
MAX_PANELS = 8
CAPTION = (
    "IN, RL and the six splices (named by the decoder blocks taken from RL) on the lm-eval tasks of the leaderboard "
    "stage: each headline score (dot) with ±1.96 standard errors (bars), one colour per run; the dotted line is the "
    "run's IN, so a splice right of it scores higher than IN on that benchmark."
)
HEADER = ["run", "recipe", "model", "task", "metric", "value", "stderr", "headline"]


def parts(runs: Sequence[RunFolder], folder: Path) -> list[Block]:
    """The leaderboard figure and table; a note for a run whose stage failed or left no results."""
    found: list[tuple[RunFolder, str, Run]] = []
    notes: list[Block] = []
    for run in runs:
        got = [(run, label, r) for label in run.members(STAGE, LABELS) if (r := run.lm_eval(STAGE, label)) is not None]
        why = run.stage_missing(STAGE)
        if not got and why != "not run":  # a stage off by default says nothing when it was not asked for
            notes.append(Note(f"{run.label}: lm-eval leaderboard tasks {why or f'have no results under {run.path / STAGE}'}."))
        found += got
    if not found:
        return notes
    heads = list(dict.fromkeys(h for _, _, r in found for h in headline(r)))
    rows = [[run.label, run.recipe, label, task, metric, value, stderr, (task, metric) in heads]
            for run, label, r in found for task, metric, value, stderr in scores(r)]
    figure = save_with_data(_figure(found, heads[:MAX_PANELS]), folder, "leaderboard", CAPTION, HEADER, rows)
    return [*notes, figure, _table(found, heads)]


def headline(run: Run) -> list[tuple[str, str]]:
    """(task, metric) of the tasks the run named: top-level entries, a group without scores replaced by its members."""
    members = {m for ms in (run.data.get("group_subtasks") or {}).values() for m in ms}
    out: list[tuple[str, str]] = []

    def add(task: str) -> None:
        own = [(task, metric) for t, metric, _, _ in scores(run, [task])]
        if own:
            out.extend(own)
        else:
            for member in (run.data.get("group_subtasks") or {}).get(task, []):
                add(member)

    for task in run.results:
        if task not in members:
            add(task)
    return out


def scores(run: Run, tasks: Sequence[str] | None = None) -> list[tuple[str, str, float, float | None]]:
    """(task, metric, value, stderr) of every numeric metric of `tasks` (default: all)."""
    out = []
    for task in tasks if tasks is not None else run.results:
        values = run.results.get(task, {})
        for key, value in values.items():
            name, comma, flt = key.partition(",")  # "<metric>,<filter>"; other keys (sample_len, alias) are not scores
            if not comma or "_stderr" in name or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            stderr = values.get(f"{name}_stderr,{flt}")
            metric = name if flt in ("", "none") else key
            out.append((task, metric, float(value), float(stderr) if isinstance(stderr, (int, float)) else None))
    return out


def _label(label: str) -> str:
    return LABEL_NAME.get(label, label.replace("_", "+"))


def _table(found: Sequence[tuple[RunFolder, str, Run]], heads: Sequence[tuple[str, str]]) -> Table:
    labels = [lab for lab in LABELS if any(x == lab for _, x, _ in found)]
    runs = list(dict.fromkeys(run for run, _, _ in found))
    rows = []
    for run in runs:
        by_label = {label: {(t, m): (v, e) for t, m, v, e in scores(r)} for rr, label, r in found if rr is run}
        for task, metric in heads:
            cells = []
            for label in labels:
                got = by_label.get(label, {}).get((task, metric))
                cells.append("–" if got is None else fmt(got[0]) + (f" ± {fmt(got[1])}" if got[1] is not None else ""))
            rows.append([run.label, task, metric, *cells])
    return Table(["run", "task", "metric", *(_label(lab) for lab in labels)], rows,
                 caption="lm-eval's score ± its standard error per model; every task and metric in leaderboard.csv.")


def _figure(found: Sequence[tuple[RunFolder, str, Run]], heads: Sequence[tuple[str, str]]) -> Any:
    labels = [lab for lab in LABELS if any(x == lab for _, x, _ in found)]
    runs = list(dict.fromkeys(run for run, _, _ in found))
    fig, axes = subplots(1, len(heads), width=3.6, height=0.42 * len(labels) + 1.4, sharey=True)
    step = 0.6 / max(len(runs), 1)
    for ax, (task, metric) in zip(axes[0], heads):
        for k, run in enumerate(runs):
            offset = (k - (len(runs) - 1) / 2) * step
            for y, label in enumerate(labels):
                r = next((r for rr, x, r in found if rr is run and x == label), None)
                got = next(((v, e) for t, m, v, e in scores(r, [task]) if m == metric), None) if r else None
                if got is None:
                    continue
                value, stderr = got
                ax.errorbar(value, y + offset, xerr=None if stderr is None else 1.96 * stderr, fmt="o", ms=5,
                            color=run.color, capsize=3, lw=1.3, label=run.label)
                if label == "in":
                    ax.axvline(value, color=run.color, ls=":", lw=1)
        ax.set_title(f"{task}\n{metric}", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0, 0].set_yticks(range(len(labels)), [_label(lab) for lab in labels])
    axes[0, 0].set_ylim(len(labels) - 0.5, -0.5)  # IN at the top
    figure_legend(fig, axes[0])
    return fig
