"""Per-layer log-likelihood sweep: fast vs naive, in one run, on the same lm-eval requests.

Requests: multiple-choice questions as lm-eval's `arc_easy` builds them (context "Question: ...\\nAnswer:",
one loglikelihood request per choice, continuation " <choice>"), or with `--style letters` as `mmlu`
does (options in the context, continuation " A" ... " D"), made up here so the script needs no dataset. Model: a text-only Qwen2 with `--layers` decoder layers (random weights, the real Qwen
tokenizer), written to a temporary folder so both paths load the same checkpoint.

Fast: the `frankenstein` lm-eval model with probe=zero_ablation: ONE `loglikelihood` call scores every
request unablated and with each layer ablated (`surgery.loglikelihood`: items x layers as one tree of
ablation branches, each context prefilled once for all its choices).
Naive: lm-eval's own `hf` model (HFLM), run once unablated and once per ablated layer with a forward
hook that makes the layer return its input (`surgery.reference.zero_ablation`) — what one would do
without this project: rerun lm-eval per layer.

Both get the same Instances; the script checks every layer's log-likelihood and is_greedy agree
(fp32: within 1e-3) and prints the time ratio.

    python benchmarks/loglikelihood_sweep.py                      # CPU, 28 layers, 16 questions x 4 choices
    python benchmarks/loglikelihood_sweep.py --questions 32 --batch-size 16
    python benchmarks/loglikelihood_sweep.py --style letters
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import hardware, timed  # noqa: E402

SUBJECTS = ["plants", "rocks", "planets", "magnets", "rivers", "clouds", "bees", "metals", "forests", "volcanoes"]
ASKS = ["Which of these is true about {}?", "What do scientists measure when they study {}?",
        "Which tool is most useful to observe {}?", "What happens to {} over a long time?"]
WORDS = ["heat", "light", "water", "energy", "a thermometer", "a ruler", "gravity", "erosion", "growth", "pressure",
         "the Sun", "a magnifying glass", "salt", "wind", "shadows", "sound"]


def requests(n: int, style: str = "words", seed: int = 0) -> list[tuple[str, str]]:
    """(context, continuation) pairs, 4 choices per question: as lm-eval's arc_easy makes them (`words`:
    the choice text is the continuation), or as mmlu does (`letters`: options listed in the context,
    the continuation one letter)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        question = rng.choice(ASKS).format(rng.choice(SUBJECTS))
        choices = rng.sample(WORDS, 4)
        if style == "letters":
            options = "".join(f"\n{letter}. {choice}" for letter, choice in zip("ABCD", choices))
            pairs += [(f"{question}{options}\nAnswer:", f" {letter}") for letter in "ABCD"]
        else:
            pairs += [(f"Question: {question}\nAnswer:", " " + choice) for choice in choices]
    return pairs


def write_model(folder: Path, layers: int, hidden: int) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from surgery.tiny import GENERATION_CONFIG, TOKEN_IDS, qwen_tokenizer

    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=151936, **TOKEN_IDS,
                         tie_word_embeddings=False)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    qwen_tokenizer().save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    return folder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--questions", type=int, default=16)
    p.add_argument("--style", choices=("words", "letters"), default="words",
                   help="continuations: the choice's words (arc_easy) or one option letter (mmlu)")
    p.add_argument("--batch-size", type=int, default=16, help="HFLM batch size (requests per forward)")
    p.add_argument("--max-batch-rows", type=int, default=64, help="rows per batch of the fast sweep")
    args = p.parse_args()

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from frankenstein_tasks.models.lm_eval_model import FrankensteinLM
    from surgery.arch import layout_of_model
    from surgery.reference import zero_ablation

    pairs = requests(args.questions, args.style)
    instances = [Instance("loglikelihood", doc={}, arguments=pair, idx=i % 4, metadata=("arc_easy", i // 4, 1))
                 for i, pair in enumerate(pairs)]
    layers = list(range(args.layers))
    with tempfile.TemporaryDirectory(prefix="frank_bench_ll_") as tmp:
        path = write_model(Path(tmp) / "model", args.layers, args.hidden)
        hf = HFLM(pretrained=str(path), device="cpu", dtype="float32", batch_size=args.batch_size)
        fast = FrankensteinLM(pretrained=str(path), device="cpu", probe="zero_ablation",
                              max_batch_rows=args.max_batch_rows)
        layout = layout_of_model(hf.model)
        with timed() as naive_time:
            naive = {None: hf.loglikelihood(instances, disable_tqdm=True)}
            for layer in layers:
                with zero_ablation(hf.model, layout, [layer]):
                    naive[layer] = hf.loglikelihood(instances, disable_tqdm=True)
        with timed() as fast_time:
            baseline = fast.loglikelihood(instances, disable_tqdm=True)
        swept = {None: baseline, **{layer: [fast.layer_responses[(i.task_name, i.doc_id, i.idx)][layer] for i in instances]
                                    for layer in layers}}

    total = agree = 0
    worst = 0.0
    for layer, expected in naive.items():
        for (ll, greedy), (ll_fast, greedy_fast) in zip(expected, swept[layer]):
            total += 1
            worst = max(worst, abs(ll - ll_fast))
            agree += abs(ll - ll_fast) <= 1e-3 and greedy == greedy_fast
    print(f"device: cpu ({hardware('cpu')}), fp32, text Qwen2 with {args.layers} layers (hidden {args.hidden}), "
          f"{args.questions} questions x 4 choices ({args.style}) = {len(instances)} requests, unablated + {len(layers)} layers")
    print(f"naive (lm-eval hf model, once per layer + unablated, batch {args.batch_size}): {naive_time['seconds']:8.2f} s")
    print(f"fast  (frankenstein, one sweep, max_batch_rows {args.max_batch_rows}):        {fast_time['seconds']:8.2f} s")
    print(f"agreement: {agree}/{total} log-likelihoods within 1e-3 with equal is_greedy (largest difference {worst:.2e})")
    print(f"speedup: {naive_time['seconds'] / fast_time['seconds']:.1f}x")
    return 0 if agree == total else 1


if __name__ == "__main__":
    sys.exit(main())
