"""Statistics in one place: the bootstrap behind every interval and standard error, the curves'
standard errors and the pooling of curves over tasks, each against a hand or plain-loop computation.

Expected values come from arithmetic written out here, from plain Python loops over resamples drawn
as `analysis.bootstrap` documents them (numpy's Generator, BOOTSTRAP_SEED, rows with replacement), or
from `scipy.stats.bootstrap`, never from the functions under test.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from analysis.bootstrap import BOOTSTRAP_ITERS, BOOTSTRAP_SEED
from frankenstein_tasks.contract import aggregate_curve, pool_across_tasks

NAN = float("nan")


def documented_resamples(n: int, iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED) -> list[list[int]]:
    """The resamples as the module docstring defines them, drawn here."""
    return np.random.default_rng(seed).integers(0, n, size=(iters, n)).tolist()


def loop_stderr(rows: list[list[float]]) -> list[float]:
    """Per column: the sample stdev over resamples of the mean over the items that have a value (NaN: none)."""
    out = []
    for j in range(len(rows[0])):
        means = []
        for resample in documented_resamples(len(rows)):
            present = [rows[i][j] for i in resample if not math.isnan(rows[i][j])]
            if present:
                means.append(sum(present) / len(present))
        out.append(statistics.stdev(means))
    return out


# ---------------------------------------------------------------------------------------------
# A curve: per-layer means and their standard errors
# ---------------------------------------------------------------------------------------------


def test_curve_by_hand_with_an_item_lacking_a_layer():
    items = [{"0": 1.0, "1": 0.0, "2": 0.25}, {"0": 0.0, "1": 0.0, "2": 0.75}, {"0": 1.0, "2": 0.5}, {"0": 1.0, "1": 0.0, "2": 1.0}]
    curve = aggregate_curve(items)
    assert curve["layers"] == [0, 1, 2] and curve["n"] == 4
    # Layer 1 is missing for the third item: its mean is over the other three.
    assert curve["value"] == [0.75, 0.0, 0.625]
    rows = [[it.get(str(k), NAN) for k in range(3)] for it in items]
    expected = loop_stderr(rows)
    assert curve["stderr"] == pytest.approx([round(x, 6) for x in expected], abs=1e-6)
    assert curve["stderr"][1] == 0.0  # a constant column: no spread
    # And close to the textbook value for a mean, sqrt(sum (x - mean)^2 / n) / sqrt(n).
    for j, column in enumerate(zip(*rows)):
        present = [x for x in column if not math.isnan(x)]
        mean = sum(present) / len(present)
        textbook = math.sqrt(sum((x - mean) ** 2 for x in present) / len(present)) / math.sqrt(len(present))
        assert curve["stderr"][j] == pytest.approx(textbook, rel=0.15, abs=1e-9)


def test_curve_of_one_item_and_of_none():
    one = aggregate_curve([{"3": 0.5, "1": 1.0}])
    assert one == {"layers": [1, 3], "value": [1.0, 0.5], "stderr": [0.0, 0.0], "n": 1}  # nothing to resample
    assert aggregate_curve([]) == {"layers": [], "value": [], "stderr": [], "n": 0}
    assert aggregate_curve([{}, {}]) == {"layers": [], "value": [], "stderr": [], "n": 0}  # items without layers
    # A layer only one of several items has: its mean is that item's value, with no spread.
    sparse = aggregate_curve([{"0": 0.0, "1": 0.8}, {"0": 1.0}])
    assert sparse["value"] == [0.5, 0.8] and sparse["stderr"][1] == 0.0 and sparse["n"] == 2


def test_bootstrap_standard_error_agrees_with_scipy():
    from scipy.stats import bootstrap

    from analysis.bootstrap import bootstrap_stderr

    x = np.random.default_rng(7).normal(size=40)
    ours = bootstrap_stderr(x[:, None], iters=4000)[0]
    theirs = bootstrap(x[None, :], np.mean, n_resamples=4000, method="percentile", random_state=3).standard_error
    assert ours == pytest.approx(theirs, rel=0.08)


def test_percentile_interval_agrees_with_scipy_and_skips_undefined_draws():
    from scipy.stats import bootstrap

    from analysis.bootstrap import bootstrap_draws, percentile_interval

    x = np.random.default_rng(11).uniform(size=60)
    low, high = percentile_interval(bootstrap_draws(x, lambda r: r.mean(axis=1), iters=4000), 0.9)
    ci = bootstrap(x[None, :], np.mean, n_resamples=4000, method="percentile", confidence_level=0.9, random_state=5).confidence_interval
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=0.02)

    # Undefined draws are left out: the interval of [NaN, 1..99] is that of 1..99 (numpy's linear percentiles).
    draws = np.array([NAN] + [float(k) for k in range(1, 100)])
    low, high = percentile_interval(draws, 0.9)
    assert (low, high) == pytest.approx((1 + 0.05 * 98, 1 + 0.95 * 98))
    assert all(math.isnan(v) for v in percentile_interval(np.array([NAN, NAN]), 0.9))


def test_the_three_bootstraps_draw_the_same_documented_resamples():
    """Transitions, the attention shift and the curves resample items the one documented way."""
    from analysis.attention_shift import shift_from_samples
    from analysis.transitions import transition_stats

    rng = np.random.default_rng(0)
    n, iters = 12, 200
    resamples = documented_resamples(n, iters)

    def percentile(values: list[float], q: float) -> float:  # numpy's default (linear) rule, by hand
        values = sorted(values)
        pos = q / 100 * (len(values) - 1)
        lo = math.floor(pos)
        return values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * (pos - lo)

    before, after = rng.random(n) < 0.5, rng.random(n) < 0.6
    t = transition_stats(before.tolist(), after.tolist(), iters=iters)
    lift = []
    for r in resamples:
        ff_ft = [after[i] for i in r if not before[i]]
        if ff_ft:
            lift.append(sum(ff_ft) / len(ff_ft))
    assert (t.lift_rate.low, t.lift_rate.high) == pytest.approx((percentile(lift, 2.5), percentile(lift, 97.5)))

    a, b = rng.random((n, 3)), rng.random((n, 3))
    def log(table):
        return [{"doc_id": i, "visual_attention": {str(k): float(v) for k, v in enumerate(row)},
                 "accuracy_a": {"item": f"i{i}", "condition": "A", "correct": True, "answer": None, "graded_by": "rule"}}
                for i, row in enumerate(table)]
    shift = shift_from_samples(log(a), log(b), iters=iters)
    for k in range(3):
        draws = [sum(b[i][k] - a[i][k] for i in r) / n for r in resamples]
        assert (shift.shift[k].low, shift.shift[k].high) == pytest.approx((percentile(draws, 2.5), percentile(draws, 97.5)))


# ---------------------------------------------------------------------------------------------
# A group row: pooling tasks' values
# ---------------------------------------------------------------------------------------------


def test_pooling_numbers_as_lmms_eval_does():
    assert pool_across_tasks([0.5, 0.8], [1, 3]) == pytest.approx((0.5 * 1 + 0.8 * 3) / 4)
    assert pool_across_tasks([0.5, 0.8], [1, 3], weight_by_size=False) == pytest.approx(0.65)
    assert pool_across_tasks([0.4], [7]) == pytest.approx(0.4)  # one task: its own value


def test_pooling_curves_by_hand():
    a = {"layers": [0, 1, 2], "value": [0.5, 0.2, NAN], "stderr": [0.1, 0.2, 0.3], "n": 10}
    b = {"layers": [1, 2, 3], "value": [0.4, 0.6, 0.8], "stderr": [0.05, 0.1, 0.2], "n": 30}
    empty = {"layers": [], "value": [], "stderr": [], "n": 0}
    pooled = pool_across_tasks([a, b, empty], [10, 30, 0])
    assert pooled["layers"] == [0, 1, 2, 3] and pooled["n"] == 40
    # Layer 0: A only. Layer 1: weights 10/40 and 30/40. Layer 2: A's NaN sits out, so B only. Layer 3: B only.
    assert pooled["value"] == pytest.approx([0.5, (0.2 * 10 + 0.4 * 30) / 40, 0.6, 0.8])
    layer1_se = math.sqrt((10 / 40 * 0.2) ** 2 + (30 / 40 * 0.05) ** 2)  # = 0.0625
    assert pooled["stderr"] == pytest.approx([0.1, layer1_se, 0.1, 0.2])
    # One task: the pooled curve is that task's curve.
    assert pool_across_tasks([b], [30]) == b
    # A layer no task defines stays undefined, and the result is still a curve.
    undefined = pool_across_tasks([{"layers": [0], "value": [NAN], "stderr": [NAN], "n": 5}], [5])
    assert undefined["layers"] == [0] and math.isnan(undefined["value"][0]) and undefined["n"] == 5


def test_pooling_a_malformed_curve_is_an_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="differ in length"):
        pool_across_tasks([{"layers": [0, 1], "value": [0.5], "stderr": [0.1, 0.1], "n": 3}], [3])
