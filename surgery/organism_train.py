"""Training loops for the model organism: supervised fine-tuning and a group-baseline policy gradient.

The organism (`frankenstein_tasks.organism`) is a tiny Qwen2.5-VL trained on CPU, so the loops here
are plain PyTorch over the model's own transformers modules, with two economies that leave the
trained checkpoint's behaviour exact:

* **A slice of the vocabulary.** The real Qwen vocabulary has 151,936 tokens, and a full lm_head and
  softmax per position would dominate the cost. `VocabSlice` trains compact copies of the embedding
  rows the data uses and of the lm_head rows the answers use, and writes them back into the model.
  Every other lm_head row is zero, so its logit is exactly 0 and the full softmax equals the slice's
  softmax plus one extra logit, log(number of zero rows): the loss is the full-vocabulary loss, and
  a zero row can win greedy decoding only where the model was trained to put almost no probability
  on every real answer token.
* **Loss at the answer positions only.** A batch runs the decoder on prompt + answer, and the head
  only on the positions that predict answer tokens.

Batches are right-padded: with causal attention a real token never sees a pad after it, so no
padding mask is needed, and every row keeps the explicit (M-RoPE) positions of its own prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from surgery.arch import Layout
from surgery.prompts import EncodedPrompt, encode_prompt

# ---------------------------------------------------------------------------------------------
# The trained slice of the vocabulary
# ---------------------------------------------------------------------------------------------


def zero_head_rows(model: Any, layout: Layout, keep: Sequence[int]) -> None:
    """Set every lm_head row except `keep` to zero (their logits are then exactly 0)."""
    weight = layout.lm_head(model).weight
    drop = torch.ones(weight.shape[0], dtype=torch.bool)
    drop[torch.tensor(sorted(set(keep)))] = False
    with torch.no_grad():
        weight[drop.to(weight.device)] = 0


class VocabSlice(nn.Module):
    """Trainable copies of the embedding rows of `input_ids` and the lm_head rows of `output_ids`.

    Output tokens are inputs too (a generated token is fed back). `logits` returns one column per
    output token plus a last column, `bucket`, standing for all the zero lm_head rows together.
    """

    def __init__(self, model: Any, layout: Layout, input_ids: Sequence[int], output_ids: Sequence[int]):
        super().__init__()
        embed, head = layout.embed_tokens(model).weight, layout.lm_head(model).weight
        vocab = head.shape[0]
        outputs = sorted({int(i) for i in output_ids})
        inputs = sorted({int(i) for i in input_ids} | set(outputs))
        rest = torch.ones(vocab, dtype=torch.bool)
        rest[outputs] = False
        if bool(head.detach()[rest.to(head.device)].any()):
            raise ValueError("lm_head rows outside the output vocabulary must be zero (zero_head_rows)")
        self.register_buffer("input_ids", torch.tensor(inputs))
        self.register_buffer("output_ids", torch.tensor(outputs))
        self.embed = nn.Parameter(embed.detach()[inputs].float().clone())
        self.head = nn.Parameter(head.detach()[outputs].float().clone())
        self.register_buffer("input_index", self._lookup(vocab, inputs))
        self.register_buffer("output_index", self._lookup(vocab, outputs))
        self.rest_logit = math.log(vocab - len(outputs))  # log(sum over zero rows of e^0)

    @staticmethod
    def _lookup(vocab: int, ids: list[int]) -> torch.Tensor:
        table = torch.full((vocab,), -1, dtype=torch.long)
        table[ids] = torch.arange(len(ids))
        return table

    @property
    def bucket(self) -> int:
        """Output index that stands for every token outside the slice."""
        return len(self.output_ids)

    def to_input(self, token_ids: torch.Tensor) -> torch.Tensor:
        index = self.input_index[token_ids]
        if bool((index < 0).any()):
            missing = sorted(set(token_ids[index < 0].tolist()))[:5]
            raise ValueError(f"tokens {missing} are not in the trained input vocabulary")
        return index

    def to_output(self, token_ids: Sequence[int]) -> list[int]:
        index = self.output_index[torch.tensor(list(token_ids), dtype=torch.long)]
        if bool((index < 0).any()):
            raise ValueError(f"answer tokens {sorted(set(torch.tensor(list(token_ids))[index < 0].tolist()))[:5]} "
                             "are not in the output vocabulary")
        return index.tolist()

    def token_ids(self, outputs: Sequence[int]) -> list[int]:
        """Output indices -> token ids (the bucket has no single token: it is never asked for)."""
        return self.output_ids[torch.tensor(list(outputs), dtype=torch.long)].tolist()

    def logits(self, hidden: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """(N, H) normed hidden states -> (N, outputs + 1) logits at `temperature`, the last for all
        zero rows together: each has logit 0 at any temperature, so together log(count)."""
        z = hidden.float() @ self.head.T / temperature
        return torch.cat([z, z.new_full((z.shape[0], 1), self.rest_logit)], dim=1)

    @torch.no_grad()
    def write_back(self, model: Any, layout: Layout) -> None:
        """Copy the trained rows into the model's full embedding and lm_head."""
        embed, head = layout.embed_tokens(model).weight, layout.lm_head(model).weight
        embed[self.input_ids.to(embed.device)] = self.embed.to(embed.dtype)
        head[self.output_ids.to(head.device)] = self.head.to(head.dtype)


