"""Pair folders in the layout researchers share, loaded and checked line by line.

    <folder>/data.jsonl    one JSON object per line (one pair):
        {"id", "task", "target_image", "source_image", "prompt", "meta"}
    image paths relative to <folder>; `meta` holds the answers:
        counting, recognition   target_answer / source_answer   (a count; yes / no)
        ocr                     target_text / source_text
        grounding               target_bbox_xyxy / source_bbox_xyxy ([x1, y1, x2, y2] in pixels),
                                canvas_size ([width, height], default: the image size),
                                iou_threshold (default 0.5)
    Extra meta fields (drawing parameters, provenance) are kept as they are.

Every problem names the file and line. By default the first bad line is an error; with
`skip_bad=True` (or FRANKENSTEIN_VISION_SKIP_BAD=1 for the lmms-eval tasks) bad lines are skipped
and counted. Which folder a task reads: `pair_folder(task)` (FRANKENSTEIN_VISION_DATA, else the
generated default set in the cache).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from surgery.errors import FrankensteinError

from .pairs import IOU_THRESHOLD, TASKS, default_pairs

DATA_ENV = "FRANKENSTEIN_VISION_DATA"  # a folder with one pair folder per task: counting/, ocr/, ...
SKIP_ENV = "FRANKENSTEIN_VISION_SKIP_BAD"  # 1: skip (and count) bad lines instead of failing
DATA_FILE = "data.jsonl"

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the answers each task's meta holds


class _Meta(BaseModel):
    model_config = ConfigDict(extra="allow")


class CountingMeta(_Meta):
    target_answer: int
    source_answer: int


class RecognitionMeta(_Meta):
    target_answer: Literal["yes", "no"]
    source_answer: Literal["yes", "no"]

    @field_validator("target_answer", "source_answer", mode="before")
    @classmethod
    def _yes_no(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return "yes" if v else "no"
        return v.strip().lower() if isinstance(v, str) else v


class OcrMeta(_Meta):
    target_text: str
    source_text: str


class GroundingMeta(_Meta):
    target_bbox_xyxy: tuple[float, float, float, float]
    source_bbox_xyxy: tuple[float, float, float, float]
    canvas_size: tuple[int, int] | None = None
    iou_threshold: float = IOU_THRESHOLD

    @model_validator(mode="after")
    def _boxes(self) -> "GroundingMeta":
        for name in ("target_bbox_xyxy", "source_bbox_xyxy"):
            x1, y1, x2, y2 = getattr(self, name)
            if not (x2 > x1 and y2 > y1):
                raise ValueError(f"{name} must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
        if not 0 < self.iou_threshold <= 1:
            raise ValueError("iou_threshold must be in (0, 1]")
        return self


META_MODELS: dict[str, type[_Meta]] = {
    "counting": CountingMeta,
    "ocr": OcrMeta,
    "grounding": GroundingMeta,
    "recognition": RecognitionMeta,
}
assert set(META_MODELS) == set(TASKS)


class PairLine(BaseModel):
    """One line of data.jsonl, before the images are looked at."""

    model_config = ConfigDict(extra="allow")

    id: str
    task: Literal["counting", "ocr", "grounding", "recognition"]
    target_image: str
    source_image: str
    prompt: str
    meta: dict[str, Any]

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


@dataclass
class Pair:
    """A checked pair: absolute image paths, both images readable and of the same size."""

    id: str
    task: str
    prompt: str
    target_image: Path
    source_image: Path
    image_size: tuple[int, int]
    meta: _Meta
    line: int


@dataclass
class PairSet:
    folder: Path
    task: str
    pairs: list[Pair]
    skipped: list[str] = field(default_factory=list)  # "data.jsonl:LINE: why", one per skipped line


class _BadLine(Exception):
    pass


def _image_size(path: Path, role: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise _BadLine(f"{role} {path} does not exist")
    try:
        with Image.open(path) as img:
            size = img.size
            img.verify()  # reads the whole file: catches truncated or corrupt images now, not mid-run
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise _BadLine(f"cannot read {role} {path}: {e}") from None
    return size


def _first_error(e: ValidationError, prefix: str = "") -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    what = "missing" if err["type"] == "missing" else err["msg"]
    return f"{prefix}{where}: {what}" if where else f"{prefix}{what}"


def _check_line(text: str, folder: Path, task: str | None) -> Pair:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise _BadLine(f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(raw, dict):
        raise _BadLine("a line must be a JSON object {id, task, target_image, source_image, prompt, meta}")
    try:
        line = PairLine.model_validate(raw)
    except ValidationError as e:
        raise _BadLine(_first_error(e)) from None
    if task is not None and line.task != task:
        raise _BadLine(f"task is {line.task!r} but this is the {task} folder")
    try:
        meta = META_MODELS[line.task].model_validate(line.meta)
    except ValidationError as e:
        raise _BadLine(_first_error(e, "meta.")) from None
    target, source = (Path(p) if Path(p).is_absolute() else folder / p for p in (line.target_image, line.source_image))
    target_size = _image_size(target, "target_image")
    source_size = _image_size(source, "source_image")
    if target_size != source_size:
        raise _BadLine(
            f"target_image {line.target_image} is {target_size[0]}x{target_size[1]} but source_image {line.source_image} is "
            f"{source_size[0]}x{source_size[1]}: a swap pair needs images of the same size (same number of visual tokens)"
        )
    if isinstance(meta, GroundingMeta) and meta.canvas_size is None:
        meta.canvas_size = target_size
    return Pair(line.id, line.task, line.prompt, target.resolve(), source.resolve(), target_size, meta, 0)


def load_pairs(folder: str | os.PathLike, task: str | None = None, *, skip_bad: bool = False, first: int | None = None) -> PairSet:
    """Read and check `folder/data.jsonl`; `task` (if given) must match every line.

    `first`: only the first that many (non-empty) lines, as the authors' loader reads its set.
    """
    folder = Path(folder).expanduser().resolve()
    data_file = folder / DATA_FILE
    if not data_file.is_file():
        raise FrankensteinError(f"{data_file} does not exist (a pair folder holds {DATA_FILE} and its images)")
    try:
        lines = data_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FrankensteinError(f"cannot read {data_file}: {e}") from None
    pairs: list[Pair] = []
    skipped: list[str] = []
    seen: dict[str, int] = {}
    read = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        if first is not None and read == first:
            break
        read += 1
        try:
            pair = _check_line(text, folder, task)
            if pair.id in seen:
                raise _BadLine(f"id {pair.id!r} already used on line {seen[pair.id]}")
        except _BadLine as e:
            message = f"{data_file}:{number}: {e}"
            if not skip_bad:
                raise FrankensteinError(message) from None
            skipped.append(message)
            continue
        pair.line = number
        seen[pair.id] = number
        pairs.append(pair)
    if skipped:
        log.warning("skipped %d bad line(s) of %s; first: %s", len(skipped), data_file, skipped[0])
    if not pairs:
        raise FrankensteinError(f"{data_file} holds no usable pairs" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return PairSet(folder, task or pairs[0].task, pairs, skipped)


def pair_folder(task: str) -> Path:
    """The folder a task reads: $FRANKENSTEIN_VISION_DATA/<task>, else the default set (generated once)."""
    root = os.environ.get(DATA_ENV)
    if not root:
        return default_pairs(task)
    folder = Path(root).expanduser() / task
    if not (folder / DATA_FILE).is_file():
        raise FrankensteinError(
            f"{DATA_ENV}={root} has no {task}/{DATA_FILE}; it must hold one pair folder per task "
            f"({', '.join(t + '/' for t in TASKS)}), e.g. as written by `frankenstein data make-pairs`"
        )
    return folder


def paper_task_docs(task: str) -> list[dict[str, Any]]:
    """The docs of a frank_vision_<task>_paper run: the authors' released pair set, as their script reads it.

    Their dataset/vision_functionality_dataset (CLEVR- and COCO-derived pairs) cannot be shipped or
    downloaded here: FRANKENSTEIN_VISION_DATA must name a copy (it has this project's folder layout).
    The first `paper_protocol.PAIRS_PER_TASK` lines of each task; prompts are sent verbatim (some start
    with a literal "<image>", which their runs sent too).
    """
    from frankenstein_tasks.contract import VERBATIM_TEXT_KEY
    from frankenstein_tasks.paper_protocol import PAIR_SET_NAME, PAIRS_PER_TASK

    if not os.environ.get(DATA_ENV):
        raise FrankensteinError(
            f"frank_vision_{task}_paper reads the authors' released pair set (dataset/{PAIR_SET_NAME} of "
            f"github.com/xirui-li/Frankenstein), which is not shipped: set {DATA_ENV} to your copy of that folder"
        )
    pair_set = load_pairs(pair_folder(task), task, skip_bad=skip_bad_from_env(), first=PAIRS_PER_TASK)
    return [{**doc, VERBATIM_TEXT_KEY: True} for doc in to_docs(pair_set)]


def skip_bad_from_env() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def to_docs(pair_set: PairSet) -> list[dict[str, Any]]:
    """The lmms-eval docs of a pair set, one per pair, as the frank_vision_* tasks and the probe model read them.

    `contract.SOURCE_IMAGE_KEY` holds the source image's absolute path; `target_image` is what
    doc_to_visual shows. `meta` is JSON text (its fields differ from task to task).
    """
    from frankenstein_tasks.contract import SOURCE_IMAGE_KEY

    from .scoring import truth_text

    return [
        {
            "id": p.id,
            "task": p.task,
            "prompt": p.prompt,
            "target_image": str(p.target_image),
            SOURCE_IMAGE_KEY: str(p.source_image),
            "target_answer": truth_text(p.task, p.meta, "target"),
            "source_answer": truth_text(p.task, p.meta, "source"),
            "meta": json.dumps(p.meta.model_dump(mode="json"), ensure_ascii=False),
            "pair_file": f"{pair_set.folder / DATA_FILE}:{p.line}",
        }
        for p in pair_set.pairs
    ]


def task_docs(task: str) -> list[dict[str, Any]]:
    """The docs of a frank_vision_<task> run: the chosen pair folder, loaded and checked."""
    return to_docs(load_pairs(pair_folder(task), task, skip_bad=skip_bad_from_env()))
