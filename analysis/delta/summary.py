"""Per-tensor delta records summed into groups: unified layer, section, component, block, part.

Energies add; a group's relative norm is sqrt(sum of energies / sum of reference energies), so it
does not depend on how many tensors the group holds. Blocks are ranked by that relative norm
(blocks may differ in length). Group keys come from the records, which got them from
`surgery.arch`; the order of sections, blocks and parts is the adapter's.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from analysis.delta.schema import DELTAS, GroupStats, GroupSummary, TensorRecord
from surgery.arch import BLOCK_NAMES, SECTIONS, BlockPartition, Part

GROUPS = ("unified_layer", "section", "component", "block", "part")
COMPONENTS = ("attention", "mlp", "other")


def group_key(record: TensorRecord, group: str) -> str | int | None:
    if group == "unified_layer":
        return record.unified_index
    return getattr(record, group)


def summarize(records: Sequence[TensorRecord], group: str) -> list[GroupSummary]:
    totals = {d: sum(r.deltas[d].energy for r in records) for d in DELTAS}
    grouped: dict[Any, list[TensorRecord]] = {}
    for r in records:
        key = group_key(r, group)
        if key is not None:
            grouped.setdefault(key, []).append(r)
    return [_summary(key, grouped[key], totals) for key in _ordered_keys(grouped, group)]


def _summary(key: Any, members: list[TensorRecord], totals: dict[str, float]) -> GroupSummary:
    numel = sum(r.numel for r in members)
    stats = {}
    for d in DELTAS:
        energy = sum(r.deltas[d].energy for r in members)
        ref = sum(r.deltas[d].reference_norm ** 2 for r in members)
        svd = [r.deltas[d] for r in members if r.deltas[d].stable_rank is not None]
        stats[d] = GroupStats(
            energy=energy,
            reference_energy=ref,
            relative_norm=math.sqrt(energy / ref) if ref > 0 else (0.0 if energy == 0 else math.inf),
            energy_share=energy / totals[d] if totals[d] > 0 else 0.0,
            energy_per_param=energy / numel,
            mean_stable_rank=sum(s.stable_rank for s in svd) / len(svd) if svd else None,  # type: ignore[misc]
            mean_effective_rank=sum(s.effective_rank for s in svd) / len(svd) if svd else None,  # type: ignore[misc]
            max_spectral_norm=max(s.spectral_norm for s in svd) if svd else None,  # type: ignore[type-var]
        )
    return GroupSummary(key=key, n_tensors=len(members), numel=numel, deltas=stats)


def _ordered_keys(grouped: dict[Any, Any], group: str) -> list[Any]:
    order = {"section": SECTIONS, "block": BLOCK_NAMES, "component": COMPONENTS}.get(group)
    if order is not None:
        return [k for k in order if k in grouped] + sorted(k for k in grouped if k not in order)
    if group == "part":
        return [p.value for p in Part if p.value in grouped]
    return sorted(grouped)


def rank_blocks(summaries: Sequence[GroupSummary]) -> dict[str, list[str]]:
    """Blocks from largest to smallest relative norm (size-independent: blocks may differ in length)."""
    return {d: [str(s.key) for s in sorted(summaries, key=lambda s: -s.deltas[d].relative_norm)] for d in DELTAS}


def representative_layers(partition: BlockPartition) -> dict[str, int]:
    """The middle decoder layer of each block: the early / mid / late layers whose spectra are plotted."""
    return {name: r.start + (len(r) - 1) // 2 for name, r in partition.ranges.items()}
