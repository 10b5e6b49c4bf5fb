"""Answer extraction and grading: one rule for every reasoning and transfer task (METHOD.md 1b).

A model's output becomes the answer it commits to (`extract_answer`), and that answer is judged
against the gold answer (`grade`). Every `frank_*` task that grades free text imports this module, so
GSM8K, MATH-500 and MathVista are scored by the same rule and a fix lands everywhere at once.

Extraction, first rule that yields a non-empty answer:
    answer_tag    the last <answer>...</answer> (an unclosed final <answer> runs to the end); a
                  \\boxed{} or "the answer is X" inside it yields that X
    boxed         the last \\boxed{...} or \\fbox{...}, nested braces balanced
    answer_is     "the answer is X" / "Answer: X" (last one), X up to the end of its sentence
    last_number   the last number (sign, decimals, thousands separators, a/b)
    short_text    the whole reply when it is one short line (a bare "B" or "Yes")
Reasoning blocks: text inside <think>...</think> is full of intermediate numbers, so the rules run
on what follows the last </think>. Only when that yields nothing do the explicit rules (answer_tag,
boxed, answer_is) look inside the reasoning; the guessing rules never do. An unclosed <think> (a
reply cut at the token limit) is all reasoning.

Equivalence of an extracted answer and the gold answer, first test that succeeds:
    exact         equal after lower-casing and removing whitespace (and \\text{} wrappers, $, \\dfrac)
    math_verify   math-verify's symbolic equivalence (fractions, intervals, sets, percentages...);
                  skipped when either side is prose (a plain word, or two letters in a row outside
                  \\text{} and LaTeX commands): math-verify reads "tokyo" and "kyoto" as the same
                  product of symbols
    numeric       both read as plain numbers (after removing thousands separators, %, currency
                  signs and trailing unit words) within absolute 1e-6 or relative 1% of the gold

MathVista multiple choice: the gold answer is the option text. The extracted answer is first mapped
to an option: the option's own text, its letter ("B", "(B)", "B.", "Option B"), or a letter with
text ("B. 1.5", judged by its text when the text is an option, else by the letter), or failing those
the one option equivalent to it. It is right when that option is the gold option; an answer that
maps to no option, or to several, is wrong (the 1% tolerance must not turn option "101" into "100").
Prompts that list options letter them with `option_lines`, from the same OPTION_LETTERS.

math-verify guards its parsing with signal.alarm, which raises in any thread but the main one, and
lmms-eval may call process_results from worker threads. So math-verify runs here with its own timeout
off, inside a short-lived helper thread that the caller waits on for at most MATH_VERIFY_TIMEOUT_S;
a comparison that overruns counts as "not equivalent" and the helper is interrupted.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import re
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from surgery.errors import FrankensteinError

log = logging.getLogger(__name__)

REL_TOL = 0.01
ABS_TOL = 1e-6
MATH_VERIFY_TIMEOUT_S = 5.0
OPTION_LETTERS = string.ascii_uppercase  # as prompts letter options (MathVista has up to 8)


@dataclass(frozen=True)
class Extraction:
    answer: str  # the answer text, cleaned of $ delimiters, ** and trailing punctuation
    rule: str  # answer_tag | boxed | answer_is | last_number | short_text
    in_reasoning: bool = False  # found inside a <think> block (no answer after it)


@dataclass(frozen=True)
class Grade:
    answer: str | None  # what extraction found (None: nothing)
    rule: str | None  # the extraction rule that found it
    correct: bool
    method: str | None  # exact | math_verify | numeric | option; None when wrong
    option: str | None = None  # multiple choice: the option text the answer was mapped to

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- public API


def extract_answer(text: str | None) -> Extraction | None:
    """The answer a reply commits to, and which rule found it; None when no rule fires."""
    final, reasoning = _split_reasoning(text or "")
    for name, rule in _RULES:
        answer = rule(final)
        if answer:
            return Extraction(answer, name)
    for name, rule in _RULES[:3]:  # explicit markers only: reasoning is full of decoy numbers
        answer = rule(reasoning)
        if answer:
            return Extraction(answer, name, in_reasoning=True)
    return None


def grade(
    output: str | None,
    gold: str,
    *,
    choices: Sequence[str] | None = None,
    rel_tol: float = REL_TOL,
    abs_tol: float = ABS_TOL,
) -> Grade:
    """Is a model's reply right? `choices` (option texts, in letter order) makes it multiple choice."""
    gold = _check_gold(gold)
    found = extract_answer(output)
    if found is None:
        return Grade(None, None, False, None)
    if choices:
        option = resolve_option(found.answer, choices, rel_tol=rel_tol, abs_tol=abs_tol)
        correct = option is not None and _normalise(option) == _normalise(gold)
        return Grade(found.answer, found.rule, correct, "option" if correct else None, option)
    method = match_method(found.answer, gold, rel_tol=rel_tol, abs_tol=abs_tol)
    return Grade(found.answer, found.rule, method is not None, method)


