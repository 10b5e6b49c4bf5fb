"""Which tensors a weight-delta analysis reads, and in what order: the plan, from headers only.

`open_checkpoint` resolves Base, IN and RL and reads their tensor headers (`surgery.sources.tensor_index`);
every name is keyed in the Base checkpoint's naming scheme, so checkpoints saved under either
scheme line up. `make_plan` then decides per tensor name: analysed (a 2-D view, with where it sits
in the model from `surgery.arch`), skipped (1-D, norm, not floating point, outside the known parts;
METHOD.md section 2) or mismatched (missing in a checkpoint, or shapes differ). Analysed tensors are
read in the Base checkpoint's disk order, so each file is read front to back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from analysis.delta.schema import ROLE_LABEL, ROLES, SkippedTensor
from surgery import sources
from surgery.arch import Layout, Part, TensorRole, is_norm, layout_from_config
from surgery.errors import FrankensteinError

MAX_LISTED = 5  # mismatched tensor names spelled out in an error message

# Bytes per element of the safetensors dtypes, for the progress bar; others count 8.
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass
class TensorInfo:
    name: str  # as named in its own checkpoint
    file: Path
    shape: tuple[int, ...]
    dtype: str
    order: int  # rank in the checkpoint's disk order: reading in this order is sequential

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Checkpoint:
    role: str
    source: str
    path: Path
    layout: Layout
    tensors: dict[str, TensorInfo]  # keyed by the Base checkpoint's naming scheme

    @property
    def label(self) -> str:
        return f"{ROLE_LABEL[self.role]} ({self.source})"


@dataclass
class PlanItem:
    key: str
    infos: dict[str, TensorInfo]  # role -> tensor
    record: dict[str, Any]  # role and position fields of TensorRecord

    @property
    def bytes(self) -> int:
        return sum(info.numel * _ITEMSIZE.get(info.dtype, 8) for info in self.infos.values())


@dataclass
class Plan:
    items: list[PlanItem]
    skipped: list[SkippedTensor]
    mismatched: list[SkippedTensor]


def open_checkpoint(role: str, source: str | Path, key_scheme: str | None = None) -> Checkpoint:
    """Resolve a checkpoint and read its tensor headers (names, shapes, dtypes); no weights are read."""
    source = str(source)
    path = sources.resolve(source, weights=True)
    if not sources.has_safetensors(path):
        raise FrankensteinError(
            f"{ROLE_LABEL[role]} ({source}) has no safetensors weights; delta analysis reads only safetensors"
        )
    config = sources.read_config(path)
    index = sources.tensor_index(path)
    layout = layout_from_config(config, index, where=f"{ROLE_LABEL[role]} ({source})")
    scheme = key_scheme or layout.naming_scheme
    tensors = {
        _key(layout, name, scheme): TensorInfo(name, entry.file, entry.shape, entry.dtype, order)
        for order, (name, entry) in enumerate(index.items())
    }
    return Checkpoint(role, source, path, layout, tensors)


def _key(layout: Layout, name: str, scheme: str) -> str:
    """Name in the Base scheme, so checkpoints saved under either naming scheme line up."""
    try:
        return layout.rename(name, scheme)
    except FrankensteinError:
        return name  # not in a known part: matched by its literal name, skipped later


def check_same_architecture(ckpts: dict[str, Checkpoint]) -> None:
    base = ckpts["base"].layout
    for role in ("in", "rl"):
        other = ckpts[role].layout
        for what, a, b in (
            ("model_type", base.model_type, other.model_type),
            ("decoder layers", base.num_layers, other.num_layers),
            ("vision blocks", base.num_vision_blocks, other.num_vision_blocks),
        ):
            if a != b:
                raise FrankensteinError(
                    f"checkpoints do not match: Base has {what} {a} but {ckpts[role].label} has {b}"
                )


def make_plan(
    ckpts: dict[str, Checkpoint], *, name_filter: str | None, cuts: Sequence[int] | None, allow_missing: bool
) -> Plan:
    """Which tensors to analyse, which to skip (with reasons), which do not match across the three."""
    layout = ckpts["base"].layout
    partition = layout.partition(tuple(cuts) if cuts else None)
    keys = _keys(ckpts, name_filter)
    items: list[PlanItem] = []
    skipped: list[SkippedTensor] = []
    mismatched: list[SkippedTensor] = []
    for key in keys:
        infos = {role: ckpts[role].tensors.get(key) for role in ROLES}
        problem = _mismatch(infos)
        if problem:
            mismatched.append(SkippedTensor(name=key, reason=problem))
            continue
        where, reason = _where(layout, key, infos)  # type: ignore[arg-type]
        if reason:
            skipped.append(SkippedTensor(name=key, reason=reason))
            continue
        items.append(plan_item(layout, partition, key, infos, where))  # type: ignore[arg-type]

    if mismatched and not allow_missing:
        listed = "; ".join(f"{m.name}: {m.reason}" for m in mismatched[:MAX_LISTED])
        more = f"; and {len(mismatched) - MAX_LISTED} more" if len(mismatched) > MAX_LISTED else ""
        raise FrankensteinError(
            f"checkpoints do not match: {len(mismatched)} tensors differ ({listed}{more}); "
            "pass --allow-missing to skip them"
        )
    items.sort(key=lambda it: it.infos["base"].order)
    return Plan(items, skipped, mismatched)


def plan_item(layout: Layout, partition: Any, key: str, infos: dict[str, TensorInfo], where: TensorRole) -> PlanItem:
    """A tensor to stream, with the role and position fields of its TensorRecord (a 1-D tensor is one column)."""
    shape = infos["base"].shape
    record = dict(
        name=infos["base"].name,
        local_name=_local_name(layout, key, where),
        shape=list(shape),
        rows=shape[0],
        cols=math.prod(shape[1:]),
        numel=math.prod(shape),
        part=where.part.value,
        index=where.index,
        unified_index=where.unified_index,
        section=where.section,
        component=where.component,
        block=partition.block_of(where.index) if where.part is Part.DECODER_LAYER else None,
    )
    return PlanItem(key, infos, record)


def _keys(ckpts: dict[str, Checkpoint], name_filter: str | None) -> list[str]:
    """Base's tensors first, then any that only IN or RL have (they will be reported as missing)."""
    keys = list(dict.fromkeys([*ckpts["base"].tensors, *ckpts["in"].tensors, *ckpts["rl"].tensors]))
    if not name_filter:
        return keys
    try:
        pattern = re.compile(name_filter)
    except re.error as e:
        raise FrankensteinError(f"--filter {name_filter!r} is not a valid regular expression ({e})") from None
    keys = [k for k in keys if pattern.search(k)]
    if not keys:
        raise FrankensteinError(f"--filter {name_filter!r} matches no tensor name")
    return keys


