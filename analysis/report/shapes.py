"""The value shapes the frank_* tasks put in an lmms-eval results file, read into typed records.

Three shapes occur under `results[task]["<metric>,none"]`:

* a per-layer curve `{"layers", "value", "stderr", "n"}` (probe tasks; read by `analysis.harness`);
* an estimate with a 95 % interval `{"value", "low", "high", "n"}` (transfer metrics M_vis, M_v2r,
  M_rea and the accuracies under each condition);
* transitions between two conditions on the same items `{"n", "TT", "TF", "FT", "FF", "net_gain",
  "side_effect_rate", "lift_rate"}`, the three statistics being estimates (METHOD.md 3).

A value of the right name but the wrong shape is a one-line error naming the file, task and metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.harness import Curve, curves_of
from analysis.lmms_runs import Run
from analysis.transitions import Estimate
from surgery.errors import FrankensteinError

ESTIMATE_KEYS = frozenset({"value", "low", "high"})
CELLS = ("TT", "TF", "FT", "FF")
TRANSITION_STATS = ("net_gain", "side_effect_rate", "lift_rate")


@dataclass(frozen=True)
class TaskEstimate:
    task: str
    metric: str
    estimate: Estimate
    n: int


@dataclass(frozen=True)
class TaskTransitions:
    task: str
    n: int
    cells: dict[str, int]  # TT, TF, FT, FF
    stats: dict[str, Estimate]  # net_gain, side_effect_rate, lift_rate


def curves(run: Run, metric: str) -> dict[str, Curve]:
    """Task -> its curve of `metric`, for every leaf task holding one."""
    leaf = set(run.tasks())
    return {c.task: c for c in curves_of(run) if c.metric == metric and c.task in leaf}


def scalar(run: Run, task: str, metric: str) -> tuple[float | None, float | None]:
    """A plain number and its standard error (lmms-eval's `<metric>_stderr,none`), each None when absent."""
    value, stderr = run.metric(task, metric), run.metric(task, f"{metric}_stderr")
    return _number(value), _number(stderr)


def estimates(run: Run) -> list[TaskEstimate]:
    """Every estimate-shaped metric of every leaf task."""
    found = []
    for task in run.tasks():
        for key, value in sorted(run.results[task].items()):
            if isinstance(value, dict) and ESTIMATE_KEYS <= value.keys():
                metric = key.split(",")[0]
                found.append(TaskEstimate(task, metric, _estimate(value, run, task, metric), _count(value.get("n", 0), run, task, metric)))
    return found


def transitions(run: Run) -> list[TaskTransitions]:
    """The transition counts of every leaf task that has them (the two-condition transfer tasks)."""
    found = []
    for task in run.tasks():
        value = run.metric(task, "transitions")
        if value is None:
            continue
        if not isinstance(value, dict) or not set(CELLS) <= value.keys():
            raise _bad(run, task, "transitions", f"needs the counts {', '.join(CELLS)}")
        cells = {c: _count(value[c], run, task, "transitions") for c in CELLS}
        stats = {s: _estimate(value.get(s) or {"value": None}, run, task, f"transitions.{s}") for s in TRANSITION_STATS}
        n = _count(value.get("n", sum(cells.values())), run, task, "transitions")
        if n != sum(cells.values()):
            raise _bad(run, task, "transitions", f"n={n} but TT+TF+FT+FF={sum(cells.values())}")
        found.append(TaskTransitions(task, n, cells, stats))
    return found


def _estimate(value: Any, run: Run, task: str, metric: str) -> Estimate:
    if not isinstance(value, dict):
        raise _bad(run, task, metric, "is not an estimate {value, low, high}")
    parts = [value.get(k) for k in ("value", "low", "high")]
    if any(p is not None and _number(p) is None for p in parts):
        raise _bad(run, task, metric, f"has a non-number in {value}")
    return Estimate(*(None if p is None else float(p) for p in parts))


def _count(value: Any, run: Run, task: str, metric: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise _bad(run, task, metric, f"has count {value!r}, not a whole number >= 0")
    return int(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _bad(run: Run, task: str, metric: str, problem: str) -> FrankensteinError:
    return FrankensteinError(f"{run.path}: {task} {metric} {problem}")
