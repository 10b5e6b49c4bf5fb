"""Continuation log-likelihoods per ablated layer: what leaderboard tasks ask of a model.

Multiple-choice and perplexity benchmarks (lm-eval's `arc_easy`, `mmlu`, `wikitext`, ...; lmms-eval's
multiple-choice image tasks) do not generate: they ask for log p(continuation | context) and whether
the continuation is the greedy one. `loglikelihood_sweep` answers that for the unmodified model and,
per layer in `layers`, for the model with that layer zero-ablated (METHOD.md 1b), teacher-forced, in
one batched pass:

  * contexts x variants run as the ablation tree of `surgery.ablation` (one trunk per context; the
    row ablating layer k forks off at layer k), and the tree keeps every layer's keys / values;
  * each context's continuations then run as a second tree on top of that cache, so the context is
    prefilled once for all its continuations (a 4-way multiple-choice question costs one context
    pass, not four), and single-token continuations (option letters) need no second pass at all:
    the context's last position already predicts them.

How a request's text becomes (context tokens, continuation tokens) is the harness's business (the
front ends follow lm-eval's own rule); this module scores token ids.

Reference: one plain forward of context + continuation per request and layer, the layer hooked to
return its input (`surgery.reference.zero_ablation`); tests/test_loglikelihood.py compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from surgery.ablation import TreePrefix, _shared_tree
from surgery.prompts import EncodedPrompt
from surgery.stack import DecoderStack


@dataclass
class TokenScore:
    """The log-likelihood of a continuation's tokens, and whether greedy decoding would produce them."""

    logprob: float  # sum over the continuation tokens of log p(token | context, previous tokens)
    is_greedy: bool  # every continuation token is the argmax at its position
    tokens: int


@dataclass
class ContinuationOutcome:
    baseline: TokenScore | None  # the unablated model (None when the sweep leaves it out)
    by_layer: dict[int, TokenScore]


