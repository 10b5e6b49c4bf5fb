"""Frankenstein splices: decoder blocks from IN and RL in one model (METHOD.md section 3).

The rule lives here and nowhere else. A variant is named by the blocks it takes from RL
(`VARIANTS`); the remaining decoder blocks come from IN. Only decoder layers move: embeddings,
vision tower, projector, final norm and lm_head (and config, tokenizer and processor files) come
from the model that supplies the early block. `splice_plan` turns a variant and cuts into a
per-layer answer that the mergekit recipe generator (`merge_configs.generate`), the in-memory
splice (`load_spliced`) and the project's own checkpoint writer (`write_spliced`, for families
mergekit has no architecture definition of, e.g. InternVL) all read.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from surgery import sources
from surgery.arch import BLOCK_NAMES, BlockPartition, Layout, Part, layout_of_checkpoint, parse_cuts
from surgery.errors import FrankensteinError

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

Source = Literal["in", "rl"]
LABELS: dict[str, str] = {"in": "IN", "rl": "RL"}

# Variant name -> the decoder blocks taken from RL. Everything else in the decoder comes from IN.
VARIANTS: dict[str, frozenset[str]] = {
    "early": frozenset({"early"}),
    "mid": frozenset({"mid"}),
    "late": frozenset({"late"}),
    "early_mid": frozenset({"early", "mid"}),
    "mid_late": frozenset({"mid", "late"}),
    "early_late": frozenset({"early", "late"}),
}

# Architectures the splice is defined for (mergekit recipes: those `merge_configs.generate` knows).
SPLICE_TYPES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl", "internvl")


def check_variant(variant: str) -> frozenset[str]:
    if variant not in VARIANTS:
        raise FrankensteinError(f"unknown variant {variant!r}; variants are {', '.join(VARIANTS)}")
    return VARIANTS[variant]


class SplicePlan(BaseModel):
    """Which model supplies each decoder layer, and which supplies everything else."""

    model_config = ConfigDict(frozen=True)

    variant: str
    partition: BlockPartition
    rl_blocks: tuple[str, ...]  # in BLOCK_NAMES order
    early_source: Source  # supplies embeddings, vision tower, projector, final norm, lm_head, files
    layer_sources: tuple[Source, ...]  # index = decoder layer

    @property
    def num_layers(self) -> int:
        return self.partition.num_layers

    @property
    def cuts(self) -> tuple[int, int]:
        return self.partition.c1, self.partition.c2

    def block_source(self, block: str) -> Source:
        return "rl" if block in self.rl_blocks else "in"

    def layers_from(self, source: Source) -> list[int]:
        return [i for i, s in enumerate(self.layer_sources) if s == source]

    def source_of(self, layout: Layout, tensor_name: str) -> Source:
        """The model that supplies one tensor (either naming scheme)."""
        role = layout.classify(tensor_name)
        if role.part is Part.DECODER_LAYER:
            return self.layer_sources[role.index]  # type: ignore[index]
        return self.early_source

    def runs(self) -> list[tuple[Source, int, int]]:
        """Maximal runs of consecutive layers from one model: (source, start, stop)."""
        out: list[tuple[Source, int, int]] = []
        for i, s in enumerate(self.layer_sources):
            if out and out[-1][0] == s:
                out[-1] = (s, out[-1][1], i + 1)
            else:
                out.append((s, i, i + 1))
        return out

    def describe(self) -> str:
        """e.g. 'early [0, 2) from IN; mid [2, 5) and late [5, 8) from RL'."""
        parts = []
        for source in ("in", "rl"):
            blocks = [b for b in BLOCK_NAMES if self.block_source(b) == source]
            if blocks:
                spans = " and ".join(
                    f"{b} [{self.partition.ranges[b].start}, {self.partition.ranges[b].stop})" for b in blocks
                )
                parts.append(f"{spans} from {LABELS[source]}")
        return "; ".join(parts)


def splice_plan(
    layout: Layout | int, variant: str, cuts: tuple[int, int] | list[int] | str | None = None
) -> SplicePlan:
    """The METHOD.md section 3 rule for `variant` on a model with `layout` (or that many decoder layers)."""
    rl_blocks = check_variant(variant)
    num_layers = layout if isinstance(layout, int) else layout.num_layers
    if isinstance(cuts, str):
        cuts = parse_cuts(cuts)
    partition = BlockPartition.make(num_layers, cuts)
    layer_sources = tuple("rl" if partition.block_of(i) in rl_blocks else "in" for i in range(num_layers))
    return SplicePlan(
        variant=variant,
        partition=partition,
        rl_blocks=tuple(b for b in BLOCK_NAMES if b in rl_blocks),
        early_source="rl" if "early" in rl_blocks else "in",
        layer_sources=layer_sources,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------
# IN / RL pairs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplicePair:
    """IN and RL, checked to be spliceable: same architecture, layer counts and tensor shapes."""

    layouts: dict[str, Layout]  # "in"/"rl" -> layout (naming schemes may differ)
    locations: dict[str, str]  # "in"/"rl" -> local folder (absolute) or hub id, as given

    @property
    def layout(self) -> Layout:
        return self.layouts["in"]

    def is_local(self, source: Source) -> bool:
        return Path(self.locations[source]).is_dir()


def _location(source: str | Path) -> str:
    path = Path(str(source)).expanduser()
    return str(path.resolve()) if path.is_dir() else str(source)


def checkpoint_shapes(path: Path, layout: Layout) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from safetensors headers (no weights read), keyed by hub (hf4) names."""
    return {layout.rename(name, "hf4"): entry.shape for name, entry in sources.tensor_index(path).items()}