def trainable_parameters(model: Any, layout: Layout, vocab: VocabSlice) -> list[nn.Parameter]:
    """Every model parameter except the full embedding and lm_head (the slice trains those), and the slice."""
    skip = {id(layout.embed_tokens(model).weight), id(layout.lm_head(model).weight)}
    return [p for p in model.parameters() if id(p) not in skip] + list(vocab.parameters())


# ---------------------------------------------------------------------------------------------
# Prompts and batches
# ---------------------------------------------------------------------------------------------


class PromptEncoder:
    """`encode_prompt` for training sets: the text part is encoded once per (text, image sizes) and
    shared, and images go through the image processor only when a batch needs them (`attach`), so
    a training set holds images, not float pixel arrays."""

    def __init__(self, processor: Any, model: Any, layout: Layout, system_prompt: str | None):
        self.processor, self.model, self.layout, self.system_prompt = processor, model, layout, system_prompt
        self._cache: dict[tuple, EncodedPrompt] = {}

    def template(self, text: str, images: Sequence[Any] = ()) -> EncodedPrompt:
        """Token ids, positions and visual mask of the prompt (pixel values left out)."""
        key = (text, tuple(im.size for im in images))
        if key not in self._cache:
            full = encode_prompt(self.processor, self.model, self.layout, text, list(images), system_prompt=self.system_prompt)
            self._cache[key] = EncodedPrompt(full.input_ids, full.positions, full.visual_mask, None, full.image_grid_thw)
        return self._cache[key]

    def attach(self, examples: Sequence[Example]) -> list[EncodedPrompt]:
        """The examples' prompts with pixel values, all images through the image processor at once."""
        images = [im for e in examples for im in e.images]
        if not images:
            return [e.prompt for e in examples]
        pixels = self.processor.image_processor(images=images, return_tensors="pt")
        per_image = iter(pixels["pixel_values"].split(pixels["image_grid_thw"].prod(dim=1).tolist()))
        grids = iter(pixels["image_grid_thw"])
        out = []
        for e in examples:
            if not e.images:
                out.append(e.prompt)
                continue
            grid = torch.stack([next(grids) for _ in e.images])
            if not torch.equal(grid, e.prompt.image_grid_thw):
                raise ValueError("the image processor gave a different grid than the prompt was encoded with")
            values = torch.cat([next(per_image) for _ in e.images])
            out.append(EncodedPrompt(e.prompt.input_ids, e.prompt.positions, e.prompt.visual_mask, values, grid))
        return out

    def example(self, text: str, images: Sequence[Any], target: list[int]) -> Example:
        return Example(self.template(text, images), target, tuple(images))


@dataclass
class Example:
    """A prompt (its images attached lazily, see `PromptEncoder`) and the answer's token ids,
    ending with the EOS token (empty for a policy-gradient prompt)."""

    prompt: EncodedPrompt
    target: list[int]
    images: tuple = ()


