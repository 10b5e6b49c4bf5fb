"""The value shapes the frank_* tasks put in an lmms-eval results file, read into typed records.

Three shapes occur under `results[task]["<metric>,none"]`, each declared once in `analysis.schema`
(the writers build the same models):

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

from pydantic import BaseModel, ValidationError

from analysis.harness import Curve, curves_of
from analysis.lmms_runs import Run
from analysis.schema import (
    CELLS,
    TRANSITION_STATISTICS,
    IntervalEstimate,
    TransitionCounts,
    first_error,
)
from analysis.transitions import Estimate
from surgery.errors import FrankensteinError

TRANSITION_STATS = TRANSITION_STATISTICS
__all__ = ["CELLS", "TRANSITION_STATS", "TaskEstimate", "TaskTransitions", "curves", "estimates", "scalar", "transitions"]


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
            if IntervalEstimate.claims(value):
                metric = key.split(",")[0]
                est = _validated(IntervalEstimate, value, run, task, metric)
                found.append(TaskEstimate(task, metric, _as_estimate(est), est.n))
    return found


def transitions(run: Run) -> list[TaskTransitions]:
    """The transition counts of every leaf task that has them (the two-condition transfer tasks)."""
    found = []
    for task in run.tasks():
        value = run.metric(task, "transitions")
        if value is None:
            continue
        t = _validated(TransitionCounts, value, run, task, "transitions")
        found.append(TaskTransitions(task, t.n, t.cells(), {s: _as_estimate(getattr(t, s)) for s in TRANSITION_STATS}))
    return found


def _as_estimate(value: IntervalEstimate) -> Estimate:
    return Estimate(value.value, value.low, value.high)


def _validated(model: type[BaseModel], value: Any, run: Run, task: str, metric: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise _bad(run, task, metric, f"is not {model.__name__} ({first_error(e)})") from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _bad(run: Run, task: str, metric: str, problem: str) -> FrankensteinError:
    return FrankensteinError(f"{run.path}: {task} {metric} {problem}")
