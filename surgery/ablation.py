"""Zero ablation (METHOD.md 1b): which layers the reasoning needs.

Ablating decoder layer k means the layer returns its input unchanged: attention and MLP both
contribute zero to the residual stream, exactly as if the layer were deleted.

Fast path (`ablation_sweep`): every prompt with every ablated layer (plus the unablated baseline) is
one row, and rows of several prompts decode as one batch with a per-row mask of the layer to skip;
finished rows leave the batch. The prefill shares the work before the intervention: the rows of a
prompt are identical up to their ablated layer, so it runs one trunk per prompt and forks the row
that ablates layer k off the trunk at layer k (about half the prefill work of running every row
through every layer).

Teacher-forced mode (`ablation_logprob_sweep`): instead of generating, the log-likelihood of a
reference answer after the prompt, per ablated layer, from one pass of the same tree over
prompt + answer. It ranks layers without decoding thousands of tokens per row. The tree can also
continue from columns already run through it (`TreePrefix`): `surgery.loglikelihood` runs each
context once and every continuation of it on top (multiple-choice and perplexity requests).

Reference path (`surgery.reference.ablation_generate_naive`): a forward hook makes the layer return
its input, and an ordinary `model.generate` runs per layer and prompt (batch 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from surgery.prompts import EncodedPrompt
from surgery.stack import DecoderStack, Rows


@dataclass
class AblationOutcome:
    """Generated token ids: the unablated baseline and one list per ablated layer."""

    baseline: list[int] | None
    by_layer: dict[int, list[int]]


def ablation_sweep(
    stack: DecoderStack,
    prompts: Sequence[EncodedPrompt],
    layers: Sequence[int],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    max_batch_rows: int = 64,
    include_baseline: bool = True,
    share_prefix: bool = True,
    progress: Any = None,
) -> list[AblationOutcome]:
    """Ablate each layer in `layers` for every prompt; one AblationOutcome per prompt."""
    layers = sorted(set(layers))
    variants: list[int | None] = ([None] if include_baseline else []) + layers  # None = unablated
    per_group = max(1, max_batch_rows // len(variants))
    outcomes: list[AblationOutcome] = []
    for start in range(0, len(prompts), per_group):
        group = prompts[start : start + per_group]
        prefill = _prefill_shared if share_prefix else _prefill_rowwise
        rows = prefill(stack, group, variants)
        tokens = stack.greedy_decode(rows, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
        R = len(variants)
        for k in range(len(group)):
            row = {variants[r]: tokens[k * R + r] for r in range(R)}
            outcomes.append(
                AblationOutcome(
                    baseline=row[None] if include_baseline else None,
                    by_layer={layer: row[layer] for layer in layers},
                )
            )
        if progress is not None:
            progress.update(len(group))
    return outcomes


def _skip_masks(variants: Sequence[int | None], g: int, device: Any) -> dict[int, torch.Tensor]:
    """layer -> (g*R,) rows that skip it; row order is (prompt, variant)."""
    return {
        v: torch.tensor([u == v for u in variants] * g, device=device) for v in variants if v is not None
    }


def _prefill_rowwise(stack: DecoderStack, prompts: Sequence[EncodedPrompt], variants: Sequence[int | None]) -> Rows:
    """Every (prompt, variant) row through every layer, skipping its own ablated layer."""
    g, R = len(prompts), len(variants)
    embeds = stack.prompt_embeddings(prompts)
    row_prompt = [i for i in range(g) for _ in range(R)]
    chunk = stack.chunk([prompts[i] for i in row_prompt], [embeds[i] for i in row_prompt], [(0, prompts[i].length) for i in row_prompt])
    return stack.extend(None, chunk, skip=_skip_masks(variants, g, stack.device))


def _prefill_shared(stack: DecoderStack, prompts: Sequence[EncodedPrompt], variants: Sequence[int | None]) -> Rows:
    """Prefill as a tree: one trunk per prompt; the row ablating layer k forks off at layer k."""
    g, R = len(prompts), len(variants)
    embeds = stack.prompt_embeddings(prompts)
    chunk = stack.chunk(prompts, embeds, [(0, p.length) for p in prompts])
    hidden, per_layer_kv = _shared_tree(stack, chunk, g, variants, keep_kv=True)

    # Final rows in (prompt, variant) order. A row's layer-j cache comes from its own branch if it
    # forked before j, else from the trunk (identical up to its fork; for j == its own layer the
    # entries are never read, since the layer's output is discarded).
    cache = stack.new_cache()
    for j, (keys, values, runs) in enumerate(per_layer_kv):
        index = []
        for i in range(g):
            for v in variants:
                block = runs.index(v) if (v is not None and v < j) else 0
                index.append(i + g * block)
        index_t = torch.tensor(index, device=keys.device)
        cache.update(keys[index_t], values[index_t], j)
    row_prompt = torch.arange(g, device=stack.device).repeat_interleave(R)
    return Rows(
        cache=cache,
        attention_mask=chunk.mask[row_prompt],
        visual=chunk.visual[row_prompt],
        next_positions=chunk.positions[:, row_prompt, -1] + 1,
        logits=stack.next_token_logits(hidden),
        slots=list(range(g * R)),
        skip=_skip_masks(variants, g, stack.device),
    )


@dataclass
class TreePrefix:
    """Columns already run through the same tree of ablation branches (same variants), to continue from.

    `kv[j]` holds layer j's keys / values of that run, block-major (`g` rows a block, blocks in the
    order the tree computed layer j; None where every row skipped layer j), `mask` its (g, W)
    attention mask, and `rows[i]` the prefix row that row i of the new chunk continues.
    """

    kv: list[tuple[torch.Tensor, torch.Tensor, list[int | None]] | None]
    mask: torch.Tensor
    g: int
    rows: list[int]


def _shared_tree(
    stack: DecoderStack,
    chunk: Any,
    g: int,
    variants: Sequence[int | None],
    *,
    keep_kv: bool,
    prefix: TreePrefix | None = None,
    fixed: Sequence[int] = (),
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor, list[int | None]] | None]]:
    """Run `chunk` (g rows) through every layer as a tree of ablation branches.

    Returns the final hidden states (g*R, W, H) in (prompt, variant) row order and, with `keep_kv`,
    per layer the keys / values of the rows that computed it and which branch each block of rows is.
    With `prefix`, each row attends to its prefix row's cached columns first (in its own branch).
    Layers in `fixed` are skipped by every row (ablated throughout, as `ablate=` asks).
    """
    ablated = [v for v in variants if v is not None]
    branches: list[int] = []  # ablated layers forked so far; block b+1 of the batch holds branch b
    injection = chunk.injection
    hidden = chunk.embeds.clone()  # (g * (1 + len(branches)), W, H): trunk first, then each branch
    per_layer_kv: list[tuple[torch.Tensor, torch.Tensor, list[int | None]] | None] = []
    if prefix is not None:
        prefix_rows = torch.tensor(prefix.rows, device=stack.device)
        prefix_mask = prefix.mask[prefix_rows]
    for j in range(stack.num_layers):
        if j in ablated:
            # The row ablating j leaves layer j's input unchanged: fork it off the trunk here.
            branches.append(j)
            hidden = torch.cat([hidden, hidden[:g]], dim=0)
        # Blocks that compute layer j: every block but the branch skipping j. Layers run in order, so
        # that branch (if any) was just appended last: the computing blocks are a prefix of the batch.
        runs = [None] + [b for b in branches if b != j]
        assert j not in branches or branches[-1] == j
        if j in fixed:
            per_layer_kv.append(None)
            continue
        n = len(runs) * g
        mask = chunk.mask.repeat(len(runs), 1)
        cache = stack.new_cache() if keep_kv or prefix is not None else None
        if prefix is not None:
            keys, values, prefix_runs = prefix.kv[j]  # type: ignore[misc]
            assert prefix_runs == runs, "a prefix continues only a tree over the same variants"
            index = torch.tensor([b * prefix.g + r for b in range(len(runs)) for r in prefix.rows], device=stack.device)
            cache.update(keys[index], values[index], j)
            cache.layers[j].reserve(chunk.embeds.shape[1])
            mask = torch.cat([prefix_mask.repeat(len(runs), 1), mask], dim=1)
        hidden[:n] = stack.run_layers(
            hidden[:n],
            chunk.positions.repeat(1, len(runs), 1),
            mask,
            cache,
            layers=[j],
        )
        if injection is not None and j < injection.num_layers:  # added after layer j to every block, the one skipping j too
            hidden = injection.repeat(1 + len(branches)).after_layer(hidden, j)
        if keep_kv:
            kv = cache.layers[j]
            per_layer_kv.append((kv.keys, kv.values, runs))
    blocks = [None] + branches
    final = torch.tensor([i + g * blocks.index(v) for i in range(g) for v in variants], device=stack.device)
    return hidden[final], per_layer_kv


# ---------------------------------------------------------------------------------------------
# Teacher-forced scoring: the log-likelihood of a reference answer under each ablation
# ---------------------------------------------------------------------------------------------


@dataclass
class AnswerLogprob:
    """Log-likelihood of a reference answer's tokens after the prompt."""

    total: float  # sum over the answer tokens of log p(token | prompt, previous answer tokens)
    tokens: int  # how many answer tokens


