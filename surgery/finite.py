"""Non-finite weights are bad input: one check, shared by every place that reads weights.

A checkpoint with a NaN or Inf in one tensor still loads and still generates; a probe run on it
ends with a normal-looking results file full of garbage. So weights are checked where they are
read: `surgery.loading.load_model` checks every tensor of a model it loads for a probe, and the
weight-delta analysis (`analysis.delta`) checks each tensor chunk it streams. Both name the tensor
and the checkpoint in one line, `tensor NAME in WHERE holds N NaN/Inf values`.

The check is cheap: a tensor's plain sum is non-finite exactly when it holds a NaN or Inf (weights
are far too small for a sum to overflow), and a vectorised sum reads memory at full speed, where
`torch.isfinite(t).all()` allocates and fills a mask as large as the tensor (25x slower on a CPU
in `benchmarks/finite_check.py`, where the sum costs a fifth of copying the same weights from the
page cache). Only a tensor whose sum is non-finite is counted element by element, for the message.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from surgery.errors import FrankensteinError


def nonfinite_count(tensor: Any) -> int:
    """How many NaN/Inf values `tensor` holds (0 for integer tensors); cheap when there are none."""
    import torch

    if not tensor.is_floating_point() or tensor.numel() == 0:
        return 0
    if bool(torch.isfinite(tensor.sum())):
        return 0
    return int((~torch.isfinite(tensor)).sum())


def nonfinite_error(name: str, where: str, count: int) -> FrankensteinError:
    return FrankensteinError(f"tensor {name} in {where} holds {count} NaN/Inf value{'' if count == 1 else 's'}")


def check_finite(tensor: Any, name: str, where: str) -> None:
    """Raise a one-line error naming `name` and `where` if `tensor` holds a NaN or Inf."""
    count = nonfinite_count(tensor)
    if count:
        raise nonfinite_error(name, where, count)


def check_tensors_finite(named: Iterable[tuple[str, Any]], where: str, rename: Callable[[str], str] = str) -> None:
    """`check_finite` on each (name, tensor), in order; `rename` gives the name the error shows."""
    for name, tensor in named:
        count = nonfinite_count(tensor.detach())
        if count:
            raise nonfinite_error(rename(name), where, count)
