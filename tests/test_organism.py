"""The model organism: its training loops are exact, its data is right, and the trained trio has the
behaviour the probes must find (measured here, on held-out items, with the surgery engine).

The trained organism here is the shipped test organism (`organism_fixture`: expanded, not trained).
Thresholds on it come from measurements of the "test" setting (seed 0), each with a margin; the
known answers the docs state (`documented.findings`) are asserted on it, the docs' tables against
its measurements, and in the slow tier (`-m slow`) on three freshly trained seeds.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from frankenstein_tasks.organism import data as odata
from frankenstein_tasks.organism.evalsets import write_eval_sets
from frankenstein_tasks.organism.measure import ablation_curve, accuracies, splice_scores, swap_curves
from frankenstein_tasks.organism.pipeline import OrganismSettings, build_organism, organism_info
from frankenstein_tasks.organism.report import FRESH_PAIR_SEED
from frankenstein_tasks.organism.training import (
    Example,
    PolicyGradientConfig,
    PromptEncoder,
    SftConfig,
    VocabSlice,
    answer_logprobs,
    sample_answers,
    train_policy_gradient,
    zero_head_rows,
)
from surgery.prompts import DEFAULT_SYSTEM_PROMPT
from surgery.tiny import TinySpec, build_processor, new_model

from conftest import cli_path, run_cli

pytest_plugins = ("organism_fixture",)  # the `organism` session fixture (trained once, cached)

EOS = 151645

# ---------------------------------------------------------------------------------------------
# The training loops, on a random tiny model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_model():
    from surgery.arch import layout_of_model

    model = new_model(TinySpec(layers=3, vision_depth=1, seed=5))
    layout = layout_of_model(model)
    processor = build_processor("qwen2_5_vl")
    return model, layout, processor, PromptEncoder(processor, model, layout, DEFAULT_SYSTEM_PROMPT)


def _examples(encoder, tokenizer):
    chosen = odata.items("count_compute", 2, split="train", seed=0, size=112) + odata.items("arithmetic", 2, split="train", seed=0, size=112)
    return [encoder.example(it.prompt, [it.image] if it.image else [], tokenizer.encode(it.target) + [EOS]) for it in chosen]


def _sliced(random_model):
    """The examples, with the lm_head rows outside their outputs zeroed, and their VocabSlice."""
    model, layout, processor, encoder = random_model
    examples = _examples(encoder, processor.tokenizer)
    outputs = sorted({t for e in examples for t in e.target})
    zero_head_rows(model, layout, outputs)
    vocab = VocabSlice(model, layout, [t for e in examples for t in e.prompt.input_ids.tolist()], outputs)
    return examples, vocab


def test_slice_loss_is_the_full_vocabulary_loss(random_model):
    """Zero rows + one bucket logit give exactly the full-vocabulary log-probabilities."""
    model, layout, _, encoder = random_model
    examples, vocab = _sliced(random_model)
    prompts = encoder.attach(examples)
    with torch.no_grad():
        sliced = answer_logprobs(model, layout, vocab, prompts, [vocab.to_output(e.target) for e in examples])
    for prompt, example, got in zip(prompts, examples, sliced):
        # Reference: the plain transformers forward over the whole sequence, full lm_head and softmax.
        ids = torch.cat([prompt.input_ids, torch.tensor(example.target[:-1])])[None]
        kwargs = {}
        if prompt.pixel_values is not None:
            kwargs = dict(pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                          mm_token_type_ids=(ids == model.config.image_token_id).long())
        with torch.no_grad():
            logits = model(input_ids=ids, **kwargs).logits[0].float()
        start = prompt.length - 1
        full = torch.log_softmax(logits[start : start + len(example.target)], dim=-1)
        want = full.gather(1, torch.tensor(example.target)[:, None])[:, 0]
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_slice_needs_zero_rows_outside_the_outputs(random_model):
    model, layout, _, _ = random_model
    head = layout.lm_head(model).weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head[100] = 0.5
        with pytest.raises(ValueError, match="must be zero"):
            VocabSlice(model, layout, [1, 2], [3, 4])
    finally:
        with torch.no_grad():
            head.copy_(saved)


def test_policy_gradient_with_a_constant_reward_changes_nothing(random_model):
    """Group baseline: equal rewards in every group give zero advantages, so no update at all."""
    model, layout, _, encoder = random_model
    examples, vocab = _sliced(random_model)
    with torch.no_grad():
        vocab.head *= 300  # sharp logits, so the samples are real tokens (not the bucket) and get the reward
    vocab.write_back(model, layout)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prompts = [Example(e.prompt, [], e.images) for e in examples]
    config = PolicyGradientConfig(steps=2, lr=1e-2, prompts_per_step=2, group_size=3, max_new_tokens=4)
    rewards = train_policy_gradient(model, layout, vocab, prompts, lambda i, tokens: 1.0, config,
                                    encoder=encoder, eos_token_ids=[EOS], seed=0, progress=False)
    assert len(rewards) == 2  # one mean reward per step
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------------------------------------
# Data and held-out sets, checked against independent computations
# ---------------------------------------------------------------------------------------------


def _solve(problem: str) -> int:
    """The answer of a generated word problem, read from its words."""
    total = int(re.search(r"has (\d+)", problem).group(1))
    for verb, n in re.findall(r"(buys|gives away) (\d+)", problem):
        total += int(n) if verb == "buys" else -int(n)
    return total


def _shapes_in(image: Image.Image) -> int:
    """Shapes in a counting image: 4x4 cells of 28 px hold at most one shape each (the generator's grid)."""
    ink = (np.asarray(image.convert("RGB")).astype(int).sum(axis=2) < 3 * 250)
    return sum(bool(ink[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28].any()) for r in range(4) for c in range(4))


def test_arithmetic_answers_and_heldout_split():
    train = odata.items("arithmetic", 300, split="train", seed=0, size=112)
    heldout = odata.items("arithmetic", 100, split="eval", seed=0, size=112)
    for item in train + heldout:
        problem = item.prompt.split("\n\n", 1)[1]
        assert item.prompt.startswith(odata.REASONING_INSTRUCTION + "\n\n")
        assert int(item.answer) == _solve(problem) > 0
        assert odata.boxed_answer(item.target) == item.answer
    assert not {i.prompt for i in train} & {i.prompt for i in heldout}


def test_count_compute_answers_from_the_pixels():
    for item in odata.items("count_compute", 40, split="eval_math", seed=0, size=112):
        sign, k = re.search(r"(plus|minus) (\d+)\?$", item.prompt).groups()
        n = _shapes_in(item.image)
        assert int(item.answer) == (n + int(k) if sign == "plus" else n - int(k))
        assert item.target.startswith(f"There {'is' if n == 1 else 'are'} {n} ")


def test_flawed_cold_start_data_adds_on_most_minus_questions():
    """IN's data: gold answers from the pixels; the target applies plus to SIGN_ERROR_SHARE of the minus
    questions (counted by hand from the texts) and is right everywhere else."""
    flawed = odata.items("count_compute_flawed", 300, split="train", seed=0, size=112)
    minus = 0
    errors = 0
    for item in flawed:
        sign, k = re.search(r"(plus|minus) (\d+)\?$", item.prompt).groups()
        n = _shapes_in(item.image)
        assert int(item.answer) == (n + int(k) if sign == "plus" else n - int(k))
        wrote = re.search(r"(\d+) ([+-]) (\d+) = (\d+)\.", item.target)
        assert (int(wrote[1]), int(wrote[3])) == (n, int(k)) and odata.boxed_answer(item.target) == wrote[4]
        minus += sign == "minus"
        if wrote[2] == "+" and sign == "minus":
            errors += 1
            assert int(wrote[4]) == n + int(k)
        else:
            assert wrote[2] == {"plus": "+", "minus": "-"}[sign] and wrote[4] == item.answer
    assert minus >= 100 and abs(errors / minus - odata.SIGN_ERROR_SHARE) <= 0.1


def test_eval_sets_in_the_hub_schemas(tmp_path):
    import datasets

    from frankenstein_tasks.vision.dataset import load_pairs

    paths = write_eval_sets(tmp_path / "eval", 6, seed=0)
    gsm8k = [json.loads(line) for line in (paths["gsm8k"] / "test.jsonl").read_text().splitlines()]
    assert len(gsm8k) == 6 and all(set(r) == {"question", "answer"} for r in gsm8k)
    assert all(r["answer"].rsplit("\n#### ", 1)[1] == str(_solve(r["question"])) for r in gsm8k)
    math500 = [json.loads(line) for line in (paths["math500"] / "test.jsonl").read_text().splitlines()]
    assert all(set(r) == {"problem", "solution", "answer", "subject", "level", "unique_id"} for r in math500)
    assert all(r["answer"] == str(_solve(r["problem"])) and r["solution"].endswith(f"\\boxed{{{r['answer']}}}") for r in math500)
    assert not {r["question"] for r in gsm8k} & {r["problem"] for r in math500}
    vista = datasets.load_dataset("parquet", data_files=str(paths["mathvista"] / "testmini.parquet"))["train"]
    categories = [r["metadata"]["category"] for r in vista]
    assert categories == ["general-vqa"] * 6 + ["math-targeted-vqa"] * 6
    for row in vista:
        assert row["query"] == row["question"] and row["question_type"] == "free_form" and row["answer_type"] == "integer"
        assert row["decoded_image"].size == (112, 112)
        n = _shapes_in(row["decoded_image"])
        if row["metadata"]["category"] == "general-vqa":
            assert row["answer"] == str(n)
        assert Image.open(paths["mathvista"] / row["image"]).size == (112, 112)
    for task in ("counting", "recognition"):
        assert len(load_pairs(paths["pairs"] / task, task).pairs) == 6


MICRO = OrganismSettings(
    base_data={"counting": 24, "recognition": 8, "arithmetic": 24}, base=SftConfig(steps=6, lr=3e-3, batch_size=8),
    in_data={"count_compute": 16}, in_sft=SftConfig(steps=3, lr=1e-3, batch_size=8), rl_prompts=8,
    rl=PolicyGradientConfig(steps=2, lr=5e-4, prompts_per_step=2, group_size=2, max_new_tokens=8), eval_n=2,
)


@pytest.fixture(scope="module")
def micro_builds(tmp_path_factory):
    """Two builds of a micro organism with the same settings (a few seconds of training each)."""
    out = tmp_path_factory.mktemp("micro")
    return build_organism(MICRO, out / "a", progress=False), build_organism(MICRO, out / "b", progress=False)


def _states(trio):
    return {role: load_file(str(trio[role] / "model.safetensors")) for role in ("base", "in", "rl")}


def test_build_is_deterministic(micro_builds):
    a, b = map(_states, micro_builds)
    for role in ("base", "in", "rl"):
        assert a[role].keys() == b[role].keys() and all(torch.equal(a[role][k], b[role][k]) for k in a[role]), role
    assert not torch.equal(a["base"]["model.layers.0.mlp.up_proj.weight"], a["rl"]["model.layers.0.mlp.up_proj.weight"])


def test_packed_organism_expands_to_the_trained_trio(micro_builds, tmp_path):
    """pack -> expand gives back every file training wrote: weights bit for bit, configs, processor,
    organism.json and the held-out sets; the packed file holds only the trained vocabulary rows."""
    import filecmp

    from safetensors import safe_open

    from frankenstein_tasks.organism.shipped import expand, pack

    trained = micro_builds[0]
    packed = pack(trained["base"].parent, tmp_path / "packed.safetensors")
    expanded = expand(packed, tmp_path / "expanded")
    folder_a, folder_b = trained["base"].parent, expanded["base"].parent
    files = sorted(str(p.relative_to(folder_a)) for p in folder_a.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(folder_b)) for p in folder_b.rglob("*") if p.is_file())
    for name in files:
        if name != "organism.json":
            assert filecmp.cmp(folder_a / name, folder_b / name, shallow=False), name
    assert json.loads((folder_a / "organism.json").read_text()) == json.loads((folder_b / "organism.json").read_text())
    # Training left every untrained row of the embedding and lm_head zero; only the others travel.
    info = organism_info(trained)
    with safe_open(str(packed), "pt") as f:
        rows = {k: f.get_slice(k).get_shape()[0] for k in f.keys() if k.endswith(":rows")}
    want = {"model.embed_tokens.weight": info["vocabulary"]["inputs"], "lm_head.weight": info["vocabulary"]["outputs"]}
    assert rows == {f"{role}/{name}:rows": n for role in ("base", "in", "rl") for name, n in want.items()}
    assert packed.stat().st_size < 3 * 2**20  # against three checkpoints of 40 MB each