def check_pair(
    in_source: str | Path, rl_source: str | Path, *, weights: bool = False, allow_pickle: bool = False
) -> SplicePair:
    """Layouts of IN and RL, or a one-line error if they cannot be spliced.

    With `weights`, hub ids are downloaded (weights included) first; otherwise only their config and
    index are read. Tensor shapes are compared wherever safetensors headers are available locally.
    """
    given = {"in": in_source, "rl": rl_source}
    locations: dict[str, str] = {}
    layouts: dict[str, Layout] = {}
    for role, src in given.items():
        where = sources.resolve(src, weights=True, allow_pickle=allow_pickle) if weights else src
        layouts[role] = layout_of_checkpoint(str(where), allow_pickle=allow_pickle, allowed_types=SPLICE_TYPES)
        locations[role] = _location(where)
    a, b = layouts["in"], layouts["rl"]
    for what, va, vb in (
        ("model types", a.model_type, b.model_type),
        ("decoder layer counts", a.num_layers, b.num_layers),
        ("vision block counts", a.num_vision_blocks, b.num_vision_blocks),
    ):
        if va != vb:
            raise FrankensteinError(f"IN and RL differ in {what}: IN ({in_source}) has {va}, RL ({rl_source}) has {vb}")
    folders = {role: Path(loc) for role, loc in locations.items() if Path(loc).is_dir()}
    if len(folders) == 2 and all(sources.has_safetensors(p) for p in folders.values()):
        _check_shapes(checkpoint_shapes(folders["in"], a), checkpoint_shapes(folders["rl"], b))
    return SplicePair(layouts=layouts, locations=locations)


def _check_shapes(in_shapes: dict[str, tuple[int, ...]], rl_shapes: dict[str, tuple[int, ...]]) -> None:
    for name in sorted(in_shapes.keys() | rl_shapes.keys()):
        if name not in rl_shapes or name not in in_shapes:
            has, lacks = ("IN", "RL") if name in in_shapes else ("RL", "IN")
            raise FrankensteinError(f"IN and RL differ in tensors: {name} is in {has} but not in {lacks}")
        if in_shapes[name] != rl_shapes[name]:
            raise FrankensteinError(
                f"IN and RL differ in tensor shapes: {name} is {list(in_shapes[name])} in IN "
                f"but {list(rl_shapes[name])} in RL"
            )


# ---------------------------------------------------------------------------------------------
# In-memory splice
# ---------------------------------------------------------------------------------------------


def load_spliced(
    in_source: str | Path,
    rl_source: str | Path,
    variant: str,
    *,
    cuts: tuple[int, int] | list[int] | str | None = None,
    dtype: str | None = "auto",
    device: str | None = "cpu",
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
) -> tuple[Any, Layout, Path]:
    """The spliced model (eval mode), its layout, and the local folder of the early-block model.

    Builds exactly what the mergekit recipe of the same variant and cuts writes to disk, without
    writing a checkpoint: the early-block model is loaded on `device`, the other model on the CPU,
    and only the decoder layers the variant takes from the other model are copied over (their
    state, into the early-block model's own layer modules), after which the other model is freed.
    The caller loads the processor / tokenizer from the returned folder. With dtype "auto" each
    model keeps its checkpoint dtype and the copied layers take the early-block model's dtype.
    """
    import torch

    from surgery.loading import load_model

    check_variant(variant)
    pair = check_pair(in_source, rl_source, weights=True, allow_pickle=allow_pickle)
    plan = splice_plan(pair.layout, variant, cuts)
    early = plan.early_source
    other: Source = "rl" if early == "in" else "in"
    kwargs = dict(dtype=dtype, attn_implementation=attn_implementation, allow_pickle=allow_pickle, allowed_types=SPLICE_TYPES)
    model, layout = load_model(pair.locations[early], device=device, **kwargs)
    moved = plan.layers_from(other)
    if moved:
        donor, donor_layout = load_model(pair.locations[other], device="cpu", **kwargs)
        target, source = layout.decoder_layers(model), donor_layout.decoder_layers(donor)
        with torch.no_grad():
            for i in moved:
                # Copy state into the early model's own modules: they keep its config object and device.
                target[i].load_state_dict(source[i].state_dict(), strict=True)
        del donor, source
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    model.eval()
    model.frankenstein_splice = plan  # for callers that report what they evaluated
    return model, layout, Path(pair.locations[early])


