"""The paper's protocol, as the authors' public code runs it: the one place its settings live.

"The paper's settings" means what github.com/xirui-li/Frankenstein runs (`scripts/`, `utils/`,
`runs/*.sh`), except for its bugs, which the project fixes and lists, with every other remaining
difference and its measured effect, in docs/METHOD.md section 6. Everything here is data read by
the `*_paper` lmms-eval tasks, by `frankenstein run` with `protocol: paper` (the example configs)
and by the `frankenstein` model; no other file spells these strings or numbers (the `*_paper` task
YAMLs repeat the budgets, which lmms-eval reads from YAML; a test pins them equal). Where each fact comes from:

    SYSTEM_PROMPTS, QUERY_PREFIX     scripts/transferability_test.py (reasoner, revisual, none for
                                     base) and scripts/localization_reasoning.py (reasoner, none)
    STYLE_RULES                      which system prompt a model gets, by its *name*: the two scripts
                                     decide differently (`StyleRule`)
    BUDGETS                          vision probe 64 new tokens (localization_vision.py); reasoning
                                     localization 2048 (the argparse default runs/localization_reasoning.sh
                                     uses; the evaluator's own default 8096 is overridden); transfer 8192
                                     (runs/run_eval_v1_*.sh)
    PAIRS_PER_TASK, PAIR_SET_NAME    the released pair set dataset/vision_functionality_dataset, the first
                                     50 lines of each task's data.jsonl
    localized model                  runs/localization_*.sh localize Base (Qwen/Qwen2.5-VL-7B-Instruct): the
                                     example configs' vision_swap and reasoning roles
    IMAGE_CAP                        transfer images capped at 1280x720 pixels (aspect kept, LANCZOS),
                                     upscaled to 28 px per side if smaller; the black image is made at
                                     the original size and capped the same way
    MathVista prompt                 `mathvista_question`, `transfer_user_text`: the question field (not
                                     the dataset's `query`), "\\n\\nChoices:\\n" and "A. option" lines
                                     (labels A-H), after QUERY_PREFIX; the described condition lays out
                                     "Image Description:" / "Question:" its own way
    DESCRIBER, JUDGE                 GPTHelper of transferability_test.py: gpt-4o-mini (the endpoint's
                                     default model, FRANKENSTEIN_LLM_MODEL), its system and
                                     user prompts, max_completion_tokens 2000 / 1000, no temperature
                                     (the server's default); the judge grades the *extracted* answer and
                                     replies in JSON (`parse_judge_reply`)

The authors' per-layer weight aggregates are analysis code, not task data: `analysis/delta/authors.py`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from frankenstein_tasks.llm_endpoint import DescriberRecipe, JudgeRecipe
from surgery.errors import FrankensteinError

# ------------------------------------------------------------------------------------------ prompts

INSTRUCTION = 'Please solve the problem step by step and put your answer in one "\\boxed{}".'
QUERY_PREFIX = INSTRUCTION + "\n\n"  # the authors' QUERY_PROMPT_PREFIX, put before every question

SYSTEM_PROMPTS: dict[str, str | None] = {
    "base": None,  # no system message: the chat template's own default ("You are a helpful assistant.")
    "reasoner": (
        "You are a helpful assistant. When the user asks a question, your response must include two parts: "
        "first, the reasoning process enclosed in <think>...</think> tags, then the final answer enclosed in "
        "<answer>...</answer> tags. Please provide a clear, concise response within <answer> </answer> tags "
        "that directly addresses the question."
    ),
    "revisual": (
        "You FIRST think about the reasoning process as an internal monologue and then provide the final "
        "answer. The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST "
        "BE put in \\boxed{}."
    ),
}


def reasoning_user_text(problem: str) -> str:
    """The user turn of a reasoning or MATH-500 item: QUERY_PREFIX + the problem, as stored (not stripped)."""
    return QUERY_PREFIX + problem


# --------------------------------------------------------------------------------------- style rule


class StyleRule(BaseModel):
    """Which prompt style a model gets from its name, as one of the authors' scripts decides it.

    `steps` are checked in order: the first whose patterns occur in the lower-cased name gives the
    style (a step's `unless` pattern, when also present, gives `unless_style` instead); no match gives
    `default`. The authors' scripts first send names with API-model patterns (gpt-4, o1, claude-3, ...)
    to the OpenAI / Anthropic APIs; the project runs checkpoints only, so those steps are left out.
    """

    model_config = ConfigDict(frozen=True)

    script: str
    steps: tuple[tuple[tuple[str, ...], str], ...]
    unless: str | None = None
    unless_style: str = "base"
    default: str

    def style(self, name: str) -> str:
        lowered = name.lower()
        for patterns, style in self.steps:
            if any(p in lowered for p in patterns):
                if self.unless and style == "reasoner" and self.unless in lowered:
                    return self.unless_style
                return style
        return self.default


_REASONING_PATTERNS = ("openmmreasoner", "coldstart", "rl")
_BASE_PATTERNS = ("qwen2.5-vl-7b-instruct", "qwen/qwen2.5-vl")

STYLE_RULES: dict[str, StyleRule] = {
    # scripts/localization_reasoning.py `detect_model_type`: no Revisual style at all.
    "reasoning": StyleRule(
        script="scripts/localization_reasoning.py",
        steps=((_REASONING_PATTERNS, "reasoner"), (_BASE_PATTERNS, "base")),
        default="reasoner",
    ),
    # scripts/transferability_test.py `detect_model_type` (splices are named "X early 1/3 layers + ...").
    "transfer": StyleRule(
        script="scripts/transferability_test.py",
        steps=(
            (("revisual-r1", "revisual_r1"), "revisual"),
            ((*_REASONING_PATTERNS, "coldstart early", "rl early", "coldstart late", "rl late", "mmr1"), "reasoner"),
            ((*_BASE_PATTERNS, "replaced by"), "base"),
        ),
        unless="replaced by",
        default="reasoner",
    ),
}

# How the authors name a splice in runs/run_eval_v1_*.sh: the aliases their script resolves to IN
# ("SFT", "ColdStart", "Coldstart") and RL ("RL", "final"), early/mid/late by thirds.
SPLICE_NAMES = {
    "early": "{rl} early 1/3 layers + {in_} late 2/3 layers",
    "mid": "{in_} early 1/3 + {rl} middle 1/3 + {in_} late 1/3 layers",
    "late": "{in_} early 2/3 layers + {rl} late 1/3 layers",
    "early_mid": "{rl} early 2/3 layers + {in_} late 1/3 layers",
    "mid_late": "{in_} early 1/3 layers + {rl} late 2/3 layers",
    "early_late": "{rl} early 1/3 + {in_} middle 1/3 + {rl} late 1/3 layers",
}
# The aliases of the three recipes' run scripts (IN alias, RL alias), by IN checkpoint id.
SPLICE_ALIASES = {
    "openmmreasoner/openmmreasoner-coldstart": ("ColdStart", "RL"),
    "csfufu/revisual-r1-coldstart": ("Coldstart", "final"),
    "mmr1/mmr1-7b-sft": ("SFT", "RL"),
}
DEFAULT_ALIASES = ("SFT", "RL")  # the aliases the script resolves for any recipe


def authors_model_name(member: str, models: dict[str, str]) -> str:
    """The name the authors' script would get for a run member: a checkpoint id, or a splice's name.

    `member` is a role ("base", "in", "rl") or a splice variant; `models` maps roles to checkpoints.
    """
    if member in models:
        return str(models[member])
    if member not in SPLICE_NAMES:
        raise FrankensteinError(f"no authors' name for {member!r}: not a role or a splice variant")
    in_alias, rl_alias = SPLICE_ALIASES.get(str(models["in"]).lower(), DEFAULT_ALIASES)
    return SPLICE_NAMES[member].format(in_=in_alias, rl=rl_alias)


def paper_style(rule: str, member: str, models: dict[str, str]) -> tuple[str, str]:
    """(style, why) of a run member under the authors' rule `rule` ("reasoning" or "transfer")."""
    name = authors_model_name(member, models)
    style = STYLE_RULES[rule].style(name)
    return style, f"the authors' rule ({STYLE_RULES[rule].script}) gives {style} for {name!r}"


# ------------------------------------------------------------------------------------ budgets, sets

BUDGETS: dict[str, int] = {"vision_swap": 64, "reasoning": 2048, "transfer": 8192}
PAIRS_PER_TASK = 50  # the first lines of each task's data.jsonl
PAIR_SET_NAME = "vision_functionality_dataset"  # dataset/vision_functionality_dataset in their repository
SUBSET = (100, 123)  # items per task, seed (their --sample_size, --sample_seed)




def answers_differ(first: str, second: str) -> bool:
    """The authors' change test (localization_vision.py `answers_are_different`): both answers
    lower-cased, stripped and without trailing ".,!?;:"; under 20 characters each they differ when not
    equal, longer ones count as the same when one contains the other."""
    a, b = (x.lower().strip().rstrip(".,!?;:") for x in (first, second))
    if len(a) < 20 and len(b) < 20:
        return a != b
    return not (a in b or b in a)


# -------------------------------------------------------------------------------------- image cap


class ImageCap(BaseModel):
    """The authors' `resize_image_if_needed`: at least `min_side` px per side, at most `max_pixels`."""

    model_config = ConfigDict(frozen=True)

    max_pixels: int = 1280 * 720
    min_side: int = 28

    def _upscaled(self, width: int, height: int) -> tuple[int, int]:
        if width < self.min_side or height < self.min_side:
            scale = max(self.min_side / width, self.min_side / height)
            return int(width * scale), int(height * scale)
        return width, height

    def _capped(self, width: int, height: int) -> tuple[int, int]:
        if width * height <= self.max_pixels:
            return width, height
        scale = (self.max_pixels / (width * height)) ** 0.5
        return int(width * scale), int(height * scale)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) an image of this size is shown at."""
        return self._capped(*self._upscaled(width, height))

    def apply(self, image: Any) -> Any:
        """The image as shown: resized with LANCZOS in the authors' two steps (upscale, then cap)."""
        from PIL import Image

        for step in (self._upscaled, self._capped):
            size = step(*image.size)
            if size != image.size:
                image = image.resize(size, Image.LANCZOS)
        return image

    def black(self, image: Any) -> Any:
        """The black image of condition B: black at the original size, then capped like the image."""
        from PIL import Image

        return self.apply(Image.new("RGB", image.size, (0, 0, 0)))


