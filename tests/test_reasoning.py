"""Reasoning localisation (issue 9): frank_reasoning through lmms_eval, teacher-forced scoring, the lm-eval path.

Data: small rows in the hub datasets' schemas, cached where `datasets` looks offline (tests/hub_data.py),
so the unchanged task YAMLs (`dataset_path: openai/gsm8k` ...) load them.
"""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest
import torch

from frankenstein_tasks import contract
from frankenstein_tasks.grading import grade
from frankenstein_tasks.prompt_styles import user_text
from frankenstein_tasks.reasoning import process_results
from surgery.ablation import ablation_logprob_sweep, with_answer
from surgery.loading import load_model, load_processor
from surgery.prompts import encode_prompt
from surgery.stack import DecoderStack
from surgery.reference import generate_greedy, zero_ablation

from conftest import cli_path, run_cli
from hub_data import GSM8K, MATH500, hub_env
from lmms_tasks import dots

EOS = [151645, 151643]
NEW = 6


@pytest.fixture(scope="module")
def data_env(tmp_path_factory):
    return hub_env(tmp_path_factory.mktemp("hub"))


def lmms_run(env, model_args, tasks, out, model="frankenstein", extra=()):
    done = run_cli([
        sys.executable, "-m", "lmms_eval", "--model", model, "--model_args", model_args, "--tasks", tasks,
        "--gen_kwargs", f"max_new_tokens={NEW}", "--output_path", str(out), "--log_samples", *extra,
    ], env=env, timeout=900)
    found = list(out.rglob("*_results.json"))
    text = done.stdout + done.stderr
    if not found:
        return None, {}, text
    samples = {}
    for path in out.rglob("*_samples_*.jsonl"):
        task = path.stem.split("_samples_")[1]
        samples[task] = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])
    return json.loads(found[0].read_text())["results"], samples, text


# ---------------------------------------------------------------- metrics by hand


def test_per_layer_metrics_by_hand():
    doc = {"gold": "72"}
    probe = contract.ProbeResult(probe="zero_ablation", baseline="so \\boxed{72}", layers=[0, 1, 2],
                                 answers=["\\boxed{70}", "the answer is 72", "<answer>72.0</answer>"])
    m = process_results(doc, [contract.encode(probe)])
    assert m["accuracy"] == 1.0
    assert m["accuracy_by_layer"] == {"0": 0.0, "1": 1.0, "2": 1.0}
    assert m["accuracy_drop"] == {"0": 1.0, "1": 0.0, "2": 0.0}
    assert process_results(doc, ["I think 71"]) == {"accuracy": 0.0}
    # Two items: the curve is the per-layer mean over items (hand: layer 0 -> (1 + 0) / 2).
    other = contract.ProbeResult(probe="zero_ablation", baseline="\\boxed{3}", layers=[0, 1, 2], answers=["3", "4", "5"])
    m2 = process_results({"gold": "3"}, [contract.encode(other)])
    curve = contract.aggregate_curve([m["accuracy_by_layer"], m2["accuracy_by_layer"]])
    assert curve["layers"] == [0, 1, 2] and curve["value"] == [0.5, 0.5, 0.5] and curve["n"] == 2
    logprob = contract.ProbeResult(probe="zero_ablation", layers=[0, 1], values=[-9.0, -4.0], baseline_value=-3.0,
                                   answer_tokens=2, options={"scoring": "logprob"})
    m3 = process_results({"gold": "3"}, [contract.encode(logprob)])
    assert m3["answer_logprob"] == -3.0
    assert m3["answer_logprob_drop"] == {"0": 6.0, "1": 1.0}
    assert m3["answer_logprob_per_token_drop"] == {"0": 3.0, "1": 0.5}


def test_missing_fields_are_named_in_one_line():
    """Reasoning and transfer tasks share the check (`reasoning.check_fields`): every missing field, one line."""
    import datasets

    from frankenstein_tasks.reasoning import prepare_docs
    from surgery.errors import FrankensteinError

    rows = datasets.Dataset.from_list([{"text": "1 + 1?"}])
    with pytest.raises(FrankensteinError) as caught:
        prepare_docs(rows, "gsm8k", "frank_gsm8k")
    assert str(caught.value) == ("frank_gsm8k: the openai/gsm8k data has no 'question', 'answer' fields (columns: text); "
                                 "is it the right dataset?")


