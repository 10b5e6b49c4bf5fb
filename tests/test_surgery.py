"""Invariants of the surgery engine: visual-token swap, zero ablation, attention capture.

Expected values come from `surgery.reference` (plain `model.generate`, batch 1, hooks or a hand-edited
cache) or from plain Hugging Face calls written out here, never from the fast paths under test.

Every invariant is pinned per model family (the `engine` fixture): Qwen2.5-VL (sdpa and eager
attention), Qwen3-VL (DeepStack, interleaved M-RoPE, 16-px patches) and InternVL (1-D positions,
tiled InternViT features). The tests are the same for all; only the tiny checkpoint differs.
"""

from __future__ import annotations

import copy

import pytest

from surgery.ablation import ablation_sweep
from surgery.attention import attention_sweep
from surgery.errors import FrankensteinError
from surgery.loading import load_model, load_processor
from surgery.probes import parse_layers
from surgery.prompts import encode_prompt
from surgery.reference import (
    ablation_generate_naive,
    cache_edit_swap_generate,
    generate_greedy,
    swap_generate_naive,
    swap_reinsert_generate_naive,
    zero_ablation,
)
from surgery.stack import DecoderStack, generate_batched
from surgery.swap import SwapPair, SwapSpec, swap_sweep

from conftest import FAMILY_TRIOS
from lmms_tasks import dots

EOS = [151645, 151643]
NEW = 6  # new tokens per answer: enough to diverge, cheap on CPU


class Engine:
    def __init__(self, path, attn):
        self.path = path
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


# (family, attention implementation): eager too for Qwen2.5-VL, whose sdpa and eager paths differ most.
ENGINES = [("qwen2_5_vl", "sdpa"), ("qwen2_5_vl", "eager"), ("qwen3_vl", "sdpa"), ("internvl", "sdpa")]


@pytest.fixture(scope="module", params=ENGINES, ids=["-".join(e) for e in ENGINES])
def engine(request):
    family, attn = request.param
    return Engine(request.getfixturevalue(FAMILY_TRIOS[family])["in"], attn)


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


def test_reinsert_decode_equals_the_authors_reinsertion(engine):
    """`swap_decode=reinsert` == a batch-1 greedy loop whose swapped layers append the source's visual
    keys/values to the cache again at every step (the authors' swapper), for every layer of `from`.

    The reference stores real copies; the fast path adds log(k + 1) to the visual columns' scores. The
    re-insertion must also change some answers here, or the equality would say nothing.
    """
    pairs = engine.pairs()
    layers = range(engine.n)
    reinsert = swap_sweep(engine.stack, pairs, layers, SwapSpec(decode="reinsert"), max_new_tokens=NEW, eos_token_ids=EOS,
                          max_batch_rows=2 * (engine.n + 1))
    prefill = swap_sweep(engine.stack, pairs, layers, max_new_tokens=NEW, eos_token_ids=EOS)
    differ = 0
    for pair, out, plain in zip(pairs, reinsert, prefill):
        naive = swap_reinsert_generate_naive(engine.model, engine.layout, pair, layers, max_new_tokens=NEW, eos_token_ids=EOS)
        assert naive.baseline == out.baseline == plain.baseline
        assert naive.by_layer == out.by_layer
        differ += sum(out.by_layer[layer] != plain.by_layer[layer] for layer in layers)
    assert differ > 0


def test_swapped_layers_at_the_edges():
    n = 8
    assert SwapSpec(mode="from").swapped_layers(0, n) == list(range(8))
    assert SwapSpec(mode="from").swapped_layers(7, n) == [7]
    assert SwapSpec(mode="only").swapped_layers(0, n) == [0]
    assert SwapSpec(mode="only").swapped_layers(7, n) == [7]
    assert SwapSpec(mode="window", window=3).swapped_layers(0, n) == [0, 1, 2]
    assert SwapSpec(mode="window", window=3).swapped_layers(6, n) == [6, 7]  # runs past the end: cut at n
    assert SwapSpec(mode="window", window=3).swapped_layers(7, n) == [7]
    assert SwapSpec(mode="window", window=20).swapped_layers(0, n) == list(range(8))  # as wide as `from` at 0
    for layer in range(n):
        assert SwapSpec(mode="window", window=1).swapped_layers(layer, n) == SwapSpec(mode="only").swapped_layers(layer, n)
    with pytest.raises(ValueError):
        SwapSpec(mode="window", window=0)
    with pytest.raises(ValueError):
        SwapSpec(mode="before")


def _hand_swapped_layers(mode: str, layer: int, window: int, n: int) -> list[int]:
    """METHOD.md 1a written out again for the test: `only` is L; a window is L .. L+window-1, inside the model."""
    return [layer] if mode == "only" else [i for i in range(layer, layer + window) if i < n]


