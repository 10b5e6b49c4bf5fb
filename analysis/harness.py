"""Harness results -> per-layer curves, a table and a plot.

lmms-eval writes one `*_results.json` per run. Every metric whose value is a per-layer curve (the
shape `frankenstein_tasks.contract.aggregate_curve` produces: `{"layers", "value", "stderr", "n"}`)
is read into a `Curve`; `write_curves` turns a run's curves into `curves.csv` (one row per task,
metric and layer) and one PNG per metric over the unified layer index (decoder layer i -> i + 1,
vision / projector / LLM ranges shaded, bootstrap standard errors as a band).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from analysis.plots import LayerAxis, pyplot, plot_layer_curves, save_figure
from surgery.atomic import write_text
from surgery.errors import FrankensteinError


@dataclass(frozen=True)
class Curve:
    task: str
    metric: str
    layers: list[int]  # decoder layer indices
    value: list[float]
    stderr: list[float]
    n: int


def _is_curve(value: Any) -> bool:
    return isinstance(value, dict) and {"layers", "value", "stderr"} <= value.keys()


def results_file(path: str | Path) -> Path:
    """The results JSON itself, or the single `*_results.json` under an lmms-eval output folder."""
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(path.rglob("*_results.json")) if path.is_dir() else []
    if not found:
        raise FrankensteinError(f"no lmms-eval *_results.json at {path}")
    if len(found) > 1:
        raise FrankensteinError(f"{path} holds {len(found)} results files; name one of them")
    return found[0]


def read_curves(path: str | Path) -> list[Curve]:
    """Every per-layer curve in an lmms-eval results file (or output folder)."""
    f = results_file(path)
    try:
        results = json.loads(f.read_text())["results"]
    except (json.JSONDecodeError, KeyError) as e:
        raise FrankensteinError(f"{f} is not an lmms-eval results file ({e})") from None
    curves = []
    for task, metrics in sorted(results.items()):
        for key, value in sorted(metrics.items()):
            if _is_curve(value):
                metric = key.split(",")[0]
                curves.append(Curve(task, metric, list(value["layers"]), list(value["value"]), list(value["stderr"]), int(value.get("n", 0))))
    return curves


def curves_csv(curves: Sequence[Curve]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["task", "metric", "layer", "unified_index", "value", "stderr", "n"])
    for c in curves:
        for layer, value, stderr in zip(c.layers, c.value, c.stderr):
            writer.writerow([c.task, c.metric, layer, layer + 1, value, stderr, c.n])
    return out.getvalue()


def plot_metric(curves: Sequence[Curve], axis: LayerAxis, path: str | Path, *, title: str | None = None) -> Path:
    """All tasks' curves of one metric on one axis, with +-1 standard error bands."""
    axis = axis.decoder_only()  # probe curves live on the decoder layers
    plt = pyplot()
    metric = curves[0].metric
    fig, ax = plt.subplots(figsize=(9, 3.6))
    series = {}
    for c in curves:
        # Curves over different layer subsets share the axis: place each value at its unified index.
        by_layer = dict(zip(c.layers, c.value))
        series[c.task] = [by_layer.get(i) for i in range(axis.num_layers)]
    plot_layer_curves(ax, axis, list(range(1, axis.num_layers + 1)), series, ylabel=metric.replace("_", " "), title=title)
    for i, c in enumerate(curves):
        lo = [v - s for v, s in zip(c.value, c.stderr)]
        hi = [v + s for v, s in zip(c.value, c.stderr)]
        ax.fill_between([layer + 1 for layer in c.layers], lo, hi, alpha=0.15, color=f"C{i}", lw=0, zorder=2)
    return save_figure(fig, path)


def write_curves(path: str | Path, out: str | Path, axis: LayerAxis | None = None) -> dict[str, Path]:
    """curves.csv and one PNG per metric under `out`; returns what was written."""
    curves = read_curves(path)
    if not curves:
        raise FrankensteinError(f"{results_file(path)} holds no per-layer curves (was a probe run?)")
    out = Path(out)
    if axis is None:
        n = max(max(c.layers) for c in curves) + 1
        axis = LayerAxis(0, n, {})
    written = {"csv": out / "curves.csv"}
    write_text(written["csv"], curves_csv(curves))
    for metric in sorted({c.metric for c in curves}):
        group = [c for c in curves if c.metric == metric]
        written[metric] = plot_metric(group, axis, out / f"{metric}.png", title=f"{metric.replace('_', ' ')} per layer")
    return written