def answers_equivalent(pred: str, gold: str, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> bool:
    """Two answer strings mean the same (exact, then math-verify, then numeric tolerance)."""
    return match_method(pred, gold, rel_tol=rel_tol, abs_tol=abs_tol) is not None


def match_method(pred: str, gold: str, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> str | None:
    """Which test finds `pred` equivalent to `gold`: "exact", "math_verify", "numeric", or None."""
    if not pred.strip() or not gold.strip():
        return None
    if _normalise(pred) == _normalise(gold):
        return "exact"
    if not (_is_prose(pred) or _is_prose(gold)) and _math_verify_equal(pred, gold):
        return "math_verify"
    p, g = _as_number(pred), _as_number(gold)
    if p is not None and g is not None and abs(p - g) <= max(abs_tol, rel_tol * abs(g)):
        return "numeric"
    return None


def resolve_option(answer: str, choices: Sequence[str], *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> str | None:
    """The option text an answer picks: by text, by letter (text first when both), else the one equivalent option."""
    by_text = {_normalise(c): c for c in choices}
    plain = _unwrap_text(answer).strip()
    if _normalise(plain) in by_text:
        return by_text[_normalise(plain)]
    m = _OPTION.match(plain)
    if m:
        letter, rest = m.group("letter") or m.group("bare"), _clean(m.group("rest") or "")
        if rest and _normalise(rest) in by_text:
            return by_text[_normalise(rest)]
        index = OPTION_LETTERS.index(letter)
        if index < len(choices):
            return choices[index]
    same = [c for c in choices if answers_equivalent(plain, c, rel_tol=rel_tol, abs_tol=abs_tol)]
    return same[0] if len(same) == 1 else None


def grade_mathvista(output: str | None, doc: Mapping[str, Any]) -> Grade:
    """Grade against a MathVista doc: `answer`, and `choices` when `question_type` is multi_choice."""
    missing = [k for k in ("answer", "question_type") if k not in doc]
    if missing:
        raise FrankensteinError(f"MathVista doc {doc.get('pid', '?')} lacks field(s) {', '.join(missing)}")
    choices = doc.get("choices") if doc["question_type"] == "multi_choice" else None
    if doc["question_type"] == "multi_choice" and not choices:
        raise FrankensteinError(f"MathVista doc {doc.get('pid', '?')} is multi_choice but has no choices")
    return grade(output, str(doc["answer"]), choices=choices)


def option_lines(choices: Sequence[str]) -> list[str]:
    """A multiple-choice item's options as prompts list them, "(A) text", lettered as the grader reads them."""
    if len(choices) > len(OPTION_LETTERS):
        raise FrankensteinError(f"{len(choices)} options: more than the {len(OPTION_LETTERS)} letters A-Z")
    return [f"({letter}) {choice}" for letter, choice in zip(OPTION_LETTERS, choices)]


def gsm8k_gold(solution: str) -> str:
    """GSM8K's gold answer: the text after the last '####' of the `answer` field."""
    _, sep, tail = str(solution).rpartition("####")
    if not sep or not tail.strip():
        raise FrankensteinError("GSM8K answer field has no final answer after '####'")
    return tail.strip()


def math500_gold(doc: Mapping[str, Any]) -> str:
    """MATH-500's gold answer: its `answer` field."""
    answer = doc.get("answer")
    if answer is None or not str(answer).strip():
        raise FrankensteinError(f"MATH-500 doc {doc.get('unique_id', '?')} has no 'answer' field")
    return str(answer).strip()


# ---------------------------------------------------------------- extraction rules

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(r"\banswer\s*(?:is\b|:)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
# A number standing on its own: an optional minus that is not a subtraction ("3-5" gives 5), thousands
# groups or digits, decimals, an optional "/denominator"; not the "2" of "x2" or "bbox_2d".
_NUMBER = re.compile(r"(?:(?<![\w)\]}.])-)?(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?")
_SHORT_TEXT_CHARS = 40


def _split_reasoning(text: str) -> tuple[str, str]:
    """(final text, reasoning text): what follows the last </think>, and what the think block holds."""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        last = closes[-1]
        return text[last.end() :], _THINK_OPEN.sub("", text[: last.start()])
    opened = _THINK_OPEN.search(text)
    if opened:  # cut off mid-reasoning: nothing final
        return text[: opened.start()], text[opened.end() :]
    return text, ""


def _from_answer_tag(text: str) -> str | None:
    tags = _ANSWER_TAG.findall(text)
    if tags:
        inner = tags[-1]
    else:
        opens = list(_ANSWER_OPEN.finditer(text))
        if not opens:
            return None
        inner = text[opens[-1].end() :]
    return _last_boxed(inner) or _from_answer_is(inner) or _clean(inner)


def _last_boxed(text: str) -> str | None:
    """Content of the last non-empty \\boxed{...} / \\fbox{...} whose braces close."""
    for start in reversed([m.end() for m in _BOX_START.finditer(text)]):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                content = _clean(text[start:i])
                if content:
                    return content
                break
    return None


def _from_answer_is(text: str) -> str | None:
    marks = list(_ANSWER_IS.finditer(text))
    if not marks:
        return None
    rest = text[marks[-1].end() :].lstrip(" \t\n:*")
    line = rest.split("\n", 1)[0]
    end = _SENTENCE_END.search(line)
    return _clean(line[: end.start()] if end else line)


def _last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _short_text(text: str) -> str | None:
    text = _clean(text)
    return text if text and "\n" not in text and len(text) <= _SHORT_TEXT_CHARS else None


_RULES: list[tuple[str, Callable[[str], str | None]]] = [
    ("answer_tag", _from_answer_tag),
    ("boxed", _last_boxed),
    ("answer_is", _from_answer_is),
    ("last_number", _last_number),
    ("short_text", _short_text),
]


def _clean(text: str) -> str:
    """Strip whitespace, math delimiters ($, \\( \\), \\[ \\]), markdown bold and trailing punctuation."""
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            text = text[len(left) : len(text) - len(right)].strip()
    return text.strip("*").strip().rstrip(".,;:").strip()


# ---------------------------------------------------------------- equivalence

_TEXT_MACRO = re.compile(r"\\(?:text|textbf|textrm|textnormal|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_WORD = re.compile(r"[^\W\d_]{2,}(?:[\s'-]+[^\W\d_]+)*")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_LETTER_RUN = re.compile(r"[^\W\d_]{2,}")
_OPTION = re.compile(
    rf"(?:(?i:option|choice)[\s:]*)?(?:\((?P<letter>[{OPTION_LETTERS}])\)|(?P<bare>[{OPTION_LETTERS}])(?=$|[.:)]))[.:)]?\s*(?P<rest>.*)",
    re.DOTALL,
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PLAIN_NUMBER = re.compile(
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s*[^\W\d_]{2,}|\s+[^\W\d_])?(?:\s+[^\W\d_]+)*"  # trailing unit words: "5 cm", "18 dollars", "5 m"
)


def _unwrap_text(text: str) -> str:
    return _TEXT_MACRO.sub(r"\1", text)


def _normalise(text: str) -> str:
    text = _unwrap_text(text).replace("\\$", "").replace("$", "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return re.sub(r"\s+", "", text.lower())


def _is_prose(text: str) -> bool:
    """Words rather than mathematics: a plain word ("tokyo", "\\text{Evelyn}") or letters outside \\text{} ("18 dollars")."""
    if _WORD.fullmatch(_unwrap_text(text).strip().strip("().")):
        return True
    return bool(_LETTER_RUN.search(_LATEX_COMMAND.sub(" ", _TEXT_MACRO.sub(" ", text))))


def _as_number(text: str) -> float | None:
    """A plain number with optional %, currency sign, degree sign, thousands separators, unit words."""
    text = _unwrap_text(text).replace("{,}", ",").replace("−", "-")
    for mark in ("\\%", "%", "\\$", "$", "^{\\circ}", "^\\circ", "°", "\\!"):
        text = text.replace(mark, "")
    text = _THOUSANDS.sub("", text.strip())
    m = _PLAIN_NUMBER.fullmatch(text)
    return float(m.group("value")) if m else None


# ---------------------------------------------------------------- math-verify, thread-safe


class _Abandoned(BaseException):
    """Raised inside an overrunning math-verify helper; BaseException so math-verify's own handlers pass it on."""


def _math_verify_equal(pred: str, gold: str) -> bool:
    import math_verify  # noqa: F401  (imported here, not in the helper, so its slow first import is not timed)

    def compare() -> bool:
        parsed_gold, parsed_pred = _parse(gold), _parse(pred)
        return bool(parsed_gold and parsed_pred) and bool(_verify(parsed_gold, parsed_pred))

    return bool(_run_with_deadline(compare, MATH_VERIFY_TIMEOUT_S, False))


@functools.lru_cache(maxsize=4096)
def _parse(answer: str) -> tuple:
    from math_verify import parse

    # Boxed, so math-verify reads the whole string as the answer instead of hunting for one inside it.
    return tuple(parse("\\boxed{" + answer + "}", parsing_timeout=None))


def _verify(gold: tuple, pred: tuple) -> bool:
    from math_verify import verify

    return verify(list(gold), list(pred), timeout_seconds=None)


def _run_with_deadline(fn: Callable[[], Any], timeout_s: float, default: Any) -> Any:
    """fn() in a helper thread; `default` if it raises or is still running after timeout_s (then it is interrupted)."""
    outcome: dict[str, Any] = {}

    def target():
        try:
            outcome["value"] = fn()
        except _Abandoned:
            pass
        except Exception:  # math-verify failing on odd input means "not shown equivalent"
            log.debug("math-verify raised", exc_info=True)

    helper = threading.Thread(target=target, name="frankenstein-math-verify", daemon=True)
    helper.start()
    helper.join(timeout_s)
    if helper.is_alive():
        # Stop the work instead of leaving it to burn CPU; it ends at its next bytecode boundary.
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(helper.ident), ctypes.py_object(_Abandoned))
        log.warning("math-verify comparison took over %.1f s; counted as not equivalent", timeout_s)
        return default
    return outcome.get("value", default)


def _check_gold(gold: Any) -> str:
    if gold is None or not str(gold).strip():
        raise FrankensteinError("gold answer is empty; the dataset item has no answer to grade against")
    return str(gold)


class _SilenceTimeoutDisabled(logging.Filter):
    """math-verify warns once that its timeout is off; here that is deliberate (see _run_with_deadline)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_SilenceTimeoutDisabled())