# Window 3 covers both a window inside the model (from layer 0) and one cut at its end (last layers).
@pytest.mark.parametrize("mode, window", [("only", 1), ("window", 3)], ids=["only", "window3"])
def test_only_and_window_equal_a_hand_edited_cache(engine, mode, window):
    """`only` / `window` are defined by the cache view (METHOD.md 1a); the reference builds that cache by hand.

    Independent of the fast path: the reference (`cache_edit_swap_generate`) prefills target and source
    one at a time with the plain Hugging Face model, copies the source's cached visual keys/values into
    the target's cache with plain indexing at the layers listed here (not `SwapSpec.swapped_layers`),
    and continues with `model.generate` (batch 1). It shares no code with `swap_sweep`: not the decoder
    stack, its masks, padding, batching, cache class or the choice of layers. Window 3 at the last
    layers runs past the end of the 8-layer model.
    """
    pairs = engine.pairs()
    fast = swap_sweep(engine.stack, pairs, range(engine.n), SwapSpec(mode=mode, window=window),
                      max_new_tokens=NEW, eos_token_ids=EOS)
    changed = 0
    for pair, out in zip(pairs, fast):
        for layer in range(engine.n):
            swapped = _hand_swapped_layers(mode, layer, window, engine.n)
            expected = cache_edit_swap_generate(engine.model, pair, swapped, max_new_tokens=NEW, eos_token_ids=EOS)
            assert out.by_layer[layer] == expected, (mode, window, layer)
            changed += expected != out.baseline
    assert changed > 0  # the swaps change answers on this model, so equality is informative


def test_hand_edited_cache_reference_is_the_definition(engine):
    """The cache-edit reference itself: no layer edited gives plain `generate`; layers >= L edited
    gives what hooking the swap into attention gives (`from`), METHOD.md's equivalence of the two views."""
    for pair in engine.pairs():
        plain = generate_greedy(engine.model, pair.target, max_new_tokens=NEW, eos_token_ids=EOS)
        assert cache_edit_swap_generate(engine.model, pair, [], max_new_tokens=NEW, eos_token_ids=EOS) == plain
        hooked = swap_generate_naive(engine.model, engine.layout, pair, range(engine.n), max_new_tokens=NEW, eos_token_ids=EOS)
        for layer in range(engine.n):
            edited = cache_edit_swap_generate(engine.model, pair, range(layer, engine.n), max_new_tokens=NEW, eos_token_ids=EOS)
            assert edited == hooked.by_layer[layer], layer


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
            if k < engine.layout.num_injections and p.pixel_values is not None:
                expected = _deepstack_generate_with_layer_deleted(deleted, p, k)
            else:
                expected = generate_greedy(deleted, p, max_new_tokens=NEW, eos_token_ids=EOS)
            assert out.by_layer[k] == expected, k
    assert any(o.by_layer[k] != o.baseline for o in sweep for k in range(engine.n))


def _deepstack_generate_with_layer_deleted(deleted, prompt, k):
    """Greedy tokens of a Qwen3-VL whose decoder layer k < K was deleted, by plain Hugging Face calls.

    DeepStack adds the k-th merger's features to the visual tokens after decoder layer k, counting
    layers by position, so deleting layer k would shift every later injection by one. Deletion here
    keeps each injection where it entered the residual stream: the deleted layer's features follow
    the layer before it (added to the input embeddings when k = 0), later ones follow the layers
    they followed. Full forward per token (no cache), batch 1, through the model's own modules.
    """
    import torch

    core, text = deleted.model, deleted.model.language_model
    features = core.get_image_features(prompt.pixel_values, prompt.image_grid_thw)
    image = torch.cat(features.pooler_output)
    stack_features = [torch.cat(f) for f in features.deepstack_features]
    moved = stack_features[1:] if k == 0 else stack_features[: k - 1] + [stack_features[k - 1] + stack_features[k]] + stack_features[k + 1 :]
    ids, visual = prompt.input_ids[None], prompt.visual_mask[None]
    tokens = []
    with torch.no_grad():
        for _ in range(NEW):
            embeds = text.embed_tokens(ids)
            embeds[visual] = image + (stack_features[0] if k == 0 else 0)
            positions, _ = core.get_rope_index(ids, visual.long(), image_grid_thw=prompt.image_grid_thw)
            hidden = text(inputs_embeds=embeds, position_ids=positions, visual_pos_masks=visual,
                          deepstack_visual_embeds=moved).last_hidden_state
            token = int(deleted.lm_head(hidden[:, -1]).argmax(-1))
            if token in EOS:
                break
            tokens.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            visual = torch.cat([visual, torch.zeros(1, 1, dtype=torch.bool)], dim=1)
    return tokens


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


def test_shared_prefill_tree_leaves_its_input_alone(engine):
    """The ablation tree updates its batch in place: the chunk's embeddings stay as they were, and the
    final hidden states do not depend on whether the per-layer keys / values are kept."""
    import torch

    from surgery.ablation import _shared_tree

    prompts = [engine.prompt("What is 2 + 3?"), engine.pairs()[0].target]
    chunk = engine.stack.chunk(prompts, engine.stack.prompt_embeddings(prompts), [(0, p.length) for p in prompts])
    before = chunk.embeds.clone()
    variants = [None, 0, 2, engine.n - 1]
    kept, per_layer_kv = _shared_tree(engine.stack, chunk, len(prompts), variants, keep_kv=True)
    dropped, nothing = _shared_tree(engine.stack, chunk, len(prompts), variants, keep_kv=False)
    assert torch.equal(chunk.embeds, before)
    assert torch.equal(kept, dropped) and kept.shape[0] == len(prompts) * len(variants)
    assert len(per_layer_kv) == engine.n and nothing == []


