"""Invariants of the surgery engine: visual-token swap, zero ablation, attention capture."""

from __future__ import annotations

import copy

import pytest

from surgery.ablation import ablation_generate_naive, ablation_sweep, zero_ablation
from surgery.attention import attention_sweep
from surgery.errors import FrankensteinError
from surgery.loading import load_model, load_processor
from surgery.probes import parse_layers
from surgery.prompts import encode_prompt
from surgery.stack import DecoderStack, generate_batched
from surgery.swap import SwapPair, SwapSpec, generate_greedy, swap_generate_naive, swap_sweep

from lmms_tasks import dots

EOS = [151645, 151643]
NEW = 6  # new tokens per answer: enough to diverge, cheap on CPU


class Engine:
    def __init__(self, path, attn):
        self.model, self.layout = load_model(str(path), dtype="float32", attn_implementation=attn)
        self.processor = load_processor(str(path))
        self.stack = DecoderStack(self.model, self.layout)
        self.n = self.layout.num_layers

    def prompt(self, text, images=()):
        return encode_prompt(self.processor, self.model, self.layout, text, images)

    def pairs(self):
        # Different questions and image sizes across pairs: batches need padding in both chunks.
        spec = [("How many circles?", 2, 5, (112, 112)), ("Count the dots in this picture, please.", 3, 1, (112, 112)),
                ("How many?", 4, 4, (84, 140))]
        return [SwapPair(self.prompt(q, [dots(a, "red", s)]), self.prompt(q, [dots(b, "blue", s)])) for q, a, b, s in spec]


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def engine(request, tiny_trio):
    return Engine(tiny_trio["in"], request.param)


@pytest.fixture(scope="module")
def engine_qwen2_vl(tiny_qwen2_vl):
    return Engine(tiny_qwen2_vl["in"], "sdpa")


def test_stack_generation_matches_transformers_generate(engine):
    prompts = [p.target for p in engine.pairs()] + [engine.prompt("What is 2 + 3?")]
    batched = generate_batched(engine.stack, prompts, max_new_tokens=NEW, eos_token_ids=EOS)
    for p, tokens in zip(prompts, batched):
        assert tokens == generate_greedy(engine.model, p, max_new_tokens=NEW, eos_token_ids=EOS)


def test_self_swap_changes_nothing(engine):
    pairs = [SwapPair(p.target, p.target) for p in engine.pairs()]
    for spec in (SwapSpec(mode="from"), SwapSpec(mode="only"), SwapSpec(mode="window", window=3)):
        for o in swap_sweep(engine.stack, pairs, range(engine.n), spec, max_new_tokens=NEW, eos_token_ids=EOS):
            assert o.error is None
            assert all(o.by_layer[layer] == o.baseline for layer in range(engine.n))


@pytest.mark.parametrize("spec", [SwapSpec(mode="from"), SwapSpec(mode="only"), SwapSpec(mode="window", window=2)],
                         ids=["from", "only", "window"])
def test_batched_swap_sweep_equals_per_layer_loop(engine, spec):
    pairs = engine.pairs()
    batched = swap_sweep(engine.stack, pairs, range(engine.n), spec, max_new_tokens=NEW, eos_token_ids=EOS)
    changed = 0
    for pair, out in zip(pairs, batched):
        for layer in range(engine.n):
            alone = swap_sweep(engine.stack, [pair], [layer], spec, max_new_tokens=NEW, eos_token_ids=EOS,
                               include_baseline=False)[0]
            assert out.by_layer[layer] == alone.by_layer[layer], (layer, spec)
            changed += out.by_layer[layer] != out.baseline
    assert changed > 0  # the swaps do something on this model, so equality is informative


def test_fast_swap_equals_in_attention_definition(engine):
    """The two-chunk cache edit gives exactly what hooking the swap into attention gives (from mode)."""
    pairs = engine.pairs()
    fast = swap_sweep(engine.stack, pairs, range(engine.n), max_new_tokens=NEW, eos_token_ids=EOS)
    for pair, out in zip(pairs, fast):
        naive = swap_generate_naive(engine.model, engine.layout, pair, range(engine.n), max_new_tokens=NEW, eos_token_ids=EOS)
        assert naive.baseline == out.baseline
        assert naive.by_layer == out.by_layer


def test_swap_from_layer_zero_equals_source_prompt(engine):
    pairs = engine.pairs()
    out = swap_sweep(engine.stack, pairs, [0], max_new_tokens=NEW, eos_token_ids=EOS)
    for pair, o in zip(pairs, out):
        assert o.by_layer[0] == generate_greedy(engine.model, pair.source, max_new_tokens=NEW, eos_token_ids=EOS)


def test_swap_rejects_pairs_of_different_sizes(engine):
    bad = SwapPair(engine.prompt("How many?", [dots(2, size=(112, 112))]), engine.prompt("How many?", [dots(2, size=(56, 56))]))
    good = engine.pairs()[0]
    out = swap_sweep(engine.stack, [bad, good], [0, 1], max_new_tokens=NEW, eos_token_ids=EOS)
    assert "different numbers of visual tokens" in out[0].error
    assert out[1].error is None and len(out[1].by_layer) == 2