IMAGE_CAP = ImageCap()


# ------------------------------------------------------------------------------ MathVista prompts

CHOICE_LABELS = "ABCDEFGH"  # options past H are not shown (none in MathVista testmini has more)


def mathvista_question(question: str, question_type: str | None, choices: Sequence[str] | None) -> str:
    """MathVista's `question` field, with "Choices:" and "A. option" lines for a multiple-choice item."""
    if question_type == "multi_choice" and choices:
        lines = [f"{label}. {choice}" for label, choice in zip(CHOICE_LABELS, choices)]
        return question + "\n\nChoices:\n" + "\n".join(lines)
    return question


def transfer_user_text(question: str, description: str | None = None) -> str:
    """The user turn of a transfer item: QUERY_PREFIX and the question, or the described layout."""
    if description is None:
        return QUERY_PREFIX + question
    return f"{QUERY_PREFIX}Image Description:\n{description}\n\nQuestion:\n{question}"


# ---------------------------------------------------------------------------- describer and judge

DESCRIBER_SYSTEM = """You are a precise visual analyzer for mathematical and scientific images.
Your task is to describe EXACTLY what you see - do NOT solve any problems or make inferences.

Focus on:
1. All text, numbers, labels, and symbols visible in the image
2. Geometric shapes, graphs, diagrams, or charts with their properties
3. Spatial relationships between elements
4. Colors and visual distinctions that may be meaningful
5. Any tables, axes labels, or data points

Be thorough but factual. Include ALL numbers and text you can read."""