@pytest.fixture(scope="module")
def hf_eager(engine):
    """The engine's checkpoint loaded with plain transformers, eager attention (the one that returns weights)."""
    import torch
    import transformers

    model_class = getattr(transformers, engine.layout.facts.hf_class)
    return model_class.from_pretrained(engine.path, dtype=torch.float32, attn_implementation="eager").eval()


def _hf_visual_attention(model, prompt, max_new_tokens, eos):
    """Plain Hugging Face, batch 1: greedy tokens, and per layer the mean over heads and generated tokens of
    the attention each generated token (EOS excluded) puts on the image-token columns, read from
    `output_attentions` of one forward over prompt + answer (causal, so each row is that token's decode step)."""
    import torch

    from surgery.prompts import EncodedPrompt
    from surgery.reference import model_inputs

    new = generate_greedy(model, prompt, max_new_tokens=max_new_tokens, eos_token_ids=eos)
    added = torch.tensor(new, dtype=prompt.input_ids.dtype)
    full = EncodedPrompt(  # prompt + answer; its positions are not read by the plain forward
        input_ids=torch.cat([prompt.input_ids, added]), positions=prompt.positions,
        visual_mask=torch.cat([prompt.visual_mask, torch.zeros(len(new), dtype=torch.bool)]),
        pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
    )
    visual = full.input_ids == model.config.image_token_id
    with torch.no_grad():
        attentions = model(**model_inputs(full, "cpu"), output_attentions=True).attentions
    queries = slice(prompt.length, full.length)  # one row per generated token
    return new, [float(a[0, :, queries][..., visual].sum(-1).mean()) for a in attentions]


def test_attention_mass_equals_hf_output_attentions(engine, hf_eager):
    """METHOD.md 5, pinned by plain `output_attentions`: per layer, the mass the generated tokens put on
    visual columns, mean over heads and generated tokens, the last token included.

    One batch mixes image sizes (padding), a text-only prompt (mass 0), rows that stop at EOS (they
    leave the batch mid-decode) and rows that stop at max_new_tokens (whose last token needs one more
    forward). A visual mask misaligned with the rows or columns, or a dropped last token, shows here."""
    prompts = [engine.prompt("Count the dots in this picture, please.", [dots(2, "red", (112, 112))]),
               engine.prompt("What color are the dots?", [dots(4, "red", (84, 140))]),
               engine.prompt("How many circles?", [dots(5, "blue", (112, 112))]),
               engine.prompt("What is 2 + 3?")]
    plain = generate_batched(engine.stack, prompts, max_new_tokens=NEW, eos_token_ids=EOS)
    # An extra stop token that ends some answers early (after >= 1 token) and leaves others running.
    stops = [t for t in {t for row in plain for t in row}
             if all(row[:1] != [t] for row in plain) and any(t in row for row in plain) and any(t not in row for row in plain)]
    assert stops, plain
    eos = EOS + [min(stops)]
    outcomes, records = attention_sweep(engine.stack, prompts, max_new_tokens=NEW, eos_token_ids=eos)
    lengths = [len(o.tokens) for o in outcomes]
    assert NEW in lengths and any(0 < n < NEW for n in lengths), lengths  # both ways of stopping occur
    for slot, (p, o) in enumerate(zip(prompts, outcomes)):
        tokens, expected = _hf_visual_attention(hf_eager, p, NEW, eos)
        assert o.tokens == tokens
        assert records[0].steps[slot] == len(tokens)
        assert o.visual_mass == pytest.approx(expected, abs=1e-5), slot
    assert all(m > 0 for m in outcomes[0].visual_mass) and outcomes[3].visual_mass == [0.0] * engine.n


def test_no_state_leaks_between_calls(engine):
    """Hooks are removed and the attention implementation is restored after every probe."""
    def hooks():
        return {(name, id(h)) for name, m in engine.model.named_modules() for h in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]}

    implementation = engine.model.config._attn_implementation
    prompts = [engine.pairs()[0].target]
    # transformers installs its own output-capturing hooks (InternViT) on a model's first forward: they stay.
    generate_greedy(engine.model, prompts[0], max_new_tokens=1, eos_token_ids=EOS)
    before = hooks()
    attention_sweep(engine.stack, prompts, max_new_tokens=2, eos_token_ids=EOS)
    with zero_ablation(engine.model, engine.layout, [0, 1]):
        pass
    swap_generate_naive(engine.model, engine.layout, engine.pairs()[0], [0], max_new_tokens=2, eos_token_ids=EOS)
    assert engine.model.config._attn_implementation == implementation
    assert hooks() == before


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
