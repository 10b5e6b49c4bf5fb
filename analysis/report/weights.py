"""Report section: what changed in the weights (METHOD.md 2), from each run's delta/delta.json.

dIN (IN - Base) and dRL (RL - IN) per unified layer over the whole model, vision tower, projector and
decoder, with the sections and blocks shaded: energy and relative norm, and (with the svd metric) the
mean stable and effective rank. A table gives each section's and block's share of the energy. Beside
them, the authors' own per-layer aggregates (`analysis.delta.authors`): the figures of the paper
are drawn from those.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from analysis.delta.schema import DELTAS, DeltaReport, GroupSummary
from analysis.plots import LayerAxis
from analysis.report.document import Note, Section, Table, fmt
from analysis.report.drawing import (
    DELTA_NAME,
    DELTA_STYLE,
    draw_curve,
    figure_legend,
    group_note,
    group_suffix,
    layer_panel,
    layout_groups,
    save_with_data,
    subplots,
    write_csv,
)
from analysis.lmms_runs import read_json
from analysis.report.runs import RunFolder
from surgery.arch import Part
from surgery.errors import FrankensteinError

STAGE = "delta"
DELTA_FILE = Path("delta") / "delta.json"
PANELS = {  # figure -> the two rows it draws: (GroupStats field, y label, log scale)
    "weights_energy": (
        ("energy", "energy ||Δ||²_F (sum over the layer)", True),
        ("relative_norm", "relative norm ||Δ||_F / ||W||_F", True),
    ),
    "weights_rank": (
        ("mean_stable_rank", "stable rank ||Δ||²_F / σ1² (mean)", False),
        ("mean_effective_rank", "effective rank exp H(σ/Σσ) (mean)", False),
    ),
}
CAPTIONS = {
    "weights_energy": "How much each layer's weights moved: energy (top) and relative norm (bottom) of dIN = IN − Base "
    "(dashed) and dRL = RL − IN (solid) per unified layer, log scale, over the vision tower, projector and decoder "
    "(shaded) with the early / mid / late blocks marked; a solid line far above its dashed one is a layer RL changed "
    "more than the cold start did.",
    "weights_rank": "How many directions each layer's update spans: mean stable rank (top) and effective rank (bottom) "
    "of the layer's matrices, dIN dashed and dRL solid; lower means the update is concentrated in fewer directions.",
}
CSV_HEADER = ["run", "recipe", "delta", "unified_index", "part", "index", "block", "energy", "relative_norm", "mean_stable_rank", "mean_effective_rank"]
AUTHORS_PANELS = (  # the authors' aggregates (AuthorsLayerStats fields) as their paper plots them
    ("fro_norm_sum", "Σ ||Δ||_F (authors)", True),
    ("relative_norm_mean", "mean ||Δ||_F / ||W_IN||_F (authors)", True),
    ("spectral_norm_mean", "mean σ1 (authors)", True),
    ("log_volume_mean", "mean Σ log σ, top k (authors)", False),
)
AUTHORS_CAPTION = (
    "The same deltas aggregated as the authors' scripts do (analysis/delta/authors.py): per unified layer the sum of "
    "the tensors' Frobenius norms, their mean norm relative to the IN weight (for dIN too), and over the layer's "
    "matrices the mean spectral norm and log-volume; dIN dashed, dRL solid. These are the numbers comparable with the "
    "paper's figures."
)
AUTHORS_CSV_HEADER = ["run", "recipe", "delta", "unified_index", "section", "n_tensors", "n_matrices", *(f for f, _, _ in AUTHORS_PANELS), "fro_norm_mean"]


def build(runs: Sequence[RunFolder], folder: Path) -> Section:
    section = Section("weights", "What changed in the weights (dIN vs dRL)")
    reports: dict[str, DeltaReport] = {}
    for run in runs:
        why = run.stage_missing(STAGE) or (None if (run.path / DELTA_FILE).is_file() else f"not run (no {DELTA_FILE})")
        if why:
            section.add(Note(f"{run.label}: {STAGE} {why}."))
        else:
            reports[run.label] = read_delta(run)
    shown = [r for r in runs if r.label in reports]
    if not shown:
        return section
    groups = layout_groups(shown)
    for i, group in enumerate(groups):
        for name, rows in PANELS.items():
            if name == "weights_rank" and not any(_has(reports[r.label], "mean_stable_rank") for r in group):
                continue  # energy-only analyses carry no spectra
            fig = _figure(group, reports, rows)
            caption = CAPTIONS[name] + group_note(groups, group)
            section.add(save_with_data(fig, folder, name + group_suffix(groups, i), caption, CSV_HEADER, _rows(group, reports)))
        if any(reports[r.label].authors_per_layer for r in group):
            rows = [p for p in AUTHORS_PANELS if any(_authors_has(reports[r.label], p[0]) for r in group)]
            fig = _figure(group, reports, rows, layers_of=_authors_layers)
            caption = AUTHORS_CAPTION + group_note(groups, group)
            section.add(save_with_data(fig, folder, "weights_authors" + group_suffix(groups, i), caption, AUTHORS_CSV_HEADER,
                                       _authors_rows(group, reports)))
    return section.add(_share_table(shown, reports, folder))


def read_delta(run: RunFolder) -> DeltaReport:
    path = run.path / DELTA_FILE
    try:
        report = DeltaReport.model_validate(read_json(path))
    except ValidationError as e:
        first = e.errors()[0]
        raise FrankensteinError(f"{path} is not a delta report: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    stored = report.meta.get("layout", {})
    expected = run.axis.layout
    if (stored.get("num_decoder_layers"), stored.get("num_vision_blocks")) != (expected.num_layers, expected.num_vision_blocks):
        raise FrankensteinError(f"{path} describes a model with a different layout than {run.path / 'run.json'}")
    return report


def _has(report: DeltaReport, field: str) -> bool:
    return any(getattr(s.deltas[d], field) is not None for s in report.summaries.get("unified_layer", []) for d in DELTAS)


def _layers(report: DeltaReport) -> list[GroupSummary]:
    return [s for s in report.summaries.get("unified_layer", []) if isinstance(s.key, int)]


def _authors_layers(report: DeltaReport) -> list[Any]:
    return list(report.authors_per_layer)


def _authors_has(report: DeltaReport, field: str) -> bool:
    return any(getattr(layer.deltas[d], field) is not None for layer in report.authors_per_layer for d in DELTAS)


def _authors_rows(group: Sequence[RunFolder], reports: dict[str, DeltaReport]) -> list[list[Any]]:
    return [
        [run.label, run.recipe, DELTA_NAME[d], layer.key, layer.section, layer.n_tensors, layer.n_matrices,
         *(getattr(layer.deltas[d], f) for f, _, _ in AUTHORS_PANELS), layer.deltas[d].fro_norm_mean]
        for run in group for d in DELTAS for layer in reports[run.label].authors_per_layer
    ]


def _figure(group: Sequence[RunFolder], reports: dict[str, DeltaReport], rows: Sequence[tuple[str, str, bool]],
            layers_of: Any = None) -> Any:
    axis: LayerAxis = group[0].axis
    layers_of = layers_of or _layers
    fig, axes = subplots(len(rows), 1, width=11, height=3.3, sharex=True)
    for (field, ylabel, log), ax in zip(rows, axes[:, 0]):
        layer_panel(ax, axis, ylabel=ylabel)
        for run in group:
            layers = layers_of(reports[run.label])
            for d in DELTAS:
                values = [_plottable(getattr(s.deltas[d], field), log) for s in layers]
                draw_curve(ax, [s.key for s in layers], values, None, color=run.color, style=DELTA_STYLE[d], label=f"{run.label} {DELTA_NAME[d]}")
        if log and ax.lines:
            ax.set_yscale("log")
    axes[-1, 0].set_xlabel("unified layer index (vision block j − V, projector 0, decoder layer i + 1)", fontsize=9)
    figure_legend(fig, axes[:, 0])
    return fig


def _plottable(value: float | None, log: bool) -> float | None:
    if value is None or math.isinf(value) or (log and value <= 0):
        return None
    return value


def _rows(group: Sequence[RunFolder], reports: dict[str, DeltaReport]) -> list[list[Any]]:
    rows = []
    for run in group:
        layout = run.axis.layout
        partition = layout.partition(run.axis.cuts)
        for d in DELTAS:
            for s in _layers(reports[run.label]):
                part, index = layout.part_of_unified(s.key)
                block = partition.block_of(index) if part is Part.DECODER_LAYER else None
                st = s.deltas[d]
                rows.append([run.label, run.recipe, DELTA_NAME[d], s.key, part.value, index, block, st.energy, st.relative_norm, st.mean_stable_rank, st.mean_effective_rank])
    return rows


def _share_table(runs: Sequence[RunFolder], reports: dict[str, DeltaReport], folder: Path) -> Table:
    header = ["run", "group", "name", "dIN energy share", "dRL energy share", "dIN relative norm", "dRL relative norm"]
    rows = []
    for run in runs:
        for group in ("section", "block"):
            for s in reports[run.label].summaries.get(group, []):
                rows.append([run.label, group, str(s.key), *(s.deltas[d].energy_share for d in DELTAS), *(s.deltas[d].relative_norm for d in DELTAS)])
    data = write_csv(folder / "weights_groups.csv", header, rows)
    shown = [[*r[:3], *(fmt(v) for v in r[3:])] for r in rows]
    return Table(header, shown, caption="Share of each delta's energy and relative norm per section and per decoder block.", data=data)