DESCRIBER_USER = """Describe this image in detail for someone who cannot see it.
Output a structured description covering:
- Overview: What type of image is this (graph, diagram, geometry problem, etc.)
- Text Content: All readable text, numbers, labels, equations
- Visual Elements: Shapes, lines, colors, symbols
- Spatial Layout: How elements are arranged
- Key Details: Any numbers, measurements, or specific values shown

Be precise and complete. Do not solve or interpret - just describe what you see."""

JUDGE_SYSTEM = """You are a strict but fair math grader. Compare the model's answer to the ground truth.

Consider correct if:
- Numerically equivalent (e.g., 0.5 = 1/2 = 50%)
- Same meaning with different formatting (e.g., "2x+3" vs "3+2x")
- For multiple choice: letter matches or full option text matches
- Minor differences in units or notation that don't change the answer

Consider incorrect if:
- Different numerical values
- Wrong multiple choice option
- Missing or extra significant information"""

JUDGE_USER = """Question: {question}

Choices: {choices}

Ground Truth Answer: {gold}

Model's Answer: {answer}

Is the model's answer correct? Respond with JSON:
{{"is_correct": true/false, "extracted_answer": "...", "reason": "brief explanation"}}"""


def judge_user_text(*, question: str, choices: Sequence[str] | None, gold: str, answer: str) -> str:
    """The judge's user turn: the (formatted) question, the choices as JSON, the gold and the extracted answer."""
    listed = json.dumps(list(choices)) if choices else "N/A (free-form)"
    return JUDGE_USER.format(question=question, choices=listed, gold=gold, answer=answer)


def _render_judge(*, question: str, gold: str, output: str, choices: Sequence[str] | None = None) -> str:
    return judge_user_text(question=question, choices=choices, gold=gold, answer=output)


def parse_judge_reply(reply: str) -> bool | None:
    """The verdict of a JSON judge reply (code fences allowed), or None when it holds no JSON verdict.

    The authors then fall back to `"true" in reply.lower()[:100]` and take `bool(is_correct)`, which
    counts the string "false" as true; the project reads only a JSON boolean or "true"/"false" text,
    and a reply without a verdict counts as incorrect (logged), as for the project's own judge.
    """
    text = reply.strip()
    fence = re.fullmatch(r"```[^\n]*\n(.*?)\n?```", text, re.DOTALL)
    if fence:
        text = fence.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    value = data.get("is_correct") if isinstance(data, dict) else None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


DESCRIBER = DescriberRecipe(
    name="paper", system=DESCRIBER_SYSTEM, user=DESCRIBER_USER, image_first=True, rgb=True,
    temperature=None, max_completion_tokens=2000,
)
# `output` is the extracted answer (the task hands it over): their judge never sees the whole output.
JUDGE = JudgeRecipe(
    name="paper", version=1, system=JUDGE_SYSTEM, render=_render_judge, parse=parse_judge_reply,
    temperature=None, max_completion_tokens=1000,
)

Protocol = Literal["project", "paper"]  # what a run config's `protocol:` names
