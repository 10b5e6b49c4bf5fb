"""Log-likelihood requests (issue 19): multiple choice and perplexity, unablated and per ablated layer.

Pinned here:
  * the engine sweep (`surgery.loglikelihood`) == one plain forward per request and layer, the layer
    hooked to return its input (text and image contexts, shared contexts, one- and many-token
    continuations, batches split);
  * the lm-eval model with probe=none == lm-eval's own `hf` model on the same checkpoint and requests
    (log-likelihoods and is_greedy; empty contexts, truncation to max_length, rolling windows);
  * lm-eval's real `arc_easy` and `wikitext` through `frankenstein lm-eval run` on local data: every
    layer's log-likelihoods == the `hf` model with that layer hooked, and every layer's accuracy /
    perplexity == a hand count from them; two processes under torchrun == one;
  * the lmms-eval model on lmms-eval's own multiple-choice scoring, with images, on the trained model
    organism: responses == a plain forward with the prompt lmms-eval's qwen2_5_vl builds, per-layer
    accuracies == a hand count;
  * splices in the lm-eval model; request types still not served end in one line.
"""

from __future__ import annotations

import json
import math
import re
import sys

import numpy as np
import pytest
import torch

from surgery.loading import load_model, load_processor
from surgery.loglikelihood import loglikelihood_sweep
from surgery.prompts import encode_ids, encode_prompt
from surgery.reference import zero_ablation
from surgery.stack import DecoderStack

from conftest import cli_path, run_cli
from hub_data import ARC_CHALLENGE, ARC_EASY, WIKITEXT, leaderboard_env
from lmms_tasks import dots, write_choice_task, write_multi_round_task

pytest_plugins = ("organism_fixture",)

MAX_LENGTH = 24  # small, so wikitext pages take several rolling windows and long contexts are cut