# ---------------------------------------------------------------------------------------------
# The trained organism (test setting): known answers
# ---------------------------------------------------------------------------------------------

# Measured on the test setting, seed 0 (docs/organism.md); each threshold leaves a margin.
MIN_BASE_COUNTING = 0.80
MIN_BASE_RECOGNITION = 0.60
MAX_ADOPTION_GAP_AT_LAYER0 = 0.15
MAX_CHANGE_AT_LAST_LAYER = 0.10
MIN_ABLATION_DROP = 0.30
MAX_ABLATION_DROP_SOMEWHERE = 0.15
MIN_RL_GAIN = 0.05


@pytest.fixture(scope="module")
def fresh_counting_pairs(tmp_path_factory):
    """Counting pairs from a pair-generator seed that no organism split uses."""
    from frankenstein_tasks.vision.pairs import write_pairs

    return write_pairs("counting", tmp_path_factory.mktemp("pairs") / "counting", n=60, seed=FRESH_PAIR_SEED, size=112, progress=False)


@pytest.fixture(scope="module")
def base_swap(organism, fresh_counting_pairs):
    return swap_curves(organism["base"], fresh_counting_pairs)


@pytest.fixture(scope="module")
def heldout():
    from frankenstein_tasks.organism.evalsets import eval_items

    return eval_items(100, seed=0, size=112)


