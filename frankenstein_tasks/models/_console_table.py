"""Make lmms-eval's end-of-run console table readable when results hold per-layer curves.

A probe task reports each curve (`contract.aggregate_curve`: layers, values, stderr, n) as one
metric value; lmms-eval 0.7.3's `make_table` prints it as a dict hundreds of characters wide. This
wraps `lmms_eval.utils.make_table` (installed from our model entry point, before
`lmms_eval.__main__` imports it) so that the table shows each curve as one short cell
(`contract.curve_summary`: a sparkline, the peak and the layer where the curve falls below half of
it), followed by one compact per-layer table per metric. Estimates with intervals (the transfer
tasks) print as `0.42 [0.33, 0.51] (n=100)` and transition counts as `TT 40 TF 3 FT 9 FF 48, net +6`.
Only what is printed changes: the results JSON, written before the table is printed, keeps every
value whole. A table that holds none of these values (any run of lmms-eval's own tasks) is handed to
lmms-eval's `make_table` untouched, so it prints exactly as without this package
(`tests/test_lmms_builtin.py` checks it).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from frankenstein_tasks.contract import (
    curve_summary,
    curve_table,
    estimate_summary,
    is_curve,
    is_estimate,
    is_transitions,
    transitions_summary,
)


def install_curve_table() -> None:
    try:
        import lmms_eval.utils as utils
    except ImportError:  # lmms-eval not installed: nothing to wrap
        return
    if getattr(utils.make_table, "_frankenstein_curves", False):
        return
    original = utils.make_table

    @functools.wraps(original)
    def make_table(result_dict: dict, column: str = "results", sort_results: bool = False) -> str:
        if not holds_project_values(result_dict, column):
            return original(result_dict, column, sort_results)
        shown, curves = summarize_curves(result_dict, column)
        table = original(shown, column, sort_results)
        return table + per_layer_tables(curves) if curves else table

    make_table._frankenstein_curves = True
    utils.make_table = make_table


def holds_project_values(result_dict: dict, column: str) -> bool:
    """Whether any metric in the table is a curve, an estimate or transition counts (this project's values)."""
    summarized = (is_curve, is_estimate, is_transitions)
    return any(any(is_(value) for is_ in summarized)
               for metrics in result_dict.get(column, {}).values() for value in metrics.values())


def summarize_curves(result_dict: dict, column: str) -> tuple[dict, dict[str, dict[str, Any]]]:
    """A shallow copy of `result_dict` whose curves, estimates and transitions are summary strings, and the curves by metric."""
    shown = dict(result_dict)
    shown[column] = {}
    curves: dict[str, dict[str, Any]] = {}
    for task, metrics in result_dict.get(column, {}).items():
        shown[column][task] = {}
        for key, value in metrics.items():
            if is_curve(value):
                shown[column][task][key] = curve_summary(value)
                curves.setdefault(key.split(",")[0], {})[task] = value
            elif is_estimate(value):
                shown[column][task][key] = estimate_summary(value)
            elif is_transitions(value):
                shown[column][task][key] = transitions_summary(value)
            else:
                shown[column][task][key] = value
    return shown, curves


def per_layer_tables(curves: dict[str, dict[str, Any]]) -> str:
    parts = []
    for metric, by_task in curves.items():
        # Columns named without the tasks' common prefix (frank_vision_counting -> counting).
        prefix = os.path.commonprefix(list(by_task)) if len(by_task) > 1 else ""
        columns = {task[len(prefix):] or task: curve for task, curve in by_task.items()}
        title = f"{metric} per decoder layer" + (f" ({prefix}*)" if prefix else "")
        parts.append(f"\n\n{title}:\n" + curve_table(columns))
    return "".join(parts) + "\n"
