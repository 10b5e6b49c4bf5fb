"""Weight deltas across Base -> IN -> RL: streaming energy and SVD metrics (METHOD.md section 2).

`analyze_deltas(base, in_, rl)` reads the three safetensors checkpoints (local folders or hub ids,
sharded or not) one tensor name at a time and never builds a model: for each tensor it opens the
three files, walks the tensor in chunks of rows (or columns), and closes them again, so at most
one tensor per checkpoint is ever mapped into memory. Per 2-D tensor (higher ranks flattened to
2-D; 1-D tensors and norms skipped) and per delta, dIN = IN - Base and dRL = RL - IN, it measures
the Frobenius norm, the relative norm ||delta||_F / ||W_ref||_F (W_ref = Base for dIN, IN for dRL)
and, with the "svd" metric, the spectral metrics of `analysis.spectra`, for every matrix including
the embeddings and lm_head. Records are aggregated per unified layer, section, component, block
and part. Where a tensor sits comes from the architecture adapter (`surgery.arch`); nothing here
knows a tensor name.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from pydantic import BaseModel, ConfigDict

from analysis.spectra import one_thread
from surgery.arch import BLOCK_NAMES, Layout, Part, is_norm, layout_from_config
from surgery.errors import FrankensteinError

METRICS = ("energy", "svd")
DELTAS = ("in", "rl")  # dIN = IN - Base, dRL = RL - IN
ROLES = ("base", "in", "rl")
REFERENCE = {"in": "base", "rl": "in"}  # the weight each delta is measured against
ROLE_LABEL = {"base": "Base", "in": "IN", "rl": "RL"}
GROUPS = ("unified_layer", "section", "component", "block", "part")

# Chunk sizes. A Gram chunk of ~4M elements is 32 MB in float64 (times five buffers); energy works
# on 256K-element blocks whose float64 buffers are reused, which keeps them in cache and avoids
# page-faulting fresh memory for every block (measured 2-10x faster on CPU than fresh temporaries).
CHUNK_ELEMENTS = 1 << 22
ENERGY_BLOCK = 1 << 18
MAX_LISTED = 5  # mismatched tensor names spelled out in an error message


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


class DeltaStats(BaseModel):
    """One delta (dIN or dRL) of one tensor. Spectral fields are None without the "svd" metric."""

    frobenius_norm: float
    energy: float  # ||delta||_F^2
    reference_norm: float  # ||W_ref||_F
    relative_norm: float  # ||delta||_F / ||W_ref||_F (inf when W_ref is all zero and delta is not)
    spectral_norm: float | None = None
    nuclear_norm: float | None = None
    stable_rank: float | None = None
    effective_rank: float | None = None
    condition_number: float | None = None
    log_volume_topk: float | None = None
    numerical_rank: int | None = None
    topk_singular_values: list[float] | None = None


class TensorRecord(BaseModel):
    name: str  # as named in the Base checkpoint
    local_name: str  # inside its decoder layer / vision block / projector, e.g. mlp.up_proj.weight
    shape: list[int]
    rows: int  # the 2-D view: rows x cols
    cols: int
    numel: int
    part: str
    index: int | None
    unified_index: int | None
    section: str
    component: str
    block: str | None  # early / mid / late for decoder layers
    deltas: dict[str, DeltaStats]


class GroupStats(BaseModel):
    """One delta summed over a group of tensors."""

    energy: float
    reference_energy: float
    relative_norm: float  # sqrt(energy / reference_energy)
    energy_share: float  # of this delta's energy over all analysed tensors
    energy_per_param: float
    mean_stable_rank: float | None = None
    mean_effective_rank: float | None = None
    max_spectral_norm: float | None = None


class GroupSummary(BaseModel):
    key: str | int
    n_tensors: int
    numel: int
    deltas: dict[str, GroupStats]


class SkippedTensor(BaseModel):
    name: str
    reason: str


class DeltaReport(BaseModel):
    """Everything `analyze_deltas` found; `spectra` (full singular values) is kept out of delta.json."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    meta: dict[str, Any]
    tensors: list[TensorRecord]
    skipped: list[SkippedTensor]
    mismatched: list[SkippedTensor]
    summaries: dict[str, list[GroupSummary]]
    block_ranking: dict[str, list[str]]
    spectra: dict[str, dict[str, Any]] = {}  # tensor name -> delta -> float64 tensor of all sigma

    def summary(self, group: str) -> dict[str | int, GroupSummary]:
        if group not in self.summaries:
            raise FrankensteinError(f"no summary {group!r}; summaries are {', '.join(self.summaries)}")
        return {s.key: s for s in self.summaries[group]}

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude={"spectra"})

    def write(self, out: str | Path, *, overwrite: bool = False, plots: bool = True) -> Path:
        from analysis.delta_files import write_report

        return write_report(self, Path(out), overwrite=overwrite, plots=plots)


