"""Is an answer right for an image? One scorer per task, in a registry.

    counting     the first number in the answer (digits or a word up to twenty) equals the count
    ocr          the answer's words are exactly the word (case, quotes and punctuation ignored)
    grounding    the first four numbers form a box x1,y1,x2,y2 with IoU >= the pair's threshold
    recognition  the first "yes" / "no" in the answer equals the truth

Each scorer takes the pair's meta (see `dataset.META_MODELS`) and the side whose image the answer is
judged against: "target" for accuracy, "source" for source adoption under visual-token swapping.
`normalize` (re-exported from the contract, where it is defined) is the answer normalisation of the
change rate (METHOD.md 1a).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Literal

from frankenstein_tasks.contract import normalize_answer as normalize  # noqa: F401  (re-exported)

Side = Literal["target", "source"]

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
# A number standing on its own: not the "2" of "bbox_2d" or the "1" of "x1".
_FLOAT = re.compile(r"(?<![A-Za-z_\d.])-?\d+(?:\.\d+)?(?![A-Za-z_\d])")
_NUMBER = re.compile(_FLOAT.pattern + r"|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
def parse_count(answer: str) -> int | None:
    m = _NUMBER.search(answer)
    if m is None:
        return None
    token = m.group(0).lower()
    if token in _NUMBER_WORDS:
        return _NUMBER_WORDS[token]
    value = float(token)
    return int(value) if value.is_integer() else None


def parse_box(answer: str) -> tuple[float, float, float, float] | None:
    """The first four numbers as a box, corners put in order; None without four numbers."""
    numbers = [float(x) for x in _FLOAT.findall(answer)[:4]]
    if len(numbers) < 4:
        return None
    x1, y1, x2, y2 = numbers
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def parse_yes_no(answer: str) -> str | None:
    m = _YES_NO.search(answer)
    return m.group(1).lower() if m else None


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


# ---------------------------------------------------------------- per-task scorers


def _get(meta: Any, key: str) -> Any:
    return meta[key] if isinstance(meta, dict) else getattr(meta, key)


def score_counting(answer: str, meta: Any, side: Side) -> bool:
    count = parse_count(answer)
    return count is not None and count == int(_get(meta, f"{side}_answer"))


def score_ocr(answer: str, meta: Any, side: Side) -> bool:
    truth = words_of(str(_get(meta, f"{side}_text")))
    return bool(truth) and words_of(answer) == truth


def score_grounding(answer: str, meta: Any, side: Side) -> bool:
    box = parse_box(answer)
    return box is not None and iou(box, tuple(_get(meta, f"{side}_bbox_xyxy"))) >= float(_get(meta, "iou_threshold"))


def score_recognition(answer: str, meta: Any, side: Side) -> bool:
    return parse_yes_no(answer) == str(_get(meta, f"{side}_answer")).lower()


SCORERS: dict[str, Callable[[str, Any, Side], bool]] = {
    "counting": score_counting,
    "ocr": score_ocr,
    "grounding": score_grounding,
    "recognition": score_recognition,
}

# The answer each side should give, as text (for doc_to_target and the samples log).
_TRUTH_TEXT: dict[str, Callable[[Any, Side], str]] = {
    "counting": lambda meta, side: str(int(_get(meta, f"{side}_answer"))),
    "ocr": lambda meta, side: str(_get(meta, f"{side}_text")),
    "grounding": lambda meta, side: ",".join(f"{v:g}" for v in _get(meta, f"{side}_bbox_xyxy")),
    "recognition": lambda meta, side: str(_get(meta, f"{side}_answer")).lower(),
}


def is_correct(task: str, answer: str, meta: Any, side: Side = "target") -> bool:
    return SCORERS[task](answer, meta, side)


def truth_text(task: str, meta: Any, side: Side = "target") -> str:
    return _TRUTH_TEXT[task](meta, side)
