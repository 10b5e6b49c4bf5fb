"""Transition statistics between two right/wrong outcomes per item: the M-metrics and the transfer table.

METHOD.md 3 reads everything off pairs of outcomes on the same items. One function,
`transition_stats(before, after)`, serves both places they occur:

* two conditions, one model: before = right with the real image, after = right with the black image
  (perception) or with the black image plus a description (alignment);
* two models, one condition: before = IN right, after = RL (or a spliced variant) right.

Per item the pair falls in one of four cells: TT (right, right), TF (right, wrong), FT (wrong, right),
FF (wrong, wrong). From the counts:

    accuracy_before     (TT + TF) / n
    accuracy_after      (TT + FT) / n
    accuracy_change     (FT - TF) / n     after minus before: RL minus IN, paired
    right_both          TT / n            M_v2r (image, then black image + description)
    right_before_only   TF / n            M_vis (image, then black image)
    net_gain            FT - TF           in items
    side_effect_rate    TF / (TT + TF)    share of items right before that are lost after
    lift_rate           FT / (FF + FT)    share of items wrong before that are gained after

M_rea is plain accuracy (`m_rea`). A model-vs-model difference of M_vis or M_v2r is the
accuracy_change between the per-item indicators (`vis_items`, `v2r_items`) of the two models.

Intervals: percentile bootstrap over items, pairs kept together (`analysis.bootstrap`, the one
implementation: BOOTSTRAP_ITERS resamples, numpy Generator seeded with BOOTSTRAP_SEED), the central
`confidence` share of the resampled statistic.

Undefined values: with zero items, or a rate whose denominator is zero (side-effect rate when nothing
was right before), the value and its interval are None (null in JSON), never NaN and never an error.
A resample in which a defined rate's denominator happens to be zero is left out of its interval.
With zero items the counts and net_gain are 0 and net_gain has no interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from analysis.bootstrap import (
    BOOTSTRAP_ITERS,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    percentile_interval,
    resample_rows,
)
from surgery.errors import FrankensteinError


@dataclass(frozen=True)
class Estimate:
    value: float | None  # None: undefined (0/0 or no items)
    low: float | None = None  # interval bounds; None when value is None or there are no items
    high: float | None = None

    def as_dict(self, digits: int = 6) -> dict[str, float | None]:
        return {k: None if v is None else round(v, digits) for k, v in (("value", self.value), ("low", self.low), ("high", self.high))}


@dataclass(frozen=True)
class Transitions:
    """Cell counts and the statistics of STATISTICS (one field each, same names) with their intervals."""

    n: int
    tt: int
    tf: int
    ft: int
    ff: int
    accuracy_before: Estimate
    accuracy_after: Estimate
    accuracy_change: Estimate
    right_both: Estimate
    right_before_only: Estimate
    net_gain: Estimate
    side_effect_rate: Estimate
    lift_rate: Estimate
    confidence: float = CONFIDENCE
    iters: int = BOOTSTRAP_ITERS
    seed: int = BOOTSTRAP_SEED

    def as_dict(self, digits: int = 6) -> dict[str, Any]:
        """JSON-ready: counts, each statistic as {value, low, high}, and how the intervals were made."""
        return {
            "n": self.n,
            **{cell: getattr(self, cell) for cell in ("tt", "tf", "ft", "ff")},
            **{name: getattr(self, name).as_dict(digits) for name in STATISTICS},
            "interval": {"method": "percentile bootstrap over items", "confidence": self.confidence, "iters": self.iters, "seed": self.seed},
        }


class _Counts(NamedTuple):
    """Cell counts, as scalars (the data) or arrays (one entry per bootstrap resample)."""

    tt: np.ndarray
    tf: np.ndarray
    ft: np.ndarray
    ff: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.tt + self.tf + self.ft + self.ff


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


STATISTICS: dict[str, Callable[[_Counts], np.ndarray]] = {
    "accuracy_before": lambda c: _ratio(c.tt + c.tf, c.n),
    "accuracy_after": lambda c: _ratio(c.tt + c.ft, c.n),
    "accuracy_change": lambda c: _ratio(c.ft - c.tf, c.n),
    "right_both": lambda c: _ratio(c.tt, c.n),
    "right_before_only": lambda c: _ratio(c.tf, c.n),
    "net_gain": lambda c: np.asarray(c.ft - c.tf, dtype=float),
    "side_effect_rate": lambda c: _ratio(c.tf, c.tt + c.tf),
    "lift_rate": lambda c: _ratio(c.ft, c.ff + c.ft),
}


def transition_stats(
    before: Sequence[bool],
    after: Sequence[bool],
    *,
    iters: int = BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Transitions:
    """Counts TT/TF/FT/FF and every statistic of STATISTICS with a bootstrap interval, items paired by position."""
    if iters < 1 or not 0 < confidence < 1:
        raise FrankensteinError(f"bootstrap needs iters >= 1 and 0 < confidence < 1, got iters={iters}, confidence={confidence}")
    b, a = _paired(before, after, ("before", "after"))
    codes = 2 * b.astype(np.int8) + a.astype(np.int8)  # 3 TT, 2 TF, 1 FT, 0 FF
    counts = _count(codes[None, :])
    resampled = _count(codes[resample_rows(len(codes), iters, seed)]) if len(codes) else None
    stats = {name: _estimate(fn, counts, resampled, confidence) for name, fn in STATISTICS.items()}
    cells = (int(x[0]) for x in counts)
    return Transitions(len(codes), *cells, **stats, confidence=confidence, iters=iters, seed=seed)


def m_vis(with_image: Sequence[bool], black_image: Sequence[bool], **bootstrap: Any) -> Estimate:
    """M_vis: share of items right with the image and wrong with a black image."""
    return transition_stats(with_image, black_image, **bootstrap).right_before_only


def m_v2r(with_image: Sequence[bool], described: Sequence[bool], **bootstrap: Any) -> Estimate:
    """M_v2r: share of items right with the image and right with a black image plus a description."""
    return transition_stats(with_image, described, **bootstrap).right_both


def m_rea(correct: Sequence[bool], **bootstrap: Any) -> Estimate:
    """M_rea: accuracy (the same bootstrap, on one outcome per item)."""
    return transition_stats(correct, correct, **bootstrap).accuracy_before


def vis_items(with_image: Sequence[bool], black_image: Sequence[bool]) -> list[bool]:
    """Per item, does it count toward M_vis (right with the image, wrong without)? For model-vs-model differences."""
    x, y = _paired(with_image, black_image, ("with_image", "black_image"))
    return (x & ~y).tolist()


def v2r_items(with_image: Sequence[bool], described: Sequence[bool]) -> list[bool]:
    """Per item, does it count toward M_v2r (right with the image and with the description)?"""
    x, y = _paired(with_image, described, ("with_image", "described"))
    return (x & y).tolist()


def _paired(first: Sequence[Any], second: Sequence[Any], names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    x, y = _outcomes(first, names[0]), _outcomes(second, names[1])
    if len(x) != len(y):
        raise FrankensteinError(f"{names[0]} has {len(x)} outcomes but {names[1]} has {len(y)}; pair the same items")
    return x, y


def _outcomes(values: Sequence[Any], name: str) -> np.ndarray:
    """Booleans from bools or 0/1 numbers; anything else is an error naming the item."""
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1)):
            out[i] = bool(v)
        else:
            raise FrankensteinError(f"{name} outcome {i} is {v!r}; expected True/False (or 1/0)")
    return out


def _count(codes: np.ndarray) -> _Counts:
    """Cell counts per row of a (rows, items) array of codes."""
    return _Counts(*((codes == k).sum(axis=1) for k in (3, 2, 1, 0)))


def _estimate(fn: Callable[[_Counts], np.ndarray], counts: _Counts, resampled: _Counts | None, confidence: float) -> Estimate:
    value = float(fn(counts)[0])
    if np.isnan(value):
        return Estimate(None)
    if resampled is None:  # no items: nothing to resample
        return Estimate(value)
    low, high = percentile_interval(fn(resampled), confidence)
    if np.isnan(low):  # no resample defined it
        return Estimate(value)
    return Estimate(value, float(low), float(high))
