"""Architecture adapter: the one place that knows where things live in a model.

Every other module asks this one where the decoder layers, vision blocks, projector, embeddings,
final norm and lm_head are (as modules of a loaded model, or as tensor-name prefixes in a
checkpoint), how many there are, what the unified layer index of a part is, and how the decoder
layers split into early / mid / late blocks. Nothing else re-derives these facts.

The facts themselves are data (`ARCHITECTURES`, one entry per `model_type`: Qwen2-VL, Qwen2.5-VL,
Qwen3-VL, InternVL, text-only Qwen2); the code below only interprets them, and the engine asks for
capabilities (3-D or 1-D positions, which processor outputs carry the images, features injected
after the first decoder layers), never for a family. Two tensor naming schemes can exist for the
same weights (METHOD.md section 0): "hf4" is what hub checkpoints and `save_pretrained` of
transformers 5 write (`model.layers.{i}.` for Qwen2.5-VL, `language_model.model.layers.{i}.` for
InternVL), "hf5" what the modules of a model loaded in transformers 5 are called
(`model.language_model.layers.{i}.`), which some training stacks' checkpoints keep on disk. Both are
accepted everywhere. Qwen3-VL checkpoints use the module names on disk too: it has one scheme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from pydantic import BaseModel, ConfigDict

from surgery.errors import FrankensteinError

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

# ---------------------------------------------------------------------------------------------
# Facts as data
# ---------------------------------------------------------------------------------------------


class TensorNaming(BaseModel):
    """Tensor-name prefixes of one naming scheme. `{i}` stands for the layer or block index."""

    model_config = ConfigDict(frozen=True)

    decoder_layer: str
    embed: str
    final_norm: str
    lm_head: str
    vision_block: str | None = None
    projector: str | None = None
    vision_tower: str | None = None  # the whole vision tower (patch embedding, blocks, merger)
    deepstack_merger: str | None = None  # Qwen3-VL: `{i}`-th merger, whose features enter after decoder layer i


class ModulePaths(BaseModel):
    """Attribute paths on a loaded transformers model; for each part the first path that exists wins."""

    model_config = ConfigDict(frozen=True)

    decoder_layers: tuple[str, ...]
    embed: tuple[str, ...]
    final_norm: tuple[str, ...]
    lm_head: tuple[str, ...]
    text_model: tuple[str, ...]
    vision_tower: tuple[str, ...] = ()
    vision_blocks: tuple[str, ...] = ()
    projector: tuple[str, ...] = ()
    layer_attention: str = "self_attn"  # attention submodule inside one decoder layer
    attention_key: str = "k_proj"  # key / value projections inside that attention module
    attention_value: str = "v_proj"
    # Methods of the loaded model (dotted paths) that the engine calls on vision-language models:
    # image inputs -> visual-token features, and token ids (+ image grids) -> 3-D M-RoPE positions.
    image_features: str | None = None
    rope_index: str | None = None


class LayerInjection(BaseModel):
    """Visual features added to the hidden states of the visual positions after decoder layers 0..K-1.

    Qwen3-VL's DeepStack: K mergers read intermediate vision blocks, and the k-th one's output is
    added to the visual tokens' hidden states after decoder layer k. The engine runs the layers one
    by one, so it adds them itself; this says where to find them and how many there are.
    """

    model_config = ConfigDict(frozen=True)

    source_blocks_key: str  # dotted config key: the vision blocks the features come from; K = its length
    features: str  # attribute of the image-features output holding the K per-image feature lists


class ArchFacts(BaseModel):
    """Everything the project needs to know about one `model_type`."""

    model_config = ConfigDict(frozen=True)

    model_type: str
    hf_class: str  # transformers class that loads a full checkpoint of this type
    rope: str = "mrope"  # "mrope": 3-D (time, height, width) positions from get_rope_index; "1d": plain positions
    num_layers_keys: tuple[str, ...]  # dotted config keys, first present wins
    num_vision_blocks_keys: tuple[str, ...] = ()
    visual_token_keys: tuple[str, ...] = ()  # config keys of the placeholder token ids images expand into
    # Processor outputs that carry the images, passed by name to the image-features method.
    image_inputs: tuple[str, ...] = ("pixel_values", "image_grid_thw")
    injection: LayerInjection | None = None  # features added after the first decoder layers (DeepStack)
    namings: dict[str, TensorNaming]  # scheme name -> prefixes; "hf4" is what hub checkpoints use
    modules: ModulePaths

    @property
    def has_vision(self) -> bool:
        return bool(self.num_vision_blocks_keys)


_VL_NAMINGS = {
    "hf4": TensorNaming(
        decoder_layer="model.layers.{i}.",
        embed="model.embed_tokens.",
        final_norm="model.norm.",
        lm_head="lm_head.",
        vision_block="visual.blocks.{i}.",
        projector="visual.merger.",
        vision_tower="visual.",
    ),
    "hf5": TensorNaming(
        decoder_layer="model.language_model.layers.{i}.",
        embed="model.language_model.embed_tokens.",
        final_norm="model.language_model.norm.",
        lm_head="lm_head.",
        vision_block="model.visual.blocks.{i}.",
        projector="model.visual.merger.",
        vision_tower="model.visual.",
    ),
}

_VL_MODULES = ModulePaths(
    decoder_layers=("model.language_model.layers", "model.layers"),
    embed=("model.language_model.embed_tokens", "model.embed_tokens"),
    final_norm=("model.language_model.norm", "model.norm"),
    lm_head=("lm_head",),
    text_model=("model.language_model", "model"),
    vision_tower=("model.visual", "visual"),
    vision_blocks=("model.visual.blocks", "visual.blocks"),
    projector=("model.visual.merger", "visual.merger"),
    image_features="model.get_image_features",
    rope_index="model.get_rope_index",
)

_VL_LAYER_KEYS = ("text_config.num_hidden_layers", "num_hidden_layers")
_VL_VISUAL_TOKENS = ("image_token_id", "video_token_id")

ARCHITECTURES: dict[str, ArchFacts] = {
    "qwen2_5_vl": ArchFacts(
        model_type="qwen2_5_vl",
        hf_class="Qwen2_5_VLForConditionalGeneration",
        num_layers_keys=_VL_LAYER_KEYS,
        num_vision_blocks_keys=("vision_config.depth",),
        visual_token_keys=_VL_VISUAL_TOKENS,
        namings=_VL_NAMINGS,
        modules=_VL_MODULES,
    ),
    "qwen2_vl": ArchFacts(
        model_type="qwen2_vl",
        hf_class="Qwen2VLForConditionalGeneration",
        num_layers_keys=_VL_LAYER_KEYS,
        num_vision_blocks_keys=("vision_config.depth",),
        visual_token_keys=_VL_VISUAL_TOKENS,
        namings=_VL_NAMINGS,
        modules=_VL_MODULES,
    ),
    # Qwen3-VL (dense): 16-px patches, interleaved M-RoPE, Q/K norms (all inside the model's own
    # modules) and DeepStack. Hub checkpoints carry the module names, so "hf4" is those names.
    "qwen3_vl": ArchFacts(
        model_type="qwen3_vl",
        hf_class="Qwen3VLForConditionalGeneration",
        num_layers_keys=("text_config.num_hidden_layers",),
        num_vision_blocks_keys=("vision_config.depth",),
        visual_token_keys=_VL_VISUAL_TOKENS,
        injection=LayerInjection(source_blocks_key="vision_config.deepstack_visual_indexes", features="deepstack_features"),
        namings={
            "hf4": _VL_NAMINGS["hf5"].model_copy(update={"deepstack_merger": "model.visual.deepstack_merger_list.{i}."}),
        },
        modules=_VL_MODULES,
    ),
    # InternVL (transformers `internvl`, the "-HF" checkpoints): InternViT tiles, pixel-shuffled and
    # projected, placed at <IMG_CONTEXT> tokens of a Qwen decoder with plain 1-D positions.
    "internvl": ArchFacts(
        model_type="internvl",
        hf_class="InternVLForConditionalGeneration",
        rope="1d",
        num_layers_keys=("text_config.num_hidden_layers",),
        num_vision_blocks_keys=("vision_config.num_hidden_layers",),
        visual_token_keys=("image_token_id",),
        image_inputs=("pixel_values",),
        namings={
            "hf4": TensorNaming(
                decoder_layer="language_model.model.layers.{i}.",
                embed="language_model.model.embed_tokens.",
                final_norm="language_model.model.norm.",
                lm_head="language_model.lm_head.",
                vision_block="vision_tower.encoder.layer.{i}.",
                projector="multi_modal_projector.",
                vision_tower="vision_tower.",
            ),
            "hf5": TensorNaming(
                decoder_layer="model.language_model.layers.{i}.",
                embed="model.language_model.embed_tokens.",
                final_norm="model.language_model.norm.",
                lm_head="lm_head.",
                vision_block="model.vision_tower.encoder.layer.{i}.",
                projector="model.multi_modal_projector.",
                vision_tower="model.vision_tower.",
            ),
        },
        modules=ModulePaths(
            decoder_layers=("model.language_model.layers",),
            embed=("model.language_model.embed_tokens",),
            final_norm=("model.language_model.norm",),
            lm_head=("lm_head",),
            text_model=("model.language_model",),
            vision_tower=("model.vision_tower",),
            vision_blocks=("model.vision_tower.encoder.layer",),
            projector=("model.multi_modal_projector",),
            image_features="model.get_image_features",
        ),
    ),
    # Text-only Qwen2, for the lm-eval path of the reasoning benchmarks.
    "qwen2": ArchFacts(
        model_type="qwen2",
        hf_class="Qwen2ForCausalLM",
        rope="1d",
        num_layers_keys=("num_hidden_layers",),
        namings={
            "hf4": TensorNaming(
                decoder_layer="model.layers.{i}.",
                embed="model.embed_tokens.",
                final_norm="model.norm.",
                lm_head="lm_head.",
            )
        },
        modules=ModulePaths(
            decoder_layers=("model.layers",),
            embed=("model.embed_tokens",),
            final_norm=("model.norm",),
            lm_head=("lm_head",),
            text_model=("model",),
        ),
    ),
}


def facts_for(model_type: str | None, *, allowed: Iterable[str] | None = None) -> ArchFacts:
    """Facts for `model_type`, or a one-line error naming it (and what is supported)."""
    allowed = tuple(allowed) if allowed is not None else tuple(ARCHITECTURES)
    if model_type not in ARCHITECTURES or model_type not in allowed:
        raise FrankensteinError(
            f"unsupported model_type {model_type!r}; supported: {', '.join(allowed)}"
        )
    return ARCHITECTURES[model_type]


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------

BLOCK_NAMES = ("early", "mid", "late")


class BlockPartition(BaseModel):
    """Decoder layers split as early `[0, c1)`, mid `[c1, c2)`, late `[c2, n)`."""

    model_config = ConfigDict(frozen=True)

    num_layers: int
    c1: int
    c2: int

    @classmethod
    def make(cls, num_layers: int, cuts: tuple[int, int] | list[int] | None = None) -> "BlockPartition":
        """Thirds by default (`c1 = n // 3`, `c2 = 2n // 3`), else the given cuts, validated."""
        if cuts is None:
            c1, c2 = num_layers // 3, 2 * num_layers // 3
        else:
            cuts = list(cuts)
            if len(cuts) != 2:
                raise FrankensteinError(f"cuts need two numbers c1 c2, got {cuts}")
            c1, c2 = int(cuts[0]), int(cuts[1])
        if not 0 < c1 < c2 < num_layers:
            raise FrankensteinError(
                f"cuts must satisfy 0 < c1 < c2 < {num_layers} (the number of decoder layers); "
                f"got c1={c1}, c2={c2}"
            )
        return cls(num_layers=num_layers, c1=c1, c2=c2)

    @property
    def ranges(self) -> dict[str, range]:
        return {
            "early": range(0, self.c1),
            "mid": range(self.c1, self.c2),
            "late": range(self.c2, self.num_layers),
        }

    @property
    def sizes(self) -> tuple[int, int, int]:
        return tuple(len(r) for r in self.ranges.values())  # type: ignore[return-value]

    def block_of(self, layer: int) -> str:
        for name, r in self.ranges.items():
            if layer in r:
                return name
        raise FrankensteinError(f"decoder layer {layer} is out of range 0..{self.num_layers - 1}")

    def layers(self, block: str) -> range:
        return self.ranges[check_block(block)]


def check_block(block: str) -> str:
    """`block` if it names a decoder block, else a one-line error listing the blocks."""
    if block not in BLOCK_NAMES:
        raise FrankensteinError(f"unknown block {block!r}; blocks are {', '.join(BLOCK_NAMES)}")
    return block


def parse_cuts(text: str | None) -> tuple[int, int] | None:
    """Cuts as written by users: '8:20', '8,20' or '8 20'; None or '' means thirds."""
    if text is None or str(text).strip() == "":
        return None
    parts = [p for p in re.split(r"[:,\s]+", str(text).strip()) if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise FrankensteinError(f"cuts must be two integers like 8:20, got {text!r}") from None
    if len(values) != 2:
        raise FrankensteinError(f"cuts must be two integers like 8:20, got {text!r}")
    return values  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Parts and tensor roles
# ---------------------------------------------------------------------------------------------


class Part(str, Enum):
    DECODER_LAYER = "decoder_layer"
    VISION_BLOCK = "vision_block"
    PROJECTOR = "projector"
    DEEPSTACK_MERGER = "deepstack_merger"  # Qwen3-VL: projects a vision block's features into decoder layer i
    VISION_OTHER = "vision_other"  # patch embedding and anything else in the tower
    EMBED = "embed"
    FINAL_NORM = "final_norm"
    LM_HEAD = "lm_head"


SECTION_OF_PART = {
    Part.DECODER_LAYER: "llm",
    Part.EMBED: "llm",
    Part.FINAL_NORM: "llm",
    Part.LM_HEAD: "llm",
    Part.VISION_BLOCK: "vision",
    Part.VISION_OTHER: "vision",
    Part.PROJECTOR: "projector",
    Part.DEEPSTACK_MERGER: "projector",
}
SECTIONS = ("vision", "projector", "llm")


def component_of(tensor_name: str) -> str:
    """attention / mlp / other, from the module path inside a layer or block."""
    if ".self_attn." in tensor_name or ".attn." in tensor_name or ".attention." in tensor_name:
        return "attention"
    if ".mlp." in tensor_name:
        return "mlp"
    return "other"


# Normalisation modules: `input_layernorm`, `post_attention_layernorm`, `q_norm` / `k_norm`, `model.norm`,
# vision `norm1` / `norm2` / `layernorm_before`, the mergers' `ln_q` / `norm`, InternVL's projector `layer_norm`.
NORM_MODULE = re.compile(r"(?:^|\.)(?:\w*norm\w*|ln_\w+)\.")


def is_norm(tensor_name: str) -> bool:
    """True for parameters of normalisation modules (weight analyses skip them, METHOD.md section 2)."""
    return NORM_MODULE.search(tensor_name) is not None


@dataclass(frozen=True)
class TensorRole:
    """Where one tensor sits in the model."""

    name: str
    part: Part
    index: int | None  # decoder layer or vision block index
    section: str  # vision / projector / llm
    component: str  # attention / mlp / other
    unified_index: int | None  # METHOD.md section 0 (DeepStack mergers sit with the projector at 0); None for embeddings, final norm, lm_head


# ---------------------------------------------------------------------------------------------
# Layout: the adapter's answer for one concrete model or checkpoint
# ---------------------------------------------------------------------------------------------


def _config_get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node or node[key] is None:
            return None
        node = node[key]
    return node


def _first_config_int(config: Mapping[str, Any], keys: Iterable[str], what: str) -> int:
    for key in keys:
        value = _config_get(config, key)
        if value is not None:
            return int(value)
    raise FrankensteinError(f"config has no {what} (looked for {', '.join(keys)})")


def _token_rows(features: Any) -> Any:
    """Visual-token features as one (N, H) tensor: from per-image tensors (Qwen) or (tiles, tokens, H) (InternVL)."""
    import torch

    parts = list(features) if isinstance(features, (list, tuple)) else [features]
    return torch.cat([f.reshape(-1, f.shape[-1]) for f in parts])


def _get_attr_path(obj: Any, path: str) -> Any:
    for attr in path.split("."):
        obj = getattr(obj, attr)
    return obj


@dataclass(frozen=True)
class Layout:
    """Architecture facts of one model: counts, naming scheme, and how to find each part."""

    facts: ArchFacts
    num_layers: int
    num_vision_blocks: int
    naming_scheme: str  # key into facts.namings used by this checkpoint or model
    # Vision blocks whose features are added after decoder layers 0..K-1 (Qwen3-VL DeepStack), in order.
    injection_sources: tuple[int, ...] = ()

    # -- identity ------------------------------------------------------------------------------
    @property
    def model_type(self) -> str:
        return self.facts.model_type

    @property
    def has_vision(self) -> bool:
        return self.facts.has_vision

    @property
    def naming(self) -> TensorNaming:
        return self.facts.namings[self.naming_scheme]

    @property
    def num_injections(self) -> int:
        """K: features are added to the visual positions after decoder layers 0..K-1 (0: none)."""
        return len(self.injection_sources)

    # -- blocks and indices -------------------------------------------------------------------
    def partition(self, cuts: tuple[int, int] | list[int] | None = None) -> BlockPartition:
        return BlockPartition.make(self.num_layers, cuts)

    def unified_index(self, part: Part | str, index: int | None = None) -> int | None:
        """Vision block j -> j - V, projector (and DeepStack mergers) -> 0, decoder layer i -> i + 1, others -> None."""
        part = Part(part)
        if part is Part.VISION_BLOCK:
            self._check_index(index, self.num_vision_blocks, "vision block")
            return int(index) - self.num_vision_blocks  # type: ignore[arg-type]
        if part is Part.DEEPSTACK_MERGER:
            self._check_index(index, self.num_injections, "DeepStack merger")
            return 0
        if part is Part.PROJECTOR:
            return 0
        if part is Part.DECODER_LAYER:
            self._check_index(index, self.num_layers, "decoder layer")
            return int(index) + 1  # type: ignore[arg-type]
        return None

    @property
    def unified_range(self) -> range:
        """All unified indices, from the first vision block to the last decoder layer."""
        start = -self.num_vision_blocks if self.has_vision else 1
        return range(start, self.num_layers + 1)

    def part_of_unified(self, unified: int) -> tuple[Part, int | None]:
        """Inverse of `unified_index`."""
        if unified >= 1:
            self._check_index(unified - 1, self.num_layers, "decoder layer")
            return Part.DECODER_LAYER, unified - 1
        if unified == 0 and self.has_vision:
            return Part.PROJECTOR, None
        self._check_index(unified + self.num_vision_blocks, self.num_vision_blocks, "vision block")
        return Part.VISION_BLOCK, unified + self.num_vision_blocks

    @staticmethod
    def _check_index(index: int | None, count: int, what: str) -> None:
        if index is None or not 0 <= int(index) < count:
            raise FrankensteinError(f"{what} index {index} is out of range 0..{count - 1}")

    # -- tensor names --------------------------------------------------------------------------
    def decoder_layer_prefix(self, i: int) -> str:
        self._check_index(i, self.num_layers, "decoder layer")
        return self.naming.decoder_layer.format(i=i)

    def vision_block_prefix(self, j: int) -> str:
        self._check_index(j, self.num_vision_blocks, "vision block")
        return self.naming.vision_block.format(i=j)  # type: ignore[union-attr]

    @cached_property
    def _patterns(self) -> list[tuple[re.Pattern[str], Part, str]]:
        """(name pattern, part, TensorNaming attribute) of every scheme, most specific first."""
        pats: list[tuple[re.Pattern[str], Part, str]] = []
        for naming in self.facts.namings.values():
            for attr, part in (
                ("decoder_layer", Part.DECODER_LAYER),
                ("vision_block", Part.VISION_BLOCK),
                ("projector", Part.PROJECTOR),
                ("deepstack_merger", Part.DEEPSTACK_MERGER),
                ("embed", Part.EMBED),
                ("final_norm", Part.FINAL_NORM),
                ("lm_head", Part.LM_HEAD),
                ("vision_tower", Part.VISION_OTHER),
            ):
                prefix = getattr(naming, attr)
                if prefix is None:
                    continue
                regex = "^" + re.escape(prefix).replace(re.escape("{i}"), r"(\d+)")
                pats.append((re.compile(regex), part, attr))
        # Longer (more specific) prefixes first, so `model.visual.merger.` beats `model.visual.`
        # and `model.language_model.layers.` is not mistaken for anything shorter.
        pats.sort(key=lambda p: -len(p[0].pattern))
        return pats

    def classify(self, tensor_name: str) -> TensorRole:
        """Role of a tensor (or parameter) name, in either naming scheme."""
        for regex, part, _ in self._patterns:
            m = regex.match(tensor_name)
            if m is None:
                continue
            index = int(m.group(1)) if m.groups() else None
            return TensorRole(
                name=tensor_name,
                part=part,
                index=index,
                section=SECTION_OF_PART[part],
                component=component_of(tensor_name),
                unified_index=self.unified_index(part, index)
                if part in (Part.DECODER_LAYER, Part.VISION_BLOCK, Part.PROJECTOR, Part.DEEPSTACK_MERGER)
                else None,
            )
        raise FrankensteinError(f"tensor {tensor_name!r} does not belong to any known part of {self.model_type}")

    def rename(self, tensor_name: str, scheme: str = "hf4") -> str:
        """The same tensor's name in naming scheme `scheme` ("hf4": hub checkpoints, "hf5": transformers 5 modules)."""
        if scheme not in self.facts.namings:
            known = ", ".join(self.facts.namings)
            raise FrankensteinError(f"{self.model_type} has no naming scheme {scheme!r}; it has {known}")
        target = self.facts.namings[scheme]
        for regex, _, attr in self._patterns:
            m = regex.match(tensor_name)
            if m is None:
                continue
            prefix = getattr(target, attr)
            if prefix is None:
                break
            if m.groups():
                prefix = prefix.format(i=m.group(1))
            return prefix + tensor_name[m.end():]
        raise FrankensteinError(f"tensor {tensor_name!r} has no name in the {scheme} scheme of {self.model_type}")

    # -- modules of a loaded model -------------------------------------------------------------
    def _module(self, model: "nn.Module", candidates: tuple[str, ...], what: str) -> Any:
        for path in candidates:
            try:
                return _get_attr_path(model, path)
            except AttributeError:
                continue
        raise FrankensteinError(f"{type(model).__name__} has no {what} (looked at {', '.join(candidates) or 'nothing'})")

    def decoder_layers(self, model: "nn.Module") -> "nn.ModuleList":
        return self._module(model, self.facts.modules.decoder_layers, "decoder layers")

    def vision_blocks(self, model: "nn.Module") -> "nn.ModuleList":
        return self._module(model, self.facts.modules.vision_blocks, "vision blocks")

    def projector(self, model: "nn.Module") -> "nn.Module":
        return self._module(model, self.facts.modules.projector, "projector")

    def embed_tokens(self, model: "nn.Module") -> "nn.Module":
        return self._module(model, self.facts.modules.embed, "token embeddings")

    def final_norm(self, model: "nn.Module") -> "nn.Module":
        return self._module(model, self.facts.modules.final_norm, "final norm")

    def lm_head(self, model: "nn.Module") -> "nn.Module":
        return self._module(model, self.facts.modules.lm_head, "lm_head")

    def text_model(self, model: "nn.Module") -> "nn.Module":
        return self._module(model, self.facts.modules.text_model, "text model")

    def layer_attention(self, decoder_layer: "nn.Module") -> "nn.Module":
        """The attention submodule of one decoder layer."""
        return self._module(decoder_layer, (self.facts.modules.layer_attention,), "attention submodule")

    def key_value_projections(self, decoder_layer: "nn.Module") -> tuple["nn.Module", "nn.Module"]:
        """The key and value projections of one decoder layer's attention."""
        attention = self.layer_attention(decoder_layer)
        m = self.facts.modules
        return (
            self._module(attention, (m.attention_key,), "key projection"),
            self._module(attention, (m.attention_value,), "value projection"),
        )

    # -- vision-language plumbing of a loaded model --------------------------------------------
    def visual_token_ids(self, config: Any) -> list[int]:
        """Token ids that stand for visual tokens (image / video placeholders) in this model's prompts."""
        ids = [getattr(config, key, None) for key in self.facts.visual_token_keys]
        return [int(i) for i in ids if i is not None]

    def image_features(self, model: "nn.Module", **image_inputs: Any) -> tuple[Any, list[Any]]:
        """Visual-token features of a batch of images, and the features injected after decoder layers 0..K-1.

        `image_inputs` are processor outputs (`pixel_values`, `image_grid_thw`, ...); the ones this
        architecture's image-features method takes are passed to it by name. Returns (N, H) for the N
        visual tokens of all images in order, and K tensors (N, H) (an empty list when nothing is injected).
        """
        method = self._vision_method(model, self.facts.modules.image_features, "image features")
        out = method(**{k: image_inputs[k] for k in self.facts.image_inputs}, return_dict=True)
        injected = getattr(out, self.facts.injection.features) if self.facts.injection else []
        return _token_rows(out.pooler_output), [_token_rows(f) for f in injected]

    def rope_positions(self, model: "nn.Module", input_ids: Any, **grids: Any) -> Any:
        """3-D M-RoPE position ids (3, B, T) of a prompt batch, from the model's own rule."""
        method = self._vision_method(model, self.facts.modules.rope_index, "M-RoPE position rule")
        positions, _ = method(input_ids, **grids)
        return positions

    def _vision_method(self, model: "nn.Module", path: str | None, what: str) -> Any:
        if path is None:
            raise FrankensteinError(f"{self.model_type} has no {what}: it is a text-only model")
        return self._module(model, (path,), what)

    # -- summary -------------------------------------------------------------------------------
    def describe(self, cuts: tuple[int, int] | None = None) -> dict[str, Any]:
        part = self.partition(cuts)
        described = {
            "model_type": self.model_type,
            "naming_scheme": self.naming_scheme,
            "num_decoder_layers": self.num_layers,
            "num_vision_blocks": self.num_vision_blocks,
            "blocks": {name: [r.start, r.stop] for name, r in part.ranges.items()},
            "block_sizes": list(part.sizes),
            "unified_index_range": [self.unified_range.start, self.unified_range.stop - 1],
            "decoder_layer_prefix": self.naming.decoder_layer,
            "vision_block_prefix": self.naming.vision_block,
            "projector_prefix": self.naming.projector,
        }
        if self.num_injections:
            # Where each DeepStack merger sits: with the projector (unified index 0), reading one vision
            # block and adding its output to the visual tokens after one decoder layer.
            described["deepstack_mergers"] = [
                {"merger": k, "prefix": self.naming.deepstack_merger.format(i=k),  # type: ignore[union-attr]
                 "from_vision_block": block, "added_after_decoder_layer": k}
                for k, block in enumerate(self.injection_sources)
            ]
        return described


