"""The bootstrap over items: one implementation behind every interval and standard error of the project.

Every statistic with an uncertainty here is a function of items: a curve's per-layer means (an items x
layers table, `frankenstein_tasks.contract.aggregate_curve`), the transition statistics of paired
outcomes (`analysis.transitions`), the per-layer mean of RL − IN (`analysis.attention_shift`). All of
them are resampled the same way, by `resample_rows`: BOOTSTRAP_ITERS resamples of the n items with
replacement, drawn by numpy's Generator seeded with BOOTSTRAP_SEED, one resample shared by every
column (layers, the two outcomes of a pair), so differences between columns keep their pairing. From
the statistic's draws:

    percentile_interval   the central `confidence` share of the draws (percentile method)
    standard_error        the standard deviation of the draws (ddof=1)

A draw may be NaN where the statistic is undefined on that resample (a rate whose denominator the
resample left at zero, a layer it left without items): it is left out of that column's interval and
standard error; a column with no defined draw gets NaN.

Not `scipy.stats.bootstrap` (scipy is a test dependency only, and the tests compare against it): it
draws its own resamples per call, so a curve's layers would not share one and a pair's outcomes
would need its paired mode, and it neither skips undefined draws nor keeps the draws this project's
published numbers came from. Not lmms-eval's `bootstrap_stderr`: it resamples one scalar metric's
per-item values (a rate such as TF / (TT + TF) has a per-resample denominator, so it needs the
pairs), gives no interval, and opens a process pool per call.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

BOOTSTRAP_ITERS = 1000
BOOTSTRAP_SEED = 1234
CONFIDENCE = 0.95


def resample_rows(n: int, iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(iters, n) row indices: each row one resample of the n items with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(iters, n))


def bootstrap_draws(table: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *,
                    iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """`statistic` of every resample of `table`'s rows: it maps (iters, n, ...) to (iters, ...)."""
    table = np.asarray(table)
    return statistic(table[resample_rows(len(table), iters, seed)])


def percentile_interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per column of (iters, ...) draws: the central `confidence` share, undefined draws left out."""
    tail = 100 * (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column without one defined draw: NaN, said above
        low, high = np.nanpercentile(np.asarray(draws, dtype=float), [tail, 100 - tail], axis=0)
    return low, high


def standard_error(draws: np.ndarray) -> np.ndarray:
    """Per column of (iters, ...) draws: their standard deviation (ddof=1), undefined draws left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(np.asarray(draws, dtype=float), axis=0, ddof=1)


def nanmean_rows(resampled: np.ndarray) -> np.ndarray:
    """The statistic of a curve: per resample and column, the mean over the items that have a value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without an item for a column: NaN
        return np.nanmean(resampled, axis=1)


def bootstrap_stderr(table: np.ndarray, *, iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Standard error of each column's mean over an items x columns table (NaN: the item lacks it).

    Fewer than two items: zeros, since one item cannot be resampled into any other mean.
    """
    table = np.asarray(table, dtype=float)
    if table.shape[0] < 2:
        return np.zeros(table.shape[1])
    return standard_error(bootstrap_draws(table, nanmean_rows, iters=iters, seed=seed))
