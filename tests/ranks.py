"""Data parallel in tests: N real CPU ranks, and the check that each did its own part of the work.

Used by the lmms-eval (`test_lmms_no_setup.py`), lm-eval (`test_loglikelihood.py`) and
`frankenstein run` (`test_run.py`) two-rank tests. `accelerate launch --cpu --num_processes 2`
starts only one process (its multi-CPU mode expects an MPI launcher), so the harness CLIs are
launched with torchrun: gloo on CPU, the same `torch.distributed` path that multi-GPU runs take.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Iterable, Sequence

from conftest import cli_path


def torchrun(processes: int = 2) -> list[str]:
    """The launcher prefix for `processes` CPU ranks on this machine (`--standalone`: a free port each
    time, so tests running side by side do not meet)."""
    return [cli_path("torchrun"), "--standalone", "--nproc_per_node", str(processes)]


def assert_shares(docs_by_rank: Sequence[Sequence[Any]], all_docs: Iterable[Any], processes: int = 2) -> None:
    """Each of `processes` ranks answered a non-empty share; the shares are disjoint and together are
    exactly `all_docs` (`docs_by_rank`: the results' `frankenstein.docs_by_rank[task]`)."""
    assert len(docs_by_rank) == processes, f"{len(docs_by_rank)} ranks reported, not {processes}: {docs_by_rank}"
    assert all(docs_by_rank), f"a rank answered nothing: {docs_by_rank}"
    for a, b in combinations(docs_by_rank, 2):
        assert not set(a) & set(b), f"ranks answered the same docs: {docs_by_rank}"
    assert sorted(d for share in docs_by_rank for d in share) == sorted(all_docs), docs_by_rank
