"""Prompt styles of the reasoning benchmarks (METHOD.md 1b): one table, read by tasks and models.

A style is what a checkpoint was trained to see: the user text around a problem and the system
prompt. (The decoding budget is the task's: the reasoning and transfer YAMLs set 2048 new tokens,
the `*_paper` transfer tasks the authors' 8192.)
All three styles share the method's user text

    Please solve the problem step by step and put your answer in one "\\boxed{}".
    <blank line>
    <problem>

and differ in the system prompt:

    base      none (the chat template's own default; what Qwen2.5-VL-Instruct was trained with)
    reasoner  reason inside <think>...</think>, then the answer inside <answer>...</answer>
              (the IN / RL checkpoints of OpenMMReasoner and MMR1)
    revisual  reason inside <think>...</think>, then the answer in \\boxed{} (Revisual-R1)

The default style of a checkpoint is the project's table of known ids (`style_for_checkpoint`: the
Revisual-R1 pair gets revisual). The authors decide by name instead, differently in their two scripts
(`paper_protocol.STYLE_RULES`); `frankenstein run` with `protocol: paper` applies their rule.

The system prompts are the authors' exact strings (`paper_protocol.SYSTEM_PROMPTS`, from their
scripts); pass `system_prompt=` to a model to use another.

Tasks build the user text with `user_text(style, problem)` (ordinary lmms-eval models get it through
`lmms_eval_specific_kwargs`); the `frankenstein` models add the system prompt of `prompt_style=`,
whose default comes from the checkpoint id (`style_for_checkpoint`).
"""

from __future__ import annotations

import logging
import re

from pydantic import BaseModel, ConfigDict

from frankenstein_tasks.paper_protocol import INSTRUCTION, SYSTEM_PROMPTS
from surgery.errors import FrankensteinError

log = logging.getLogger(__name__)


class PromptStyle(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    system_prompt: str | None  # None: no system message (the chat template's default applies)
    user_template: str = INSTRUCTION + "\n\n{problem}"  # "{problem}" is replaced (no str.format: "\boxed{}")

    def user_text(self, problem: str) -> str:
        return self.user_template.replace("{problem}", problem.strip())


PROMPT_STYLES: dict[str, PromptStyle] = {
    name: PromptStyle(name=name, system_prompt=system_prompt) for name, system_prompt in SYSTEM_PROMPTS.items()
}

# Checkpoint ids whose style is known (METHOD.md 0): the seed recipes' IN and RL, and the Base models.
_KNOWN_CHECKPOINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^OpenMMReasoner/OpenMMReasoner-(ColdStart|RL)$", re.I), "reasoner"),
    (re.compile(r"^MMR1/MMR1-7B-(SFT|RL)$", re.I), "reasoner"),
    (re.compile(r"^csfufu/Revisual-R1-(Coldstart|final)$", re.I), "revisual"),
    (re.compile(r"^Qwen/Qwen2(\.5)?-VL-\d+B-Instruct$", re.I), "base"),
)


def prompt_style(name: str) -> PromptStyle:
    """The style called `name`, or a one-line error listing the styles."""
    if name not in PROMPT_STYLES:
        raise FrankensteinError(f"unknown prompt_style {name!r}; styles are {', '.join(PROMPT_STYLES)}")
    return PROMPT_STYLES[name]


def style_for_checkpoint(checkpoint: str | None) -> tuple[PromptStyle, str]:
    """The default style of a checkpoint id, and why (for the one log line a run prints)."""
    for pattern, name in _KNOWN_CHECKPOINTS:
        if checkpoint and pattern.match(str(checkpoint)):
            return PROMPT_STYLES[name], f"{checkpoint} is a known {name}-style checkpoint"
    return PROMPT_STYLES["base"], f"{checkpoint} is not a known checkpoint id: using the base style"


def user_text(style: str, problem: str) -> str:
    return prompt_style(style).user_text(problem)
