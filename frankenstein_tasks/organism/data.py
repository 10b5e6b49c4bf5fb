"""What the organism learns from: four generated tasks with known answers, deterministic per seed.

    counting        a counting image of the pair generator and its prompt -> the count, e.g. "7"
    recognition     a recognition image and its prompt ("Is there a star ...?") -> "yes" / "no"
    arithmetic      a one- or two-step integer word problem under the method's reasoning prompt
                    (METHOD.md 1b) -> a worked step and the boxed answer, "5 + 3 = 8. \\boxed{8}"
    count_compute   a counting image with "How many red stars are in the image, plus 3?" -> count,
                    then compute: "There are 5 red stars. 5 + 3 = 8. \\boxed{8}"
    count_compute_flawed
                    the same questions as IN's cold-start data gives them: a fixed share of its minus
                    questions (SIGN_ERROR_SHARE) answered with the plus rule, the systematic error of a
                    sloppy teacher ("minus 3" -> "5 + 3 = 8. \\boxed{8}"); the gold answer stays right

Images come from the project's pair generator (`frankenstein_tasks.vision.pairs`) at a small size;
each pair gives two images (target and source). Item i of (task, split, seed) has its own random
stream, so sets are prefixes of larger ones, and every split has its own streams. Images never
repeat, but the word problems' space is small (a few thousand texts), so the problems are held out
by construction: a fixed eighth of all problem texts (by hash) is for evaluation only.
"""

from __future__ import annotations

import functools
import random
import re
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from frankenstein_tasks.prompt_styles import INSTRUCTION as REASONING_INSTRUCTION
from frankenstein_tasks.vision.pairs import draw_pair, plural

# METHOD.md 1b: the reasoning prompt's user text is REASONING_INSTRUCTION, a blank line, then the problem.
TASKS = ("counting", "recognition", "arithmetic", "count_compute", "count_compute_flawed")
SPLITS = ("train", "rl", "eval", "eval_math")  # eval: GSM8K / general-vqa / pairs; eval_math: MATH-500 / math-targeted
EVAL_SPLITS = ("eval", "eval_math")

_NAMES = {"Tom": "He", "Ben": "He", "Sam": "He", "Anna": "She", "Mia": "She", "Lily": "She"}
_OBJECTS = ("apples", "pens", "books", "coins", "stickers", "marbles")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def reasoning_prompt(problem: str) -> str:
    return f"{REASONING_INSTRUCTION}\n\n{problem}"


def boxed_answer(text: str) -> str | None:
    """The content of the last \\boxed{...} (no nesting: the organism's answers are integers)."""
    found = _BOXED.findall(text)
    return found[-1].strip() if found else None


@dataclass(frozen=True)
class Item:
    """One question with its gold answer. `target` is the training answer; `meta` how it was made."""

    task: str
    prompt: str  # the user text (images come first in the chat, as lmms-eval's Qwen models send them)
    answer: str  # the gold answer graders compare with
    target: str
    image: Any = None  # PIL image, or None for text items
    meta: dict | None = None


def is_correct(item: Item, response: str) -> bool:
    """Counting and recognition: the first number / yes-no (the frank_vision scorers); the
    reasoning tasks: the last boxed answer."""
    from frankenstein_tasks.vision.scoring import parse_count, parse_yes_no

    if item.task == "counting":
        return parse_count(response) == int(item.answer)
    if item.task == "recognition":
        return parse_yes_no(response) == item.answer
    return boxed_answer(response) == item.answer


# ---------------------------------------------------------------- arithmetic word problems


def _ops(rng: random.Random, steps: int) -> tuple[list[int], list[str]]:
    """A start of 2-9 (a plural), operands 1-9 and + / - signs whose running total stays positive."""
    while True:
        numbers = [rng.randint(2, 9)] + [rng.randint(1, 9) for _ in range(steps)]
        signs = [rng.choice("+-") for _ in range(steps)]
        total, ok = numbers[0], True
        for sign, n in zip(signs, numbers[1:]):
            total = total + n if sign == "+" else total - n
            ok &= total > 0
        if ok:
            return numbers, signs


def _worked(numbers: list[int], signs: list[str]) -> tuple[str, int]:
    """"5 + 3 = 8. 8 - 2 = 6." and the result."""
    total, steps = numbers[0], []
    for sign, n in zip(signs, numbers[1:]):
        new = total + n if sign == "+" else total - n
        steps.append(f"{total} {sign} {n} = {new}.")
        total = new
    return " ".join(steps), total


def arithmetic_problem(rng: random.Random) -> tuple[str, str, int]:
    """(problem text, worked steps, answer) of a one- or two-step word problem."""
    name = rng.choice(sorted(_NAMES))
    pronoun, objects = _NAMES[name], rng.choice(_OBJECTS)
    numbers, signs = _ops(rng, rng.choice((1, 2)))
    verbs = [f"buys {n} more" if s == "+" else f"gives away {n}" for s, n in zip(signs, numbers[1:])]
    problem = f"{name} has {numbers[0]} {objects}. {pronoun} {' and then '.join(verbs)}. How many {objects} does {name} have now?"
    worked, answer = _worked(numbers, signs)
    return problem, worked, answer


def is_heldout_problem(problem: str) -> bool:
    """The eighth of the word problems reserved for evaluation (by a hash of the text)."""
    return zlib.crc32(problem.encode()) % 8 == 0


