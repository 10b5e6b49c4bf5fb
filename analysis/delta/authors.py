"""The authors' per-layer weight aggregates (METHOD.md 2), reported beside the project's own.

Their scripts/characterisation_energy.py and characterisation_diversity.py summarise each unified
layer in their own way, which the paper's figures show; `analysis.delta.summary` (energies summed,
relative norms pooled) stays the project's. Theirs, per unified layer and per delta:

    selection           every weight (its name holds "weight" and not "norm") of a vision block, the
                        projector or a decoder layer: no embeddings, lm_head or patch embedding, no
                        biases; the projector's 1-D norm (Qwen's merger `ln_q`, named without "norm")
                        is in. Spectral aggregates take its matrices (2-D or more, at most 1e8 values).
    fro_norm_mean       mean of ||delta||_F over the layer's tensors
    fro_norm_sum        their sum
    relative_norm_mean  mean of ||delta||_F / (||W_IN||_F + 1e-8): the IN weight is the reference for
                        both deltas (the project measures dIN against Base)
    spectral_norm_mean  mean of sigma1 over the layer's matrices
    log_volume_mean     mean over the layer's matrices of sum(log(sigma_i + 1e-12)) over the top k
                        sigma, none skipped (the project's log-volume skips those at or below
                        1e-5 sigma1)

One function per aggregate (`AGGREGATES`); `authors_per_layer(records)` applies them per layer. The
tensors their selection holds and the project's plan skips (1-D weights) are streamed for their norms
only (`extra_items`). Kept from the project (docs/METHOD.md section 6): deltas in float64 from the
stored dtype (they subtract in float16), the unified index from the architecture adapter (they fix
the vision tower at 32 blocks), singular values from the float64 Gram route with sigma at or below
1e-5 sigma1 read as 0 (theirs: float32 svdvals), so only a rank-deficient delta's log-volume differs.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from analysis.delta.plan import Checkpoint, Plan, PlanItem, plan_item
from analysis.delta.schema import (
    DELTAS,
    ROLES,
    AuthorsLayer,
    AuthorsLayerStats,
    TensorRecord,
)
from surgery.errors import FrankensteinError

REFERENCE_EPS = 1e-8  # added to ||W_IN||_F in the relative norm
LOG_EPS = 1e-12  # added to each sigma in the log-volume
SVD_MAX_NUMEL = 100_000_000  # larger matrices get no spectral metrics in their script


def in_selection(name: str, unified_index: int | None) -> bool:
    """Whether the authors' scripts analyse a tensor: a weight (not a norm) with a unified layer index."""
    return unified_index is not None and "weight" in name and "norm" not in name.lower()


def _in_norm(record: TensorRecord) -> float:
    return record.deltas["rl"].reference_norm  # dRL's reference weight is IN


def _matrices(records: Sequence[TensorRecord], delta: str) -> list[TensorRecord]:
    return [r for r in records if len(r.shape) >= 2 and r.numel <= SVD_MAX_NUMEL and r.deltas[delta].spectral_norm is not None]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def fro_norm_mean(records: Sequence[TensorRecord], delta: str) -> float | None:
    return _mean([r.deltas[delta].frobenius_norm for r in records])


def fro_norm_sum(records: Sequence[TensorRecord], delta: str) -> float | None:
    return sum(r.deltas[delta].frobenius_norm for r in records) if records else None


def relative_norm_mean(records: Sequence[TensorRecord], delta: str) -> float | None:
    return _mean([r.deltas[delta].frobenius_norm / (_in_norm(r) + REFERENCE_EPS) for r in records])


def spectral_norm_mean(records: Sequence[TensorRecord], delta: str) -> float | None:
    return _mean([r.deltas[delta].spectral_norm for r in _matrices(records, delta)])  # type: ignore[misc]


def log_volume_mean(records: Sequence[TensorRecord], delta: str) -> float | None:
    return _mean([sum(math.log(s + LOG_EPS) for s in r.deltas[delta].topk_singular_values or [])
                  for r in _matrices(records, delta)])


# Aggregate name -> function of (a layer's selected records, delta); the fields of AuthorsLayerStats.
AGGREGATES: dict[str, Callable[[Sequence[TensorRecord], str], float | None]] = {
    "fro_norm_mean": fro_norm_mean,
    "fro_norm_sum": fro_norm_sum,
    "relative_norm_mean": relative_norm_mean,
    "spectral_norm_mean": spectral_norm_mean,
    "log_volume_mean": log_volume_mean,
}
assert set(AGGREGATES) == set(AuthorsLayerStats.model_fields)


def authors_per_layer(records: Sequence[TensorRecord]) -> list[AuthorsLayer]:
    """The authors' aggregates per unified layer, over the records their selection holds."""
    layers: dict[int, list[TensorRecord]] = {}
    for r in records:
        if in_selection(r.name, r.unified_index):
            layers.setdefault(r.unified_index, []).append(r)  # type: ignore[arg-type]
    return [
        AuthorsLayer(
            key=key,
            section=members[0].section,
            n_tensors=len(members),
            n_matrices=len(_matrices(members, "in")),
            deltas={d: AuthorsLayerStats(**{name: fn(members, d) for name, fn in AGGREGATES.items()}) for d in DELTAS},
        )
        for key, members in sorted(layers.items())
    ]


def extra_items(ckpts: dict[str, Checkpoint], plan: Plan, cuts: tuple[int, int] | None) -> list[PlanItem]:
    """Tensors in the authors' selection that the project's plan skipped (1-D weights, e.g. the merger's ln_q)."""
    layout = ckpts["base"].layout
    partition = layout.partition(cuts)
    items = []
    for skipped in plan.skipped:
        infos = {role: ckpts[role].tensors.get(skipped.name) for role in ROLES}
        if any(info is None or not info.dtype.startswith(("F", "BF")) for info in infos.values()):
            continue
        try:
            where = layout.classify(skipped.name)
        except FrankensteinError:
            continue
        if in_selection(infos["base"].name, where.unified_index):  # type: ignore[union-attr]
            items.append(plan_item(layout, partition, skipped.name, infos, where))  # type: ignore[arg-type]
    return items