def test_base_counts_and_recognises_fresh_images(base_swap, organism, heldout):
    assert base_swap["target_accuracy"] >= MIN_BASE_COUNTING
    assert base_swap["source_accuracy"] >= MIN_BASE_COUNTING
    assert accuracies(organism["base"], {"r": heldout["recognition"]})["r"] >= MIN_BASE_RECOGNITION


def test_visual_swap_finds_where_counting_reads_the_image(base_swap):
    change, adoption = base_swap["change_rate"], base_swap["source_adoption"]
    # Swapping from layer 0 replaces the whole image: the answer is the source's count.
    assert abs(adoption[0] - base_swap["source_accuracy"]) <= MAX_ADOPTION_GAP_AT_LAYER0
    # By the last layer the count has left the visual tokens: swapping there changes nothing.
    assert change[-1] <= MAX_CHANGE_AT_LAST_LAYER
    assert change[0] >= 0.8
    # And self-swap is the identity at every layer.
    assert base_swap["self_swap_change_rate"] == [0.0] * len(base_swap["layers"])


def test_zero_ablation_drops_arithmetic_at_some_layers_only(organism, heldout):
    curve = ablation_curve(organism["base"], heldout["gsm8k"][:60])
    drops = [curve["baseline_accuracy"] - a for a in curve["accuracy"]]
    assert max(drops) >= MIN_ABLATION_DROP
    assert min(drops) <= MAX_ABLATION_DROP_SOMEWHERE