# ---------------------------------------------------------------- through lmms_eval


@pytest.mark.slow
@pytest.mark.cli
def test_zero_ablation_sweep_through_lmms_eval(tiny_trio, data_env, tmp_path):
    results, samples, text = lmms_run(data_env, f"pretrained={tiny_trio['rl']},device=cpu,probe=zero_ablation",
                                      "frank_reasoning", tmp_path / "out")
    assert results is not None, text[-4000:]
    sizes = {"frank_gsm8k": len(GSM8K), "frank_math500": len(MATH500)}
    for task, n in sizes.items():
        metrics, decoded = results[task], [contract.decode(s["filtered_resps"]) for s in samples[task]]
        assert len(decoded) == n and all(d.layers == list(range(8)) and len(d.answers) == 8 for d in decoded)
        golds = [s["target"] for s in samples[task]]
        right = np.array([[grade(a, g).correct for a in d.answers] for d, g in zip(decoded, golds)], dtype=float)
        base = np.array([grade(d.baseline, g).correct for d, g in zip(decoded, golds)], dtype=float)
        assert metrics["accuracy,none"] == pytest.approx(base.mean())
        assert metrics["accuracy_by_layer,none"]["value"] == pytest.approx(list(right.mean(axis=0)))
        assert metrics["accuracy_drop,none"]["value"] == pytest.approx(list((base[:, None] - right).mean(axis=0)))
        assert metrics["accuracy_by_layer,none"]["n"] == n
    # The group row pools the items of both tasks: a plain mean over all of them, not a mean of the two means.
    every = {name: [] for name in ("base", "right")}
    for task in sizes:
        decoded, golds = [contract.decode(s["filtered_resps"]) for s in samples[task]], [s["target"] for s in samples[task]]
        every["base"] += [float(grade(d.baseline, g).correct) for d, g in zip(decoded, golds)]
        every["right"] += [[float(grade(a, g).correct) for a in d.answers] for d, g in zip(decoded, golds)]
    base, right = np.array(every["base"]), np.array(every["right"])
    group = results["frank_reasoning"]
    assert group["accuracy,none"] == pytest.approx(base.mean())
    assert group["accuracy_by_layer,none"]["n"] == sum(sizes.values()) and group["accuracy_by_layer,none"]["layers"] == list(range(8))
    assert group["accuracy_by_layer,none"]["value"] == pytest.approx(list(right.mean(axis=0)))
    assert group["accuracy_drop,none"]["value"] == pytest.approx(list((base[:, None] - right).mean(axis=0)))

    # Ablating layer k in the task path gives exactly the answers of the model with layer k deleted.
    model, layout = load_model(str(tiny_trio["rl"]), dtype="float32")
    processor = load_processor(str(tiny_trio["rl"]))
    first = samples["frank_gsm8k"][0]
    assert first["input"] == user_text("base", GSM8K[0]["question"])
    prompt = encode_prompt(processor, model, layout, first["input"], [], system_prompt=None)
    answers = contract.decode(first["filtered_resps"]).answers
    for k in range(8):
        deleted = copy.deepcopy(model)
        del layout.decoder_layers(deleted)[k]
        tokens = generate_greedy(deleted, prompt, max_new_tokens=NEW, eos_token_ids=EOS)
        assert processor.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False) == answers[k], k


@pytest.mark.slow
@pytest.mark.cli
def test_plain_model_gives_accuracy_only(tiny_trio, data_env, tmp_path):
    results, samples, text = lmms_run(data_env, f"pretrained={tiny_trio['rl']},device=cpu,device_map=cpu",
                                      "frank_reasoning", tmp_path / "out", model="qwen2_5_vl")
    assert results is not None, text[-4000:]
    for task in ("frank_gsm8k", "frank_math500"):
        assert "accuracy,none" in results[task] and "accuracy_by_layer,none" not in results[task]
        expected = np.mean([grade(s["filtered_resps"], s["target"]).correct for s in samples[task]])
        assert results[task]["accuracy,none"] == pytest.approx(expected)


