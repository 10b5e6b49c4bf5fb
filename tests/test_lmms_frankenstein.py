"""End to end through the real `lmms_eval` CLI with the `frankenstein` model on a tiny checkpoint."""

from __future__ import annotations

import sys

import pytest
import torch

from frankenstein_tasks import contract
from surgery.loading import load_model, load_processor
from surgery.prompts import encode_prompt
from surgery.stack import DecoderStack, generate_batched

from conftest import run_cli
from lmms_tasks import dots, read_run, write_counting_task

pytestmark = pytest.mark.cli


def run_lmms(tmp_path, model_args: str, env: dict | None = None):
    tasks = write_counting_task(tmp_path)
    out = tmp_path / "out"
    result = run_cli([
        sys.executable, "-m", "lmms_eval", "--model", "frankenstein", "--model_args", model_args,
        "--tasks", "tiny_count", "--include_path", str(tasks), "--output_path", str(out), "--log_samples",
    ], env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return read_run(out, "tiny_count")


def test_plain_generation_matches_the_engine(tiny_trio, tmp_path):
    results, samples = run_lmms(tmp_path, f"pretrained={tiny_trio['in']},device=cpu")
    assert "exact_match,none" in results
    # The plugin's prompts are exactly the engine's: same answers, computed here independently.
    model, layout = load_model(str(tiny_trio["in"]), dtype="float32")
    processor = load_processor(str(tiny_trio["in"]))
    prompts = [encode_prompt(processor, model, layout, "How many circles are in the image?", [dots(2)]),
               encode_prompt(processor, model, layout, "How many circles are in the image?", [dots(3)])]
    tokens = generate_batched(DecoderStack(model, layout), prompts, max_new_tokens=4, eos_token_ids=[151645, 151643])
    expected = [processor.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
    got = [s["filtered_resps"].strip() for s in sorted(samples, key=lambda s: s["doc_id"])]
    assert got == expected


@pytest.mark.slow
def test_visual_swap_curve_over_every_layer(tiny_trio, tmp_path):
    results, samples = run_lmms(tmp_path, f"pretrained={tiny_trio['in']},device=cpu,probe=visual_swap,layers=all")
    curve = results["changed,none"]
    assert curve["layers"] == list(range(8)) and curve["n"] == 2
    assert len(curve["stderr"]) == 8
    # Per-sample, per-layer answers are in the samples log, and the curve is their mean.
    decoded = [contract.decode(s["filtered_resps"]) for s in samples]
    assert all(d is not None and d.probe == "visual_swap" and len(d.answers) == 8 for d in decoded)
    for j in range(len(curve["layers"])):
        norm = contract.normalize_answer  # the method's normalisation: case, spaces, trailing punctuation
        expected = sum(norm(d.answers[j]) != norm(d.baseline) for d in decoded) / len(decoded)
        assert abs(curve["value"][j] - expected) < 1e-9


@pytest.mark.slow
def test_zero_ablation_and_layer_selection(tiny_trio, tmp_path):
    """Each selected layer's answer is the answer of the model with that layer deleted (plain HF generate),
    and the curve is the share of items whose answer changed; an ablation that does nothing fails both."""
    import copy

    from surgery.reference import generate_greedy

    results, samples = run_lmms(tmp_path, f"pretrained={tiny_trio['in']},device=cpu,probe=zero_ablation,layers=0-7:2")
    curve = results["changed,none"]
    assert curve["layers"] == [0, 2, 4, 6]
    decoded = [contract.decode(s["filtered_resps"]) for s in sorted(samples, key=lambda s: s["doc_id"])]
    assert all(d.layers == [0, 2, 4, 6] for d in decoded)
    model, layout = load_model(str(tiny_trio["in"]), dtype="float32")
    processor = load_processor(str(tiny_trio["in"]))
    for n, d in zip((2, 3), decoded):
        prompt = encode_prompt(processor, model, layout, "How many circles are in the image?", [dots(n)])
        for k, answer in zip(d.layers, d.answers):
            deleted = copy.deepcopy(model)
            del layout.decoder_layers(deleted)[k]
            tokens = generate_greedy(deleted, prompt, max_new_tokens=4, eos_token_ids=[151645, 151643])
            assert answer.strip() == processor.tokenizer.decode(tokens, skip_special_tokens=True).strip(), (n, k)
    norm = contract.normalize_answer
    changed = [[norm(a) != norm(d.baseline) for a in d.answers] for d in decoded]
    assert any(any(row) for row in changed)  # the tiny model's answers do move under ablation
    assert curve["value"] == pytest.approx([sum(row[j] for row in changed) / len(changed) for j in range(4)])


@pytest.mark.slow
def test_attention_probe_through_plugin_env(tiny_trio, tmp_path):
    """Also proves the LMMS_EVAL_PLUGINS route finds the model."""
    results, samples = run_lmms(
        tmp_path, f"pretrained={tiny_trio['in']},device=cpu,probe=attention",
        env={"LMMS_EVAL_PLUGINS": "frankenstein_tasks"},
    )
    curve = results["visual_attention,none"]
    assert curve["layers"] == list(range(8))
    assert all(0.0 < v < 1.0 for v in curve["value"])


@pytest.mark.slow
def test_frank_vision_tasks_with_visual_swap(tiny_trio, tmp_path):
    """Every frank_vision task through lmms_eval with probe=visual_swap: curves over every layer."""
    import json
    from pathlib import Path

    import frankenstein_tasks
    from conftest import cli_path
    from frankenstein_tasks.vision.pairs import TASKS
    from frankenstein_tasks.vision.scoring import is_correct, normalize

    pairs_dir = tmp_path / "pairs"
    made = run_cli([cli_path("frankenstein"), "data", "make-pairs", "--n", "2", "--size", "112", "--out", str(pairs_dir)])
    assert made.returncode == 0, made.stderr
    out = tmp_path / "out"
    result = run_cli([
        sys.executable, "-m", "lmms_eval", "--model", "frankenstein",
        "--model_args", f"pretrained={tiny_trio['in']},device=cpu,probe=visual_swap,max_new_tokens=8",
        "--tasks", "frank_vision", "--include_path", str(Path(frankenstein_tasks.__file__).parent / "tasks"),
        "--output_path", str(out), "--log_samples",
    ], env={"FRANKENSTEIN_VISION_DATA": str(pairs_dir)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The tasks set their own budget (16 new tokens), which wins over the model arg: said, not ignored.
    assert "model arg max_new_tokens=8 does not apply to task frank_vision_counting" in result.stdout + result.stderr
    (results_file,) = out.rglob("*_results.json")
    results = json.loads(results_file.read_text())["results"]
    for task in TASKS:
        metrics = results[f"frank_vision_{task}"]
        samples = [json.loads(line) for p in out.rglob(f"*_samples_frank_vision_{task}.jsonl") for line in p.read_text().splitlines()]
        decoded = [contract.decode(s["filtered_resps"]) for s in samples]
        assert len(decoded) == 2 and all(d.error is None and d.layers == list(range(8)) for d in decoded)
        lines = [json.loads(line) for line in (pairs_dir / task / "data.jsonl").read_text().splitlines()]
        # Per item and layer: did the answer change, and is it right for the source image?
        changed = [[normalize(a) != normalize(d.baseline) for a in d.answers] for d in decoded]
        adopted = [[is_correct(task, a, lines[s["doc_id"]]["meta"], "source") for a in d.answers]
                   for d, s in zip(decoded, samples)]
        for name, table in (("change_rate", changed), ("source_adoption_rate", adopted)):
            curve = metrics[f"{name},none"]
            assert curve["layers"] == list(range(8)) and curve["n"] == 2 and len(curve["stderr"]) == 8
            for j in range(8):
                assert curve["value"][j] == pytest.approx(sum(row[j] for row in table) / 2)
        assert metrics["skipped,none"] == 0

    # The run's curves as a table and plots, through the CLI; the table holds exactly the JSON's numbers.
    import csv

    table_dir = tmp_path / "curves"
    made = run_cli([cli_path("frankenstein"), "curves", str(out), "--model", str(tiny_trio["in"]), "-o", str(table_dir)])
    assert made.returncode == 0, made.stderr
    rows = list(csv.DictReader((table_dir / "curves.csv").open()))
    assert len(rows) == len(TASKS) * 2 * 8
    for row in rows:
        curve = results[row["task"]][f"{row['metric']},none"]
        j = curve["layers"].index(int(row["layer"]))
        assert float(row["value"]) == pytest.approx(curve["value"][j]) and int(row["unified_index"]) == int(row["layer"]) + 1
    assert (table_dir / "change_rate.png").stat().st_size > 0 and (table_dir / "source_adoption_rate.png").stat().st_size > 0


@pytest.mark.slow
def test_in_memory_splice_from_model_args(tiny_trio, tmp_path):
    """`in=...,rl=...,splice=mid_late,cuts=3:6` runs the spliced model: answers equal the engine's on load_spliced."""
    from surgery.splice import load_spliced

    args = f"in={tiny_trio['in']},rl={tiny_trio['rl']},splice=mid_late,cuts=3:6,device=cpu"
    results, samples = run_lmms(tmp_path, args)
    model, layout, early = load_spliced(str(tiny_trio["in"]), str(tiny_trio["rl"]), "mid_late", cuts=(3, 6), dtype="float32")
    assert early == tiny_trio["in"]  # mid_late takes the early block (and everything else) from IN
    processor = load_processor(str(early))
    prompts = [encode_prompt(processor, model, layout, "How many circles are in the image?", [dots(n)]) for n in (2, 3)]
    tokens = generate_batched(DecoderStack(model, layout), prompts, max_new_tokens=4, eos_token_ids=[151645, 151643])
    expected = [processor.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
    assert [s["filtered_resps"].strip() for s in sorted(samples, key=lambda s: s["doc_id"])] == expected
    # and the splice is not simply the IN model: its mid and late layers hold RL weights
    plain, _ = load_model(str(tiny_trio["in"]), dtype="float32")
    differs = [not torch.equal(a, b) for a, b in zip(plain.parameters(), model.parameters())]
    assert any(differs)