@pytest.fixture(scope="module")
def layered_qwen2_text(tmp_path_factory):
    """A text-only Qwen2 (4 layers) whose layers matter: initialised 25x wider than usual, so that
    ablating one moves the scores enough to change which choice wins."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from surgery.tiny import GENERATION_CONFIG, TOKEN_IDS, qwen_tokenizer

    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=151936, **TOKEN_IDS, tie_word_embeddings=False, initializer_range=0.5,
    )
    out = tmp_path_factory.mktemp("qwen2_layered") / "text"
    Qwen2ForCausalLM(config).save_pretrained(out)
    qwen_tokenizer().save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    return out


# ---------------------------------------------------------------- the engine, pinned


def plain_scores(model, layout, context_ids, continuation, layers, extra=None):
    """log p(continuation | context), is_greedy: ONE forward of context + continuation (batch 1), the
    `layers` hooked to return their input. `extra`: image inputs for the context."""
    ids = torch.tensor(list(context_ids) + list(continuation))
    inputs = {"input_ids": ids[None], "attention_mask": torch.ones(1, len(ids), dtype=torch.long), **(extra or {})}
    if extra:
        visual = torch.isin(ids, torch.tensor(layout.visual_token_ids(model.config)))
        inputs["mm_token_type_ids"] = visual.long()[None]
    with zero_ablation(model, layout, layers), torch.no_grad():
        logits = model(**inputs).logits[0].float()
    n = len(continuation)
    logprobs = torch.log_softmax(logits[-n - 1 : -1], dim=-1)
    target = torch.tensor(list(continuation))
    return float(logprobs.gather(1, target[:, None]).sum()), bool((logprobs.argmax(-1) == target).all())


@pytest.mark.parametrize("model_name", ["tiny_trio", "tiny_qwen2_text"])
def test_sweep_equals_one_plain_forward_per_layer(model_name, request):
    """Every layer of the batched sweep, and the baseline, == a plain forward with that layer hooked."""
    source = request.getfixturevalue(model_name)
    path = str(source["in"] if model_name == "tiny_trio" else source)
    model, layout = load_model(path, dtype="float32")
    processor = load_processor(path)
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    contexts = [encode_ids(model, layout, ids("Question: which gas do plants take in?\nAnswer:")),
                encode_ids(model, layout, ids("The cat")),
                encode_ids(model, layout, ids("A much longer context about the weather in the mountains today:"))]
    if layout.has_vision:
        contexts.append(encode_prompt(processor, model, layout, "How many dots?", [dots(3)]))
    # Several continuations per context, one-token and many-token, and a context used once.
    continuations = [(0, ids(" oxygen")), (0, ids(" carbon dioxide")), (0, ids(" B")), (1, ids(" sat on the mat.")),
                     (2, ids(" sunny")), (1, ids(" dog"))]
    if layout.has_vision:
        continuations += [(3, ids("3")), (3, ids("three dots"))]
    layers = [0, 2, layout.num_layers - 1]
    # max_batch_rows 8 with 4 variants: 2 contexts and 2 continuations a batch, so batches split.
    outcomes = loglikelihood_sweep(DecoderStack(model, layout), contexts, continuations, layers, max_batch_rows=8)

    def reference(context, continuation, hooked):
        extra = None
        if context.pixel_values is not None:
            extra = {"pixel_values": context.pixel_values, "image_grid_thw": context.image_grid_thw}
        return plain_scores(model, layout, context.input_ids.tolist(), continuation, hooked, extra)

    moved = False
    for (c, continuation), outcome in zip(continuations, outcomes):
        expected = reference(contexts[c], continuation, [])
        assert outcome.baseline.logprob == pytest.approx(expected[0], abs=1e-4)
        assert (outcome.baseline.is_greedy, outcome.baseline.tokens) == (expected[1], len(continuation))
        for layer in layers:
            expected = reference(contexts[c], continuation, [layer])
            assert outcome.by_layer[layer].logprob == pytest.approx(expected[0], abs=1e-4)
            assert outcome.by_layer[layer].is_greedy == expected[1]
            moved |= abs(outcome.by_layer[layer].logprob - outcome.baseline.logprob) > 1e-3
    assert moved  # the ablations change something, so the comparison above can fail


def test_fixed_ablation_and_a_greedy_continuation(tiny_qwen2_text):
    """`ablated` layers are skipped in every row; is_greedy is True for the model's own greedy tokens."""
    model, layout = load_model(str(tiny_qwen2_text), dtype="float32")
    tokenizer = load_processor(str(tiny_qwen2_text))
    context = tokenizer.encode("Once upon a time", add_special_tokens=False)
    with torch.no_grad():  # the model's own greedy continuation, 3 tokens, by plain HF calls
        greedy = model.generate(torch.tensor([context]), max_new_tokens=3, do_sample=False)[0, len(context):].tolist()
    stack = DecoderStack(model, layout)
    (plain,) = loglikelihood_sweep(stack, [encode_ids(model, layout, context)], [(0, greedy)], [])
    assert plain.baseline.is_greedy and plain.by_layer == {}
    (ablated,) = loglikelihood_sweep(stack, [encode_ids(model, layout, context)], [(0, greedy)], [], ablated=[1])
    assert ablated.baseline.logprob == pytest.approx(plain_scores(model, layout, context, greedy, [1])[0], abs=1e-4)
    assert abs(ablated.baseline.logprob - plain.baseline.logprob) > 1e-4


# ---------------------------------------------------------------- lm-eval's own hf model


def lm_eval_instances(kind, arguments):
    from lm_eval.api.instance import Instance

    return [Instance(kind, doc={}, arguments=args, idx=i, metadata=("t", i, 1)) for i, args in enumerate(arguments)]


