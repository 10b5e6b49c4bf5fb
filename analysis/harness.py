"""Harness results -> per-layer curves, a table and a plot.

lmms-eval writes one `*_results.json` per run. Every metric whose value is a per-layer curve (an
`analysis.schema.LayerCurve`, as `frankenstein_tasks.contract.aggregate_curve` writes it: `{"layers",
"value", "stderr", "n"}`; a value claiming to be one but of another shape is a one-line error naming
the file, task and metric) is read into a `Curve`; `write_curves` turns a run's curves into `curves.csv` (one row per task,
metric and layer) and one PNG per metric over the unified layer index (bootstrap standard errors as
a band). Unified indices and blocks come from the probed model's `Layout`: the one given, or the
one the run's `model_args` name (`pretrained=`, or `in=` of a splice, whose `cuts=` mark the blocks).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from analysis.lmms_runs import Run
from analysis.plots import LayerAxis, pyplot, plot_layer_curves, save_figure
from analysis.schema import LayerCurve, first_error
from surgery.arch import layout_of_checkpoint, parse_cuts
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
    return curves_of(Run.read(results_file(path)))


def curves_of(run: Run) -> list[Curve]:
    """Every per-layer curve of a run already read."""
    curves = []
    for task, metrics in sorted(run.results.items()):
        for key, value in sorted(metrics.items()):
            if LayerCurve.claims(value):
                metric = key.split(",")[0]
                c = read_curve(value, f"{run.path}: {task} {metric}")
                curves.append(Curve(task, metric, c.layers, c.value, c.stderr, c.n))
    return curves


def read_curve(value: Any, where: str) -> LayerCurve:
    """A results value as a LayerCurve; another shape is one line naming `where` it was found."""
    try:
        return LayerCurve.model_validate(value)
    except ValidationError as e:
        raise FrankensteinError(f"{where} is not a per-layer curve ({first_error(e)})") from None


def curves_csv(curves: Sequence[Curve], axis: LayerAxis) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["task", "metric", "layer", "unified_index", "value", "stderr", "n"])
    for c in curves:
        for layer, value, stderr in zip(c.layers, c.value, c.stderr):
            writer.writerow([c.task, c.metric, layer, axis.decoder_layer(layer), value, stderr, c.n])
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
        series[c.task] = [by_layer.get(i) for i in range(axis.layout.num_layers)]
    plot_layer_curves(ax, axis, axis.decoder_layer_positions, series, ylabel=metric.replace("_", " "), title=title)
    for i, c in enumerate(curves):
        lo = [v - s for v, s in zip(c.value, c.stderr)]
        hi = [v + s for v, s in zip(c.value, c.stderr)]
        x = [axis.decoder_layer(layer) for layer in c.layers]
        ax.fill_between(x, lo, hi, alpha=0.15, color=f"C{i}", lw=0, zorder=2)
    return save_figure(fig, path)


def probed_axis(path: str | Path | Run) -> LayerAxis:
    """The probed model's axis, from the run's `model_args`: `pretrained=`, or `in=` (and `cuts=`) of a splice."""
    run = path if isinstance(path, Run) else Run.read(results_file(path))
    args = run.model_args
    model = args.get("pretrained") or args.get("in")  # a splice has IN's layout
    if not model:
        raise FrankensteinError(f"{run.path} does not name the probed model (no pretrained= or in= in its model_args); pass --model")
    try:
        layout = layout_of_checkpoint(str(model))
    except FrankensteinError as e:
        raise FrankensteinError(f"cannot read the layout of the probed model: {e}; pass --model") from None
    return LayerAxis.from_layout(layout, parse_cuts(str(args["cuts"])) if args.get("cuts") else None)


def write_curves(path: str | Path, out: str | Path, axis: LayerAxis | None = None) -> dict[str, Path]:
    """curves.csv and one PNG per metric under `out`; returns what was written.

    Without `axis`, the probed model named in the results file supplies it (`probed_axis`).
    """
    run = Run.read(results_file(path))
    curves = curves_of(run)
    if not curves:
        raise FrankensteinError(f"{run.path} holds no per-layer curves (was a probe run?)")
    out = Path(out)
    if axis is None:
        axis = probed_axis(run)
    written = {"csv": out / "curves.csv"}
    write_text(written["csv"], curves_csv(curves, axis))
    for metric in sorted({c.metric for c in curves}):
        group = [c for c in curves if c.metric == metric]
        written[metric] = plot_metric(group, axis, out / f"{metric}.png", title=f"{metric.replace('_', ' ')} per layer")
    return written