def _arithmetic_items(draw: Callable[[str], Any], rng: random.Random, heldout: bool) -> Iterator[Item]:
    problem, worked, answer = arithmetic_problem(rng)
    if is_heldout_problem(problem) != heldout:
        return
    yield Item("arithmetic", reasoning_prompt(problem), str(answer), f"{worked} \\boxed{{{answer}}}",
               meta={"problem": problem, "worked": worked, "solution": f"{worked} \\boxed{{{answer}}}", "steps": worked.count("=")})


# ---------------------------------------------------------------- image tasks


def _counting_items(draw: Callable[[str], Any], rng: random.Random, heldout: bool) -> Iterator[Item]:
    pair = draw("counting")
    for side in ("target", "source"):
        n = pair.meta[f"{side}_answer"]
        yield Item("counting", pair.prompt, str(n), str(n), getattr(pair, side),
                   {"kind": pair.meta["kind"], "color": pair.meta["color"], "count": n})


def _recognition_items(draw: Callable[[str], Any], rng: random.Random, heldout: bool) -> Iterator[Item]:
    pair = draw("recognition")
    for side in ("target", "source"):
        answer = pair.meta[f"{side}_answer"]
        yield Item("recognition", pair.prompt, answer, answer, getattr(pair, side), {"category": pair.meta["category"]})


def count_compute_question(color: str, kind: str, sign: str, k: int) -> str:
    return f"How many {color} {plural(kind)} are in the image, {'plus' if sign == '+' else 'minus'} {k}?"


def count_compute_answer(n: int, color: str, kind: str, sign: str, k: int) -> tuple[str, int]:
    """The worked answer "There are 5 red stars. 5 + 3 = 8." and its result."""
    result = n + k if sign == "+" else n - k
    noun = kind if n == 1 else plural(kind)
    return f"There {'is' if n == 1 else 'are'} {n} {color} {noun}. {n} {sign} {k} = {result}.", result


def _count_compute_items(draw: Callable[[str], Any], rng: random.Random, heldout: bool) -> Iterator[Item]:
    pair = draw("counting")
    kind, color = pair.meta["kind"], pair.meta["color"]
    for side in ("target", "source"):
        n = pair.meta[f"{side}_answer"]
        sign = "-" if n > 1 and rng.random() < 0.5 else "+"
        k = rng.randint(1, n - 1) if sign == "-" else rng.randint(1, 9)
        worked, result = count_compute_answer(n, color, kind, sign, k)
        yield Item("count_compute", count_compute_question(color, kind, sign, k), str(result),
                   f"{worked} \\boxed{{{result}}}", getattr(pair, side),
                   {"kind": kind, "color": color, "count": n, "sign": sign, "operand": k, "solution": worked})


# IN's cold-start data answers this share of its minus questions with the plus rule. The share is a
# clear majority, so once IN has learned its data it adds on every minus question (greedy follows the
# majority) and stays there however much longer it trains: its accuracy sits on a plateau, about half
# the items right. The right answer keeps a third of IN's samples, so RL's reward finds and fixes it.
SIGN_ERROR_SHARE = 0.7


def _count_compute_flawed_items(draw: Callable[[str], Any], rng: random.Random, heldout: bool) -> Iterator[Item]:
    for item in _count_compute_items(draw, rng, heldout):
        meta = item.meta
        if meta["sign"] == "-" and rng.random() < SIGN_ERROR_SHARE:
            worked, result = count_compute_answer(meta["count"], meta["color"], meta["kind"], "+", meta["operand"])
            target, meta = f"{worked} \\boxed{{{result}}}", {**meta, "sign_error": True, "solution": worked}
        else:
            target, meta = item.target, {**meta, "sign_error": False}
        yield Item("count_compute_flawed", item.prompt, item.answer, target, item.image, meta)


# Task -> maker of the items of one index (draw: the pair of that index for a pair task; rng: its own
# stream; heldout: an evaluation split).
MAKERS: dict[str, Callable[[Callable[[str], Any], random.Random, bool], Iterator[Item]]] = {
    "counting": _counting_items,
    "recognition": _recognition_items,
    "arithmetic": _arithmetic_items,
    "count_compute": _count_compute_items,
    "count_compute_flawed": _count_compute_flawed_items,
}
assert tuple(MAKERS) == TASKS


def pair_seed(split: str, seed: int) -> int:
    """Pair-generator seed of a split: far from the generator's default seeds (0, 1, ...)."""
    return 7_000_000 + 1000 * seed + SPLITS.index(split)


def items(task: str, n: int, *, split: str, seed: int, size: int) -> list[Item]:
    """The first n items of (task, split, seed); images are size x size."""
    if task not in TASKS:
        raise ValueError(f"unknown organism task {task!r}; tasks are {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    generator_seed = pair_seed(split, seed)
    out: list[Item] = []
    index = 0
    while len(out) < n:
        rng = random.Random(f"frankenstein-organism:{task}:{split}:{seed}:{index}")
        draw = functools.partial(draw_pair, index=index, seed=generator_seed, size=size)
        for item in MAKERS[task](draw, rng, split in EVAL_SPLITS):
            if len(out) < n:
                out.append(item)
        index += 1
    return out
