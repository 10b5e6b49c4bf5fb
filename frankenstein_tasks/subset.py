"""The paper's fixed random subset of a task's items, and the user setting that chooses it.

The paper evaluates 100 items per task drawn with seed 123. To give a user exactly the paper's items,
every task draws the same way (METHOD.md 1b): out of the n items left after any category filter, in
dataset order, the indices

    sorted(numpy.random.RandomState(seed).choice(numpy.arange(n), size=k, replace=False))

and all n items when k >= n. `RandomState` is numpy's legacy generator, whose stream numpy keeps
frozen across releases, so the same (n, k, seed) names the same items on any machine.

A user writes the setting as "all", "K" (K items, the paper's seed) or "K:SEED".
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from surgery.errors import FrankensteinError

PAPER_SIZE = 100
PAPER_SEED = 123
_MAX_SEED = 2**32 - 1  # RandomState accepts seeds in [0, 2**32)


@dataclass(frozen=True)
class SubsetSpec:
    """Which items to evaluate: `size` items drawn with `seed`, or every item when `size` is None."""

    size: int | None = None
    seed: int = PAPER_SEED

    def __post_init__(self):
        if self.size is not None and (_as_int(self.size) is None or self.size < 1):
            raise FrankensteinError(f"subset size must be a positive integer, got {self.size!r}")
        if _as_int(self.seed) is None or not 0 <= self.seed <= _MAX_SEED:
            raise FrankensteinError(f"subset seed must be an integer in [0, {_MAX_SEED}], got {self.seed!r}")

    def indices(self, n_items: int) -> list[int]:
        """The chosen item indices, ascending, out of `n_items` (already category-filtered)."""
        if self.size is None:
            return list(range(_check_count(n_items)))
        return subset_indices(n_items, self.size, self.seed)

    def __str__(self) -> str:
        return "all" if self.size is None else f"{self.size}:{self.seed}"


def subset_indices(n_items: int, size: int, seed: int = PAPER_SEED) -> list[int]:
    """Indices of the paper's subset: `size` of `range(n_items)` drawn with `seed`, ascending; all if size >= n_items."""
    import numpy as np

    n_items = _check_count(n_items)
    SubsetSpec(size, seed)  # validates size and seed
    if size >= n_items:
        return list(range(n_items))
    drawn = np.random.RandomState(seed).choice(np.arange(n_items), size=size, replace=False)
    return sorted(int(i) for i in drawn)


def parse_subset(text: str) -> SubsetSpec:
    """'all' -> every item; 'K' -> K items with the paper's seed; 'K:SEED' -> K items with SEED."""
    raw = str(text).strip()
    if raw.lower() == "all":
        return SubsetSpec()
    size_text, sep, seed_text = raw.partition(":")
    if not _is_uint(size_text) or (sep and not _is_uint(seed_text)):
        raise FrankensteinError(f"subset {text!r} is not 'all', 'K' or 'K:SEED' with non-negative integers (e.g. '100:123')")
    return SubsetSpec(size=int(size_text), seed=int(seed_text) if sep else PAPER_SEED)


def select_subset(docs: Any, spec: SubsetSpec) -> Any:
    """The chosen docs in dataset order: `docs.select(...)` for a datasets.Dataset, else a list."""
    chosen = spec.indices(len(docs))
    if hasattr(docs, "select"):
        return docs.select(chosen)
    return [docs[i] for i in chosen]


def _is_uint(text: str) -> bool:
    return text.strip().isascii() and text.strip().isdigit()


def _as_int(value: Any) -> int | None:
    """The integer an int-like value (int, numpy integer) stands for; None for anything else, bools included."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _check_count(n_items: int) -> int:
    count = _as_int(n_items)
    if count is None or count < 0:
        raise FrankensteinError(f"number of items must be a non-negative integer, got {n_items!r}")
    return count
