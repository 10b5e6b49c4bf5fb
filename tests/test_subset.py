"""The paper's subset rule: same items as numpy's legacy sampler, sorted, all items when k >= n."""

from __future__ import annotations

import numpy as np
import pytest

from frankenstein_tasks.subset import PAPER_SEED, SubsetSpec, parse_subset, select_subset, subset_indices
from surgery.errors import FrankensteinError


def _permutation_prefix(n: int, k: int, seed: int) -> list[int]:
    """Independent route to the same items: legacy `choice(n, k, replace=False)` is `permutation(n)[:k]`."""
    return sorted(int(i) for i in np.random.RandomState(seed).permutation(n)[:k])


def test_small_case_listed_by_hand():
    # RandomState(123).permutation(10) is [4, 0, 7, 5, 8, 3, 1, 6, 9, 2] (numpy's frozen legacy stream);
    # its first three entries, sorted, are the subset.
    assert list(np.random.RandomState(123).permutation(10)) == [4, 0, 7, 5, 8, 3, 1, 6, 9, 2]
    assert subset_indices(10, 3, 123) == [0, 4, 7]


def test_second_case_listed_by_hand():
    # RandomState(0).permutation(7) is [6, 2, 1, 3, 0, 5, 4]: the first four, sorted. Not the first four
    # of a fresh stream's integers, nor of numpy's new Generator, nor unsorted.
    assert list(np.random.RandomState(0).permutation(7)) == [6, 2, 1, 3, 0, 5, 4]
    assert subset_indices(7, 4, 0) == [1, 2, 3, 6]


@pytest.mark.parametrize("n,k,seed", [(1319, 100, 123), (500, 100, 123), (37, 5, 0), (1000, 999, 7), (2, 1, 2**32 - 1)])
def test_matches_the_reference_rule(n, k, seed):
    # Not the rule's own expression again: the permutation route, which only shares numpy's legacy stream.
    assert subset_indices(n, k, seed) == _permutation_prefix(n, k, seed)


@pytest.mark.parametrize("n,k,seed", [(1319, 100, 123), (50, 49, 5), (10, 1, 99)])
def test_properties(n, k, seed):
    got = subset_indices(n, k, seed)
    assert len(got) == k
    assert got == sorted(got)
    assert len(set(got)) == k
    assert all(isinstance(i, int) and 0 <= i < n for i in got)
    assert subset_indices(n, k, seed) == got  # deterministic
    assert subset_indices(n, k, seed + 1) != got  # the seed matters


@pytest.mark.parametrize("n,k", [(5, 5), (5, 100), (0, 3), (1, 1)])
def test_k_at_least_n_gives_every_item(n, k):
    assert subset_indices(n, k, 123) == list(range(n))


def test_spec_all_and_numpy_counts():
    assert SubsetSpec().indices(4) == [0, 1, 2, 3]
    assert SubsetSpec(3, 123).indices(np.int64(10)) == [0, 4, 7]
    assert SubsetSpec(np.int64(3), 123).indices(10) == [0, 4, 7]


@pytest.mark.parametrize(
    "text,size,seed",
    [("all", None, PAPER_SEED), (" ALL ", None, PAPER_SEED), ("100:123", 100, 123), ("5", 5, PAPER_SEED), ("7:0", 7, 0)],
)
def test_parse(text, size, seed):
    spec = parse_subset(text)
    assert (spec.size, spec.seed) == (size, seed)
    assert parse_subset(str(spec)) == spec  # round trip


@pytest.mark.parametrize("text", ["", "paper", "100:", ":123", "-5:1", "10:-1", "1.5:3", "0:123", "10:123:4", "10:4294967296", "１０"])
def test_parse_rejects_with_one_line(text):
    with pytest.raises(FrankensteinError) as err:
        parse_subset(text)
    assert "\n" not in str(err.value)
    assert str(err.value)


@pytest.mark.parametrize("n,k,seed", [(-1, 3, 1), (10, 0, 1), (10, -2, 1), (10, 3, -1), (10, True, 1), (2.0, 1, 1)])
def test_bad_arguments(n, k, seed):
    with pytest.raises(FrankensteinError):
        subset_indices(n, k, seed)


def test_select_subset_on_list_and_dataset():
    docs = [{"id": i} for i in range(10)]
    assert [d["id"] for d in select_subset(docs, SubsetSpec(3, 123))] == [0, 4, 7]
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_list(docs)
    chosen = select_subset(table, SubsetSpec(3, 123))
    assert isinstance(chosen, datasets.Dataset)
    assert chosen["id"] == [0, 4, 7]
    assert select_subset(table, SubsetSpec())["id"] == list(range(10))