@pytest.mark.slow
@pytest.mark.cli
def test_subset_by_environment_and_logprob_scoring(tiny_trio, data_env, tmp_path):
    env = {**data_env, "FRANKENSTEIN_SUBSET_FRANK_GSM8K": "2:7"}
    results, samples, text = lmms_run(env, f"pretrained={tiny_trio['rl']},device=cpu,probe=zero_ablation,scoring=logprob,layers=0-7:3",
                                      "frank_reasoning", tmp_path / "out")
    assert results is not None, text[-4000:]
    chosen = sorted(np.random.RandomState(7).choice(np.arange(len(GSM8K)), size=2, replace=False).tolist())
    assert [s["input"] for s in samples["frank_gsm8k"]] == [user_text("base", GSM8K[i]["question"]) for i in chosen]
    assert len(samples["frank_math500"]) == len(MATH500)  # the subset variable names one task only
    decoded = {task: [contract.decode(s["filtered_resps"]) for s in samples[task]] for task in ("frank_gsm8k", "frank_math500")}
    drops = {task: np.array([[d.baseline_value - v for v in d.values] for d in ds]) for task, ds in decoded.items()}
    curve = results["frank_gsm8k"]["answer_logprob_drop,none"]
    assert curve["layers"] == [0, 3, 6] and curve["value"] == pytest.approx(list(drops["frank_gsm8k"].mean(axis=0)), abs=1e-5)
    # The group row pools every item of both tasks (a plain mean over all of them, by hand).
    group = results["frank_reasoning"]
    every = [d for ds in decoded.values() for d in ds]
    assert group["answer_logprob,none"] == pytest.approx(np.mean([d.baseline_value for d in every]), abs=1e-5)
    pooled = group["answer_logprob_drop,none"]
    assert pooled["layers"] == [0, 3, 6] and pooled["n"] == len(every)
    assert pooled["value"] == pytest.approx(list(np.concatenate(list(drops.values())).mean(axis=0)), abs=1e-5)
    assert "answer_logprob_per_token_drop,none" in group and "answer_logprob_by_layer,none" in group
    decoded = decoded["frank_gsm8k"]
    # The reference answer teacher-forced for GSM8K is the number after ####, tokenised as the model does.
    tokenizer = load_processor(str(tiny_trio["rl"])).tokenizer
    for d, i in zip(decoded, chosen):
        assert d.answer_tokens == len(tokenizer.encode(GSM8K[i]["answer"].split("####")[1].strip(), add_special_tokens=False))


# ---------------------------------------------------------------- teacher forcing, pinned


def test_logprob_sweep_equals_unbatched_forward(tiny_trio):
    model, layout = load_model(str(tiny_trio["in"]), dtype="float32")
    processor = load_processor(str(tiny_trio["in"]))
    tokenizer = processor.tokenizer
    prompts = [encode_prompt(processor, model, layout, "What is 2 + 3?", []),
               encode_prompt(processor, model, layout, "How many dots are there?", [dots(3)]),
               encode_prompt(processor, model, layout, "A longer question about the price of seven apples?", [])]
    answers = [tokenizer.encode(t, add_special_tokens=False) for t in ("\\boxed{5}", "3", "The answer is 21 dollars")]
    layers = [0, 3, 7]
    # Two prompts per batch: rows of different prompts share batches with padding.
    sweep = ablation_logprob_sweep(DecoderStack(model, layout), prompts, answers, layers, max_batch_rows=8)

    def reference(prompt, answer, layer):
        """One plain forward of prompt + answer (batch 1) with the layer hooked to return its input."""
        seq = with_answer(prompt, answer)
        inputs = {"input_ids": seq.input_ids[None], "attention_mask": torch.ones(1, seq.length, dtype=torch.long)}
        if prompt.pixel_values is not None:
            inputs.update(pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                          mm_token_type_ids=seq.visual_mask.long()[None])
        with zero_ablation(model, layout, [] if layer is None else [layer]), torch.no_grad():
            logits = model(**inputs).logits[0].float()
        n = len(answer)
        return float(torch.log_softmax(logits[-n - 1 : -1], -1).gather(1, seq.input_ids[-n:, None]).sum())

    for prompt, answer, outcome in zip(prompts, answers, sweep):
        assert outcome.baseline.tokens == len(answer)
        assert outcome.baseline.total == pytest.approx(reference(prompt, answer, None), abs=1e-4)
        for layer in layers:
            assert outcome.by_layer[layer].total == pytest.approx(reference(prompt, answer, layer), abs=1e-4)
    assert any(abs(o.by_layer[k].total - o.baseline.total) > 1e-3 for o in sweep for k in layers)


