"""Attention shift (METHOD.md 5): RL minus IN in the attention mass generated tokens put on the image, per layer.

A `frank_attention_shift` run with `--model frankenstein --model_args ...,probe=attention
--log_samples` logs, per item, the per-layer mass under `visual_attention` (`{"<layer>": value}`) and
the item's id in its outcome record (`accuracy_a`, `analysis.outcomes`). Given such a run of IN and
one of RL, `attention_shift` pairs the items both runs hold and reports per decoder layer the mean
of RL − IN with a percentile-bootstrap interval that resamples items (the same resample for every
layer, so the curve's shape keeps its pairing), alongside each model's own mean. The expectation on
real recipes: RL raises the mass in mid and late layers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.bootstrap import (
    BOOTSTRAP_ITERS,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    bootstrap_draws,
    percentile_interval,
)
from analysis.lmms_runs import Run
from analysis.schema import OutcomeRecord
from analysis.transitions import Estimate
from surgery.atomic import write_text
from surgery.errors import FrankensteinError

CURVE_METRIC = "visual_attention"
ITEM_METRIC = "accuracy_a"  # the outcome record that names each sample's item
CSV_COLUMNS = ("layer", "rl_minus_in", "low", "high", "in_mean", "rl_mean", "n")


@dataclass(frozen=True)
class AttentionShift:
    layers: list[int]  # decoder layers both runs measured
    shift: list[Estimate]  # per layer: mean over items of RL − IN, with its interval
    in_mean: list[float]
    rl_mean: list[float]
    n: int  # items paired
    confidence: float = CONFIDENCE


def item_attention(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, float]]:
    """Item id -> {layer: attention mass} from a samples log (samples without a curve are skipped)."""
    out: dict[str, dict[int, float]] = {}
    for s in samples:
        curve, record = s.get(CURVE_METRIC), s.get(ITEM_METRIC)
        if not isinstance(curve, Mapping) or not curve:
            continue
        item = str(record["item"]) if OutcomeRecord.claims(record) else f"doc {s.get('doc_id')}"
        out[item] = {int(layer): float(v) for layer, v in curve.items()}
    return out


def shift_from_samples(
    samples_in: Iterable[Mapping[str, Any]],
    samples_rl: Iterable[Mapping[str, Any]],
    *,
    iters: int = BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> AttentionShift:
    """RL − IN per layer over the items both sample lists hold."""
    a, b = item_attention(samples_in), item_attention(samples_rl)
    items = [i for i in a if i in b]
    if not items:
        raise FrankensteinError(
            f"no item has a {CURVE_METRIC} curve in both runs (IN: {len(a)} items, RL: {len(b)}); "
            "run frank_attention_shift with --model frankenstein --model_args ...,probe=attention --log_samples"
        )
    layers = sorted(set.intersection(*(set(a[i]) & set(b[i]) for i in items)))
    if not layers:
        raise FrankensteinError(f"the IN and RL runs measured no {CURVE_METRIC} layer in common")
    in_table = np.array([[a[i][layer] for layer in layers] for i in items])
    rl_table = np.array([[b[i][layer] for layer in layers] for i in items])
    diff = rl_table - in_table
    draws = bootstrap_draws(diff, lambda resampled: resampled.mean(axis=1), iters=iters, seed=seed)
    low, high = percentile_interval(draws, confidence)
    shift = [Estimate(float(v), float(lo), float(hi)) for v, lo, hi in zip(diff.mean(axis=0), low, high)]
    return AttentionShift(layers, shift, in_table.mean(axis=0).tolist(), rl_table.mean(axis=0).tolist(), len(items), confidence)


def curve_task(run: Run) -> str:
    """The task of `run` that holds a visual_attention curve (one only)."""
    tasks = [t for t, metrics in run.results.items() if isinstance(metrics.get(f"{CURVE_METRIC},none"), Mapping)]
    if len(tasks) != 1:
        what = "no task" if not tasks else f"{len(tasks)} tasks ({', '.join(tasks)})"
        raise FrankensteinError(f"{run.path}: {what} with a {CURVE_METRIC} curve; expected one frank_attention_shift run")
    return tasks[0]


def attention_shift(results_in: Run | str | Path, results_rl: Run | str | Path, **bootstrap: Any) -> AttentionShift:
    """RL − IN per layer from two runs' results files (their samples logs next to them)."""
    runs = [r if isinstance(r, Run) else Run.read(r) for r in (results_in, results_rl)]
    samples = [run.samples(curve_task(run)) for run in runs]
    return shift_from_samples(samples[0], samples[1], **bootstrap)


def has_attention_curve(run: Run) -> bool:
    return any(isinstance(m.get(f"{CURVE_METRIC},none"), Mapping) for m in run.results.values())


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def shift_csv(result: AttentionShift) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for layer, est, a, b in zip(result.layers, result.shift, result.in_mean, result.rl_mean):
        writer.writerow([layer, est.value, est.low, est.high, a, b, result.n])
    return out.getvalue()


def plot_shift(result: AttentionShift, path: str | Path) -> Path:
    """Top: IN and RL means per layer; bottom: RL − IN with its interval and a zero line."""
    from analysis.plots import pyplot, save_figure

    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.6), sharex=True)
    top.plot(result.layers, result.in_mean, marker="o", ms=3, label="IN")
    top.plot(result.layers, result.rl_mean, marker="o", ms=3, label="RL", color="C3")
    top.set_ylabel("attention mass on image")
    top.legend(fontsize=8)
    values = [e.value for e in result.shift]
    bottom.plot(result.layers, values, marker="o", ms=3, color="C2")
    bottom.fill_between(result.layers, [e.low for e in result.shift], [e.high for e in result.shift], alpha=0.2, color="C2", lw=0)
    bottom.axhline(0, color="0.3", lw=0.8)
    bottom.set_ylabel("RL − IN")
    bottom.set_xlabel("decoder layer")
    from matplotlib.ticker import MaxNLocator

    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, bottom):
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"Attention of generated tokens on visual tokens (n={result.n} items, {result.confidence:.0%} intervals)", fontsize=10)
    return save_figure(fig, path)


def write_attention_shift(result: AttentionShift, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    written = {"csv": out / "attention_shift.csv", "plot": out / "attention_shift.png"}
    write_text(written["csv"], shift_csv(result))
    plot_shift(result, written["plot"])
    return written
