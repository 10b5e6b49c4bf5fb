"""Transition statistics and M-metrics against values computed by hand and a plain bootstrap loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.transitions import STATISTICS, m_rea, m_v2r, m_vis, transition_stats, v2r_items, vis_items
from surgery.errors import FrankensteinError

T, F = True, False

# Ten items; cells by hand: TT items 1,3,8,10; TF items 2,6; FT items 4,9; FF items 5,7.
BEFORE_10 = [T, T, T, F, F, T, F, T, F, T]
AFTER_10 = [T, F, T, T, F, F, F, T, T, T]
# Five items, 1/0 spelling: TT items 1,4; TF items 2,3; FT item 5; no FF.
BEFORE_5 = [1, 1, 1, 1, 0]
AFTER_5 = [1, 0, 0, 1, 1]


def _values(t) -> dict:
    return {name: getattr(t, name).value for name in STATISTICS}


def test_ten_items_by_hand():
    t = transition_stats(BEFORE_10, AFTER_10)
    assert (t.n, t.tt, t.tf, t.ft, t.ff) == (10, 4, 2, 2, 2)
    assert _values(t) == pytest.approx(
        {
            "accuracy_before": 0.6,  # (4 + 2) / 10
            "accuracy_after": 0.6,  # (4 + 2) / 10
            "accuracy_change": 0.0,  # (2 - 2) / 10
            "right_both": 0.4,  # 4 / 10
            "right_before_only": 0.2,  # 2 / 10
            "net_gain": 0.0,  # 2 - 2
            "side_effect_rate": 1 / 3,  # 2 / (4 + 2)
            "lift_rate": 0.5,  # 2 / (2 + 2)
        }
    )


def test_five_items_by_hand():
    t = transition_stats(BEFORE_5, AFTER_5)
    assert (t.n, t.tt, t.tf, t.ft, t.ff) == (5, 2, 2, 1, 0)
    assert _values(t) == pytest.approx(
        {
            "accuracy_before": 0.8,
            "accuracy_after": 0.6,
            "accuracy_change": -0.2,
            "right_both": 0.4,
            "right_before_only": 0.4,
            "net_gain": -1.0,
            "side_effect_rate": 0.5,  # 2 / (2 + 2)
            "lift_rate": 1.0,  # 1 / (0 + 1)
        }
    )


def test_all_right_both_times():
    t = transition_stats([T] * 4, [T] * 4)
    assert (t.tt, t.tf, t.ft, t.ff) == (4, 0, 0, 0)
    for name, value in [("accuracy_before", 1.0), ("accuracy_after", 1.0), ("right_both", 1.0), ("right_before_only", 0.0),
                        ("accuracy_change", 0.0), ("net_gain", 0.0), ("side_effect_rate", 0.0)]:
        est = getattr(t, name)
        assert (est.value, est.low, est.high) == (value, value, value), name  # constant data: interval collapses
    assert (t.lift_rate.value, t.lift_rate.low, t.lift_rate.high) == (None, None, None)  # 0 / 0: nothing was wrong before


def test_all_wrong_both_times():
    t = transition_stats([F] * 3, [0] * 3)
    assert (t.tt, t.tf, t.ft, t.ff) == (0, 0, 0, 3)
    assert (t.lift_rate.value, t.lift_rate.low, t.lift_rate.high) == (0.0, 0.0, 0.0)
    assert (t.accuracy_before.value, t.right_both.value, t.net_gain.value) == (0.0, 0.0, 0.0)
    assert t.side_effect_rate.value is None and t.side_effect_rate.low is None


def test_no_items():
    t = transition_stats([], [])
    assert (t.n, t.tt, t.tf, t.ft, t.ff) == (0, 0, 0, 0, 0)
    for name in STATISTICS:
        est = getattr(t, name)
        assert est.low is None and est.high is None, name
        assert est.value == (0.0 if name == "net_gain" else None), name
    json.dumps(t.as_dict(), allow_nan=False)  # null, never NaN


def _reference_bootstrap(before, after, iters, seed, confidence):
    """A plain loop: the same resampled item indices (over the items in the documented order, sorted by
    their values: before, then after), cells counted one item at a time, then percentiles."""
    n = len(before)
    before, after = zip(*sorted(zip(before, after)))
    rows = np.random.default_rng(seed).integers(0, n, size=(iters, n))
    draws = {name: [] for name in STATISTICS}
    for row in rows:
        tt = tf = ft = ff = 0
        for i in row:
            b, a = bool(before[i]), bool(after[i])
            tt += b and a
            tf += b and not a
            ft += a and not b
            ff += not a and not b
        values = {
            "accuracy_before": (tt + tf) / n,
            "accuracy_after": (tt + ft) / n,
            "accuracy_change": (ft - tf) / n,
            "right_both": tt / n,
            "right_before_only": tf / n,
            "net_gain": ft - tf,
            "side_effect_rate": tf / (tt + tf) if tt + tf else None,
            "lift_rate": ft / (ff + ft) if ff + ft else None,
        }
        for name, v in values.items():
            if v is not None:
                draws[name].append(v)
    tail = 100 * (1 - confidence) / 2
    return {name: tuple(np.percentile(v, [tail, 100 - tail])) for name, v in draws.items()}


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_intervals_match_a_plain_bootstrap_loop(confidence):
    rng = np.random.default_rng(7)
    before = (rng.random(40) < 0.6).tolist()
    after = (rng.random(40) < 0.5).tolist()
    t = transition_stats(before, after, iters=300, seed=11, confidence=confidence)
    reference = _reference_bootstrap(before, after, 300, 11, confidence)
    for name in STATISTICS:
        est = getattr(t, name)
        assert (est.low, est.high) == pytest.approx(reference[name]), name


def test_intervals_contain_the_estimate_and_are_deterministic():
    rng = np.random.default_rng(3)
    before = (rng.random(100) < 0.7).tolist()
    after = (rng.random(100) < 0.5).tolist()
    t = transition_stats(before, after)
    for name in STATISTICS:
        est = getattr(t, name)
        assert est.low <= est.value <= est.high, name
        assert est.low < est.high, name  # mixed outcomes: a real spread
    assert transition_stats(before, after) == t
    assert transition_stats(before, after, seed=99).side_effect_rate != t.side_effect_rate


def test_m_metrics():
    with_image = [T, T, F, T, T]
    black = [F, T, F, F, T]
    described = [T, F, F, T, F]
    assert m_vis(with_image, black).value == pytest.approx(2 / 5)  # items 1 and 4
    assert m_v2r(with_image, described).value == pytest.approx(2 / 5)  # items 1 and 4
    assert m_rea([T, F, T, T]).value == pytest.approx(3 / 4)
    assert m_rea([]).value is None


def test_model_vs_model_difference_of_m_vis():
    # IN: M_vis items 1 and 4 (2 of 4); RL: items 1, 2, 3 (3 of 4). RL minus IN = 0.25.
    in_vis = vis_items([T, T, F, T], [F, T, F, F])
    rl_vis = vis_items([T, T, T, T], [F, F, F, T])
    assert in_vis == [T, F, F, T] and rl_vis == [T, T, T, F]
    t = transition_stats(in_vis, rl_vis)
    assert (t.tt, t.tf, t.ft, t.ff) == (1, 1, 2, 0)
    assert t.accuracy_change.value == pytest.approx(0.25)
    assert t.accuracy_change.low <= 0.25 <= t.accuracy_change.high
    assert v2r_items([T, T, F], [T, F, T]) == [T, F, F]


def test_as_dict_is_json_ready():
    d = json.loads(json.dumps(transition_stats(BEFORE_5, AFTER_5).as_dict(), allow_nan=False))
    assert (d["n"], d["tt"], d["tf"], d["ft"], d["ff"]) == (5, 2, 2, 1, 0)
    assert d["side_effect_rate"]["value"] == 0.5
    assert set(d["lift_rate"]) == {"value", "low", "high"}
    assert d["interval"] == {"method": "percentile bootstrap over items", "confidence": 0.95, "iters": 1000, "seed": 1234}


@pytest.mark.parametrize(
    "before,after,kwargs",
    [([T, F], [T], {}), ([T, None], [T, F], {}), ([T, 2], [T, F], {}), ([T, "yes"], [T, F], {}),
     ([T], [0.5], {}), ([T], [T], {"iters": 0}), ([T], [T], {"confidence": 1.0})],
)
def test_bad_input_is_one_line(before, after, kwargs):
    with pytest.raises(FrankensteinError) as err:
        transition_stats(before, after, **kwargs)
    assert "\n" not in str(err.value)


def test_indicator_length_mismatch():
    with pytest.raises(FrankensteinError, match="pair the same items"):
        vis_items([T, F], [T])


def test_resamples_with_an_empty_denominator_are_left_out():
    # One item right before, and lost after: every resample that draws it has side-effect rate 1; the
    # about one in three that miss it have 0 / 0 and must not drag the interval towards 0.
    before, after = [T, F, F, F, F], [F, F, F, F, F]
    t = transition_stats(before, after)
    assert (t.side_effect_rate.value, t.side_effect_rate.low, t.side_effect_rate.high) == (1.0, 1.0, 1.0)
    reference = _reference_bootstrap(before, after, 1000, 1234, 0.95)
    assert (t.accuracy_before.low, t.accuracy_before.high) == pytest.approx(reference["accuracy_before"])