# ---------------------------------------------------------------- clear errors


@pytest.mark.cli
# The first case in the fast tier: the frank_reasoning glue loaded by the real lmms_eval, failing early.
@pytest.mark.parametrize("case", ["missing_field", pytest.param("no_reference", marks=pytest.mark.slow),
                                  pytest.param("unknown_style", marks=pytest.mark.slow)])
def test_bad_input_ends_with_one_clear_line(case, tiny_trio, data_env, tmp_path):
    model = f"pretrained={tiny_trio['rl']},device=cpu"
    if case == "missing_field":
        env = hub_env(tmp_path / "hub", gsm8k=[{"question": q["question"]} for q in GSM8K])
        args, tasks, expected = model, "frank_gsm8k", "frank_gsm8k: the openai/gsm8k data has no 'answer' field"
    elif case == "no_reference":
        from lmms_tasks import write_counting_task

        env = data_env
        args, tasks = model + ",probe=zero_ablation,scoring=logprob", "tiny_count"
        expected = "scoring=logprob needs a reference answer for every item"
    else:
        env, args, tasks = data_env, model + ",prompt_style=chatty", "frank_gsm8k"
        expected = "unknown prompt_style 'chatty'; styles are base, reasoner, revisual"
    extra = ("--include_path", str(write_counting_task(tmp_path))) if case == "no_reference" else ()
    results, _, text = lmms_run(env, args, tasks, tmp_path / "out", extra=extra)
    assert results is None
    assert expected in text, text[-3000:]
    # Our message is one line (lmms-eval 0.7.3 prints its own traceback around it).
    assert any(expected in line and line.count("\n") == 0 for line in text.splitlines())


# ---------------------------------------------------------------- lm-eval's own tasks


def test_a_max_new_tokens_model_arg_a_task_overrides_is_said_once_per_task():
    """`Budgets` (both harness models): the task's budget wins, and a given model arg it overrides is named."""
    from frankenstein_tasks.models.model_args import Budgets, ModelArgs

    said = []
    budgets = Budgets(ModelArgs.parse(pretrained="x", max_new_tokens=8), said.append)
    assert budgets.of({"max_new_tokens": 2048}, "frank_gsm8k") == 2048
    assert budgets.of({"max_new_tokens": 2048}, "frank_gsm8k") == 2048
    assert budgets.of({"max_gen_toks": 16}, "gsm8k") == 16  # lm-eval's name for it
    assert budgets.of({"until": ["\n"]}, "tiny") is None  # no budget of its own: the model arg applies
    assert budgets.of({"max_new_tokens": 8}, "frank_ocr") == 8  # the same budget: nothing to say
    assert len(said) == 2 and "max_new_tokens=8 does not apply to task frank_gsm8k" in said[0] and "gsm8k" in said[1]
    silent = []
    assert Budgets(ModelArgs.parse(pretrained="x"), silent.append).of({"max_new_tokens": 2048}, "frank_gsm8k") == 2048
    assert silent == []  # the default is not a choice the user made