# ---------------------------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------------------------


def layout_from_config(
    config: Mapping[str, Any],
    tensor_names: Iterable[str] | None = None,
    *,
    allowed_types: Iterable[str] | None = None,
    where: str = "checkpoint",
) -> Layout:
    """Layout from a config dict; tensor names (if given) fix the naming scheme and are cross-checked."""
    facts = facts_for(config.get("model_type"), allowed=allowed_types)
    num_layers = _first_config_int(config, facts.num_layers_keys, "decoder layer count")
    num_vision = (
        _first_config_int(config, facts.num_vision_blocks_keys, "vision block count") if facts.has_vision else 0
    )
    sources = _injection_sources(facts, config)
    scheme = "hf4"
    if tensor_names is not None:
        names = list(tensor_names)
        scheme = _detect_scheme(facts, names)
        layout = Layout(facts, num_layers, num_vision, scheme, sources)
        _cross_check(layout, names, where)
        return layout
    return Layout(facts, num_layers, num_vision, scheme, sources)


def _injection_sources(facts: ArchFacts, config: Mapping[str, Any]) -> tuple[int, ...]:
    if facts.injection is None:
        return ()
    value = _config_get(config, facts.injection.source_blocks_key)
    if not isinstance(value, (list, tuple)):
        raise FrankensteinError(f"config has no list {facts.injection.source_blocks_key} (the DeepStack vision blocks)")
    return tuple(int(v) for v in value)