def test_ablating_layer_equals_deleting_it(engine):
    prompts = [engine.prompt("What is 12 times 7?"), engine.pairs()[1].target]
    sweep = ablation_sweep(engine.stack, prompts, range(engine.n), max_new_tokens=NEW, eos_token_ids=EOS)
    for k in range(engine.n):
        deleted = copy.deepcopy(engine.model)
        del engine.layout.decoder_layers(deleted)[k]
        for p, out in zip(prompts, sweep):
            assert out.by_layer[k] == generate_greedy(deleted, p, max_new_tokens=NEW, eos_token_ids=EOS), k
    assert any(o.by_layer[k] != o.baseline for o in sweep for k in range(engine.n))


def test_ablation_shared_prefill_equals_rowwise_and_naive(engine):
    prompts = [engine.prompt("Solve 3x = 12."), engine.prompt("Hi"), engine.pairs()[2].target]
    shared = ablation_sweep(engine.stack, prompts, range(engine.n), max_new_tokens=NEW, eos_token_ids=EOS)
    rowwise = ablation_sweep(engine.stack, prompts, range(engine.n), max_new_tokens=NEW, eos_token_ids=EOS, share_prefix=False)
    small_batches = ablation_sweep(engine.stack, prompts, [1, 4], max_new_tokens=NEW, eos_token_ids=EOS, max_batch_rows=3)
    for i, p in enumerate(prompts):
        naive = ablation_generate_naive(engine.model, engine.layout, p, range(engine.n), max_new_tokens=NEW, eos_token_ids=EOS)
        assert shared[i].by_layer == rowwise[i].by_layer == naive.by_layer
        assert shared[i].baseline == rowwise[i].baseline == naive.baseline
        assert small_batches[i].by_layer == {1: naive.by_layer[1], 4: naive.by_layer[4]}


def test_attention_masses_are_distributions(engine):
    prompts = [p.target for p in engine.pairs()]
    outcomes, records = attention_sweep(engine.stack, prompts, max_new_tokens=NEW, eos_token_ids=EOS, keep_steps=True)
    steps = records[0].per_step
    assert steps, "no decode steps were recorded"
    for entry in steps:
        for visual, text in zip(entry["visual"], entry["text"]):
            assert 0.0 <= visual <= 1.0 + 1e-6
            assert abs(visual + text - 1.0) < 1e-5
    for o, p in zip(outcomes, prompts):
        assert len(o.visual_mass) == engine.n and all(0.0 < m < 1.0 for m in o.visual_mass)
        assert o.tokens == generate_greedy(engine.model, p, max_new_tokens=NEW, eos_token_ids=EOS)


def test_no_state_leaks_between_calls(engine):
    """Hooks are removed and the attention implementation is restored after every probe."""
    implementation = engine.model.config._attn_implementation
    prompts = [engine.pairs()[0].target]
    attention_sweep(engine.stack, prompts, max_new_tokens=2, eos_token_ids=EOS)
    with zero_ablation(engine.model, engine.layout, [0, 1]):
        pass
    swap_generate_naive(engine.model, engine.layout, engine.pairs()[0], [0], max_new_tokens=2, eos_token_ids=EOS)
    assert engine.model.config._attn_implementation == implementation
    leftover = [name for name, m in engine.model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    assert leftover == []


def test_qwen2_vl_swap_and_ablation(engine_qwen2_vl):
    e = engine_qwen2_vl
    pairs = e.pairs()[:2]
    fast = swap_sweep(e.stack, pairs, range(e.n), max_new_tokens=NEW, eos_token_ids=EOS)
    for pair, out in zip(pairs, fast):
        naive = swap_generate_naive(e.model, e.layout, pair, range(e.n), max_new_tokens=NEW, eos_token_ids=EOS)
        assert (naive.baseline, naive.by_layer) == (out.baseline, out.by_layer)
    prompt = e.prompt("What is 2 + 2?")
    sweep = ablation_sweep(e.stack, [prompt], range(e.n), max_new_tokens=NEW, eos_token_ids=EOS)[0]
    naive = ablation_generate_naive(e.model, e.layout, prompt, range(e.n), max_new_tokens=NEW, eos_token_ids=EOS)
    assert sweep.by_layer == naive.by_layer


def test_text_only_qwen2_ablation(tiny_qwen2_text):
    from transformers import PreTrainedTokenizerFast

    from surgery.tiny import tokenizer_dir

    model, layout = load_model(str(tiny_qwen2_text), dtype="float32")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir()))
    tokenizer.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    stack = DecoderStack(model, layout)
    # The tiny text model has a 512-token vocabulary: keep prompt ids inside it.
    prompt = encode_prompt(tokenizer, model, layout, "2+2", system_prompt=None)
    prompt.input_ids = prompt.input_ids % 512
    sweep = ablation_sweep(stack, [prompt], range(4), max_new_tokens=NEW, eos_token_ids=[0])[0]
    naive = ablation_generate_naive(model, layout, prompt, range(4), max_new_tokens=NEW, eos_token_ids=[0])
    assert sweep.by_layer == naive.by_layer and sweep.baseline == naive.baseline


def test_parse_layers():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers("0-9:3", 28) == [0, 3, 6, 9]
    assert parse_layers("1;3;5", 28) == [1, 3, 5]
    assert parse_layers("[1,3,5]", 28) == [1, 3, 5]
    assert parse_layers("0-2;7", 8) == [0, 1, 2, 7]
    assert parse_layers(5, 8) == [5]
    with pytest.raises(FrankensteinError, match="out of range"):
        parse_layers("0-8", 8)
    with pytest.raises(FrankensteinError, match="cannot read layers"):
        parse_layers("first", 8)