def test_lm_eval_model_equals_lm_eval_hf_model(tiny_qwen2_text):
    """probe=none: log-likelihoods and is_greedy == lm-eval's HFLM on the same checkpoint and requests."""
    from lm_eval.models.huggingface import HFLM

    from frankenstein_tasks.models.lm_eval_model import FrankensteinLM

    hf = HFLM(pretrained=str(tiny_qwen2_text), device="cpu", dtype="float32", max_length=MAX_LENGTH)
    ours = FrankensteinLM(pretrained=str(tiny_qwen2_text), device="cpu", max_length=MAX_LENGTH)
    context = "Once upon a time"
    greedy = hf.tok_decode(hf.model.generate(torch.tensor([hf.tok_encode(context)]), max_new_tokens=2,
                                             do_sample=False)[0, len(hf.tok_encode(context)):].tolist())
    pairs = [
        ("Question: What is 2+2?\nAnswer:", " 4"), ("Question: What is 2+2?\nAnswer:", " four apples"),
        ("Question: What is 2+2?\nAnswer: ", "4"),  # trailing space moves into the continuation
        ("", "Hello world"),  # empty context: the prefix token
        (context, greedy),  # the greedy continuation: is_greedy True
        ("word " * 30, "end of a context longer than max_length"),  # cut from the left
    ]
    expected = hf.loglikelihood(lm_eval_instances("loglikelihood", pairs))
    got = ours.loglikelihood(lm_eval_instances("loglikelihood", pairs))
    assert [g for _, g in got] == [g for _, g in expected]
    assert got[4][1] is True
    np.testing.assert_allclose([ll for ll, _ in got], [ll for ll, _ in expected], rtol=0, atol=1e-4)
    texts = [("A long text about nothing in particular. " * 6,), ("short one",)]  # several windows, one window
    np.testing.assert_allclose(ours.loglikelihood_rolling(lm_eval_instances("loglikelihood_rolling", texts)),
                               hf.loglikelihood_rolling(lm_eval_instances("loglikelihood_rolling", texts)), rtol=0, atol=1e-3)
    assert len(hf.tok_encode(texts[0][0])) > 2 * MAX_LENGTH


def test_splice_in_the_lm_eval_model(tiny_trio):
    """`in=,rl=,splice=mid_late,cuts=3:6` scores the spliced model: == a plain forward of a splice built
    by hand (IN's state dict with decoder layers 3..7 taken from RL)."""
    from frankenstein_tasks.models.lm_eval_model import FrankensteinLM

    lm = FrankensteinLM.create_from_arg_string(f"in={tiny_trio['in']},rl={tiny_trio['rl']},splice=mid_late,cuts=3:6,device=cpu")
    pairs = [("Question: how many legs does a spider have?\nAnswer:", " eight"), ("The sky is", " blue")]
    got = lm.loglikelihood(lm_eval_instances("loglikelihood", pairs))

    model, layout = load_model(str(tiny_trio["in"]), dtype="float32")
    rl, _ = load_model(str(tiny_trio["rl"]), dtype="float32")
    state = model.state_dict()
    rl_state = rl.state_dict()
    moved = [name for name in state if re.search(r"layers\.([3-7])\.", name) and "visual" not in name]
    assert moved
    for name in moved:
        state[name] = rl_state[name]
    model.load_state_dict(state)
    tokenizer = load_processor(str(tiny_trio["in"])).tokenizer
    for (context, continuation), (ll, _) in zip(pairs, got):
        ctx, cont = tokenizer.encode(context), tokenizer.encode(context + continuation)[len(tokenizer.encode(context)):]
        assert ll == pytest.approx(plain_scores(model, layout, ctx, cont, [])[0], abs=1e-4)
    plain_in = FrankensteinLM(pretrained=str(tiny_trio["in"]), device="cpu").loglikelihood(lm_eval_instances("loglikelihood", pairs))
    assert any(abs(a[0] - b[0]) > 1e-3 for a, b in zip(got, plain_in))  # the splice is not simply IN


# ---------------------------------------------------------------- lm-eval's real tasks, real CLI


@pytest.fixture(scope="module")
def leaderboard_data(tmp_path_factory):
    return leaderboard_env(tmp_path_factory.mktemp("leaderboard"))


ARC_GROUP = """\
group: arc_pair
task:
  - arc_easy
  - arc_challenge
aggregate_metric_list:
  - metric: acc
    weight_by_size: true
"""


def lm_eval_run(model, data_env, out, launcher=()):
    """The real CLI on lm-eval's arc_easy, arc_challenge (in a group of ours, `arc_pair`) and wikitext."""
    groups = out.parent / f"{out.name}_groups"
    groups.mkdir(parents=True, exist_ok=True)
    (groups / "arc_pair.yaml").write_text(ARC_GROUP)
    done = run_cli([
        *launcher, cli_path("frankenstein"), "lm-eval", "run", "--model", "frankenstein",
        "--model_args", f"pretrained={model},device=cpu,probe=zero_ablation,max_length={MAX_LENGTH}",
        "--tasks", "arc_pair,wikitext", "--include_path", str(groups), "--output_path", str(out), "--log_samples",
    ], env=data_env, timeout=900)
    found = list(out.rglob("results_*.json"))
    assert found, done.stdout[-3000:] + done.stderr[-3000:]
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        task = re.match(r"samples_(.+)_\d{4}-", path.name).group(1)
        samples[task] = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])
    return json.loads(found[0].read_text()), samples, done


