"""make-tiny: real, loadable, deterministic checkpoints with a known planted answer."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from surgery.arch import Part, layout_of_checkpoint
from surgery.tiny import PLANT_FACTOR, TinySpec, make_tiny

from conftest import cli_path, run_cli


def _state(folder):
    return load_file(str(folder / "model.safetensors"))


def test_trio_loads_and_generates_with_an_image(tiny_trio):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_trio["in"])
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_trio["in"]).eval()
    assert model.dtype == torch.bfloat16  # as saved, like the hub checkpoints
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many dots?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>How many dots?<|im_end|>\n<|im_start|>assistant\n" in text
    inputs = processor(text=[text], images=[Image.new("RGB", (112, 112), "red")], return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 16  # 8x8 patches, 2x2 merge
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_same_seed_identical_other_seed_different(tiny_trio, tmp_path):
    again = make_tiny(tmp_path / "again", TinySpec(layers=8, vision_depth=2, seed=0, plant=("mid", "late")))
    for role in ("base", "in", "rl"):
        a, b = _state(tiny_trio[role]), _state(again[role])
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), role
    other = make_tiny(tmp_path / "other", TinySpec(layers=8, vision_depth=2, seed=1))
    a, b = _state(tiny_trio["base"]), _state(other["base"])
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], b["model.layers.0.mlp.up_proj.weight"])


def _relative_delta(new, old):
    return ((new.float() - old.float()).norm() / old.float().norm().clamp_min(1e-12)).item()


def test_in_differs_from_base_everywhere(tiny_trio):
    base, inn = _state(tiny_trio["base"]), _state(tiny_trio["in"])
    unchanged = [k for k in base if torch.equal(base[k], inn[k])]
    assert unchanged == []


def test_planted_blocks_carry_much_larger_rl_deltas(tiny_trio):
    layout = layout_of_checkpoint(str(tiny_trio["rl"]))
    blocks = layout.partition()
    inn, rl = _state(tiny_trio["in"]), _state(tiny_trio["rl"])
    per_block: dict[str, list[float]] = {"early": [], "mid": [], "late": [], "elsewhere": []}
    for name in inn:
        if inn[name].dim() < 2:
            continue
        role = layout.classify(name)
        key = blocks.block_of(role.index) if role.part is Part.DECODER_LAYER else "elsewhere"
        per_block[key].append(_relative_delta(rl[name], inn[name]))
    smallest_planted = min(per_block["mid"] + per_block["late"])
    largest_other = max(per_block["early"] + per_block["elsewhere"])
    assert smallest_planted >= 10 * largest_other
    # And the sizes are what the spec says, within bf16 rounding.
    assert abs(largest_other - 0.01) < 0.005
    assert abs(smallest_planted / (0.01 * PLANT_FACTOR) - 1) < 0.2


def test_cli_make_tiny(tmp_path):
    out = tmp_path / "cli_trio"
    result = run_cli([cli_path("frankenstein"), "make-tiny", str(out), "--layers", "4", "--plant", "late", "--seed", "3"])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["base", "in", "rl", "tiny.json"]
    spec = json.loads((out / "tiny.json").read_text())
    assert spec["plant"] == ["late"] and spec["layers"] == 4 and spec["seed"] == 3
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert size < 400 * 2**20
    again = run_cli([cli_path("frankenstein"), "make-tiny", str(out)])
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--plant", "middle"], "--plant: unknown block 'middle'; blocks are early, mid, late"),
    (["--layers", "2"], "--layers"),
    (["--cuts", "3", "9", "--layers", "8"], "0 < c1 < c2 < 8"),
])
def test_cli_make_tiny_bad_input(tmp_path, args, message):
    result = run_cli([cli_path("frankenstein"), "make-tiny", str(tmp_path / "x"), *args])
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


# family -> (trio fixture, placeholder in the chat template, visual tokens of a 112x112 image, counted by hand)
FAMILY_TRIOS = {
    # 16-px patches merged 2x2: 112 px rounds to 128 = 4 merged tokens a side.
    "qwen3_vl": ("tiny_qwen3_vl", "<|vision_start|><|image_pad|><|vision_end|>How many dots?", 16),
    # 56-px tiles: a square image is cut into 2x2 tiles plus a thumbnail, 5 tiles of (56 / 14)^2 / 4 = 4 tokens.
    "internvl": ("tiny_internvl", "<IMG_CONTEXT>\nHow many dots?", 20),
}


@pytest.mark.parametrize("family", list(FAMILY_TRIOS))
def test_other_family_trios_load_and_generate_with_an_image(family, request):
    import transformers

    fixture, placeholder, visual_tokens = FAMILY_TRIOS[family]
    trio = request.getfixturevalue(fixture)
    processor = transformers.AutoProcessor.from_pretrained(trio["in"])
    config = json.loads((trio["in"] / "config.json").read_text())
    model = getattr(transformers, config["architectures"][0]).from_pretrained(trio["in"]).eval()
    assert config["model_type"] == family and model.dtype == torch.bfloat16
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many dots?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert f"<|im_start|>user\n{placeholder}<|im_end|>\n<|im_start|>assistant\n" in text
    inputs = processor(text=[text], images=[Image.new("RGB", (112, 112), "red")], return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == visual_tokens
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False, min_new_tokens=3)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3
    if family == "qwen3_vl":  # three DeepStack mergers, reading vision blocks 0, 1, 2 of 3
        assert config["vision_config"]["deepstack_visual_indexes"] == [0, 1, 2]


def test_cli_make_tiny_qwen3_vl_needs_three_vision_blocks(tmp_path):
    done = run_cli([cli_path("frankenstein"), "make-tiny", str(tmp_path / "ok"), "--arch", "qwen3_vl", "--layers", "3"])
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "ok" / "tiny.json").read_text())["vision_depth"] == 3  # the family's default
    done = run_cli([cli_path("frankenstein"), "make-tiny", str(tmp_path / "bad"), "--arch", "qwen3_vl", "--vision-depth", "2"])
    assert done.returncode == 2 and done.stderr.startswith("frankenstein: error: a Qwen3-VL needs at least 3 vision blocks")
    assert not (tmp_path / "bad").exists()
