"""Frankenstein merges: mergekit recipes, the in-memory splice and METHOD.md section 3, tensor for tensor.

The rule is re-derived here from the variant's name and the cuts, independently of `surgery.splice`:
decoder layer i comes from RL iff its block is named in the variant; every other tensor comes from
the model that supplies the early block.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

from conftest import cli_path, run_cli
from merge_configs.generate import HERE as MERGE_CONFIGS, checked_in_files
from surgery.errors import FrankensteinError
from surgery.splice import VARIANTS, checkpoint_differences, load_spliced

CUSTOM = ("early_late", (3, 6))  # three runs of layers: RL [0,3), IN [3,6), RL [6,8)
CASES = [(v, None) for v in VARIANTS] + [CUSTOM]


def case_id(case) -> str:
    variant, cuts = case
    return variant if cuts is None else f"{variant}-cuts{cuts[0]}-{cuts[1]}"


def read_checkpoint(folder: Path) -> dict:
    state = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state


def rule(in_state: dict, rl_state: dict, variant: str, cuts, num_layers: int, layer_name: str = r"model\.layers\.(\d+)\.") -> dict:
    """METHOD.md section 3, written out directly (`layer_name`: how the checkpoint names decoder layer tensors)."""
    c1, c2 = cuts if cuts else (num_layers // 3, 2 * num_layers // 3)
    blocks = {"early": range(0, c1), "mid": range(c1, c2), "late": range(c2, num_layers)}
    from_rl = variant.split("_")
    rl_layers = {i for b in from_rl for i in blocks[b]}
    early = rl_state if "early" in from_rl else in_state
    out = {}
    for name in in_state:
        m = re.match(layer_name, name)
        if m:
            out[name] = (rl_state if int(m.group(1)) in rl_layers else in_state)[name]
        else:
            out[name] = early[name]
    return out


def assert_same_tensors(got: dict, want: dict, what: str) -> None:
    import torch

    assert sorted(got) == sorted(want), f"{what}: tensor names differ"
    for name in want:
        a, b = got[name], want[name]
        assert (a.dtype, tuple(a.shape)) == (b.dtype, tuple(b.shape)), f"{what}: {name} dtype/shape"
        assert torch.equal(a, b), f"{what}: {name} values"


def early_role(variant: str) -> str:
    return "rl" if "early" in variant.split("_") else "in"


@pytest.fixture(scope="module")
def pair(tiny_trio, tmp_path_factory) -> dict[str, Path]:
    """IN and RL of the tiny trio, with files marked so that we can tell whose files a merge got."""
    root = tmp_path_factory.mktemp("pair")
    out = {}
    for role in ("in", "rl"):
        folder = root / role
        shutil.copytree(tiny_trio[role], folder)
        with open(folder / "chat_template.jinja", "a") as f:
            f.write(f"{{# chat template of {role} #}}")
        proc = json.loads((folder / "processor_config.json").read_text())
        proc["video_processor"]["max_frames"] = 700 if role == "in" else 701
        (folder / "processor_config.json").write_text(json.dumps(proc, indent=2))
        config = json.loads((folder / "config.json").read_text())
        config["text_config"]["max_window_layers"] = 80 if role == "in" else 81  # unused: sliding window is off
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        out[role] = folder
    return out


@pytest.fixture(scope="module")
def states(pair) -> dict[str, dict]:
    return {role: read_checkpoint(folder) for role, folder in pair.items()}


@pytest.fixture(scope="module")
def merged(pair, tmp_path_factory) -> dict[tuple, Path]:
    """Each case's recipe from `frankenstein merge-config`, merged by the real `mergekit-yaml`."""
    root = tmp_path_factory.mktemp("merged")
    recipes = root / "recipes"
    base = [cli_path("frankenstein"), "merge-config", "--in", str(pair["in"]), "--rl", str(pair["rl"])]
    result = run_cli(base + ["--all", "-o", str(recipes)])
    assert result.returncode == 0, result.stderr
    variant, cuts = CUSTOM
    custom = recipes / f"{case_id(CUSTOM)}.yaml"
    result = run_cli(base + ["--variant", variant, "--cuts", str(cuts[0]), str(cuts[1]), "-o", str(custom)])
    assert result.returncode == 0, result.stderr
    outs = {case: root / case_id(case) for case in CASES}

    def merge(case) -> None:
        recipe = custom if case == CUSTOM else recipes / f"{case[0]}.yaml"
        result = run_cli([cli_path("mergekit-yaml"), str(recipe), str(outs[case])])
        assert result.returncode == 0, result.stderr[-3000:]

    # mergekit runs are mostly interpreter start-up: two at a time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(merge, CASES))
    return outs