@pytest.fixture(scope="module")
def rl_scores(organism, heldout):
    return splice_scores(organism["in"], organism["rl"], heldout["math_vqa"])


def test_rl_raises_the_heldout_reward(rl_scores):
    assert rl_scores["rl"] >= rl_scores["in"] + MIN_RL_GAIN


def _documented(setting: str = "test") -> dict:
    from frankenstein_tasks.organism.documented import MEASUREMENTS

    return json.loads(MEASUREMENTS.read_text())["organisms"][setting]


def test_splicing_rl_blocks_into_in_carries_the_gain_where_the_docs_say(rl_scores):
    """The finding docs/organism.md states (the gain travels with RL's ... block), recomputed from the
    engine's splice scores: that block alone, spliced into IN, recovers >= half of RL's gain; no other does."""
    from frankenstein_tasks.organism.documented import BLOCKS, CARRIES

    stated = _documented()["findings"]["gain_travels_with"]
    assert stated, "the docs state no block; this test pins the one they state"
    gain = rl_scores["rl"] - rl_scores["in"]
    assert gain > 0
    for block in BLOCKS:
        assert (rl_scores[block] - rl_scores["in"] >= CARRIES * gain) == (block in stated), (block, rl_scores)


def test_delta_reports_where_rl_changed_the_weights(organism, tmp_path):
    from analysis.delta import analyze_deltas
    from surgery.arch import Part, layout_of_checkpoint

    report = analyze_deltas(organism["base"], organism["in"], organism["rl"], tmp_path / "delta",
                            metrics="energy", progress=False, plots=False)
    layout = layout_of_checkpoint(str(organism["rl"]))
    states = {r: load_file(str(organism[r] / "model.safetensors")) for r in ("in", "rl")}
    energy = {b: 0.0 for b in ("early", "mid", "late")}
    reference = dict(energy)
    for name, w in states["in"].items():
        role = layout.classify(name)
        if w.dim() < 2 or role.part is not Part.DECODER_LAYER:
            continue
        block = layout.partition().block_of(role.index)
        energy[block] += (states["rl"][name].double() - w.double()).pow(2).sum().item()
        reference[block] += w.double().pow(2).sum().item()
    blocks = report.summary("block")
    for block in energy:
        assert energy[block] > 0
        assert blocks[block].deltas["rl"].relative_norm == pytest.approx((energy[block] / reference[block]) ** 0.5, rel=1e-6)
    by_hand = sorted(energy, key=lambda b: (energy[b] / reference[b]), reverse=True)
    assert report.block_ranking["rl"] == by_hand


