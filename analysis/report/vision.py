"""Report section: which decoder layers carry the visual functions (METHOD.md 1a), from the visual-token swap.

Per vision task (counting, OCR, grounding, recognition) the change rate and the source-adoption rate
per swapped layer L, for each role the stage probed (RL, and IN when it was run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from analysis.lmms_runs import Run
from analysis.report.runs import RunFolder

STAGE = "vision_swap"
METRICS = {"change_rate": "change rate", "source_adoption_rate": "source-adoption rate"}
SWAPPED = {  # swap_mode of the frankenstein model -> which layers a point at L swapped (METHOD.md 1a)
    "from": "layer L and every later layer",
    "only": "layer L alone",
    "window": "a window of layers starting at L",
}
CAPTION = (
    "Where each visual function is read from the image: per vision task (rows), the share of answers that change "
    "(left) and that match the source image (right) when the visual tokens of {swapped} are swapped for another "
    "image's, with ±1 standard error bands; where a curve falls from high to low, the swap stops mattering, i.e. the "
    "model has already read that function from the image."
)


def build(runs: Sequence[RunFolder], folder: Path) -> Section:
    section = Section("vision", "Vision: visual-token swap per layer")
    sets, notes = gather(runs, STAGE, list(METRICS), references=["accuracy"])
    section.add(*notes)
    if not sets:
        return section
    groups = layout_groups([r for r in runs if any(s.run is r for s in sets)])
    for i, group in enumerate(groups):
        mine = [s for s in sets if s.run in group]
        fig = grid_figure(mine, METRICS, task_title=_task_title, tasks_in_rows=True)
        caption = CAPTION.format(swapped=_swapped(mine)) + group_note(groups, group)
        section.add(save_with_data(fig, folder, "vision_swap" + group_suffix(groups, i), caption, CURVE_HEADER, curve_rows(mine)))
    return section.add(summary_table(sets, folder))


def summary_table(sets: Sequence[RoleCurves], folder: Path) -> Table:
    header = ["run", "role", "task", "n", "accuracy (no swap)", "change rate peak", "at decoder layer", "first decoder layer below half peak"]
    rows = []
    for s in sets:
        for task in s.tasks:
            curve = s.curves.get(("change_rate", task))
            accuracy = s.references.get(("accuracy", task))
            peak, at, half = _peak(curve) if curve else (None, None, None)
            rows.append([s.run.label, s.role, task, curve.n if curve else None, accuracy[0] if accuracy else None, peak, at, half])
    data = write_csv(folder / "vision_summary.csv", header, rows)
    shown = [[*(str(v) for v in r[:3]), fmt(r[3]), fmt(r[4]), fmt(r[5]), fmt(r[6]), fmt(r[7])] for r in rows]
    return Table(header, shown, caption="Per task: unswapped accuracy, the largest change rate and the first decoder layer after it where the change rate is below half of it.", data=data)


def _peak(curve: Any) -> tuple[float | None, int | None, int | None]:
    if not curve.value:
        return None, None, None
    j = max(range(len(curve.value)), key=lambda k: curve.value[k])
    peak = curve.value[j]
    half = next((curve.layers[k] for k in range(j + 1, len(curve.value)) if curve.value[k] < peak / 2), None)
    return peak, curve.layers[j], half


def swap_mode(run: Run) -> str:
    """The swap mode the probe ran with, from the results file's model_args (the model's default: from)."""
    return str(run.model_args.get("swap_mode", "from"))


def _swapped(sets: Sequence[RoleCurves]) -> str:
    modes = {s.run.label: swap_mode(s.lmms) for s in sets}
    if len(set(modes.values())) == 1:
        mode = next(iter(modes.values()))
        return SWAPPED.get(mode, f"layer L (swap mode {mode})")
    return "layer L (swap mode per run: " + ", ".join(f"{k} {v}" for k, v in modes.items()) + ")"


def _task_title(task: str) -> str:
    return task.removeprefix("frank_vision_")