def logged_arguments(sample):
    """A request's arguments as lm-eval's samples log holds them ({"gen_args_0": {"arg_0": ...}})."""
    return [tuple(args[f"arg_{i}"] for i in range(len(args))) for args in sample["arguments"].values()]


@pytest.fixture(scope="module")
def one_process_run(layered_qwen2_text, leaderboard_data, tmp_path_factory):
    return lm_eval_run(layered_qwen2_text, leaderboard_data, tmp_path_factory.mktemp("lm_eval_one"))


@pytest.mark.cli
def test_arc_easy_and_wikitext_per_layer_through_the_cli(layered_qwen2_text, one_process_run):
    from lm_eval.models.huggingface import HFLM

    from surgery.arch import layout_of_model

    results, samples, done = one_process_run
    section = results["frankenstein"]
    assert section["layers"] == [0, 1, 2, 3], done.stderr[-3000:]
    lls = section["loglikelihoods"]

    # Every layer's log-likelihoods == lm-eval's hf model with that layer hooked, on the logged requests.
    hf = HFLM(pretrained=str(layered_qwen2_text), device="cpu", dtype="float32", max_length=MAX_LENGTH)
    layout = layout_of_model(hf.model)
    assert {"arc_easy", "arc_challenge", "wikitext"} <= set(samples), done.stderr[-3000:]
    arc_args = [args for s in samples["arc_easy"] for args in logged_arguments(s)]
    wiki_args = [args for s in samples["wikitext"] for args in logged_arguments(s)]
    for layer in [None, 0, 1, 2, 3]:
        with zero_ablation(hf.model, layout, [] if layer is None else [layer]):
            arc = hf.loglikelihood(lm_eval_instances("loglikelihood", arc_args))
            wiki = hf.loglikelihood_rolling(lm_eval_instances("loglikelihood_rolling", wiki_args))
        if layer is None:  # the unablated responses are what lm-eval scored (its samples log, as strings)
            ours_arc = [(float(r[0][0]), r[0][1] == "True") for s in samples["arc_easy"] for r in s["resps"]]
            ours_wiki = [float(s["resps"][0][0]) for s in samples["wikitext"]]
        else:
            ours_arc = [tuple(pair) for s in samples["arc_easy"] for pair in lls["arc_easy"][str(s["doc_id"])][str(layer)]]
            ours_wiki = [lls["wikitext"][str(s["doc_id"])][str(layer)][0] for s in samples["wikitext"]]
        np.testing.assert_allclose([ll for ll, _ in ours_arc], [ll for ll, _ in arc], rtol=0, atol=1e-3)
        assert [bool(g) for _, g in ours_arc] == [g for _, g in arc]
        np.testing.assert_allclose(ours_wiki, wiki, rtol=0, atol=1e-2)

    # Per-layer accuracies by hand from those log-likelihoods (lm-eval's rule: argmax of ll, and of ll per character).
    hand_acc, hand_norm = [], []
    for layer in ["0", "1", "2", "3"]:
        right = right_norm = 0
        for doc_id, doc in enumerate(ARC_EASY):
            per_choice = np.array([ll for ll, _ in lls["arc_easy"][str(doc_id)][layer]])
            gold = doc["choices"]["label"].index(doc["answerKey"])
            right += int(np.argmax(per_choice) == gold)
            right_norm += int(np.argmax(per_choice / np.array([len(t) for t in doc["choices"]["text"]])) == gold)
        hand_acc.append(right / len(ARC_EASY))
        hand_norm.append(right_norm / len(ARC_EASY))
    scores = section["layer_scores"]["arc_easy"]
    assert scores["acc,none"]["value"] == pytest.approx(hand_acc)
    assert scores["acc_norm,none"]["value"] == pytest.approx(hand_norm)
    assert len(set(hand_acc)) > 1  # the data tells layers apart, so a mix-up of layers would show
    base = results["results"]["arc_easy"]["acc,none"]
    assert section["layer_drops"]["arc_easy"]["acc,none"]["value"] == pytest.approx([base - a for a in hand_acc])
    # The group's curve is its own aggregation per layer: acc weighted by the tasks' sizes.
    challenge = section["layer_scores"]["arc_challenge"]["acc,none"]["value"]
    n_easy, n_challenge = len(ARC_EASY), len(ARC_CHALLENGE)
    assert section["layer_scores"]["arc_pair"]["acc,none"]["value"] == pytest.approx(
        [(a * n_easy + c * n_challenge) / (n_easy + n_challenge) for a, c in zip(hand_acc, challenge)])

    # Perplexities per layer by hand: exp(-sum ll / sum words), 2 ** (-sum ll / sum bytes / ln 2).
    words = sum(len(re.split(r"\s+", d["page"])) for d in WIKITEXT)
    nbytes = sum(len(d["page"].encode("utf-8")) for d in WIKITEXT)
    wiki_scores = section["layer_scores"]["wikitext"]
    for k, layer in enumerate(["0", "1", "2", "3"]):
        total = sum(lls["wikitext"][str(d)][layer][0] for d in range(len(WIKITEXT)))
        assert wiki_scores["word_perplexity,none"]["value"][k] == pytest.approx(math.exp(-total / words), rel=1e-6)
        assert wiki_scores["bits_per_byte,none"]["value"][k] == pytest.approx(-total / nbytes / math.log(2), rel=1e-6)


