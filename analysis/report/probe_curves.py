"""Per-layer probe curves of several runs and roles, gathered and drawn as one grid (metrics x tasks).

The vision-swap, reasoning-ablation and attention sections all show lmms-eval curves over decoder
layers, one line per run (colour) and role (line style); this module gathers them from the run
folders, writes their CSV rows (with the unified index from the run's `Layout`) and draws the grid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.delta.schema import ROLE_LABEL
from analysis.harness import Curve
from analysis.report.document import Note
from analysis.report.drawing import (
    ROLE_STYLE,
    decoder_xlabel,
    draw_curve,
    figure_legend,
    layer_panel,
    subplots,
)
from analysis.lmms_runs import Run
from analysis.report.runs import RunFolder
from analysis.report.shapes import curves, scalar

CURVE_HEADER = ["run", "recipe", "role", "task", "metric", "layer", "unified_index", "value", "stderr", "n"]


@dataclass(frozen=True)
class RoleCurves:
    """Every curve (and reference number) one role of one run produced in one stage."""

    run: RunFolder
    role: str
    lmms: Run  # the results file they came from
    curves: dict[tuple[str, str], Curve]  # (metric, task) -> curve
    references: dict[tuple[str, str], tuple[float, float | None, int | None]]  # (metric, task) -> value, stderr, n

    @property
    def name(self) -> str:
        return f"{self.run.label} {ROLE_LABEL.get(self.role, self.role)}"

    @property
    def tasks(self) -> list[str]:
        return sorted({t for _, t in self.curves})


def gather(
    runs: Sequence[RunFolder], stage: str, metrics: Sequence[str], *, references: Sequence[str] = ()
) -> tuple[list[RoleCurves], list[Note]]:
    """Curves of `metrics` (and scalar `references`) for every role of every run; "not run" notes for the rest."""
    found, notes = [], []
    for run in runs:
        why = run.stage_missing(stage)
        roles = run.members(stage)
        got = []
        for role in roles:
            lmms = run.lmms(stage, role)
            if lmms is None:
                continue
            by_task = {(m, t): c for m in metrics for t, c in curves(lmms, m).items()}
            refs = {}
            for metric in references:
                for task in {t for _, t in by_task}:
                    value, stderr = scalar(lmms, task, metric)
                    if value is not None:
                        n = ((lmms.data.get("n-samples") or {}).get(task) or {}).get("effective")
                        refs[(metric, task)] = (value, stderr, n)
            if by_task:
                got.append(RoleCurves(run, role, lmms, by_task, refs))
        if not got:
            notes.append(Note(f"{run.label}: {stage} {why or f'not run (no curves under {run.path / stage})'}."))
        found += got
    return found, notes


def curve_rows(sets: Sequence[RoleCurves]) -> list[list[Any]]:
    """CSV rows: every curve point at its layer and unified index, then each reference number (no layer)."""
    rows = []
    for s in sets:
        axis = s.run.axis
        for (metric, task), c in sorted(s.curves.items()):
            for layer, value, stderr in zip(c.layers, c.value, c.stderr):
                rows.append([s.run.label, s.run.recipe, s.role, task, metric, layer, axis.decoder_layer(layer), value, stderr, c.n])
        for (metric, task), (value, stderr, n) in sorted(s.references.items()):
            rows.append([s.run.label, s.run.recipe, s.role, task, metric, None, None, value, stderr, n])
    return rows


def grid_figure(
    sets: Sequence[RoleCurves],
    metrics: Mapping[str, str],
    *,
    task_title: Callable[[str], str] = str,
    reference: Mapping[str, str] | None = None,
    tasks_in_rows: bool = False,
) -> Any:
    """One panel per metric (name -> y label) and task, one line per run and role with a +-1 stderr band.

    Metrics are rows and tasks columns, or the other way round with `tasks_in_rows` (for many tasks, so
    the figure stays readable at the report's width). `reference` maps a drawn metric to the scalar
    metric drawn as a thin horizontal line in its panels.
    """
    axis = sets[0].run.axis.decoder_only()
    tasks = sorted({t for s in sets for t in s.tasks})
    metrics = {m: label for m, label in metrics.items() if any(m == k[0] for s in sets for k in s.curves)}
    cells = [[(m, t) for m in metrics] for t in tasks] if tasks_in_rows else [[(m, t) for t in tasks] for m in metrics]
    fig, axes = subplots(len(cells), len(cells[0]), width=5.0, height=2.8, sharex=True)
    for r, row in enumerate(cells):
        for c, (metric, task) in enumerate(row):
            ax = axes[r, c]
            layer_panel(ax, axis, ylabel=metrics[metric], title=task_title(task))
            for s in sets:
                curve = s.curves.get((metric, task))
                if curve is None:
                    continue
                style = ROLE_STYLE.get(s.role, "-.")
                x = [axis.decoder_layer(layer) for layer in curve.layers]
                draw_curve(ax, x, curve.value, curve.stderr, color=s.run.color, style=style, label=s.name)
                ref = s.references.get(((reference or {}).get(metric, ""), task))
                if ref is not None:
                    ax.axhline(ref[0], color=s.run.color, ls=style, lw=0.9, alpha=0.6, zorder=2)
            if r == len(cells) - 1:
                decoder_xlabel(ax)
    figure_legend(fig, axes.ravel())
    return fig
