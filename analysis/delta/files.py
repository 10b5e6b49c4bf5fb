"""The files of a weight-delta analysis: delta.json, tensors.csv, layers.csv, layers_authors.csv,
spectra.npz, PNG plots.

All of them are written into a temporary sibling folder that is renamed onto OUT only when every
file is complete, so an error never leaves a half-written result behind.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from analysis.delta.schema import DeltaReport
from surgery.arch import BLOCK_NAMES, Part, layout_from_description
from surgery.atomic import atomic_dir, write_json

DELTA_FIELDS = (
    "frobenius_norm",
    "energy",
    "reference_norm",
    "relative_norm",
    "spectral_norm",
    "nuclear_norm",
    "stable_rank",
    "effective_rank",
    "condition_number",
    "log_volume_topk",
    "numerical_rank",
)
TENSOR_FIELDS = (
    "name",
    "local_name",
    "part",
    "index",
    "unified_index",
    "section",
    "component",
    "block",
    "shape",
    "rows",
    "cols",
    "numel",
)
GROUP_FIELDS = (
    "energy",
    "reference_energy",
    "relative_norm",
    "energy_share",
    "energy_per_param",
    "mean_stable_rank",
    "mean_effective_rank",
    "max_spectral_norm",
)
PLOTS = ("energy_per_layer.png", "rank_per_layer.png", "spectra.png")


def write_report(report: DeltaReport, out: Path, *, overwrite: bool = False, plots: bool = True) -> Path:
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "delta.json", report.to_json_dict())
        _write_csv(tmp / "tensors.csv", _tensor_rows(report))
        _write_csv(tmp / "layers.csv", _layer_rows(report))
        _write_csv(tmp / "layers_authors.csv", _authors_rows(report))
        if report.spectra:
            _write_spectra(tmp / "spectra.npz", report)
        if plots:
            write_plots(report, tmp)
    return out


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        if not rows:
            return
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def _tensor_rows(report: DeltaReport) -> list[dict[str, Any]]:
    rows = []
    for t in report.tensors:
        row = {f: getattr(t, f) for f in TENSOR_FIELDS}
        for d, stats in t.deltas.items():
            row.update({f"{d}_{f}": getattr(stats, f) for f in DELTA_FIELDS})
        rows.append(row)
    return rows


def _layer_rows(report: DeltaReport) -> list[dict[str, Any]]:
    # What each unified index is, from the layout (index 0 holds the projector and any DeepStack mergers).
    layout = layout_from_description(report.meta["layout"])
    blocks = {t.index: t.block for t in report.tensors if t.part == Part.DECODER_LAYER.value}
    rows = []
    for s in report.summaries["unified_layer"]:
        part, index = layout.part_of_unified(int(s.key))
        row = {
            "unified_index": s.key,
            "part": part.value,
            "index": index,
            "block": blocks.get(index) if part is Part.DECODER_LAYER else None,
            "n_tensors": s.n_tensors,
            "numel": s.numel,
        }
        for d, stats in s.deltas.items():
            row.update({f"{d}_{f}": getattr(stats, f) for f in GROUP_FIELDS})
        rows.append(row)
    return rows


def _authors_rows(report: DeltaReport) -> list[dict[str, Any]]:
    """The authors' per-layer aggregates (analysis/delta/authors.py), one row per unified layer."""
    rows = []
    for layer in report.authors_per_layer:
        row = {"unified_index": layer.key, "section": layer.section, "n_tensors": layer.n_tensors, "n_matrices": layer.n_matrices}
        for d, stats in layer.deltas.items():
            row.update({f"{d}_{f}": v for f, v in stats.model_dump().items()})
        rows.append(row)
    return rows


def _write_spectra(path: Path, report: DeltaReport) -> None:
    import numpy as np

    arrays = {
        f"{d}:{name}": sigma.numpy() for name, by_delta in report.spectra.items() for d, sigma in by_delta.items()
    }
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def write_plots(report: DeltaReport, folder: Path) -> list[Path]:
    """The three figures of the issue, from the report alone."""
    from analysis.plots import LayerAxis, delta_energy_figure, delta_rank_figure, delta_spectra_figure

    axis = LayerAxis.from_description(report.meta["layout"])
    layers = report.summaries["unified_layer"]
    x = [int(s.key) for s in layers]
    label = {"in": "dIN", "rl": "dRL"}
    written = []
    if x:
        models = report.meta["models"]
        title = f"Weight-delta energy per layer: {models['base']['source']} -> {models['in']['source']} -> {models['rl']['source']}"
        written.append(
            delta_energy_figure(
                axis,
                x,
                {label[d]: [s.deltas[d].energy for s in layers] for d in label},
                {label[d]: [s.deltas[d].relative_norm for s in layers] for d in label},
                folder / PLOTS[0],
                title=_shorten(title),
            )
        )
        if any(s.deltas["rl"].mean_stable_rank is not None for s in layers):
            written.append(
                delta_rank_figure(
                    axis,
                    x,
                    {label[d]: [s.deltas[d].mean_stable_rank for s in layers] for d in label},
                    {label[d]: [s.deltas[d].mean_effective_rank for s in layers] for d in label},
                    folder / PLOTS[1],
                )
            )
    panels: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for t in report.tensors:
        rep = report.meta["representative_layers"].get(t.block) if t.block else None
        if t.name in report.spectra and rep is not None and t.index == rep:
            panels.setdefault(t.block, {})[t.local_name] = report.spectra[t.name]
            names[t.block] = f"{t.block}: decoder layer {t.index}"
    if panels:
        order = [b for b in BLOCK_NAMES if b in panels]
        written.append(delta_spectra_figure({b: panels[b] for b in order}, folder / PLOTS[2], names))
    return written


def _shorten(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