@pytest.mark.cli
def test_two_processes_under_torchrun_equal_one(layered_qwen2_text, leaderboard_data, one_process_run, tmp_path):
    """`torchrun --nproc_per_node 2` (gloo): each rank scores a disjoint, non-empty share of the docs and
    the merged results (lm-eval's and the per-layer section) equal the one-process run."""
    launcher = (cli_path("torchrun"), "--nproc_per_node", "2", "--master_port", "29517", "--no-python")
    results, samples, done = lm_eval_run(layered_qwen2_text, leaderboard_data, tmp_path / "two", launcher=launcher)
    single, single_samples, _ = one_process_run
    section, one = results["frankenstein"], single["frankenstein"]
    for task, n_docs in (("arc_easy", len(ARC_EASY)), ("wikitext", len(WIKITEXT))):
        ranks = section["docs_by_rank"][task]
        assert len(ranks) == 2 and all(ranks), done.stderr[-3000:]
        assert not set(ranks[0]) & set(ranks[1])
        assert sorted(ranks[0] + ranks[1]) == list(range(n_docs))
        for key, value in single["results"][task].items():
            if isinstance(value, float):
                assert results["results"][task][key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
        for key, curve in one["layer_scores"][task].items():
            # Batches differ between the runs (each rank pads its own), so log-likelihoods agree to ~1e-5;
            # perplexities, exponentials of their sums, to a relative 1e-5.
            assert section["layer_scores"][task][key]["value"] == pytest.approx(curve["value"], rel=1e-5)
        assert section["loglikelihoods"][task].keys() == one["loglikelihoods"][task].keys()
        for doc, by_layer in one["loglikelihoods"][task].items():
            for layer, values in by_layer.items():
                np.testing.assert_allclose(np.array(section["loglikelihoods"][task][doc][layer], dtype=float),
                                           np.array(values, dtype=float), rtol=0, atol=1e-4)
    assert [s["doc_id"] for s in samples["arc_easy"]] == [s["doc_id"] for s in single_samples["arc_easy"]]


# ---------------------------------------------------------------- lmms-eval, images, the organism


def test_lmms_eval_qwen2_5_vl_has_no_loglikelihood():
    """Why the lmms-eval side is compared with a plain forward: lmms-eval 0.7.3's own qwen2_5_vl model
    (simple and chat) does not implement loglikelihood. If a later lmms-eval does, compare with it."""
    from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL as Chat
    from lmms_eval.models.simple.qwen2_5_vl import Qwen2_5_VL as Simple

    for cls in (Simple, Chat):
        with pytest.raises(NotImplementedError):
            cls.loglikelihood(None, [])


@pytest.mark.cli
def test_lmms_eval_multiple_choice_with_images_per_layer(organism, tmp_path):
    """lmms-eval's own multiple-choice scoring on counting images, through the real `lmms_eval` CLI with
    probe=zero_ablation on the trained organism."""
    pairs = organism["in"].parent / "eval" / "pairs" / "counting"
    tasks, rows = write_choice_task(tmp_path, pairs, n=6)
    out = tmp_path / "out"
    done = run_cli([
        sys.executable, "-m", "lmms_eval", "--model", "frankenstein", "--model_args",
        f"pretrained={organism['in']},device=cpu,dtype=float32,probe=zero_ablation",
        "--tasks", "tiny_choice", "--include_path", str(tasks), "--output_path", str(out), "--log_samples",
    ], timeout=900)
    found = list(out.rglob("*_results.json"))
    assert found, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(found[0].read_text())
    samples = sorted((json.loads(line) for p in out.rglob("*_samples_tiny_choice.jsonl") for line in p.read_text().splitlines()),
                     key=lambda s: s["doc_id"])
    section = results["frankenstein"]
    per_layer = section["loglikelihoods"]["tiny_choice"]

    # Responses == a plain forward (lmms-eval's convention: mean negative log-likelihood per token),
    # with the prompt built by hand as lmms-eval's qwen2_5_vl builds it (system, image, then text).
    from PIL import Image

    model, layout = load_model(str(organism["in"]), dtype="float32")
    processor = load_processor(str(organism["in"]))
    for sample, row in list(zip(samples, rows))[:3]:
        image = Image.open(row["image"]).convert("RGB")
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["question"]}]}]
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        context = processor(text=[prompt], images=[image], return_tensors="pt")
        extra = {"pixel_values": context["pixel_values"], "image_grid_thw": context["image_grid_thw"]}
        for layer in [None, 0, 7]:
            for k, choice in enumerate(row["choices"]):
                whole = processor(text=[prompt + choice], images=[image], return_tensors="pt")["input_ids"][0].tolist()
                n_context = context["input_ids"].shape[1]
                ll, greedy = plain_scores(model, layout, whole[:n_context], whole[n_context:], [] if layer is None else [layer], extra)
                nll = -ll / (len(whole) - n_context)
                got = sample["filtered_resps"][k] if layer is None else per_layer[str(sample["doc_id"])][str(layer)][k]
                assert float(got[0]) == pytest.approx(nll, abs=1e-4) and str(got[1]) == str(greedy)

    # Accuracies by hand: lmms-eval takes the lowest response (per character for acc_norm: one character each).
    hand = []
    for layer in map(str, range(8)):
        right = sum(int(np.argmin([r[0] for r in per_layer[str(s["doc_id"])][layer]]) == row["answer"])
                    for s, row in zip(samples, rows))
        hand.append(right / len(rows))
    assert section["layer_scores"]["tiny_choice"]["acc,none"]["value"] == pytest.approx(hand)
    unablated = sum(int(np.argmin([float(r[0]) for r in s["filtered_resps"]]) == row["answer"]) for s, row in zip(samples, rows)) / len(rows)
    assert results["results"]["tiny_choice"]["acc,none"] == pytest.approx(unablated)
    assert unablated >= 0.5 and min(hand) < unablated  # the organism counts, and some layer's ablation hurts