def _detect_scheme(facts: ArchFacts, names: list[str]) -> str:
    for scheme, naming in facts.namings.items():
        first_layer = naming.decoder_layer.format(i=0)
        if any(n.startswith(first_layer) for n in names):
            return scheme
    return "hf4"


def _cross_check(layout: Layout, names: list[str], where: str) -> None:
    """The config's layer and block counts must match the tensors present."""
    seen_layers: set[int] = set()
    seen_blocks: set[int] = set()
    for name in names:
        try:
            role = layout.classify(name)
        except FrankensteinError:
            # Index out of range shows up here: count it from the raw name instead.
            m = re.search(r"layers\.(\d+)\.", name)
            if m:
                seen_layers.add(int(m.group(1)))
            m = re.search(r"blocks\.(\d+)\.", name)
            if m:
                seen_blocks.add(int(m.group(1)))
            continue
        if role.part is Part.DECODER_LAYER:
            seen_layers.add(role.index)  # type: ignore[arg-type]
        elif role.part is Part.VISION_BLOCK:
            seen_blocks.add(role.index)  # type: ignore[arg-type]
    if seen_layers and len(seen_layers) != layout.num_layers or seen_layers and max(seen_layers) != layout.num_layers - 1:
        raise FrankensteinError(
            f"{where}: config says {layout.num_layers} decoder layers but the weights hold {len(seen_layers)}"
        )
    if layout.has_vision and seen_blocks and (
        len(seen_blocks) != layout.num_vision_blocks or max(seen_blocks) != layout.num_vision_blocks - 1
    ):
        raise FrankensteinError(
            f"{where}: config says {layout.num_vision_blocks} vision blocks but the weights hold {len(seen_blocks)}"
        )


