"""The transfer table (METHOD.md 3): M_vis, M_v2r and M_rea of IN, RL and the six splices, and their gains over IN.

Input: lmms-eval runs of the frank_transfer tasks (`analysis.lmms_runs`), each identified as IN, RL
or a variant from its own metadata (`analysis.model_identity`). Each task's results hold its
headline metric as an estimate `{"value", "low", "high", "n"}` under `m_vis`, `m_v2r` or `m_rea`
(any task that holds one counts, so the `_paper` tasks work the same); those numbers go into the
table unchanged.

Differences from IN, per model and metric:
    paired    when both runs logged their samples (--log_samples): per item, the metric's 0/1 indicator
              (`analysis.outcomes.item_indicators`) of the model and of IN over the items both have;
              the difference is the model's mean minus IN's with a percentile-bootstrap interval that
              resamples items keeping the pairs (`transition_stats(...).accuracy_change`);
    unpaired  otherwise: the difference of the two values, its interval from the two intervals read
              as normal ones (half-widths combined in quadrature); marked as unpaired.

Output (`write_transfer_table`): transfer_table.csv (one row per model and metric), transfer_table.md
(one row per model) and transfer_table.png (values with intervals, and differences from IN).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from analysis.bootstrap import BOOTSTRAP_ITERS, BOOTSTRAP_SEED, CONFIDENCE
from analysis.lmms_runs import Run
from analysis.model_identity import IN, MODEL_ORDER, Identity
from analysis.outcomes import item_indicators
from analysis.schema import IntervalEstimate
from analysis.transitions import transition_stats
from surgery.atomic import write_text
from surgery.errors import FrankensteinError

METRICS: dict[str, str] = {"m_vis": "M_vis", "m_v2r": "M_v2r", "m_rea": "M_rea"}  # results key -> name shown
CSV_COLUMNS = ("model", "metric", "value", "low", "high", "n", "task", "results",
               "diff_vs_in", "diff_low", "diff_high", "diff_n", "diff_paired")


@dataclass(frozen=True)
class Score:
    """One model's value of one metric, as its results file holds it, and its per-item indicators."""

    model: str
    metric: str  # a key of METRICS
    value: float | None
    low: float | None
    high: float | None
    n: int
    task: str
    results: Path
    items: dict[str, bool] | None  # item -> counts toward the metric; None without a samples log


@dataclass(frozen=True)
class Difference:
    """A model's metric minus IN's, with a 95% interval."""

    value: float | None
    low: float | None
    high: float | None
    n: int  # items paired (paired) or the smaller of the two runs' n (unpaired)
    paired: bool


@dataclass(frozen=True)
class TransferTable:
    models: list[str]  # row order: IN, RL, the variants in `surgery.splice` order, then other labels
    scores: dict[tuple[str, str], Score]  # (model, metric) -> score
    differences: dict[tuple[str, str], Difference]  # (model, metric) -> vs IN (IN itself absent)
    sources: dict[str, list[tuple[Path, str]]]  # model -> (results file, how it was identified)

    def metrics(self) -> list[str]:
        return [m for m in METRICS if any(key[1] == m for key in self.scores)]