# ---------------------------------------------------------------- bad input


@pytest.mark.cli
def test_unserved_request_type_is_one_line_naming_task_and_type(tiny_trio, tmp_path):
    tasks = write_multi_round_task(tmp_path)
    done = run_cli([
        sys.executable, "-m", "lmms_eval", "--model", "frankenstein", "--model_args", f"pretrained={tiny_trio['in']},device=cpu",
        "--tasks", "tiny_rounds", "--include_path", str(tasks), "--output_path", str(tmp_path / "out"),
    ], timeout=600)
    expected = "task tiny_rounds asks for generate_until_multi_round requests, which the frankenstein model does not serve"
    text = done.stdout + done.stderr
    assert not list((tmp_path / "out").rglob("*_results.json"))
    # Our message is one line (lmms-eval 0.7.3 may print its own traceback around it).
    assert any(expected in line for line in text.splitlines()), text[-3000:]


def test_probe_without_a_loglikelihood_form_is_refused(tiny_trio):
    from surgery.errors import FrankensteinError
    from surgery.probes import ProbeConfig, ProbeRunner

    model, layout = load_model(str(tiny_trio["in"]), dtype="float32")
    runner = ProbeRunner(model, layout, load_processor(str(tiny_trio["in"])), ProbeConfig(probe="attention"))
    with pytest.raises(FrankensteinError, match="probe=attention has no log-likelihood form"):
        runner.score([encode_ids(model, layout, [1, 2, 3])], [(0, [4])])