# ---------------------------------------------------------------------------------------------
# The splice written to disk by the project itself
# ---------------------------------------------------------------------------------------------

# Files of a checkpoint folder that hold weights; every other top-level file is copied from the early-block model.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def write_spliced(
    in_source: str | Path,
    rl_source: str | Path,
    variant: str,
    out: str | Path,
    *,
    cuts: tuple[int, int] | list[int] | str | None = None,
    overwrite: bool = False,
) -> Path:
    """The splice of `variant` as a checkpoint folder, copied tensor for tensor from the safetensors files.

    What a mergekit passthrough recipe writes, for families mergekit has no architecture definition
    of: the early-block model's files, shard by shard and under its own tensor names, with the
    decoder layers the variant takes from the other model read from that model's files (either
    naming scheme); config, tokenizer, processor and chat template files copied from the early-block
    model. No model is built; memory holds one shard. Written atomically.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from surgery.atomic import atomic_dir

    check_variant(variant)
    pair = check_pair(in_source, rl_source, weights=True)
    plan = splice_plan(pair.layout, variant, cuts)
    early: Source = plan.early_source
    other: Source = "rl" if early == "in" else "in"
    folders = {role: Path(loc) for role, loc in pair.locations.items()}
    early_layout, other_layout = pair.layouts[early], pair.layouts[other]
    other_names = {other_layout.rename(n, "hf4"): (n, f) for n, f in sources.tensor_names(folders[other]).items()}
    by_file: dict[Path, list[str]] = {}
    for name, entry in sources.tensor_index(folders[early]).items():
        by_file.setdefault(entry.file, []).append(name)
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        for f in folders[early].iterdir():
            if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES):
                (tmp / f.name).write_bytes(f.read_bytes())  # config, tokenizer, processor, index
        for shard, names in by_file.items():
            # Which file each tensor of this shard is read from, under which name.
            reads: dict[Path, list[tuple[str, str]]] = {}
            for name in names:
                if plan.source_of(early_layout, name) == early:
                    reads.setdefault(shard, []).append((name, name))
                else:  # a decoder layer of the other model, stored under the early model's name
                    other_name, other_file = other_names[early_layout.rename(name, "hf4")]
                    reads.setdefault(other_file, []).append((name, other_name))
            tensors = {}
            for f, wanted in reads.items():
                with safe_open(str(f), framework="pt") as handle:
                    tensors.update({name: handle.get_tensor(stored) for name, stored in wanted})
            save_file({n: tensors[n] for n in names}, str(tmp / shard.name), metadata={"format": "pt"})
    return Path(out)


def checkpoint_differences(model: "nn.Module", layout: Layout, folder: str | Path) -> list[str]:
    """Differences between a loaded model's state and a checkpoint folder, by hub tensor name.

    Empty when the checkpoint holds exactly the model's tensors: same names, shapes, dtypes, values.
    """
    import torch
    from safetensors import safe_open

    state = {layout.rename(name, "hf4"): t for name, t in model.state_dict().items()}
    on_disk = sources.tensor_names(Path(folder))
    # A tied lm_head shares the embedding's storage and is not saved on its own.
    saved_storage = {state[n].data_ptr() for n in state.keys() & on_disk.keys()}
    state = {n: t for n, t in state.items() if n in on_disk or t.data_ptr() not in saved_storage}
    problems = [f"{n}: only in the model" for n in sorted(state.keys() - on_disk.keys())]
    problems += [f"{n}: only in {folder}" for n in sorted(on_disk.keys() - state.keys())]
    by_file: dict[Path, list[str]] = {}
    for name in sorted(state.keys() & on_disk.keys()):
        by_file.setdefault(on_disk[name], []).append(name)
    for f, names in by_file.items():
        with safe_open(f, framework="pt") as handle:
            for name in names:
                disk, mine = handle.get_tensor(name), state[name].detach().cpu()
                if disk.dtype != mine.dtype or disk.shape != mine.shape:
                    problems.append(f"{name}: {mine.dtype} {list(mine.shape)} vs {disk.dtype} {list(disk.shape)} on disk")
                elif not torch.equal(disk, mine):
                    problems.append(f"{name}: values differ")
    return problems