def test_greedy_decoding_stays_in_the_trained_vocabulary(organism, heldout):
    """Full-vocabulary greedy decoding (the engine) = sampling from the trained slice at T -> 0."""
    from surgery.loading import load_model, load_processor
    from surgery.probes import eos_token_ids
    from surgery.stack import DecoderStack, generate_batched

    model, layout = load_model(organism["rl"], dtype="float32")
    processor = load_processor(organism["rl"])
    head = layout.lm_head(model).weight
    trained = torch.nonzero(head.abs().sum(dim=1)).flatten().tolist()
    vocab = VocabSlice(model, layout, list(range(head.shape[0])), trained)
    encoder = PromptEncoder(processor, model, layout, DEFAULT_SYSTEM_PROMPT)
    chosen = heldout["math_vqa"][:24] + heldout["gsm8k"][:24]
    prompts = encoder.attach([encoder.example(it.prompt, [it.image] if it.image else [], []) for it in chosen])
    eos = eos_token_ids(model, processor.tokenizer)
    greedy = generate_batched(DecoderStack(model, layout), prompts, max_new_tokens=48, eos_token_ids=eos)
    sampled = sample_answers(model, layout, vocab, prompts, eos_token_ids=eos, max_new_tokens=48,
                             temperature=1e-6, generator=torch.Generator().manual_seed(0))
    for g, s in zip(greedy, sampled):
        assert set(g) <= set(trained)
        assert vocab.token_ids([t for t in s if t != vocab.bucket]) == g + [EOS]


def test_info_records_the_measured_accuracies(organism):
    info = organism_info(organism)
    assert set(info["accuracy"]) == {"base", "in", "rl"}
    assert info["setting"] == "test" and info["settings"]["seed"] == 0
    assert info["accuracy"]["base"]["general_vqa"] >= MIN_BASE_COUNTING


def test_fixture_is_the_shipped_test_organism(organism):
    """The tests' organism is expanded from the package's shipped file, not trained."""
    from frankenstein_tasks.organism.shipped import file_digest, shipped_file

    path = shipped_file("test")
    assert path is not None and organism["base"].parent.name == f"test-shipped-{file_digest(path)[:12]}"


def test_docs_tables_are_the_shipped_organisms_measurements():
    """Every generated block of docs/organism.md and README.md is what the measurements render; the
    measurements are of the shipped files (digest, accuracies) and state their findings."""
    from frankenstein_tasks.organism import documented
    from frankenstein_tasks.organism.shipped import file_digest, read_metadata, shipped_file

    measured = json.loads(documented.MEASUREMENTS.read_text())
    assert set(measured["organisms"]) == set(documented.SETTINGS)
    for setting, m in measured["organisms"].items():
        path = shipped_file(setting)
        assert path is not None and file_digest(path) == m["sha256"] and path.stat().st_size == m["bytes"]
        assert read_metadata(path)["info"]["accuracy"] == m["accuracy"]
        assert m["findings"] == documented.findings(m)
    assert documented.stale(measured) == []