def layout_of_model(model: "nn.Module", *, allowed_types: Iterable[str] | None = None) -> Layout:
    """Layout of a loaded transformers model (module names use the transformers 5 scheme)."""
    config = model.config.to_dict()
    layout = layout_from_config(config, allowed_types=allowed_types, where=type(model).__name__)
    names = [n for n, _ in model.named_parameters()]
    layout = replace(layout, naming_scheme=_detect_scheme(layout.facts, names))
    n_modules = len(layout.decoder_layers(model))
    if n_modules != layout.num_layers:
        raise FrankensteinError(f"model config says {layout.num_layers} decoder layers but the model has {n_modules}")
    return layout


def layout_of_checkpoint(
    source: str, *, allow_pickle: bool = False, allowed_types: Iterable[str] | None = None
) -> Layout:
    """Layout of a checkpoint (folder or hub id) from its config and tensor names; weights stay on disk."""
    from surgery import sources

    # Local folders get the full weights check (cheap); hub ids fetch only config and index files.
    local = Path(str(source)).expanduser().is_dir()
    path = sources.resolve(source, weights=local, allow_pickle=allow_pickle)
    config = sources.read_config(path)
    names = sources.tensor_names(path) if sources.has_safetensors(path) else None
    return layout_from_config(config, names, allowed_types=allowed_types, where=str(source))


def layout_from_description(described: Mapping[str, Any]) -> Layout:
    """Layout rebuilt from `Layout.describe()` as stored in result files, with no checkpoint at hand."""
    try:
        facts = facts_for(described.get("model_type"))
        layout = Layout(
            facts,
            int(described["num_decoder_layers"]),
            int(described["num_vision_blocks"]),
            str(described["naming_scheme"]),
            tuple(int(m["from_vision_block"]) for m in described.get("deepstack_mergers", [])),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise FrankensteinError(f"not a layout description (from Layout.describe()): {type(e).__name__} {e}") from None
    if layout.naming_scheme not in facts.namings:
        raise FrankensteinError(
            f"layout description names scheme {layout.naming_scheme!r}; {layout.model_type} has {', '.join(facts.namings)}"
        )
    if layout.has_vision != (layout.num_vision_blocks > 0) or layout.num_layers < 1:
        raise FrankensteinError(
            f"layout description of {layout.model_type} has {layout.num_layers} decoder layers and "
            f"{layout.num_vision_blocks} vision blocks"
        )
    return layout