# ---------------------------------------------------------------------------------------------
# Checkpoints and the plan
# ---------------------------------------------------------------------------------------------


@dataclass
class TensorInfo:
    name: str
    file: Path
    shape: tuple[int, ...]
    dtype: str
    order: tuple[int, int]  # (file, offset rank): reading in this order is sequential

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


def open_checkpoint(role: str, source: str | Path, key_scheme: str | None = None) -> Checkpoint:
    """Resolve a checkpoint and read its tensor headers (names, shapes, dtypes); no weights are read."""
    from safetensors import safe_open

    from surgery import sources

    source = str(source)
    path = sources.resolve(source, weights=True)
    if not sources.has_safetensors(path):
        raise FrankensteinError(
            f"{ROLE_LABEL[role]} ({source}) has no safetensors weights; delta analysis reads only safetensors"
        )
    config = sources.read_config(path)
    names = sources.tensor_names(path)
    layout = layout_from_config(config, names, where=f"{ROLE_LABEL[role]} ({source})")
    scheme = key_scheme or layout.naming_scheme
    tensors: dict[str, TensorInfo] = {}
    for file_rank, file in enumerate(sources.weight_files(path)):
        try:
            with safe_open(str(file), framework="pt") as handle:
                # File order, so that reading follows the disk (offset_keys is newer than keys).
                ordered = handle.offset_keys() if hasattr(handle, "offset_keys") else handle.keys()
                for offset_rank, name in enumerate(ordered):
                    view = handle.get_slice(name)
                    key = _key(layout, name, scheme)
                    tensors[key] = TensorInfo(
                        name, file, tuple(view.get_shape()), view.get_dtype(), (file_rank, offset_rank)
                    )
        except FrankensteinError:
            raise
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise FrankensteinError(f"{file} is not a readable safetensors file ({e})") from None
    return Checkpoint(role, source, path, layout, tensors)


def _key(layout: Layout, name: str, scheme: str) -> str:
    """Name in the Base scheme, so checkpoints saved under either naming scheme line up."""
    try:
        return layout.rename(name, scheme)
    except FrankensteinError:
        return name  # not in a known part: matched by its literal name, skipped later


@dataclass
class PlanItem:
    key: str
    infos: dict[str, TensorInfo]  # role -> tensor
    record: dict[str, Any]  # role and position fields of TensorRecord

    @property
    def bytes(self) -> int:
        return sum(info.numel * _itemsize(info.dtype) for info in self.infos.values())


@dataclass
class Plan:
    items: list[PlanItem]
    skipped: list[SkippedTensor]
    mismatched: list[SkippedTensor]


_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