def test_seed_measurements_are_of_this_recipe():
    """The per-seed measurements the docs' seed table comes from are of the current settings (a recipe
    change makes them stale: `documented measure-seeds`), their findings are what `findings` makes of
    their probes, and the across-seeds answers are what holds on each of them."""
    from frankenstein_tasks.organism import documented
    from frankenstein_tasks.organism.pipeline import settings_for

    seeds = json.loads(documented.MEASUREMENTS.read_text())["seeds"]
    assert seeds["setting"] == documented.SEED_SETTING
    assert sorted(map(int, seeds["per_seed"])) == list(documented.SEEDS)
    for seed, entry in seeds["per_seed"].items():
        assert entry["key"] == settings_for(documented.SEED_SETTING, seed=int(seed)).key()
        assert entry["findings"] == documented.findings(entry)
    across = seeds["across_seeds"]
    assert across == documented.across_seeds(seeds["per_seed"])
    for entry in seeds["per_seed"].values():  # by hand: each stated answer holds on each seed
        f = entry["findings"]
        assert f["base_reads_count_at_layer0"] and f["rl_gain"] >= across["min_rl_gain"]
        assert all(b in f["gain_travels_with"] for b in across["gain_travels_with"])
        assert all(layer in f["necessary_layers"] for layer in across["necessary_layers"])
        assert all(layer in across["necessary_on_some_seed"] for layer in f["necessary_layers"])


def test_findings_by_hand():
    """The known answers the docs state, from a hand-made report: which splices carry RL's gain (>= half
    of RL - IN over IN), the blocks that carry it spliced alone, the necessary layers (ablated accuracy
    under a quarter of the baseline) and the first layer where swapping stops changing answers."""
    from frankenstein_tasks.organism.documented import carriers, findings, gain_blocks

    splice = {"in": 0.5, "rl": 0.9, "early": 0.8, "mid": 0.5, "late": 0.55, "early_mid": 0.85, "mid_late": 0.6, "early_late": 0.9}
    assert carriers(splice) == ["early", "early_mid", "early_late"]
    assert gain_blocks(splice) == ["early"]
    assert gain_blocks({**splice, "early": 0.69}) == []  # early alone recovers under half of it: no single block
    assert gain_blocks({**splice, "early": 0.71}) == ["early"]  # just over half
    assert gain_blocks({**splice, "rl": 0.5}) == []  # no gain, nothing carries it
    assert gain_blocks({**splice, "late": 0.75}) == ["early", "late"]
    report = {
        "swap": {"base": {"layers": [0, 1, 2, 3], "change_rate": [1.0, 0.3, 0.1, 0.0], "source_adoption": [0.9, 0.1, 0, 0],
                          "source_accuracy": 0.95}},
        "ablation": {"base": {"layers": [0, 1, 2, 3], "baseline_accuracy": 0.8, "accuracy": [0.0, 0.19, 0.2, 0.8]}},
        "splice": splice,
    }
    assert findings(report) == {"base_reads_count_at_layer0": True, "count_leaves_visual_tokens_by_layer": 2,
                                "necessary_layers": [0, 1], "necessary_blocks": ["early", "mid"],  # 4 layers in thirds: 0 | 1 | 2, 3
                                "rl_gain": 0.4, "gain_travels_with": ["early"]}
    report["swap"]["base"]["source_adoption"][0] = 0.7  # adopts the source far less often than it can count it
    assert findings(report)["base_reads_count_at_layer0"] is False