@pytest.mark.cli
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_mergekit_recipe_equals_rule_and_in_memory_splice(case, pair, states, merged, tmp_path):
    variant, cuts = case
    out = merged[case]
    got = read_checkpoint(out)
    assert_same_tensors(got, rule(states["in"], states["rl"], variant, cuts, num_layers=8), "mergekit vs rule")

    model, layout, early_dir = load_spliced(str(pair["in"]), str(pair["rl"]), variant, cuts=cuts)
    assert not model.training
    assert early_dir == pair[early_role(variant)]
    assert checkpoint_differences(model, layout, out) == []
    model.save_pretrained(tmp_path / "spliced")
    assert_same_tensors(read_checkpoint(tmp_path / "spliced"), got, "in-memory splice vs mergekit")

    # Config, tokenizer and chat template come from the early-block model too.
    early = pair[early_role(variant)]
    assert json.loads((out / "config.json").read_text()) == json.loads((early / "config.json").read_text())
    assert model.config.text_config.max_window_layers == (81 if early_role(variant) == "rl" else 80)
    for name in ("chat_template.jinja", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (early / name).read_bytes(), name


@pytest.mark.cli
def test_merge_option_completes_processor_and_runs_under_lmms_eval(pair, states, tmp_path):
    from lmms_tasks import read_run, write_counting_task

    out = tmp_path / "early-3-6"
    result = run_cli([
        cli_path("frankenstein"), "merge-config", "--in", str(pair["in"]), "--rl", str(pair["rl"]),
        "--variant", "early", "--cuts", "3", "6", "--merge", str(out),
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "processor_config.json" in result.stdout  # mergekit left it out; we added it
    assert_same_tensors(read_checkpoint(out), rule(states["in"], states["rl"], "early", (3, 6), 8), "--merge vs rule")
    # "early" takes the early block from RL, so RL supplies the processor and chat template.
    for name in ("processor_config.json", "chat_template.jinja"):
        assert (out / name).read_bytes() == (pair["rl"] / name).read_bytes(), name
    from transformers import AutoProcessor

    assert AutoProcessor.from_pretrained(str(out)).video_processor.max_frames == 701

    tasks = write_counting_task(tmp_path)
    lmms_out = tmp_path / "lmms"
    result = run_cli([
        sys.executable, "-m", "lmms_eval", "--model", "qwen2_5_vl",
        "--model_args", f"pretrained={out},device=cpu,device_map=cpu",
        "--tasks", "tiny_count", "--include_path", str(tasks), "--output_path", str(lmms_out), "--log_samples",
    ])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results, samples = read_run(lmms_out, "tiny_count")
    assert "exact_match,none" in results and len(samples) == 2


def test_in_memory_splice_qwen2_vl(tiny_qwen2_vl):
    """Qwen2-VL splices in memory (mergekit 0.1.5 cannot merge it under transformers 5)."""
    in_state, rl_state = read_checkpoint(tiny_qwen2_vl["in"]), read_checkpoint(tiny_qwen2_vl["rl"])
    model, layout, early_dir = load_spliced(str(tiny_qwen2_vl["in"]), str(tiny_qwen2_vl["rl"]), "mid", cuts="1:4")
    assert early_dir == tiny_qwen2_vl["in"].resolve()
    state = {layout.rename(n, "hf4"): t for n, t in model.state_dict().items()}
    assert_same_tensors(state, rule(in_state, rl_state, "mid", (1, 4), num_layers=6), "qwen2_vl splice vs rule")


def test_qwen2_vl_recipe_carries_the_mergekit_warning_and_merge_is_refused(tiny_qwen2_vl, tmp_path):
    base = [cli_path("frankenstein"), "merge-config", "--in", str(tiny_qwen2_vl["in"]), "--rl", str(tiny_qwen2_vl["rl"])]
    recipe = tmp_path / "mid.yaml"
    result = run_cli(base + ["--variant", "mid", "-o", str(recipe)])
    assert result.returncode == 0, result.stderr
    assert "warning: mergekit 0.1.5's qwen2_vl definition" in result.stderr
    assert "# WARNING: mergekit 0.1.5's qwen2_vl definition" in recipe.read_text()
    result = run_cli(base + ["--variant", "mid", "--merge", str(tmp_path / "merged")])
    assert result.returncode == 2 and result.stderr.startswith("frankenstein: error: cannot --merge: mergekit 0.1.5")
    assert not (tmp_path / "merged").exists()


# ---------------------------------------------------------------------------------------------
# Checked-in recipes
# ---------------------------------------------------------------------------------------------


def test_checked_in_recipes_are_what_the_generator_writes():
    expected = checked_in_files(layers=28)
    on_disk = {str(p.relative_to(MERGE_CONFIGS)): p.read_text() for p in MERGE_CONFIGS.rglob("*.yaml")}
    assert sorted(on_disk) == sorted(expected), "run `python -m merge_configs.generate` to regenerate"
    for rel, text in expected.items():
        assert on_disk[rel] == text, f"merge_configs/{rel} drifted; run `python -m merge_configs.generate`"


def test_recipe_modules_are_mergekits_and_odd_paths_round_trip():
    """Module names are those of mergekit's own architecture data; a recipe reads back as the config it was."""
    from mergekit.architecture.json_definitions import JSON_ARCHITECTURES
    from mergekit.config import MergeConfiguration

    from merge_configs.generate import MERGEKIT_MODULES, build_recipe, recipe_yaml
    from surgery.splice import splice_plan

    for model_type, names in MERGEKIT_MODULES.items():
        (arch,) = [a for a in JSON_ARCHITECTURES if a.expected_model_type == model_type]
        assert {names.text_decoder, *names.taken_whole} == set(arch.modules), model_type
    # A space and a quote (mergekit's JSON serialiser cannot write them), a revision, a LoRA.
    models = {"in": '/data/my models/IN "sft"', "rl": "Org/RL@v2+Org/adapter"}
    config = build_recipe(splice_plan(8, "early_late", (3, 6)), models)
    text = recipe_yaml(config)
    assert MergeConfiguration.model_validate(yaml.safe_load(text)) == config
    assert yaml.safe_load(text)["modules"]["text_decoder"]["slices"][1] == {
        "sources": [{"model": models["in"], "layer_range": [3, 6]}]
    }


def test_model_location_mergekit_cannot_read_is_one_line():
    from merge_configs.generate import generate

    with pytest.raises(FrankensteinError, match="mergekit cannot read the IN model location 'a@b@c'"):
        generate("a@b@c", "Org/RL", ["mid"], layers=28)


@pytest.mark.parametrize("rel", sorted(checked_in_files(layers=28)))
def test_checked_in_recipe_is_valid_mergekit_and_follows_the_rule(rel):
    from mergekit.config import MergeConfiguration

    text = (MERGE_CONFIGS / rel).read_text()
    assert text.startswith("# Frankenstein merge")
    config = MergeConfiguration.model_validate(yaml.safe_load(text))
    variant = Path(rel).stem
    recipe_dir = Path(rel).parent.name or "openmmreasoner"
    from merge_configs.recipes import RECIPES

    models = {"in": RECIPES[recipe_dir].in_model, "rl": RECIPES[recipe_dir].rl_model}
    early = models[early_role(variant)]
    assert config.merge_method == "passthrough" and config.dtype == "bfloat16"
    assert str(config.base_model.model.path) == early
    slices = config.modules["text_decoder"].slices
    layer_model = {}
    for s in slices:
        (src,) = s.sources
        for i in range(*src.layer_range):
            layer_model[i] = str(src.model.model.path)
    blocks = {"early": range(0, 9), "mid": range(9, 18), "late": range(18, 28)}
    want = {i: models["rl" if b in variant.split("_") else "in"] for b, r in blocks.items() for i in r}
    assert layer_model == want
    last = slices[-1].sources[0]
    assert tuple(last.layer_range) == (28, 28) and str(last.model.model.path) == early  # final norm, lm_head
    for module in ("vision_tower", "multi_modal_projector"):
        assert [str(m.model.model.path) for m in config.modules[module].models] == [early]


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_models(tiny_trio, tmp_path_factory) -> dict[str, Path]:
    from surgery.tiny import TinySpec, make_tiny

    root = tmp_path_factory.mktemp("bad")
    six = make_tiny(root / "six", TinySpec(layers=6, vision_depth=2, seed=3))
    # Same layer count, one tensor of another shape.
    shape = root / "shape"
    shutil.copytree(tiny_trio["rl"], shape)
    state = load_file(str(shape / "model.safetensors"))
    state["model.layers.3.mlp.up_proj.weight"] = state["model.layers.3.mlp.up_proj.weight"][:-8].contiguous()
    save_file(state, str(shape / "model.safetensors"), metadata={"format": "pt"})
    llama = root / "llama"
    llama.mkdir()
    config = json.loads((tiny_trio["rl"] / "config.json").read_text())
    (llama / "config.json").write_text(json.dumps({**config, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (llama / "model.safetensors").symlink_to(tiny_trio["rl"] / "model.safetensors")
    return {"six": six["rl"], "shape": shape, "llama": llama}


BAD = {
    "layer-count": (["--rl", "{six}"], "differ in decoder layer counts"),
    "shape": (["--rl", "{shape}"], "model.layers.3.mlp.up_proj.weight is [128, 64] in IN but [120, 64] in RL"),
    "unknown-variant": (["--variant", "mid_early"], "unknown variant 'mid_early'"),
    "cuts-out-of-range": (["--cuts", "3", "8"], "cuts must satisfy 0 < c1 < c2 < 8"),
    "cuts-out-of-order": (["--cuts", "6", "3"], "cuts must satisfy 0 < c1 < c2 < 8"),
    "architecture": (["--rl", "{llama}"], "unsupported model_type 'llama'"),
}
# (case, form): one recipe file (-o FILE) for every case; all six (--all -o DIR) for a few.
BAD_RUNS = [(case, "one") for case in BAD] + [("layer-count", "all")]


@pytest.mark.parametrize(("case", "form"), BAD_RUNS, ids=[f"{c}-{f}" for c, f in BAD_RUNS])
def test_bad_input_is_one_line_and_writes_nothing(case, form, tiny_trio, bad_models, tmp_path):
    extra, message = BAD[case]
    extra = [a.format(**{k: str(v) for k, v in bad_models.items()}) for a in extra]
    cmd = [cli_path("frankenstein"), "merge-config", "--in", str(tiny_trio["in"]), *extra]
    if "--rl" not in extra:
        cmd += ["--rl", str(tiny_trio["rl"])]
    out = tmp_path / "out" / ("recipes" if form == "all" else "recipe.yaml")
    if form == "all":
        cmd += ["--all", "-o", str(out)]
    else:
        cmd += ([] if "--variant" in extra else ["--variant", "mid_late"]) + ["-o", str(out)]
    result = run_cli(cmd)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("frankenstein: error: "), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_load_spliced_rejects_bad_pairs(tiny_trio, bad_models):
    with pytest.raises(FrankensteinError, match="differ in decoder layer counts"):
        load_spliced(str(tiny_trio["in"]), str(bad_models["six"]), "mid")
    with pytest.raises(FrankensteinError, match="unknown variant"):
        load_spliced(str(tiny_trio["in"]), str(tiny_trio["rl"]), "middle")
    with pytest.raises(FrankensteinError, match="cuts must satisfy"):
        load_spliced(str(tiny_trio["in"]), str(tiny_trio["rl"]), "mid", cuts="5:2")


# ---------------------------------------------------------------------------------------------
# Other families: Qwen3-VL through mergekit's qwen3_vl_dense definition, InternVL (which mergekit
# 0.1.5 does not define) through the project's own writer; both against the rule and the in-memory splice
# ---------------------------------------------------------------------------------------------

# family -> (trio fixture, how its checkpoints name decoder layer tensors on disk, who writes the splice)
FAMILY_SPLICES = {
    "qwen3_vl": ("tiny_qwen3_vl", r"model\.language_model\.layers\.(\d+)\.", "mergekit"),
    "internvl": ("tiny_internvl", r"language_model\.model\.layers\.(\d+)\.", "own writer"),
}


@pytest.mark.cli
@pytest.mark.parametrize("family", list(FAMILY_SPLICES))
def test_family_splices_on_disk_equal_the_rule_and_the_in_memory_splice(family, request, tmp_path):
    fixture, layer_name, writer = FAMILY_SPLICES[family]
    trio = request.getfixturevalue(fixture)
    in_state, rl_state = read_checkpoint(trio["in"]), read_checkpoint(trio["rl"])
    base = [cli_path("frankenstein"), "merge-config", "--in", str(trio["in"]), "--rl", str(trio["rl"])]
    for variant, cuts in (("mid_late", None), ("early_late", (1, 4))):
        out = tmp_path / f"{variant}-{cuts}"
        chosen = ["--variant", variant] + (["--cuts", str(cuts[0]), str(cuts[1])] if cuts else [])
        if writer == "mergekit":
            recipe = tmp_path / f"{variant}.yaml"
            done = run_cli(base + chosen + ["-o", str(recipe)])
            assert done.returncode == 0, done.stderr
            done = run_cli([cli_path("mergekit-yaml"), str(recipe), str(out)])
        else:
            done = run_cli(base + chosen + ["--merge", str(out)])
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert_same_tensors(read_checkpoint(out), rule(in_state, rl_state, variant, cuts, 6, layer_name), f"{writer} vs rule")
        model, layout, early_dir = load_spliced(str(trio["in"]), str(trio["rl"]), variant, cuts=cuts)
        assert early_dir == trio[early_role(variant)].resolve()
        assert checkpoint_differences(model, layout, out) == []
        early = trio[early_role(variant)]
        assert json.loads((out / "config.json").read_text()) == json.loads((early / "config.json").read_text())
        for name in ("chat_template.jinja", "tokenizer.json", "tokenizer_config.json"):
            assert (out / name).read_bytes() == (early / name).read_bytes(), name


def test_no_recipe_for_a_family_mergekit_does_not_know(tiny_internvl, tmp_path):
    done = run_cli([cli_path("frankenstein"), "merge-config", "--in", str(tiny_internvl["in"]), "--rl",
                    str(tiny_internvl["rl"]), "--variant", "mid", "-o", str(tmp_path / "mid.yaml")])
    assert done.returncode == 2 and done.stderr.startswith("frankenstein: error: mergekit 0.1.5 has no architecture definition for internvl")
    assert not (tmp_path / "mid.yaml").exists()
