"""The default prompt style of a checkpoint (METHOD.md 1b): a hub id by the table of known ids, a local
folder by what the checkpoint says about itself, and otherwise the base style with the reason said."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from frankenstein_tasks.prompt_styles import style_for_checkpoint


def folder(root: Path, name: str, *, config: dict | None = None, readme: str | None = None, mergekit: dict | None = None) -> str:
    path = root / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config or {"model_type": "qwen2_5_vl"}))
    if readme is not None:
        (path / "README.md").write_text(readme)
    if mergekit is not None:
        (path / "mergekit_config.yml").write_text(yaml.safe_dump(mergekit))
    return str(path)


def style(checkpoint: str) -> tuple[str, str]:
    chosen, why = style_for_checkpoint(checkpoint)
    return chosen.name, why


@pytest.mark.parametrize("checkpoint, expected", [
    ("OpenMMReasoner/OpenMMReasoner-RL", "reasoner"), ("OpenMMReasoner/OpenMMReasoner-ColdStart", "reasoner"),
    ("MMR1/MMR1-7B-SFT", "reasoner"), ("csfufu/Revisual-R1-final", "revisual"),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "base"), ("someone/Some-VL-Model", "base"),
])
def test_hub_ids_by_the_table(checkpoint, expected):
    assert style(checkpoint)[0] == expected


def test_a_hub_cache_snapshot_is_named_by_its_path(tmp_path):
    snapshot = folder(tmp_path / "hub" / "models--OpenMMReasoner--OpenMMReasoner-RL" / "snapshots", "0123abcd")
    name, why = style(snapshot)
    assert name == "reasoner" and "Hugging Face cache path names OpenMMReasoner/OpenMMReasoner-RL" in why


def test_config_name_or_path_names_the_checkpoint(tmp_path):
    # A training stack's own path for it: the last two components name the hub id.
    copy = folder(tmp_path, "step_1200", config={"model_type": "qwen2_5_vl", "_name_or_path": "/mnt/ckpt/csfufu/Revisual-R1-final"})
    name, why = style(copy)
    assert name == "revisual" and "config.json _name_or_path" in why
    # The metadata wins over a folder name that says otherwise.
    renamed = folder(tmp_path, "OpenMMReasoner-RL", config={"_name_or_path": "csfufu/Revisual-R1-Coldstart"})
    assert style(renamed)[0] == "revisual"


def test_model_card_names_the_model_but_its_base_model_does_not(tmp_path):
    card = "---\nbase_model: Qwen/Qwen2.5-VL-7B-Instruct\nlicense: apache-2.0\nmodel-index:\n- name: MMR1-7B-SFT\n  results: []\n---\n# MMR1\n"
    name, why = style(folder(tmp_path, "a", readme=card))
    assert name == "reasoner" and "README.md front matter names MMR1-7B-SFT" in why
    # A cold-start checkpoint's card names its parent, the base-style Instruct model: that is not its own id.
    parent_only = "---\nbase_model: Qwen/Qwen2.5-VL-7B-Instruct\n---\n"
    name, why = style(folder(tmp_path, "b", readme=parent_only))
    assert name == "base" and "neither its metadata" in why


def test_a_merged_splice_takes_the_style_its_recipe_models_share(tmp_path):
    ins = folder(tmp_path, "in_copy", config={"_name_or_path": "OpenMMReasoner/OpenMMReasoner-ColdStart"})
    recipe = {"merge_method": "passthrough", "dtype": "bfloat16", "slices": [
        {"sources": [{"model": ins, "layer_range": [0, 9]}]},
        {"sources": [{"model": "OpenMMReasoner/OpenMMReasoner-RL", "layer_range": [9, 28]}]},
        {"sources": [{"model": ins, "layer_range": [28, 28]}]},
    ]}
    name, why = style(folder(tmp_path, "mid_late", mergekit=recipe))
    assert name == "reasoner" and "mergekit_config.yml" in why
    mixed = {**recipe, "slices": [{"sources": [{"model": "MMR1/MMR1-7B-SFT", "layer_range": [0, 9]}]},
                                  {"sources": [{"model": "csfufu/Revisual-R1-final", "layer_range": [9, 28]}]}]}
    name, why = style(folder(tmp_path, "mixed", mergekit=mixed))
    assert name == "base" and "neither its metadata" in why  # two recipes' styles: neither is chosen


def test_a_folder_named_like_the_hub_repo_and_a_folder_that_says_nothing(tmp_path):
    name, why = style(folder(tmp_path, "OpenMMReasoner-ColdStart"))
    assert name == "reasoner" and "folder name" in why
    name, why = style(folder(tmp_path, "my_model"))
    assert name == "base"
    for source in ("Hugging Face cache path", "config.json _name_or_path", "README.md front matter", "mergekit_config.yml",
                   "prompt_style="):
        assert source in why  # what was read, and how to choose


def test_the_model_uses_the_style_a_local_copy_names(tiny_trio, tmp_path):
    """Through the harness models' loader: a local copy of an OpenMMReasoner checkpoint gets the reasoner
    style, the same files without that metadata the base style."""
    from frankenstein_tasks.models.model_args import ModelArgs, load_runner

    copy = tmp_path / "copy"
    shutil.copytree(tiny_trio["rl"], copy)
    plain = load_runner(ModelArgs.parse(pretrained=str(copy), device="cpu"), "cpu")
    assert plain.style.name == "base" and "neither its metadata" in plain.style_reason
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "_name_or_path": "OpenMMReasoner/OpenMMReasoner-RL"}))
    named = load_runner(ModelArgs.parse(pretrained=str(copy), device="cpu"), "cpu")
    assert named.style.name == "reasoner" and named.style.system_prompt and "_name_or_path" in named.style_reason