@dataclass
class LogprobOutcome:
    baseline: AnswerLogprob | None
    by_layer: dict[int, AnswerLogprob]


def ablation_logprob_sweep(
    stack: DecoderStack,
    prompts: Sequence[EncodedPrompt],
    answers: Sequence[Sequence[int]],
    layers: Sequence[int],
    *,
    max_batch_rows: int = 64,
    include_baseline: bool = True,
    progress: Any = None,
) -> list[LogprobOutcome]:
    """Per prompt and ablated layer, the log-likelihood of `answers[i]` (token ids) after prompt i.

    No generation: every (prompt, variant) row is the prompt followed by its reference answer, run
    once through the shared-prefix tree (the rows of a prompt are identical up to their ablated
    layer), and the answer tokens are scored from the final hidden states at the positions before them.
    """
    layers = sorted(set(layers))
    variants: list[int | None] = ([None] if include_baseline else []) + layers
    per_group = max(1, max_batch_rows // len(variants))
    outcomes: list[LogprobOutcome] = []
    for start in range(0, len(prompts), per_group):
        group = [with_answer(p, a) for p, a in zip(prompts[start : start + per_group], answers[start : start + per_group])]
        lengths = [len(a) for a in answers[start : start + per_group]]
        scores = _answer_logprobs(stack, group, lengths, variants)
        R = len(variants)
        for k, n in enumerate(lengths):
            row = {variants[r]: AnswerLogprob(total=scores[k * R + r], tokens=n) for r in range(R)}
            outcomes.append(LogprobOutcome(baseline=row.get(None), by_layer={layer: row[layer] for layer in layers}))
        if progress is not None:
            progress.update(len(group))
    return outcomes


def with_answer(prompt: EncodedPrompt, answer: Sequence[int]) -> EncodedPrompt:
    """The prompt followed by answer tokens (text: each position one past the last, in every M-RoPE axis)."""
    if len(answer) == 0:
        raise ValueError("a reference answer needs at least one token")
    ids = torch.tensor(list(answer), dtype=prompt.input_ids.dtype)
    steps = torch.arange(1, len(answer) + 1, dtype=prompt.positions.dtype)
    return EncodedPrompt(
        input_ids=torch.cat([prompt.input_ids, ids]),
        positions=torch.cat([prompt.positions, prompt.positions[:, -1:] + steps], dim=1),
        visual_mask=torch.cat([prompt.visual_mask, torch.zeros(len(answer), dtype=torch.bool)]),
        pixel_values=prompt.pixel_values,
        image_grid_thw=prompt.image_grid_thw,
    )


@torch.no_grad()
def _answer_logprobs(
    stack: DecoderStack, sequences: Sequence[EncodedPrompt], lengths: Sequence[int], variants: Sequence[int | None]
) -> list[float]:
    g, R = len(sequences), len(variants)
    embeds = stack.prompt_embeddings(sequences)
    chunk = stack.chunk(sequences, embeds, [(0, s.length) for s in sequences])
    hidden, _ = _shared_tree(stack, chunk, g, variants, keep_kv=False)
    width = chunk.embeds.shape[1]
    totals = []
    for row in range(g * R):
        i = row // R
        n = lengths[i]
        # Left-padded: sequence i ends at the last column; its answer is the last n tokens, each
        # predicted from the column before it.
        before = hidden[row, width - n - 1 : width - 1]
        logits = stack.lm_head(stack.norm(before[None]))[0].float()
        targets = sequences[i].input_ids[-n:].to(logits.device)
        totals.append(float(torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum()))
    return totals
