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
Revisual-R1 pair gets revisual). A local folder has no id of its own, so its id is read from what the
checkpoint says about itself (`CHECKPOINT_ID_SOURCES`: a Hugging Face cache path, config.json's
`_name_or_path`, the model card's front matter, a mergekit_config.yml's models); when nothing there
names a known checkpoint, the base style is used and the reason says so, naming what was read. The authors decide by name instead, differently in their two scripts
(`paper_protocol.STYLE_RULES`); `frankenstein run` with `protocol: paper` applies their rule.

The system prompts are the authors' exact strings (`paper_protocol.SYSTEM_PROMPTS`, from their
scripts); pass `system_prompt=` to a model to use another.

Tasks build the user text with `user_text(style, problem)` (ordinary lmms-eval models get it through
`lmms_eval_specific_kwargs`); the `frankenstein` models add the system prompt of `prompt_style=`,
whose default comes from the checkpoint id (`style_for_checkpoint`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

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
# The owner is optional: a local copy is usually kept under the repository's name alone.
_KNOWN_CHECKPOINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(OpenMMReasoner/)?OpenMMReasoner-(ColdStart|RL)$", re.I), "reasoner"),
    (re.compile(r"^(MMR1/)?MMR1-7B-(SFT|RL)$", re.I), "reasoner"),
    (re.compile(r"^(csfufu/)?Revisual-R1-(Coldstart|final)$", re.I), "revisual"),
    (re.compile(r"^(Qwen/)?Qwen2(\.5)?-VL-\d+B-Instruct$", re.I), "base"),
)


def prompt_style(name: str) -> PromptStyle:
    """The style called `name`, or a one-line error listing the styles."""
    if name not in PROMPT_STYLES:
        raise FrankensteinError(f"unknown prompt_style {name!r}; styles are {', '.join(PROMPT_STYLES)}")
    return PROMPT_STYLES[name]


def style_for_checkpoint(checkpoint: str | None) -> tuple[PromptStyle, str]:
    """The default style of a checkpoint id or local folder, and why (for the one log line a run prints)."""
    if checkpoint and Path(checkpoint).is_dir():
        for where, named in _ids_in_metadata(Path(checkpoint)):
            if name := _known_style(named):
                return PROMPT_STYLES[name], f"{checkpoint}: {where} names {named}, a known {name}-style checkpoint"
        if name := _known_style(Path(checkpoint).resolve().name):
            return PROMPT_STYLES[name], f"{checkpoint}: its metadata names no checkpoint, its folder name is a known {name}-style one"
        read = ", ".join(where for where, _ in CHECKPOINT_ID_SOURCES)
        return PROMPT_STYLES["base"], (f"{checkpoint} is a local folder, and neither its metadata ({read}) nor "
                                       "its name is a known checkpoint: using the base style (prompt_style= chooses another)")
    if checkpoint and (name := _known_style(str(checkpoint))):
        return PROMPT_STYLES[name], f"{checkpoint} is a known {name}-style checkpoint"
    return PROMPT_STYLES["base"], f"{checkpoint} is not a known checkpoint id: using the base style"


def _known_style(name: str) -> str | None:
    """The style of a known id, tried on the whole name and on its last one and two path components
    (a copy of `owner/name` kept at `/data/owner/name`, or a training run's `/ckpt/name`, still names it)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    for candidate in dict.fromkeys([name, "/".join(parts[-2:]), *parts[-1:]]):
        for pattern, style in _KNOWN_CHECKPOINTS:
            if pattern.match(candidate):
                return style
    return None


def _hub_cache_id(folder: Path) -> Iterator[str]:
    """`.../models--Owner--Name/snapshots/<commit>`: the folder Hugging Face downloads a hub id into."""
    for part in reversed(folder.resolve().parts):
        if part.startswith("models--"):
            yield part.removeprefix("models--").replace("--", "/", 1)
            return


def _config_name_or_path(folder: Path) -> Iterator[str]:
    """config.json's `_name_or_path`: where the training run loaded the weights from, or saved them as."""
    try:
        value = json.loads((folder / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(value, str) and value:
        yield value


def _model_card_names(folder: Path) -> Iterator[str]:
    """The model card's own names in its YAML front matter (`model_name`, `model-index[].name`); not
    `base_model`, which names the parent (a cold-start checkpoint's parent is the base-style Instruct)."""
    import yaml

    try:
        text = (folder / "README.md").read_text()
    except OSError:
        return
    match = re.match(r"---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    try:
        front = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError:
        return
    if not isinstance(front, dict):
        return
    if isinstance(front.get("model_name"), str):
        yield front["model_name"]
    for entry in front.get("model-index") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            yield entry["name"]


def _mergekit_models(folder: Path) -> Iterator[str]:
    """The models a mergekit_config.yml merged, when they share one known style (a splice of one
    recipe's IN and RL); a merge of checkpoints of different styles decides nothing."""
    import yaml

    try:
        config = yaml.safe_load((folder / "mergekit_config.yml").read_text())
    except (OSError, yaml.YAMLError):
        return

    def models(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("model", "base_model") and isinstance(value, str):
                    yield value
                else:
                    yield from models(value)
        elif isinstance(node, list):
            for item in node:
                yield from models(item)

    named = [_named_id(m) for m in dict.fromkeys(models(config))]
    if named and len({_known_style(n) for n in named}) == 1:
        yield named[0]


def _named_id(model: str) -> str:
    """A model as a mergekit config names it: a hub id, or a local folder whose own metadata may name one."""
    if Path(model).is_dir():
        return next((n for reader in (_hub_cache_id, _config_name_or_path, _model_card_names)
                     for n in reader(Path(model)) if _known_style(n)), model)
    return model


# Where a local checkpoint says which hub id it is, asked in this order: (what is read, its reader).
CHECKPOINT_ID_SOURCES: tuple[tuple[str, Callable[[Path], Iterator[str]]], ...] = (
    ("its Hugging Face cache path", _hub_cache_id),
    ("config.json _name_or_path", _config_name_or_path),
    ("README.md front matter", _model_card_names),
    ("mergekit_config.yml", _mergekit_models),
)


def _ids_in_metadata(folder: Path) -> Iterator[tuple[str, str]]:
    for where, read in CHECKPOINT_ID_SOURCES:
        for named in read(folder):
            yield where, named


def user_text(style: str, problem: str) -> str:
    return prompt_style(style).user_text(problem)