def _itemsize(dtype: str) -> int:
    return _ITEMSIZE.get(dtype, 8)


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
    pattern = None
    if name_filter:
        try:
            pattern = re.compile(name_filter)
        except re.error as e:
            raise FrankensteinError(f"--filter {name_filter!r} is not a valid regular expression ({e})") from None

    # Base's tensors first, then any that only IN or RL have (they will be reported as missing).
    keys = list(dict.fromkeys([*ckpts["base"].tensors, *ckpts["in"].tensors, *ckpts["rl"].tensors]))
    if pattern is not None:
        keys = [k for k in keys if pattern.search(k)]
        if not keys:
            raise FrankensteinError(f"--filter {name_filter!r} matches no tensor name")

    items: list[PlanItem] = []
    skipped: list[SkippedTensor] = []
    mismatched: list[SkippedTensor] = []
    for key in keys:
        infos = {role: ckpts[role].tensors.get(key) for role in ROLES}
        problem = _mismatch(infos)
        if problem:
            mismatched.append(SkippedTensor(name=key, reason=problem))
            continue
        shape = infos["base"].shape  # type: ignore[union-attr]
        reason = None
        if len(shape) < 2:
            reason = "1-D"
        elif is_norm(key):
            reason = "norm"
        elif any(not info.dtype.startswith(("F", "BF")) for info in infos.values()):  # type: ignore[union-attr]
            reason = "not floating point"
        if reason is None:
            try:
                where = layout.classify(key)
            except FrankensteinError:
                reason = "not in a known part of the model"
        if reason:
            skipped.append(SkippedTensor(name=key, reason=reason))
            continue
        record = dict(
            name=infos["base"].name,  # type: ignore[union-attr]
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
        items.append(PlanItem(key, infos, record))  # type: ignore[arg-type]

    if mismatched and not allow_missing:
        listed = "; ".join(f"{m.name}: {m.reason}" for m in mismatched[:MAX_LISTED])
        more = f"; and {len(mismatched) - MAX_LISTED} more" if len(mismatched) > MAX_LISTED else ""
        raise FrankensteinError(
            f"checkpoints do not match: {len(mismatched)} tensors differ ({listed}{more}); "
            "pass --allow-missing to skip them"
        )
    items.sort(key=lambda it: it.infos["base"].order)
    return Plan(items, skipped, mismatched)


def _local_name(layout: Layout, key: str, where: Any) -> str:
    """Name inside its decoder layer or vision block (`mlp.up_proj.weight`), for labels and tables."""
    if where.part is Part.DECODER_LAYER:
        prefix = layout.decoder_layer_prefix(where.index)
    elif where.part is Part.VISION_BLOCK:
        prefix = layout.vision_block_prefix(where.index)
    elif where.part is Part.PROJECTOR:
        prefix = layout.naming.projector or ""
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


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------


class SumsOfSquares:
    """Running ||Base||², ||IN||², ||RL||², ||dIN||², ||dRL||² of one tensor, in float64.

    Inputs are converted block by block into reused float64 buffers; the squares come from dot
    products. A non-finite sum means a NaN or Inf in the input (a finite bf16/f16/f32 value squared
    cannot overflow float64), which is checked after every chunk.
    """

    def __init__(self) -> None:
        import torch

        self._buf = [torch.empty(ENERGY_BLOCK, dtype=torch.float64) for _ in range(5)]
        self.sums = {"base": 0.0, "in": 0.0, "rl": 0.0, "d_in": 0.0, "d_rl": 0.0}

    def add(self, base: Any, inn: Any, rl: Any) -> dict[str, float]:
        """Add one chunk (equal shapes); returns this chunk's sums of the three inputs."""
        with one_thread():
            return self._add(base, inn, rl)

    def _add(self, base: Any, inn: Any, rl: Any) -> dict[str, float]:
        import torch

        flat = [t.reshape(-1) for t in (base, inn, rl)]
        n = flat[0].numel()
        chunk = {"base": 0.0, "in": 0.0, "rl": 0.0, "d_in": 0.0, "d_rl": 0.0}
        for start in range(0, n, ENERGY_BLOCK):
            stop = min(start + ENERGY_BLOCK, n)
            xb, xi, xr, d1, d2 = (b[: stop - start] for b in self._buf)
            xb.copy_(flat[0][start:stop])
            xi.copy_(flat[1][start:stop])
            xr.copy_(flat[2][start:stop])
            torch.sub(xi, xb, out=d1)
            torch.sub(xr, xi, out=d2)
            for name, x in (("base", xb), ("in", xi), ("rl", xr), ("d_in", d1), ("d_rl", d2)):
                chunk[name] += float(torch.dot(x, x))
        for name, value in chunk.items():
            self.sums[name] += value
        return chunk


@contextlib.contextmanager
def _open_tensors(item: PlanItem) -> Iterator[dict[str, Any]]:
    """The tensor of each checkpoint as a 2-D view of its memory-mapped file, unmapped on exit."""
    from safetensors import safe_open

    with contextlib.ExitStack() as stack:
        views = {}
        for role, info in item.infos.items():
            handle = stack.enter_context(safe_open(str(info.file), framework="pt"))
            views[role] = handle.get_tensor(info.name).reshape(item.record["rows"], item.record["cols"])
        try:
            yield views
        finally:
            views.clear()  # drop the views before the files are unmapped


def _chunks(length: int, width: int) -> Iterator[slice]:
    step = max(1, CHUNK_ELEMENTS // max(1, width))
    for start in range(0, length, step):
        yield slice(start, min(start + step, length))


def _check_finite(
    item: PlanItem, ckpts: dict[str, Checkpoint], chunk_sums: dict[str, float], parts: dict[str, Any]
) -> None:
    """A non-finite sum of squares means NaN or Inf in that checkpoint's chunk: name the tensor."""
    import torch

    for role in ROLES:
        if math.isfinite(chunk_sums[role]):
            continue
        bad = int((~torch.isfinite(parts[role])).sum())
        what = f"{bad} NaN/Inf values" if bad else "values too large to square in float64"
        raise FrankensteinError(f"tensor {item.infos[role].name} in {ckpts[role].label} holds {what}")


def analyze_tensor(
    item: PlanItem, ckpts: dict[str, Checkpoint], *, svd: bool, topk: int, device: str, progress: Any = None
) -> tuple[TensorRecord, dict[str, Any]]:
    """Stream one tensor of the three checkpoints; returns its record and (with svd) all singular values."""
    import torch

    from analysis.spectra import GramAccumulator, spectral_metrics

    rows, cols = item.record["rows"], item.record["cols"]
    bytes_per_element = item.bytes / item.record["numel"]
    sums = SumsOfSquares()
    grams = {d: GramAccumulator(rows, cols, device) for d in DELTAS} if svd else {}
    # Chunks follow the Gram matrix (rows of a tall delta, columns of a wide one); energy alone uses rows.
    by_rows = not svd or rows >= cols
    with _open_tensors(item) as views:
        for sl in _chunks(rows, cols) if by_rows else _chunks(cols, rows):
            parts = {r: (v[sl] if by_rows else v[:, sl]) for r, v in views.items()}
            chunk_sums = sums.add(parts["base"], parts["in"], parts["rl"])
            _check_finite(item, ckpts, chunk_sums, parts)
            if svd:
                with one_thread():  # elementwise: see one_thread; the Gram matmuls below use every thread
                    # Move first, convert there: 2 bytes per element cross to a GPU instead of 8.
                    f64 = {r: p.to(device).to(torch.float64) for r, p in parts.items()}
                    d_in, d_rl = f64["in"] - f64["base"], f64["rl"] - f64["in"]
                    del f64
                grams["in"].add(d_in)
                grams["rl"].add(d_rl)
                del d_in, d_rl
            del parts
            if progress is not None:
                progress.update(int(bytes_per_element * (sl.stop - sl.start) * (cols if by_rows else rows)))

    deltas: dict[str, DeltaStats] = {}
    spectra: dict[str, Any] = {}
    for d in DELTAS:
        energy = sums.sums[f"d_{d}"]
        ref = math.sqrt(sums.sums[REFERENCE[d]])
        frob = math.sqrt(energy)
        rel = frob / ref if ref > 0 else (0.0 if frob == 0 else math.inf)
        fields: dict[str, Any] = dict(frobenius_norm=frob, energy=energy, reference_norm=ref, relative_norm=rel)
        if svd:
            sigma = grams[d].singular_values()
            spectra[d] = sigma
            fields.update(spectral_metrics(sigma, energy, topk))
        deltas[d] = DeltaStats(**fields)
    return TensorRecord(**item.record, deltas=deltas), spectra


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def group_key(record: TensorRecord, group: str) -> str | int | None:
    if group == "unified_layer":
        return record.unified_index
    if group == "block":
        return record.block
    return getattr(record, group)


def summarize(records: Sequence[TensorRecord], group: str) -> list[GroupSummary]:
    totals = {d: sum(r.deltas[d].energy for r in records) for d in DELTAS}
    grouped: dict[Any, list[TensorRecord]] = {}
    for r in records:
        key = group_key(r, group)
        if key is not None:
            grouped.setdefault(key, []).append(r)
    out = []
    for key in _ordered_keys(grouped, group):
        members = grouped[key]
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
        out.append(GroupSummary(key=key, n_tensors=len(members), numel=numel, deltas=stats))
    return out


def _ordered_keys(grouped: dict[Any, Any], group: str) -> list[Any]:
    from surgery.arch import SECTIONS

    order = {"section": SECTIONS, "block": BLOCK_NAMES, "component": ("attention", "mlp", "other")}.get(group)
    if order is not None:
        return [k for k in order if k in grouped] + sorted(k for k in grouped if k not in order)
    if group == "part":
        return [p.value for p in Part if p.value in grouped]
    return sorted(grouped)


def rank_blocks(summaries: Sequence[GroupSummary]) -> dict[str, list[str]]:
    """Blocks from largest to smallest relative norm (size-independent: blocks may differ in length)."""
    return {d: [str(s.key) for s in sorted(summaries, key=lambda s: -s.deltas[d].relative_norm)] for d in DELTAS}


# ---------------------------------------------------------------------------------------------
# The Python API
# ---------------------------------------------------------------------------------------------


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    items = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    bad = [m for m in items if m not in METRICS]
    if bad or not items:
        raise FrankensteinError(
            f"--metrics takes a comma-separated list of {', '.join(METRICS)}; got {','.join(items) or 'nothing'}"
        )
    # Energy is always measured: it is free once the tensors are read, and the SVD metrics use it.
    return tuple(m for m in METRICS if m in items or m == "energy")


def analyze_deltas(
    base: str | Path,
    in_: str | Path,
    rl: str | Path,
    out: str | Path | None = None,
    *,
    metrics: str | Iterable[str] = METRICS,
    topk: int = 50,
    device: str = "auto",
    filter: str | None = None,
    cuts: Sequence[int] | None = None,
    allow_missing: bool = False,
    overwrite: bool = False,
    plots: bool = True,
    keep_spectra: bool = False,
    progress: bool = True,
) -> DeltaReport:
    """Measure dIN = IN - Base and dRL = RL - IN per tensor, streaming; write OUT if given.

    `keep_spectra` keeps every matrix's singular values in `report.spectra` (by default only those
    of the representative early / mid / late layers, which the spectra plot uses).
    """
    from tqdm.auto import tqdm

    from surgery.loading import resolve_device

    started = time.perf_counter()
    metrics = parse_metrics(metrics)
    if topk < 1:
        raise FrankensteinError(f"--topk must be at least 1, got {topk}")
    if out is not None and Path(out).exists() and not overwrite:
        raise FrankensteinError(f"{out} already exists (pass --overwrite to replace it)")
    device_used = resolve_device(device)

    ckpts: dict[str, Checkpoint] = {}
    ckpts["base"] = open_checkpoint("base", base)
    scheme = ckpts["base"].layout.naming_scheme
    ckpts["in"] = open_checkpoint("in", in_, scheme)
    ckpts["rl"] = open_checkpoint("rl", rl, scheme)
    check_same_architecture(ckpts)
    layout = ckpts["base"].layout
    cuts_t = tuple(int(c) for c in cuts) if cuts else None
    partition = layout.partition(cuts_t)
    plan = make_plan(ckpts, name_filter=filter, cuts=cuts_t, allow_missing=allow_missing)
    if not plan.items:
        raise FrankensteinError("no 2-D tensor left to analyse (all were skipped or filtered out)")

    options = {
        "metrics": list(metrics),
        "topk": topk,
        "device": device,
        "device_used": device_used,
        "filter": filter,
        "cuts": list(cuts_t) if cuts_t else None,
        "allow_missing": allow_missing,
    }
    svd = "svd" in metrics
    representative = representative_layers(partition)
    records: list[TensorRecord] = []
    spectra: dict[str, dict[str, Any]] = {}
    total_bytes = sum(item.bytes for item in plan.items)
    with tqdm(
        total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="delta", disable=not progress
    ) as bar:
        for item in plan.items:
            bar.set_postfix_str(item.record["name"][-48:], refresh=False)
            record, sigma = analyze_tensor(item, ckpts, svd=svd, topk=topk, device=device_used, progress=bar)
            records.append(record)
            if sigma and (
                keep_spectra or (record.block is not None and record.index == representative.get(record.block))
            ):
                spectra[record.name] = sigma

    summaries = {group: summarize(records, group) for group in GROUPS}
    report = DeltaReport(
        meta=_metadata(ckpts, options, representative, total_bytes),
        tensors=records,
        skipped=plan.skipped,
        mismatched=plan.mismatched,
        summaries=summaries,
        block_ranking=rank_blocks(summaries["block"]),
        spectra=spectra,
    )
    report.meta["seconds"] = round(time.perf_counter() - started, 3)
    if out is not None:
        report.write(out, overwrite=overwrite, plots=plots)
    return report


def representative_layers(partition: Any) -> dict[str, int]:
    """The middle decoder layer of each block: the early / mid / late layers whose spectra are plotted."""
    return {name: r.start + (len(r) - 1) // 2 for name, r in partition.ranges.items()}


def _metadata(
    ckpts: dict[str, Checkpoint], options: dict[str, Any], representative: dict[str, int], total_bytes: int
) -> dict[str, Any]:
    import datetime
    import platform
    from importlib import metadata as importlib_metadata

    import torch

    from analysis.spectra import DEFINITIONS, ZERO_RTOL

    def version(pkg: str) -> str | None:
        try:
            return importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            return None

    layout = ckpts["base"].layout
    return {
        "tool": "frankenstein delta",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "models": {
            role: {
                "source": c.source,
                "path": str(c.path),
                "model_type": c.layout.model_type,
                "naming_scheme": c.layout.naming_scheme,
                "num_tensors": len(c.tensors),
            }
            for role, c in ckpts.items()
        },
        "deltas": {"in": "IN - Base (reference weight: Base)", "rl": "RL - IN (reference weight: IN)"},
        "packages": {
            "python": platform.python_version(),
            **{p: version(p) for p in ("frankenstein-vlm", "safetensors", "numpy", "transformers")},
            "torch": torch.__version__,
        },
        "hardware": {
            "machine": platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(options["device_used"])
            if options["device_used"].startswith("cuda")
            else None,
        },
        "options": options,
        "layout": layout.describe(tuple(options["cuts"]) if options["cuts"] else None),
        "representative_layers": representative,
        "svd_route": "eigenvalues of the float64 Gram matrix, accumulated over row / column chunks",
        "zero_tolerance_rtol": ZERO_RTOL,
        "definitions": {
            "energy": "squared Frobenius norm of the delta, ||delta||_F^2",
            "relative_norm": "||delta||_F / ||W_ref||_F; for groups sqrt(sum energy / sum ||W_ref||_F^2)",
            "energy_share": "energy of the group / energy of all analysed tensors, per delta",
            "mean_stable_rank": "unweighted mean over the group's matrices",
            "mean_effective_rank": "unweighted mean over the group's matrices",
            "block_ranking": "blocks ordered by relative norm, largest first",
            "skipped": "1-D tensors, norms, non-float tensors, tensors outside the known parts",
            "Infinity": "JSON Infinity marks an infinite condition number (an all-zero delta) or relative norm",
            **DEFINITIONS,
        },
        "bytes_read": total_bytes,
    }