def _where(layout: Layout, key: str, infos: dict[str, TensorInfo]) -> tuple[TensorRole | None, str | None]:
    """Where the tensor sits in the model, or why it is skipped (METHOD.md section 2)."""
    if len(infos["base"].shape) < 2:
        return None, "1-D"
    if is_norm(key):
        return None, "norm"
    if any(not info.dtype.startswith(("F", "BF")) for info in infos.values()):
        return None, "not floating point"
    try:
        return layout.classify(key), None
    except FrankensteinError:
        return None, "not in a known part of the model"


def _local_name(layout: Layout, key: str, where: TensorRole) -> str:
    """Name inside its decoder layer or vision block (`mlp.up_proj.weight`), for labels and tables."""
    if where.part is Part.DECODER_LAYER:
        prefix = layout.decoder_layer_prefix(where.index)  # type: ignore[arg-type]
    elif where.part is Part.VISION_BLOCK:
        prefix = layout.vision_block_prefix(where.index)  # type: ignore[arg-type]
    elif where.part is Part.PROJECTOR:
        prefix = layout.naming.projector or ""
    elif where.part is Part.DEEPSTACK_MERGER:
        prefix = layout.naming.deepstack_merger.format(i=where.index)  # type: ignore[union-attr]
    else:
        prefix = ""
    return key[len(prefix) :] if prefix and key.startswith(prefix) else key


def _mismatch(infos: dict[str, TensorInfo | None]) -> str | None:
    missing = [ROLE_LABEL[r] for r, info in infos.items() if info is None]
    if missing:
        return f"missing in {' and '.join(missing)}"
    shapes = {r: info.shape for r, info in infos.items()}  # type: ignore[union-attr]
    if len(set(shapes.values())) > 1:
        return "shapes differ: " + ", ".join(f"{ROLE_LABEL[r]} {list(s)}" for r, s in shapes.items())
    return None