def transfer_table(
    runs: Iterable[Run],
    identities: Mapping[Path, Identity],
    *,
    iters: int = BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> TransferTable:
    """The table of every transfer metric the runs hold, by model, with differences from IN."""
    runs = list(runs)
    scores = collect_scores(runs, identities)
    if not scores:
        raise FrankensteinError(
            f"none of the {len(runs)} run(s) holds a transfer metric ({', '.join(METRICS)}); run the frank_transfer tasks"
        )
    labels = {s.model for s in scores.values()}
    models = [m for m in MODEL_ORDER if m in labels] + sorted(labels - set(MODEL_ORDER))
    differences = {}
    for (model, metric), score in scores.items():
        base = scores.get((IN, metric))
        if model != IN and base is not None:
            differences[(model, metric)] = difference(score, base, iters=iters, seed=seed, confidence=confidence)
    sources: dict[str, list[tuple[Path, str]]] = {}
    for run in runs:
        identity = identities[run.path]
        sources.setdefault(identity.label, []).append((run.path, identity.reason))
    return TransferTable(models, scores, differences, sources)


def collect_scores(runs: Iterable[Run], identities: Mapping[Path, Identity]) -> dict[tuple[str, str], Score]:
    """(model, metric) -> Score, from every task of every run that holds a transfer metric."""
    scores: dict[tuple[str, str], Score] = {}
    for run in runs:
        model = identities[run.path].label
        for task, values in sorted(run.results.items()):
            for metric, shown in METRICS.items():
                estimate = values.get(f"{metric},none")
                if estimate is None:
                    continue
                estimate = _check_estimate(estimate, run, task, metric)
                if (model, metric) in scores:
                    other = scores[(model, metric)]
                    raise FrankensteinError(
                        f"{shown} of {model} appears twice: {other.task} in {other.results} and {task} in "
                        f"{run.path}; pass one run per model and task"
                    )
                scores[(model, metric)] = Score(model, metric, estimate.value, estimate.low, estimate.high,
                                                estimate.n, task, run.path, item_outcomes(run, task, metric))
    return scores


def _check_estimate(value: Any, run: Run, task: str, metric: str) -> IntervalEstimate:
    try:
        return IntervalEstimate.model_validate(value)
    except ValidationError:
        raise FrankensteinError(f"{run.path}: {task} {metric} is {value!r}, not an estimate {{value, low, high, n}}") from None


def item_outcomes(run: Run, task: str, metric: str, *, required: bool = True) -> dict[str, bool] | None:
    """Item -> counts toward `metric`, from the task's samples log; None without one.

    A log without `metric` outcome records is an error, or None where they are not `required`.
    """
    if not run.has_samples(task):
        return None
    records = [s[metric] for s in run.samples(task) if isinstance(s.get(metric), Mapping)]
    if not records and not required:
        return None
    if not records:
        raise FrankensteinError(f"{run.samples_file(task)} holds no {metric} outcome records")
    return item_indicators(records, metric, str(run.samples_file(task)))


def difference(score: Score, base: Score, *, iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED,
               confidence: float = CONFIDENCE) -> Difference:
    """`score` minus `base` (IN): paired over common items when both have items, else from the intervals."""
    common = [i for i in base.items if i in score.items] if base.items is not None and score.items is not None else []
    if common:
        t = transition_stats([base.items[i] for i in common], [score.items[i] for i in common],
                             iters=iters, seed=seed, confidence=confidence)
        change = t.accuracy_change
        return Difference(change.value, change.low, change.high, len(common), True)
    return _unpaired(score, base)


def _unpaired(score: Score, base: Score) -> Difference:
    n = min(score.n, base.n)
    if score.value is None or base.value is None:
        return Difference(None, None, None, n, False)
    value = score.value - base.value
    bounds = (score.low, score.high, base.low, base.high)
    if any(b is None for b in bounds):
        return Difference(value, None, None, n, False)
    # Each half-width is z * its standard error, so their quadrature sum is z * the difference's.
    spread = math.hypot((score.high - score.low) / 2, (base.high - base.low) / 2)
    return Difference(value, value - spread, value + spread, n, False)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def table_rows(table: TransferTable) -> list[dict[str, Any]]:
    """One row per model and metric, in CSV_COLUMNS."""
    rows = []
    for model in table.models:
        for metric in table.metrics():
            score = table.scores.get((model, metric))
            if score is None:
                continue
            diff = table.differences.get((model, metric))
            rows.append({
                "model": model, "metric": METRICS[metric], "value": score.value, "low": score.low,
                "high": score.high, "n": score.n, "task": score.task, "results": str(score.results),
                "diff_vs_in": diff.value if diff else None, "diff_low": diff.low if diff else None,
                "diff_high": diff.high if diff else None, "diff_n": diff.n if diff else None,
                "diff_paired": diff.paired if diff else None,
            })
    return rows


def table_csv(table: TransferTable) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in table_rows(table):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def _cell(value: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    fmt = "{:+.2f}" if signed else "{:.2f}"
    interval = f" [{fmt.format(low)}, {fmt.format(high)}]" if low is not None and high is not None else ""
    return fmt.format(value) + interval


def table_markdown(table: TransferTable) -> str:
    """One row per model: each metric with its interval, then each difference from IN."""
    metrics = table.metrics()
    head = ["model", *(METRICS[m] for m in metrics), *(f"Δ{METRICS[m]} vs IN" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    unpaired = False
    for model in table.models:
        cells = [model]
        for m in metrics:
            s = table.scores.get((model, m))
            cells.append(f"{_cell(s.value, s.low, s.high)} (n={s.n})" if s else "not run")
        for m in metrics:
            d = table.differences.get((model, m))
            if d is None:
                cells.append("" if model == IN else "–")
            else:
                unpaired |= not d.paired
                cells.append(_cell(d.value, d.low, d.high, signed=True) + ("" if d.paired else " †"))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        "Values are shares of items with 95% percentile-bootstrap intervals. M_vis: right with the image and "
        "wrong with a black image; M_v2r: right with the image and with a black image plus a description; "
        "M_rea: MATH-500 accuracy (METHOD.md 3). Differences from IN are paired over the items both runs "
        "logged" + (" († unpaired: from the two intervals, no samples log)." if unpaired else "."),
        "",
        "Models, from the runs' metadata:",
    ]
    notes += [f"- {model}: " + "; ".join(f"{path} ({why})" for path, why in table.sources.get(model, []))
              for model in table.models]
    return "\n".join(lines + notes) + "\n"


def plot_table(table: TransferTable, path: str | Path) -> Path:
    """Per metric, each model's value with its interval (top) and its difference from IN (bottom)."""
    from analysis.plots import pyplot, save_figure

    plt = pyplot()
    metrics = table.metrics()
    fig, axes = plt.subplots(2, len(metrics), figsize=(4.2 * len(metrics), 6.4), squeeze=False)
    for j, metric in enumerate(metrics):
        _bars(axes[0][j], table.models, [table.scores.get((m, metric)) for m in table.models], METRICS[metric])
        _bars(axes[1][j], table.models, [table.differences.get((m, metric)) for m in table.models],
              f"{METRICS[metric]} − IN", zero_line=True)
    fig.suptitle("Transfer of RL gains: IN, RL and Frankenstein splices (95% intervals)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def _bars(ax: Any, models: Sequence[str], entries: Sequence[Any], ylabel: str, zero_line: bool = False) -> None:
    xs, values, errors = [], [], [[], []]
    for x, e in enumerate(entries):
        if e is None or e.value is None:
            continue
        xs.append(x)
        values.append(e.value)
        has = e.low is not None and e.high is not None
        errors[0].append(e.value - e.low if has else 0.0)
        errors[1].append(e.high - e.value if has else 0.0)
    ax.bar(xs, values, yerr=errors, capsize=3, color=["C0" if v >= 0 else "C3" for v in values], alpha=0.85)
    if zero_line:
        ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)


def write_transfer_table(table: TransferTable, out: str | Path) -> dict[str, Path]:
    """transfer_table.csv, .md and .png under `out` (each written atomically)."""
    out = Path(out)
    written = {"csv": out / "transfer_table.csv", "markdown": out / "transfer_table.md", "plot": out / "transfer_table.png"}
    write_text(written["csv"], table_csv(table))
    write_text(written["markdown"], table_markdown(table))
    plot_table(table, written["plot"])
    return written