def test_both_harness_models_chunk_and_check_requests_alike():
    """`request_chunks` / `greedy_until` (model_args), shared by the lmms-eval and lm-eval models."""
    from types import SimpleNamespace

    from frankenstein_tasks.models.model_args import greedy_until, request_chunks
    from surgery.errors import FrankensteinError

    greedy, short = {"until": ["</s>"], "max_new_tokens": 8}, {"max_new_tokens": 2}
    prompts = [("ccc", greedy), ("a", short), ("bbbb", greedy), ("b", greedy), ("dd", short), ("e", None)]
    requests = [SimpleNamespace(args=args) for args in prompts]
    # Groups by generation settings in order of appearance, shortest prompts first, 12 // 3 = 4 a chunk.
    assert list(request_chunks(requests, range(6), 3, 12)) == [[3, 0, 2], [1, 4], [5]]
    assert list(request_chunks(requests, [0, 2, 3, 5], 3, 7)) == [[3, 0], [2], [5]]
    assert list(request_chunks(requests, range(6), 29, 16)) == [[3], [0], [2], [1], [4], [5]]  # at least one
    assert greedy_until({"until": "Question:", "temperature": 0}, "t") == ["Question:"]
    assert greedy_until({}, "t") == []
    for sampling in ({"do_sample": True}, {"temperature": 0.7}):
        with pytest.raises(FrankensteinError, match="task t asks for sampling"):
            greedy_until(sampling, "t")


class ScriptedRunner:
    """Stands in for the engine: answers each prompt with a scripted baseline and per-layer answers."""

    def __init__(self, script, layers):
        from surgery.probes import ProbeConfig

        self.script, self.layers = script, layers
        self.config = ProbeConfig(probe="zero_ablation", max_batch_rows=64)
        self.tokenizer = None

    def run(self, requests):
        from surgery.probes import ProbeOutput

        outputs = []
        for r in requests:
            question = next(q for q in self.script if q in r.text)
            baseline, per_layer = self.script[question]
            outputs.append(ProbeOutput(probe="zero_ablation", baseline=baseline, layers=self.layers, answers=per_layer))
        return outputs


def test_lm_eval_scores_every_layer_with_its_own_metrics(data_env, monkeypatch):
    """lm-eval's real gsm8k task and evaluator; scripted answers, so the expected scores are known by hand."""
    import lm_eval

    from types import SimpleNamespace

    from frankenstein_tasks.models.distributed import Shares
    from frankenstein_tasks.models.model_args import Budgets
    from frankenstein_tasks.models.lm_eval_model import FrankensteinLM

    import datasets

    for key, value in data_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", data_env["HF_DATASETS_CACHE"])  # read at import
    q = [row["question"] for row in GSM8K]
    script = {  # baseline, then layers 0, 1, 2
        q[0]: ("#### 72", ["#### 72", "#### 70", "it is 72"]),
        q[1]: ("#### 10", ["#### 10", "#### 10", "#### 9"]),
        q[2]: ("#### 4", ["#### 3", "#### 1", "#### 3"]),
    }
    lm = FrankensteinLM.__new__(FrankensteinLM)
    lm_eval.api.model.LM.__init__(lm)
    lm.runner, lm.layer_responses = ScriptedRunner(script, [0, 1, 2]), {}
    lm.shares = Shares(0, 1)  # rank 0 of one process
    lm.budgets = Budgets(SimpleNamespace(max_new_tokens=None, model_fields_set=set()), print)  # no budget model arg
    results = lm_eval.simple_evaluate(model=lm, tasks=["gsm8k"], num_fewshot=0, bootstrap_iters=0)
    scores, drops = results["frankenstein"]["layer_scores"]["gsm8k"], results["frankenstein"]["layer_drops"]["gsm8k"]
    # strict-match reads "#### N": right per layer (hand): L0 3/3, L1 1/3 (only item 1), L2 1/3 (item 2 says 3)
    assert scores["exact_match,strict-match"]["value"] == pytest.approx([1.0, 1 / 3, 1 / 3])
    # flexible-extract takes the last number: L2 item 0 "it is 72" now counts.
    assert scores["exact_match,flexible-extract"]["value"] == pytest.approx([1.0, 1 / 3, 2 / 3])
    # unablated: items 0 and 1 right -> 2/3; drops per layer = 2/3 - score
    assert results["results"]["gsm8k"]["exact_match,strict-match"] == pytest.approx(2 / 3)
    assert drops["exact_match,strict-match"]["value"] == pytest.approx([-1 / 3, 1 / 3, 1 / 3])
    assert results["frankenstein"]["answers"]["gsm8k"]["2"] == {"0": "#### 3", "1": "#### 1", "2": "#### 3"}