def answer_logprobs(
    model: Any, layout: Layout, vocab: VocabSlice, prompts: Sequence[EncodedPrompt], answers: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """Per row, the log-probability of each answer token (output indices) after its prompt.

    Teacher forcing: the decoder runs on prompt + answer[:-1] (right-padded batch), the head only at
    the positions that predict answer tokens.
    """
    rows = len(prompts)
    lengths = [p.length + len(a) - 1 for p, a in zip(prompts, answers)]
    width = max(lengths)
    num_axes = prompts[0].positions.shape[0]
    ids = torch.zeros(rows, width, dtype=torch.long)
    positions = torch.zeros(num_axes, rows, width, dtype=torch.long)
    visual = torch.zeros(rows, width, dtype=torch.bool)
    for b, (p, a) in enumerate(zip(prompts, answers)):
        fed = torch.tensor(vocab.token_ids(a[:-1]), dtype=torch.long) if len(a) > 1 else torch.zeros(0, dtype=torch.long)
        ids[b, : lengths[b]] = vocab.to_input(torch.cat([p.input_ids, fed]))
        positions[:, b, : p.length] = p.positions
        positions[:, b, p.length : lengths[b]] = p.next_position[:, None] + torch.arange(len(fed))
        visual[b, : p.length] = p.visual_mask
    device = vocab.embed.device
    embeds = vocab.embed[ids.to(device)]
    with_images = [p for p in prompts if p.pixel_values is not None]
    if with_images:
        pixel_values = torch.cat([p.pixel_values for p in with_images]).to(device)
        grids = torch.cat([p.image_grid_thw for p in with_images]).to(device)
        features, _ = layout.image_features(model, pixel_values=pixel_values, image_grid_thw=grids)
        embeds = embeds.masked_scatter(visual.to(device)[..., None], features.to(embeds.dtype))
    text_model = layout.text_model(model)
    position_ids = positions if num_axes == 3 else positions[0]
    hidden = text_model(inputs_embeds=embeds, position_ids=position_ids.to(device), use_cache=False).last_hidden_state
    at_b = torch.cat([torch.full((len(a),), b) for b, a in enumerate(answers)])
    at_t = torch.cat([p.length - 1 + torch.arange(len(a)) for p, a in zip(prompts, answers)])
    logp = torch.log_softmax(vocab.logits(hidden[at_b.to(device), at_t.to(device)]), dim=-1)
    chosen = logp.gather(1, torch.tensor([t for a in answers for t in a], device=device)[:, None])[:, 0]
    return list(chosen.split([len(a) for a in answers]))


# ---------------------------------------------------------------------------------------------
# Supervised fine-tuning
# ---------------------------------------------------------------------------------------------


class OptimConfig(BaseModel):
    """AdamW with linear warm-up and cosine decay to `min_lr_ratio` x lr, gradient-norm clipping."""

    model_config = ConfigDict(frozen=True)

    steps: int = Field(ge=0)
    lr: float = Field(gt=0)
    warmup: float = Field(0.05, ge=0, le=1)  # fraction of the steps
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    clip: float = Field(1.0, gt=0)

    def lr_at(self, step: int) -> float:
        warm = max(1, round(self.warmup * self.steps))
        if step < warm:
            return self.lr * (step + 1) / warm
        progress = (step - warm) / max(1, self.steps - warm)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class SftConfig(OptimConfig):
    batch_size: int = Field(32, ge=1)


def _optimizer(params: list[nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay)


def _step(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], loss: torch.Tensor, lr: float, clip: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless batches of indices: shuffled epochs over n items."""
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[start : start + batch_size]


def train_sft(
    model: Any,
    layout: Layout,
    vocab: VocabSlice,
    examples: Sequence[Example],
    config: SftConfig,
    *,
    encoder: PromptEncoder,
    seed: int,
    desc: str = "SFT",
    progress: bool = True,
) -> list[float]:
    """Cross-entropy on the answer tokens (mean over tokens), `config.steps` steps; returns the losses.

    The trained rows are written back into the model's embedding and lm_head at the end.
    """
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    params = trainable_parameters(model, layout, vocab)
    optimizer = _optimizer(params, config)
    targets = [vocab.to_output(e.target) for e in examples]
    batches = _batches(len(examples), config.batch_size, generator)
    losses: list[float] = []
    model.train()
    bar = tqdm(range(config.steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for step in bar:
        idx = next(batches)
        prompts = encoder.attach([examples[i] for i in idx])
        logprobs = answer_logprobs(model, layout, vocab, prompts, [targets[i] for i in idx])
        loss = -torch.cat(logprobs).mean()
        _step(optimizer, params, loss, config.lr_at(step), config.clip)
        losses.append(loss.item())
        if step % 10 == 0 or step == config.steps - 1:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    vocab.write_back(model, layout)
    return losses


# ---------------------------------------------------------------------------------------------
# Policy gradient with a group baseline
# ---------------------------------------------------------------------------------------------


class PolicyGradientConfig(OptimConfig):
    """REINFORCE with a per-prompt group baseline (GRPO-style, one update per sampled batch)."""

    prompts_per_step: int = Field(8, ge=1)
    group_size: int = Field(8, ge=2)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(32, ge=1)


@torch.no_grad()
def sample_answers(
    model: Any,
    layout: Layout,
    vocab: VocabSlice,
    prompts: Sequence[EncodedPrompt],
    *,
    eos_token_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float,
    generator: torch.Generator,
    untrained: bool = True,
) -> list[list[int]]:
    """Sampled answers (output indices, ending with an EOS or the bucket where one was drawn).

    With `untrained=False` the tokens outside the slice are never drawn (a filter like top-k: the
    ~150k zero rows have logit 0 each, so together they hold real mass wherever the model is unsure,
    which no trained model's untrained rows would). The model's own embedding must hold the slice's
    rows (`vocab.write_back`) before the call.
    """
    from surgery.stack import DecoderStack

    stack = DecoderStack(model, layout)
    chunk = stack.chunk(prompts, stack.prompt_embeddings(prompts), [(0, p.length) for p in prompts])
    cache = stack.new_cache()
    hidden = stack.run_layers(chunk.embeds, chunk.positions, chunk.mask, cache)
    mask, next_positions = chunk.mask, chunk.positions[:, :, -1] + 1
    stops = torch.tensor(vocab.to_output([t for t in eos_token_ids if int(vocab.output_index[t]) >= 0]) + [vocab.bucket])
    answers: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(max_new_tokens):
        logits = vocab.logits(stack.norm(hidden[:, -1]), temperature)
        if not untrained:
            logits[:, vocab.bucket] = float("-inf")
        drawn = torch.multinomial(torch.softmax(logits, dim=-1).cpu(), 1, generator=generator)[:, 0]
        for b in torch.nonzero(~done).flatten().tolist():
            answers[b].append(int(drawn[b]))
        done |= torch.isin(drawn, stops)
        if bool(done.all()):
            break
        fed = vocab.output_ids[drawn.clamp(max=vocab.bucket - 1)]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        hidden = stack.run_layers(stack.embed(fed[:, None].to(stack.device)), next_positions[:, :, None], mask, cache)
        next_positions = next_positions + 1
    return answers


Reward = Callable[[int, list[int]], float]  # (prompt index, generated token ids without EOS) -> reward


def train_policy_gradient(
    model: Any,
    layout: Layout,
    vocab: VocabSlice,
    prompts: Sequence[Example],
    reward: Reward,
    config: PolicyGradientConfig,
    *,
    encoder: PromptEncoder,
    eos_token_ids: Sequence[int],
    seed: int,
    desc: str = "RL",
    progress: bool = True,
) -> list[float]:
    """Per step: sample `group_size` answers for each of `prompts_per_step` prompts, reward them,
    and ascend sum_i (r_i - mean of its group) * log p(answer_i), normalised by the answer tokens.
    Answers are sampled from the trained slice only (`sample_answers(untrained=False)`, a top-k-like
    filter); log p is the model's own, over the full vocabulary, as RL trainers compute it. Returns
    the mean reward per step.
    """
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    params = trainable_parameters(model, layout, vocab)
    optimizer = _optimizer(params, config)
    batches = _batches(len(prompts), config.prompts_per_step, generator)
    stops = set(eos_token_ids)
    rewards_per_step: list[float] = []
    bar = tqdm(range(config.steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for step in bar:
        chosen = next(batches)
        idx = [i for i in chosen for _ in range(config.group_size)]
        attached = encoder.attach([prompts[i] for i in chosen])
        rows = [p for p in attached for _ in range(config.group_size)]
        model.eval()
        vocab.write_back(model, layout)
        answers = sample_answers(
            model, layout, vocab, rows, eos_token_ids=eos_token_ids, max_new_tokens=config.max_new_tokens,
            temperature=config.temperature, generator=generator, untrained=False,
        )
        rewards = torch.tensor([_reward(reward, i, a, vocab, stops) for i, a in zip(idx, answers)])
        advantages = rewards.view(-1, config.group_size)
        advantages = (advantages - advantages.mean(dim=1, keepdim=True)).flatten()
        rewards_per_step.append(float(rewards.mean()))
        if bool(advantages.abs().sum() > 0):
            model.train()
            logprobs = answer_logprobs(model, layout, vocab, rows, answers)
            tokens = sum(len(a) for a in answers)
            loss = -sum(adv * lp.sum() for adv, lp in zip(advantages.tolist(), logprobs)) / tokens
            _step(optimizer, params, loss, config.lr_at(step), config.clip)
        if step % 5 == 0 or step == config.steps - 1:
            recent = rewards_per_step[-20:]
            bar.set_postfix(reward=f"{sum(recent) / len(recent):.3f}")
    model.eval()
    vocab.write_back(model, layout)
    return rewards_per_step


def _reward(reward: Reward, index: int, answer: list[int], vocab: VocabSlice, stops: set[int]) -> float:
    tokens = vocab.token_ids(answer)
    return float(reward(index, [t for t in tokens if t not in stops]))
