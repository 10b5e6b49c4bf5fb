"""Singular values of weight deltas, and the spectral metrics of METHOD.md section 2.

Route: the Gram matrix in float64. For a delta D (m x n, r = min(m, n)) the singular values are the
square roots of the eigenvalues of the r x r Gram matrix (D^T D if tall, D D^T if wide). The Gram
matrix is a sum over row (tall) or column (wide) chunks, so a delta is streamed through once and
never held whole; the cost is one m·n·r matmul plus one r x r symmetric eigensolve. On CPU that beat
`torch.linalg.svdvals` (float64) on every Qwen2-1.5B matrix shape measured: 1.3-1.8x on square and tall
ones, ~10x on wide ones (benchmarks/delta_memory.py). On a GPU the same route runs there (the chunks
are moved to it); matmul and a small eigensolve are what GPUs do best.

Accuracy, and why float64: forming D^T D squares the condition number. In float64 the Gram
eigenvalues carry an absolute error of about eps64 · sigma1², so sigma_i carries a relative error of
about ½ · eps64 · (sigma1 / sigma_i)² (measured: ~1e-11 at sigma_i = 1e-3·sigma1, ~1e-5 at
1e-6·sigma1). In float32 the same bound would already be 1e-4 at sigma_i = 0.02·sigma1, too coarse
for the tail of the spectrum. Singular values at or below `ZERO_RTOL` · sigma1 are reported as 0,
excluded from the condition number and the log-volume, and not counted in the numerical rank. The
tolerance keeps a wide margin: just above it the route's error is about 1e-6 relative, 100x inside
the 1e-4 it promises. Route and tolerance are the same on CPU and GPU, so results do not depend on
the device.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

ZERO_RTOL = 1e-5  # singular values <= ZERO_RTOL * sigma1 count as zero (see the module docstring)

# What each spectral metric means; copied into delta.json so a reader need not find this file.
DEFINITIONS = {
    "spectral_norm": "largest singular value sigma1",
    "nuclear_norm": "sum of the singular values",
    "stable_rank": "||delta||_F^2 / sigma1^2 (0 for an all-zero delta)",
    "effective_rank": "exp(entropy of sigma / sum(sigma)) (0 for an all-zero delta)",
    "condition_number": "sigma1 / sigma_min, sigma_min the smallest singular value above the zero tolerance; "
    "Infinity for an all-zero delta",
    "log_volume_topk": "sum of log(sigma) over the top-k singular values, skipping zeros (those at or below "
    "the zero tolerance)",
    "numerical_rank": "number of singular values above the zero tolerance",
    "zero_tolerance": f"sigma <= {ZERO_RTOL:g} * sigma1 counts as zero: below it the float64 Gram route "
    "cannot promise 1e-4 relative accuracy",
}


class GramAccumulator:
    """Sum of D_c^T D_c (tall: row chunks) or D_c D_c^T (wide: column chunks) in float64."""

    def __init__(self, rows: int, cols: int, device: str = "cpu"):
        import torch

        self.tall = rows >= cols
        size = cols if self.tall else rows
        self.gram = torch.zeros(size, size, dtype=torch.float64, device=device)
        self.device = device

    def add(self, chunk: Any) -> None:
        """Add one float64 chunk: a block of rows of a tall delta, or of columns of a wide one."""
        chunk = chunk.to(self.device)
        if self.tall:
            self.gram.addmm_(chunk.T, chunk)
        else:
            self.gram.addmm_(chunk, chunk.T)

    def singular_values(self) -> Any:
        return gram_singular_values(self.gram)


def gram_singular_values(gram: Any) -> Any:
    """Singular values (descending, float64, on CPU) from a Gram matrix; those below tolerance set to 0."""
    import torch

    with one_thread():  # the symmetric eigensolver is memory-bound: one thread is as fast, and steadier
        eig = torch.linalg.eigvalsh(gram).flip(0).clamp_min(0.0)
    return zero_below_tolerance(eig.sqrt().cpu())


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run CPU torch ops on one thread. For elementwise work on cache-sized blocks and for the symmetric
    eigensolver, the thread pool's fork/join costs more than it saves: measured on 2 cores, one thread
    was 2-6x faster (eigvalsh of 1536 x 1536: 0.2 s vs 1.2 s), and far steadier on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def singular_values(matrix: Any, device: str = "cpu") -> Any:
    """Singular values of a whole 2-D matrix by the Gram route (used for small matrices and checks)."""
    import torch

    m = matrix.to(device=device, dtype=torch.float64)
    acc = GramAccumulator(*m.shape, device=device)
    acc.add(m)
    return acc.singular_values()


def zero_below_tolerance(sigma: Any) -> Any:
    """Set singular values at or below ZERO_RTOL * sigma1 to exactly 0 (sigma sorted descending)."""
    if sigma.numel() == 0 or float(sigma[0]) == 0.0:
        return sigma.clone().zero_()
    out = sigma.clone()
    out[out <= ZERO_RTOL * float(sigma[0])] = 0.0
    return out


def spectral_metrics(sigma: Any, frobenius_sq: float, topk: int) -> dict[str, Any]:
    """METHOD.md section 2 metrics from descending singular values (zeros already applied)."""
    import torch

    sigma = sigma.to(torch.float64)
    positive = sigma[sigma > 0]
    sigma1 = float(sigma[0]) if sigma.numel() else 0.0
    if positive.numel() == 0:  # an all-zero delta: nothing changed in this tensor
        return {
            "spectral_norm": 0.0,
            "nuclear_norm": 0.0,
            "stable_rank": 0.0,
            "effective_rank": 0.0,
            "condition_number": math.inf,
            "log_volume_topk": 0.0,
            "numerical_rank": 0,
            "topk_singular_values": [0.0] * min(topk, sigma.numel()),
        }
    nuclear = float(positive.sum())
    p = positive / nuclear
    entropy = float(-(p * p.log()).sum())
    return {
        "spectral_norm": sigma1,
        "nuclear_norm": nuclear,
        "stable_rank": frobenius_sq / sigma1**2,
        "effective_rank": math.exp(entropy),
        "condition_number": sigma1 / float(positive[-1]),
        "log_volume_topk": float(positive[:topk].log().sum()),
        "numerical_rank": int(positive.numel()),
        "topk_singular_values": [float(s) for s in sigma[:topk]],
    }
