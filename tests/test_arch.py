"""The architecture adapter: counts, blocks, unified index, both tensor naming schemes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from surgery.arch import BlockPartition, Part, layout_from_config, layout_of_checkpoint, layout_of_model, parse_cuts
from surgery.errors import FrankensteinError
from surgery.loading import load_model
from surgery.sources import tensor_names

from conftest import cli_path, run_cli


def test_qwen2_5_vl_checkpoint_facts(tiny_trio):
    layout = layout_of_checkpoint(str(tiny_trio["rl"]))
    assert layout.model_type == "qwen2_5_vl"
    assert (layout.num_layers, layout.num_vision_blocks) == (8, 2)
    assert layout.naming_scheme == "hf4"
    assert layout.partition().sizes == (2, 3, 3)
    assert list(layout.unified_range) == list(range(-2, 9))


def test_qwen2_vl_checkpoint_facts(tiny_qwen2_vl):
    layout = layout_of_checkpoint(str(tiny_qwen2_vl["base"]))
    assert layout.model_type == "qwen2_vl"
    assert (layout.num_layers, layout.num_vision_blocks) == (6, 3)
    assert layout.partition().sizes == (2, 2, 2)


def test_text_only_qwen2(tiny_qwen2_text):
    layout = layout_of_checkpoint(str(tiny_qwen2_text))
    assert (layout.model_type, layout.num_layers, layout.num_vision_blocks, layout.has_vision) == ("qwen2", 4, 0, False)
    assert list(layout.unified_range) == [1, 2, 3, 4]
    model, loaded = load_model(str(tiny_qwen2_text), dtype="float32")
    assert len(loaded.decoder_layers(model)) == 4


@pytest.mark.parametrize("fixture", ["tiny_trio", "tiny_qwen2_vl"])
def test_loaded_model_modules_match_checkpoint(fixture, request):
    paths = request.getfixturevalue(fixture)
    model, layout = load_model(str(paths["in"]), dtype="float32")
    from_disk = layout_of_checkpoint(str(paths["in"]))
    assert (layout.num_layers, layout.num_vision_blocks) == (from_disk.num_layers, from_disk.num_vision_blocks)
    assert layout.naming_scheme == "hf5"  # transformers 5 module names
    assert len(layout.decoder_layers(model)) == layout.num_layers
    assert len(layout.vision_blocks(model)) == layout.num_vision_blocks
    assert layout.projector(model) is model.model.visual.merger
    assert layout.embed_tokens(model) is model.get_input_embeddings()
    assert layout.lm_head(model) is model.lm_head
    # Every parameter of the loaded model classifies, and decoder/vision indices agree with modules.
    for name, param in model.named_parameters():
        role = layout.classify(name)
        if role.part is Part.DECODER_LAYER:
            assert any(p is param for p in layout.decoder_layers(model)[role.index].parameters())
        if role.part is Part.VISION_BLOCK:
            assert any(p is param for p in layout.vision_blocks(model)[role.index].parameters())


def test_unified_index_and_roles_in_both_schemes(tiny_trio):
    layout = layout_of_checkpoint(str(tiny_trio["base"]))
    V = layout.num_vision_blocks
    assert [layout.unified_index(Part.VISION_BLOCK, j) for j in range(V)] == [-2, -1]
    assert layout.unified_index(Part.PROJECTOR) == 0
    assert [layout.unified_index(Part.DECODER_LAYER, i) for i in range(8)] == list(range(1, 9))
    for u in layout.unified_range:
        part, index = layout.part_of_unified(u)
        assert layout.unified_index(part, index) == u

    expectations = {
        "model.layers.3.mlp.down_proj.weight": (Part.DECODER_LAYER, 3, "llm", "mlp", 4),
        "model.language_model.layers.3.mlp.down_proj.weight": (Part.DECODER_LAYER, 3, "llm", "mlp", 4),
        "model.layers.0.self_attn.q_proj.weight": (Part.DECODER_LAYER, 0, "llm", "attention", 1),
        "visual.blocks.1.attn.qkv.weight": (Part.VISION_BLOCK, 1, "vision", "attention", -1),
        "model.visual.blocks.0.mlp.up_proj.weight": (Part.VISION_BLOCK, 0, "vision", "mlp", -2),
        "visual.merger.mlp.0.weight": (Part.PROJECTOR, None, "projector", "mlp", 0),
        "model.visual.merger.ln_q.weight": (Part.PROJECTOR, None, "projector", "other", 0),
        "visual.patch_embed.proj.weight": (Part.VISION_OTHER, None, "vision", "other", None),
        "model.embed_tokens.weight": (Part.EMBED, None, "llm", "other", None),
        "model.language_model.embed_tokens.weight": (Part.EMBED, None, "llm", "other", None),
        "model.norm.weight": (Part.FINAL_NORM, None, "llm", "other", None),
        "lm_head.weight": (Part.LM_HEAD, None, "llm", "other", None),
    }
    for name, expected in expectations.items():
        r = layout.classify(name)
        assert (r.part, r.index, r.section, r.component, r.unified_index) == expected, name


def test_checkpoint_with_transformers5_names_on_disk(tiny_trio, tmp_path):
    """Some training stacks save `model.language_model.*` names: read and load them the same way."""
    src = tiny_trio["in"]
    state = load_file(str(src / "model.safetensors"))
    renamed = {}
    for name, t in state.items():
        if name.startswith("model."):
            name = "model.language_model." + name[len("model."):]
        elif name.startswith("visual."):
            name = "model." + name
        renamed[name] = t
    dst = tmp_path / "hf5"
    dst.mkdir()
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    save_file(renamed, str(dst / "model.safetensors"))

    layout = layout_of_checkpoint(str(dst))
    assert layout.naming_scheme == "hf5"
    assert (layout.num_layers, layout.num_vision_blocks) == (8, 2)
    assert layout.decoder_layer_prefix(2) == "model.language_model.layers.2."
    roles_hf4 = sorted((r.part, r.index, r.component) for r in map(layout.classify, tensor_names(src)))
    roles_hf5 = sorted((r.part, r.index, r.component) for r in map(layout.classify, tensor_names(dst)))
    assert roles_hf4 == roles_hf5

    a, _ = load_model(str(src), dtype="float32")
    b, _ = load_model(str(dst), dtype="float32")
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_block_partitions():
    assert BlockPartition.make(28).sizes == (9, 9, 10)
    p = BlockPartition.make(28, (8, 20))
    assert p.sizes == (8, 12, 8)
    assert (p.block_of(7), p.block_of(8), p.block_of(19), p.block_of(20)) == ("early", "mid", "mid", "late")
    assert list(p.layers("late")) == list(range(20, 28))
    assert parse_cuts("8:20") == (8, 20) and parse_cuts("8,20") == (8, 20) and parse_cuts(None) is None
    for bad in [(20, 8), (0, 10), (8, 28), (8, 8), (-1, 5)]:
        with pytest.raises(FrankensteinError, match="0 < c1 < c2 < 28"):
            BlockPartition.make(28, bad)
    with pytest.raises(FrankensteinError):
        parse_cuts("8")


def test_layout_from_real_7b_config_shape():
    """The hub config of Qwen2.5-VL-7B keeps the layer count at the top level."""
    config = {"model_type": "qwen2_5_vl", "num_hidden_layers": 28, "vision_config": {"depth": 32}}
    layout = layout_from_config(config)
    assert (layout.num_layers, layout.num_vision_blocks) == (28, 32)
    assert layout.partition().sizes == (9, 9, 10)
    assert layout.unified_index(Part.VISION_BLOCK, 0) == -32
    assert layout.unified_index(Part.DECODER_LAYER, 27) == 28


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(FrankensteinError, match="unsupported model_type 'llama'"):
        layout_of_checkpoint(str(tmp_path))


def test_config_and_weights_disagree(tiny_trio, tmp_path):
    config = json.loads((tiny_trio["base"] / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 9
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").symlink_to(tiny_trio["base"] / "model.safetensors")
    with pytest.raises(FrankensteinError, match="config says 9 decoder layers but the weights hold 8"):
        layout_of_checkpoint(str(tmp_path))


def test_layout_of_model_matches_its_checkpoint(tiny_trio):
    """A model built by plain transformers (not `load_model`): `layout_of_model` reads from the modules
    and config what `layout_of_checkpoint` reads from the files, names them in the transformers 5 scheme,
    and refuses a model whose modules disagree with its config."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_trio["base"], dtype=torch.float32)
    from_model = layout_of_model(model).describe()
    from_disk = layout_of_checkpoint(str(tiny_trio["base"])).describe()
    same = ["model_type", "num_decoder_layers", "num_vision_blocks", "blocks", "block_sizes", "unified_index_range"]
    assert {k: from_model[k] for k in same} == {k: from_disk[k] for k in same}
    assert (from_model["num_decoder_layers"], from_model["num_vision_blocks"]) == (8, 2)  # make_tiny's spec
    assert from_model["naming_scheme"] == "hf5" and from_disk["naming_scheme"] == "hf4"
    prefixes = [from_model[k] for k in ("decoder_layer_prefix", "vision_block_prefix", "projector_prefix")]
    assert prefixes == ["model.language_model.layers.{i}.", "model.visual.blocks.{i}.", "model.visual.merger."]
    names = [n for n, _ in model.named_parameters()]
    assert all(any(n.startswith(p.format(i=1)) for n in names) for p in prefixes)  # they name real parameters
    del model.model.language_model.layers[7]
    with pytest.raises(FrankensteinError, match="config says 8 decoder layers but the model has 7"):
        layout_of_model(model)