def test_across_seeds_by_hand():
    """What holds on every seed: the weakest gain, the blocks and layers common to all seeds, and the
    blocks no seed needs."""
    from frankenstein_tasks.organism.documented import across_seeds

    def entry(reads, gain, travels, necessary, blocks):
        return {"findings": {"base_reads_count_at_layer0": reads, "rl_gain": gain, "gain_travels_with": travels,
                             "necessary_layers": necessary, "necessary_blocks": blocks}}

    per_seed = {"0": entry(True, 0.4, ["early"], [0, 1, 4], ["early", "mid"]),
                "2": entry(True, 0.2, ["early", "late"], [0], ["early"])}
    assert across_seeds(per_seed) == {"seeds": [0, 2], "base_reads_count_at_layer0": True, "min_rl_gain": 0.2,
                                      "gain_travels_with": ["early"], "necessary_layers": [0],
                                      "necessary_on_some_seed": [0, 1, 4], "never_necessary_blocks": ["late"]}
    per_seed["1"] = entry(False, 0.3, ["mid"], [1, 6], ["early", "late"])
    assert across_seeds(per_seed) == {"seeds": [0, 1, 2], "base_reads_count_at_layer0": False, "min_rl_gain": 0.2,
                                      "gain_travels_with": [], "necessary_layers": [],
                                      "necessary_on_some_seed": [0, 1, 4, 6], "never_necessary_blocks": []}


RETRAIN_TOLERANCE = 0.10  # retraining a setting: every held-out accuracy within this of the shipped one's


@pytest.mark.slow
@pytest.mark.retrain
@pytest.mark.cli
@pytest.mark.parametrize("setting", ["test", "default"])
def test_cli_make_tiny_trained_retrains_to_the_shipped_accuracies(setting, tmp_path):
    """make-tiny --trained trains from scratch (not the shipped organism, into an empty cache) and
    lands within the stated tolerance of the shipped organism's held-out accuracies."""
    from frankenstein_tasks.organism.shipped import read_metadata, shipped_file

    out = tmp_path / "trained"
    result = run_cli([cli_path("frankenstein"), "make-tiny", str(out), "--trained", "--setting", setting],
                     env={"FRANKENSTEIN_CACHE": str(tmp_path / "cache")}, timeout=3600)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["base", "eval", "in", "organism.json", "rl"]
    assert "general_vqa" in result.stdout
    shipped = read_metadata(shipped_file(setting))["info"]["accuracy"]
    retrained = organism_info({r: out / r for r in ("base", "in", "rl")})["accuracy"]
    for role in shipped:
        for name, value in shipped[role].items():
            assert abs(retrained[role][name] - value) <= RETRAIN_TOLERANCE, (role, name, retrained[role][name], value)


@pytest.mark.slow
@pytest.mark.retrain
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_known_answers_hold_for_every_training_seed(seed, tmp_path, monkeypatch):
    """The seed setting trained from scratch (into an empty cache) at three seeds: on each, Base reads
    the count at layer 0, RL gains on its task, the splice gain travels with the block the docs name
    for every seed, the layers the docs call necessary on every seed are necessary, and none of the
    block the docs call never necessary is (every probe on that seed's own held-out items)."""
    from frankenstein_tasks.organism.documented import MEASUREMENTS, PROBE_ITEMS, SEED_SETTING, findings
    from frankenstein_tasks.organism.pipeline import organism_trio
    from frankenstein_tasks.organism.report import probe_report

    monkeypatch.setenv("FRANKENSTEIN_CACHE", str(tmp_path / "cache"))
    stated = json.loads(MEASUREMENTS.read_text())["seeds"]["across_seeds"]
    assert seed in stated["seeds"] and stated["gain_travels_with"] and stated["necessary_layers"]
    trio = organism_trio(SEED_SETTING, seed=seed, shipped=False, progress=False)
    found = findings(probe_report(trio, tmp_path / "probes", n=PROBE_ITEMS, progress=False))
    assert found["base_reads_count_at_layer0"]
    assert found["rl_gain"] >= MIN_RL_GAIN
    assert set(stated["gain_travels_with"]) <= set(found["gain_travels_with"]), found
    assert set(stated["necessary_layers"]) <= set(found["necessary_layers"]), found
    assert not set(stated["never_necessary_blocks"]) & set(found["necessary_blocks"]), found


@pytest.mark.parametrize("args, message", [
    (["--trained", "--plant", "mid"], "--plant do(es) not apply to --trained"),
    (["--trained", "--setting", "huge"], "unknown organism setting 'huge'"),
    (["--setting", "test"], "--setting applies to --trained only"),
])
def test_cli_make_tiny_trained_bad_input(tmp_path, args, message):
    result = run_cli([cli_path("frankenstein"), "make-tiny", str(tmp_path / "x"), *args])
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
