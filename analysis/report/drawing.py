"""What every report figure shares: one colour per run, one line style per role, layout groups, and
the rule that a figure is saved together with the CSV of every number it draws.

Runs overlay in one figure when their models have the same layout (same layer counts and block
cuts, so the shaded blocks are right for all of them); runs of different layouts (a 3B and a 7B
recipe) get one figure each. Axes, sections and blocks come from `analysis.plots` (`LayerAxis`,
`shade_sections`), which asks the `Layout`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from analysis.plots import LayerAxis, pyplot, save_figure, shade_sections
from analysis.report.document import Figure
from analysis.report.runs import RunFolder
from surgery.atomic import atomic_path

# The model a curve belongs to, by line style (colour is the run's).
ROLE_STYLE = {"in": "--", "rl": "-", "base": ":"}
DELTA_STYLE = {"in": "--", "rl": "-"}  # dIN dashed, dRL solid
DELTA_NAME = {"in": "dIN", "rl": "dRL"}


def layout_groups(runs: Sequence[RunFolder]) -> list[list[RunFolder]]:
    """Runs grouped by identical layout and cuts, in the order they were given."""
    groups: dict[str, list[RunFolder]] = {}
    for run in runs:
        groups.setdefault(json.dumps(run.manifest.layout, sort_keys=True), []).append(run)
    return list(groups.values())


def group_suffix(groups: Sequence[Sequence[RunFolder]], i: int) -> str:
    """File-name suffix of layout group i: empty when there is one group."""
    return "" if len(groups) == 1 else f"_{i + 1}"


def group_note(groups: Sequence[Sequence[RunFolder]], group: Sequence[RunFolder]) -> str:
    """Caption tail naming the group's layout when runs were split by layout."""
    if len(groups) == 1:
        return ""
    layout = group[0].axis.layout
    return f" (models with {layout.num_layers} decoder layers: {', '.join(r.label for r in group)})"


def draw_curve(
    ax: Any,
    x: Sequence[float],
    value: Sequence[float | None],
    stderr: Sequence[float | None] | None,
    *,
    color: str,
    style: str = "-",
    label: str | None = None,
    band: float = 1.0,
) -> None:
    """A line with markers and a +-band*stderr band; points without a value are left out."""
    pts = [(xi, v, (s if stderr is not None else None)) for xi, v, s in zip(x, value, stderr or [None] * len(x)) if v is not None]
    if not pts:
        return
    xs, ys, es = zip(*pts)
    ax.plot(xs, ys, ls=style, marker="o", ms=3, lw=1.4, color=color, label=label, zorder=3)
    if all(e is not None for e in es):
        ax.fill_between(xs, [y - band * e for y, e in zip(ys, es)], [y + band * e for y, e in zip(ys, es)], color=color, alpha=0.15, lw=0, zorder=2)


def layer_panel(ax: Any, axis: LayerAxis, *, ylabel: str, title: str | None = None) -> None:
    """A panel over the axis' unified layers: sections shaded, blocks marked, labels set."""
    shade_sections(ax, axis)
    ax.set_ylabel(ylabel, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10, pad=14)
    ax.grid(True, axis="y", alpha=0.3)
    ax.tick_params(labelsize=8)


def decoder_xlabel(ax: Any) -> None:
    ax.set_xlabel("unified layer index (decoder layer i at i + 1)", fontsize=9)


def figure_legend(fig: Any, axes: Iterable[Any], *, ncol: int = 4) -> None:
    """One legend for the whole figure, below it, with each label once."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=min(ncol, len(seen)), fontsize=8, frameon=False)


def subplots(rows: int, cols: int, *, width: float, height: float, **kwargs: Any) -> tuple[Any, Any]:
    plt = pyplot()
    # Constrained layout keeps titles, section labels and the legend below the axes from overlapping.
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained", **kwargs)
    return fig, axes


def save_with_data(fig: Any, folder: Path, name: str, caption: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Figure:
    """Save `name`.png and `name`.csv (the numbers drawn) side by side; the report's figure block."""
    png = save_figure(fig, folder / f"{name}.png")
    data = write_csv(folder / f"{name}.csv", header, rows)
    return Figure(png, caption, data)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV written atomically; None is an empty cell."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    return path