def loglikelihood_sweep(
    stack: DecoderStack,
    contexts: Sequence[EncodedPrompt],
    continuations: Sequence[tuple[int, Sequence[int]]],
    layers: Sequence[int],
    *,
    ablated: Sequence[int] = (),
    include_baseline: bool = True,
    max_batch_rows: int = 64,
    progress: Any = None,
) -> list[ContinuationOutcome]:
    """Score `continuations[i] = (context index, token ids)` after their context, unablated and per layer.

    `ablated` layers are skipped in every row (the fixed ablation of `probe=none,ablate=...`). A batch
    holds at most `max_batch_rows` rows, a row being one context or continuation under one variant
    (the unablated model or one ablated layer); at least one context runs at a time.
    """
    layers = sorted(set(layers))
    variants: list[int | None] = ([None] if include_baseline else []) + layers
    R = len(variants)
    if not variants:
        raise ValueError("nothing to score: no layers and no baseline")
    for _, tokens in continuations:
        if len(tokens) == 0:
            raise ValueError("a continuation needs at least one token")
    by_context: dict[int, list[int]] = {}
    for k, (c, _) in enumerate(continuations):
        by_context.setdefault(c, []).append(k)
    # Shortest contexts first, so a batch pads least.
    order = sorted(by_context, key=lambda c: contexts[c].length)
    per_batch = max(1, max_batch_rows // R)
    scores: list[list[TokenScore] | None] = [None] * len(continuations)
    for start in range(0, len(order), per_batch):
        group = order[start : start + per_batch]
        members = [k for c in group for k in by_context[c]]
        for k, row in zip(members, _score_group(stack, contexts, continuations, group, by_context, variants,
                                                 ablated, per_batch)):
            scores[k] = row
        if progress is not None:
            progress.update(len(members))
    outcomes = []
    for row in scores:
        assert row is not None
        named = dict(zip(variants, row))
        outcomes.append(ContinuationOutcome(baseline=named.get(None), by_layer={layer: named[layer] for layer in layers}))
    return outcomes


@torch.no_grad()
def _score_group(
    stack: DecoderStack,
    contexts: Sequence[EncodedPrompt],
    continuations: Sequence[tuple[int, Sequence[int]]],
    group: list[int],
    by_context: dict[int, list[int]],
    variants: list[int | None],
    ablated: Sequence[int],
    per_batch: int,
) -> list[list[TokenScore]]:
    """Scores (one per variant) of the continuations of the contexts in `group`, in group order."""
    g, R = len(group), len(variants)
    prompts = [contexts[c] for c in group]
    chunk = stack.chunk(prompts, stack.prompt_embeddings(prompts), [(0, p.length) for p in prompts])
    hidden, kv = _shared_tree(stack, chunk, g, variants, keep_kv=True, fixed=ablated)
    last = hidden[:, -1]  # (g*R, H), row (context, variant): predicts each continuation's first token
    prefix = TreePrefix(kv=kv, mask=chunk.mask, g=g, rows=[])
    members = [(i, k) for i, c in enumerate(group) for k in by_context[c]]
    # Continuations of two or more tokens: the tokens before the last run on top of the context.
    longer = [(i, k) for i, k in members if len(continuations[k][1]) > 1]
    tails: dict[int, torch.Tensor] = {}  # continuation -> (R, n-1, H) final hidden states of its tokens
    for start in range(0, len(longer), per_batch):
        part = longer[start : start + per_batch]
        pieces = [_after(prompts[i], continuations[k][1][:-1]) for i, k in part]
        tail_chunk = stack.chunk(pieces, stack.prompt_embeddings(pieces), [(0, p.length) for p in pieces])
        prefix.rows = [i for i, _ in part]
        out, _ = _shared_tree(stack, tail_chunk, len(part), variants, keep_kv=False, prefix=prefix, fixed=ablated)
        width = tail_chunk.embeds.shape[1]
        for m, (_, k) in enumerate(part):
            n = len(continuations[k][1]) - 1
            tails[k] = out[m * R : (m + 1) * R, width - n :]
    # Every scored position of the group at once: the hidden state before each continuation token,
    # its target, and the (continuation, variant) it belongs to.
    states, targets, owners = [], [], []
    for m, (i, k) in enumerate(members):
        tokens = torch.tensor(list(continuations[k][1]), device=stack.device)
        first = last[i * R : (i + 1) * R, None]  # (R, 1, H)
        seq = torch.cat([first, tails[k]], dim=1) if k in tails else first  # (R, n, H)
        states.append(seq.reshape(-1, seq.shape[-1]))
        targets.append(tokens.repeat(R))
        owners.append(m * R + torch.arange(R, device=stack.device).repeat_interleave(len(tokens)))
    logprob, greedy = _token_scores(stack, torch.cat(states), torch.cat(targets))
    owner = torch.cat(owners)
    totals = torch.zeros(len(members) * R, dtype=logprob.dtype, device=stack.device).index_add_(0, owner, logprob)
    misses = torch.zeros(len(members) * R, dtype=torch.long, device=stack.device).index_add_(0, owner, (~greedy).long())
    totals, misses = totals.tolist(), misses.tolist()
    return [
        [TokenScore(totals[m * R + r], misses[m * R + r] == 0, len(continuations[k][1])) for r in range(R)]
        for m, (_, k) in enumerate(members)
    ]


def _token_scores(stack: DecoderStack, states: torch.Tensor, targets: torch.Tensor, span: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(targets[t]) from final hidden states `states[t]` (N, H), and whether each is the argmax;
    `span` positions at a time, so N x vocabulary logits never exist at once."""
    logprobs, greedy = [], []
    for start in range(0, len(targets), span):
        logits = stack.lm_head(stack.norm(states[None, start : start + span]))[0].float()
        wanted = targets[start : start + span]
        logprobs.append(torch.log_softmax(logits, dim=-1).gather(1, wanted[:, None])[:, 0])
        greedy.append(logits.argmax(dim=-1) == wanted)
    return torch.cat(logprobs), torch.cat(greedy)


def _after(context: EncodedPrompt, tokens: Sequence[int]) -> EncodedPrompt:
    """Text tokens placed right after `context` (each position one past the last, in every M-RoPE axis)."""
    ids = torch.tensor(list(tokens), dtype=context.input_ids.dtype)
    steps = torch.arange(1, len(tokens) + 1, dtype=context.positions.dtype)
    return EncodedPrompt(
        input_ids=ids,
        positions=context.positions[:, -1:] + steps,
        visual_mask=torch.zeros(len(tokens), dtype=torch.bool),
    )