# family -> (checkpoint fixture, trio role or None, decoder layers): the text path of each VLM family too.
LM_EVAL_MODELS = {"qwen2": ("tiny_qwen2_text", None, 4), "qwen3_vl": ("tiny_qwen3_vl", "in", 6), "internvl": ("tiny_internvl", "in", 6)}


@pytest.mark.slow
@pytest.mark.cli
@pytest.mark.parametrize("family", list(LM_EVAL_MODELS))
def test_lm_eval_cli_matches_the_lmms_eval_path(family, request, data_env, tmp_path):
    """`frankenstein lm-eval` on lm-eval's own gsm8k (0-shot, chat template) on a text-only Qwen2, and on the
    text path of a Qwen3-VL and an InternVL.

    The lmms-eval path, asked the same prompts (a task whose user text is lm-eval's "Question: ...
    Answer:"), gives the same per-layer answers. Accuracies are not compared directly: the two paths
    grade differently (lm-eval's regexes vs the project's grader); what both grade is equal.
    """
    fixture, role, n = LM_EVAL_MODELS[family]
    checkpoint = request.getfixturevalue(fixture)
    checkpoint = checkpoint[role] if role else checkpoint
    out = tmp_path / "lm_eval"
    done = run_cli([
        cli_path("frankenstein"), "lm-eval", "run", "--model", "frankenstein",
        "--model_args", f"pretrained={checkpoint},device=cpu,probe=zero_ablation",
        "--tasks", "gsm8k", "--num_fewshot", "0", "--apply_chat_template", "--gen_kwargs", f"max_gen_toks={NEW}",
        "--output_path", str(out), "--log_samples",
    ], env=data_env, timeout=900)
    (results_file,) = out.rglob("results_*.json")
    lm_results = json.loads(results_file.read_text())
    section = lm_results["frankenstein"]
    assert section["layers"] == list(range(n)), done.stderr[-3000:]
    for key in ("exact_match,strict-match", "exact_match,flexible-extract"):
        assert section["layer_scores"]["gsm8k"][key]["layers"] == list(range(n))
    lm_answers = section["answers"]["gsm8k"]

    # The same prompts through the lmms-eval frankenstein model (a task whose user text is lm-eval's).
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "qa_gsm8k.yaml").write_text(
        "include: " + str(_reasoning_template()) + "\ntask: qa_gsm8k\ndataset_path: openai/gsm8k\ndataset_name: main\n"
        "test_split: test\nprocess_docs: !function qa_utils.process_docs\ndoc_to_text: !function qa_utils.doc_to_text\n"
        "doc_to_visual: !function qa_utils.doc_to_visual\ndoc_to_target: !function qa_utils.doc_to_target\n"
        "process_results: !function qa_utils.process_results\n"
        "generation_kwargs:\n  until: ['Question:', '</s>', '<|im_end|>']\n  max_new_tokens: 2048\n  do_sample: false\n"
    )
    (tasks / "qa_utils.py").write_text(
        "from frankenstein_tasks.tasks.frank_reasoning.utils import *  # noqa\n"
        "from frankenstein_tasks.reasoning import process_results  # noqa\n"
        "def doc_to_text(doc, lmms_eval_specific_kwargs=None):\n    return f\"Question: {doc['problem']}\\nAnswer:\"\n"
        "def process_docs(dataset):\n    return process_docs_gsm8k(dataset)\n"
    )
    results, samples, text = lmms_run(data_env, f"pretrained={checkpoint},device=cpu,probe=zero_ablation,system_prompt=",
                                      "qa_gsm8k", tmp_path / "lmms", extra=("--include_path", str(tasks)))
    assert results is not None, text[-4000:]
    for s in samples["qa_gsm8k"]:
        d = contract.decode(s["filtered_resps"])
        assert {str(k): a for k, a in zip(d.layers, d.answers)} == lm_answers[str(s["doc_id"])]


def _reasoning_template():
    import frankenstein_tasks

    from pathlib import Path

    return Path(frankenstein_tasks.__file__).parent / "tasks" / "frank_reasoning" / "_frank_reasoning_template.yaml"