# -- other families -------------------------------------------------------------------------------

# family -> (trio fixture, decoder layers, vision blocks, scheme on disk, decoder prefix on disk, module prefix)
FAMILIES = {
    "qwen3_vl": ("tiny_qwen3_vl", 6, 3, "hf4", "model.language_model.layers.{i}.", "model.language_model.layers.{i}."),
    "internvl": ("tiny_internvl", 6, 2, "hf4", "language_model.model.layers.{i}.", "model.language_model.layers.{i}."),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_other_families_checkpoint_and_modules_agree(family, request):
    """Counts, schemes and unified index of Qwen3-VL and InternVL, from the files and from the loaded modules;
    every parameter of the loaded model classifies, into the module the layout names for it."""
    fixture, n_layers, n_vision, scheme, disk_prefix, module_prefix = FAMILIES[family]
    paths = request.getfixturevalue(fixture)
    disk = layout_of_checkpoint(str(paths["rl"]))
    model, loaded = load_model(str(paths["rl"]), dtype="float32")
    assert (disk.model_type, disk.num_layers, disk.num_vision_blocks, disk.naming_scheme) == (family, n_layers, n_vision, scheme)
    assert disk.naming.decoder_layer == disk_prefix and loaded.naming.decoder_layer == module_prefix
    assert list(disk.unified_range) == list(range(-n_vision, n_layers + 1))
    assert len(loaded.decoder_layers(model)) == n_layers and len(loaded.vision_blocks(model)) == n_vision
    assert loaded.embed_tokens(model) is model.get_input_embeddings() and loaded.lm_head(model) is model.lm_head
    for name, param in model.named_parameters():
        role = loaded.classify(name)
        if role.part is Part.DECODER_LAYER:
            assert any(p is param for p in loaded.decoder_layers(model)[role.index].parameters())
        if role.part is Part.VISION_BLOCK:
            assert any(p is param for p in loaded.vision_blocks(model)[role.index].parameters())
        assert disk.classify(disk.rename(name, "hf4")).part is role.part  # both schemes name the same tensor
    on_disk = set(tensor_names(paths["rl"]))
    assert {disk.rename(n, "hf4") for n, _ in model.named_parameters()} == on_disk


def test_qwen3_vl_deepstack_mergers_are_placed_and_named(tiny_qwen3_vl):
    layout = layout_of_checkpoint(str(tiny_qwen3_vl["in"]))
    # The tiny config spreads its 3 mergers over 3 vision blocks: 0, 1, 2 (the 8B: 8, 16, 24).
    assert layout.injection_sources == (0, 1, 2) and layout.num_injections == 3
    role = layout.classify("model.visual.deepstack_merger_list.2.linear_fc2.weight")
    assert (role.part, role.index, role.section, role.unified_index) == (Part.DEEPSTACK_MERGER, 2, "projector", 0)
    assert layout.part_of_unified(0) == (Part.PROJECTOR, None)
    with pytest.raises(FrankensteinError, match="DeepStack merger index 3 is out of range 0..2"):
        layout.classify("model.visual.deepstack_merger_list.3.norm.weight")
    described = layout.describe()
    assert described["deepstack_mergers"][1] == {
        "merger": 1, "prefix": "model.visual.deepstack_merger_list.1.", "from_vision_block": 1, "added_after_decoder_layer": 1,
    }
    from surgery.arch import layout_from_description

    assert layout_from_description(json.loads(json.dumps(described))) == layout
    done = run_cli([cli_path("frankenstein"), "layout", str(tiny_qwen3_vl["in"]), "--json"])
    assert done.returncode == 0 and json.loads(done.stdout) == described
    done = run_cli([cli_path("frankenstein"), "layout", str(tiny_qwen3_vl["in"])])
    assert "merger=2, prefix=model.visual.deepstack_merger_list.2., from_vision_block=2, added_after_decoder_layer=2" in done.stdout
