"""Probe pairs for visual-token swapping (METHOD.md section 1a), drawn with PIL, deterministic.

A pair is a target image and a source image of the same size (so both give the same number of
visual tokens) that differ only in the probed function, with one question and the answer each image
should produce:

    counting     1-10 copies of one coloured shape; target and source counts differ
    ocr          one word from `words.txt`, same font, size and place; different words
    grounding    a named coloured shape (plus fixed distractors) at two non-overlapping positions;
                 the answer is its pixel box x1,y1,x2,y2
    recognition  a shape category present in one image and absent in the other (fixed distractors)

Item i of (task, seed) depends on nothing else, so a set of n items is a prefix of a larger one.
`meta` holds the answers in the shared pair-folder layout (see `dataset.py`) plus every drawing
parameter, so the ground truth can be re-derived from the drawing.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from PIL import Image, ImageDraw, ImageFont

from frankenstein_tasks.caches import cache_root
from surgery.atomic import atomic_dir, write_json
from surgery.errors import FrankensteinError

# Bump when a drawing changes: the default sets are cached under a name that includes it (`generator_tag`).
GENERATOR_VERSION = 1
# 448 = 16 x 28: Qwen2.5-VL's default processor (and lmms-eval's qwen2_5_vl, min_pixels=448*448) keeps
# it as is, so the model's pixel coordinates are the canvas's and grounding boxes need no rescaling.
DEFAULT_SIZE = 448
DEFAULT_N = 100
DEFAULT_SEED = 0
IOU_THRESHOLD = 0.5
PATCH = 28  # Qwen2.5-VL: 14 px patches merged 2x2

BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 150, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 190, 0),
    "purple": (140, 50, 170),
    "orange": (245, 125, 0),
}

# Shapes as polygons in the unit box (x right, y down), scaled to fill their drawing box exactly.
_STAR = [
    (0.5, 0.0), (0.618, 0.363), (1.0, 0.363), (0.691, 0.588), (0.809, 0.951),
    (0.5, 0.727), (0.191, 0.951), (0.309, 0.588), (0.0, 0.363), (0.382, 0.363),
]  # fmt: skip
_T = 1 / 3
POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(0, 0), (1, 0), (1, 1), (0, 1)],
    "triangle": [(0.5, 0), (1, 1), (0, 1)],
    "diamond": [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    "star": [(x, y / 0.951) for x, y in _STAR],
    "cross": [
        (_T, 0), (2 * _T, 0), (2 * _T, _T), (1, _T), (1, 2 * _T), (2 * _T, 2 * _T),
        (2 * _T, 1), (_T, 1), (_T, 2 * _T), (0, 2 * _T), (0, _T), (_T, _T),
    ],  # fmt: skip
}
SHAPES = ("circle", *POLYGONS)
_PLURAL = {"cross": "crosses"}


def plural(kind: str) -> str:
    return _PLURAL.get(kind, kind + "s")


@lru_cache(maxsize=None)
def font_path() -> Path:
    """DejaVu Sans Bold as shipped with matplotlib: the same glyphs on every machine."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    if not path.is_file():
        raise FrankensteinError(f"the OCR pairs need matplotlib's DejaVu font, not found at {path}")
    return path


@lru_cache(maxsize=None)
def generator_tag() -> str:
    """What decides the pixels besides the settings, for cache names: `v<GENERATOR_VERSION>-<digest>`, the
    digest over the word list, the font file and Pillow's version (which rasterises shapes and text)."""
    import hashlib

    import PIL

    digest = hashlib.sha256(Path(__file__).with_name("words.txt").read_bytes() + font_path().read_bytes())
    digest.update(PIL.__version__.encode())
    return f"v{GENERATOR_VERSION}-{digest.hexdigest()[:8]}"


@lru_cache(maxsize=None)
def words() -> tuple[str, ...]:
    text = (Path(__file__).with_name("words.txt")).read_text()
    return tuple(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


@dataclass(frozen=True)
class Shape:
    """One filled shape; `box` is its drawing box (left, top, right, bottom), right/bottom exclusive."""

    kind: str
    color: str
    box: tuple[int, int, int, int]

    def draw(self, draw: ImageDraw.ImageDraw, fill: Any = None) -> None:
        x0, y0, x1, y1 = self.box
        fill = PALETTE[self.color] if fill is None else fill
        if self.kind == "circle":
            draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
        else:
            w, h = x1 - 1 - x0, y1 - 1 - y0
            draw.polygon([(x0 + round(u * w), y0 + round(v * h)) for u, v in POLYGONS[self.kind]], fill=fill)

    def pixel_bbox(self, canvas: tuple[int, int]) -> list[int]:
        """The box of the pixels this shape covers, [x1, y1, x2, y2] with x2/y2 exclusive."""
        mask = Image.new("L", canvas, 0)
        self.draw(ImageDraw.Draw(mask), fill=255)
        return list(mask.getbbox())

    def to_meta(self, canvas: tuple[int, int]) -> dict[str, Any]:
        return {"kind": self.kind, "color": self.color, "box": list(self.box), "bbox_xyxy": self.pixel_bbox(canvas)}


@dataclass
class DrawnPair:
    target: Image.Image
    source: Image.Image
    prompt: str
    meta: dict[str, Any]


def render(shapes: Iterable[Shape], size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for shape in shapes:
        shape.draw(draw)
    return img


def _overlaps(a: tuple[int, ...], b: tuple[int, ...], gap: int) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _place(rng: random.Random, size: int, side: int, avoid: list[tuple[int, ...]], gap: int) -> tuple[int, int, int, int]:
    """A random side x side box inside the canvas, at least `gap` px from every box in `avoid`."""
    for _ in range(10_000):
        x, y = rng.randint(gap, size - gap - side), rng.randint(gap, size - gap - side)
        box = (x, y, x + side, y + side)
        if not any(_overlaps(box, other, gap) for other in avoid):
            return box
    raise RuntimeError(f"no room for a {side}px shape on a {size}px canvas")  # sizes are chosen so this cannot happen


# ---------------------------------------------------------------- one drawing function per task


def make_counting(rng: random.Random, size: int) -> DrawnPair:
    kind, color = rng.choice(SHAPES), rng.choice(sorted(PALETTE))
    target_n, source_n = rng.sample(range(1, 11), 2)
    grid = 4  # 16 cells, one shape at most per cell, a margin inside each so shapes never touch
    cell = size // grid
    margin = max(1, cell // 16)

    def layout(n: int) -> list[Shape]:
        shapes = []
        for c in sorted(rng.sample(range(grid * grid), n)):
            row, col = divmod(c, grid)
            side = rng.randint(int(cell * 0.45), int(cell * 0.75))
            x = col * cell + rng.randint(margin, cell - margin - side)
            y = row * cell + rng.randint(margin, cell - margin - side)
            shapes.append(Shape(kind, color, (x, y, x + side, y + side)))
        return shapes

    target, source = layout(target_n), layout(source_n)
    canvas = (size, size)
    return DrawnPair(
        render(target, size),
        render(source, size),
        f"How many {color} {plural(kind)} are in the image? Answer with a single number.",
        {
            "target_answer": target_n,
            "source_answer": source_n,
            "kind": kind,
            "color": color,
            "target_objects": [s.to_meta(canvas) for s in target],
            "source_objects": [s.to_meta(canvas) for s in source],
        },
    )


def render_word(word: str, size: int, font_size: int, center: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", (size, size), BACKGROUND)
    font = ImageFont.truetype(str(font_path()), font_size)
    ImageDraw.Draw(img).text(center, word, font=font, fill=TEXT_COLOR, anchor="mm")
    return img


def make_ocr(rng: random.Random, size: int) -> DrawnPair:
    target_word, source_word = rng.sample(words(), 2)
    font_size = rng.randint(size // 10, size // 6)
    while True:  # both words fit in 85% of the width at the same font size
        font = ImageFont.truetype(str(font_path()), font_size)
        boxes = [font.getbbox(w, anchor="mm") for w in (target_word, source_word)]
        half_w = max(max(-b[0], b[2]) for b in boxes) + 2
        half_h = max(max(-b[1], b[3]) for b in boxes) + 2
        if 2 * half_w <= 0.85 * size or font_size <= 8:
            break
        font_size -= 1
    center = (rng.randint(half_w, size - half_w), rng.randint(half_h, size - half_h))
    return DrawnPair(
        render_word(target_word, size, font_size, center),
        render_word(source_word, size, font_size, center),
        "What word is written in the image? Answer with the word only.",
        {
            "target_text": target_word,
            "source_text": source_word,
            "font": font_path().name,
            "font_size": font_size,
            "center": list(center),
            "text_color": list(TEXT_COLOR),
        },
    )


def make_grounding(rng: random.Random, size: int) -> DrawnPair:
    kinds = rng.sample(SHAPES, 3)
    colors = rng.sample(sorted(PALETTE), 3)
    gap = max(2, size // 32)
    side = rng.randint(size // 8, size // 4)
    target_box = _place(rng, size, side, [], gap)
    source_box = _place(rng, size, side, [target_box], gap)
    distractors: list[Shape] = []
    for kind, color in zip(kinds[1:], colors[1:]):
        box = _place(rng, size, rng.randint(size // 10, size // 5), [target_box, source_box, *(d.box for d in distractors)], gap)
        distractors.append(Shape(kind, color, box))
    target, source = Shape(kinds[0], colors[0], target_box), Shape(kinds[0], colors[0], source_box)
    canvas = (size, size)
    return DrawnPair(
        render([target, *distractors], size),
        render([source, *distractors], size),
        f"The image is {size}x{size} pixels. Where is the {colors[0]} {kinds[0]}? "
        "Answer with its bounding box in pixels as x1,y1,x2,y2.",
        {
            "target_bbox_xyxy": target.pixel_bbox(canvas),
            "source_bbox_xyxy": source.pixel_bbox(canvas),
            "canvas_size": [size, size],
            "iou_threshold": IOU_THRESHOLD,
            "target_object": target.to_meta(canvas),
            "source_object": source.to_meta(canvas),
            "distractors": [d.to_meta(canvas) for d in distractors],
        },
    )


def make_recognition(rng: random.Random, size: int) -> DrawnPair:
    n_distractors = rng.randint(1, 3)
    category, *distractor_kinds = rng.sample(SHAPES, 1 + n_distractors)
    object_color, *distractor_colors = rng.sample(sorted(PALETTE), 1 + n_distractors)  # the object's colour is its own
    gap = max(2, size // 32)
    obj = Shape(category, object_color, _place(rng, size, rng.randint(size // 8, size // 4), [], gap))
    distractors: list[Shape] = []
    for kind, color in zip(distractor_kinds, distractor_colors):
        box = _place(rng, size, rng.randint(size // 10, size // 5), [obj.box, *(d.box for d in distractors)], gap)
        distractors.append(Shape(kind, color, box))
    in_target = rng.random() < 0.5
    with_obj, without_obj = render([obj, *distractors], size), render(distractors, size)
    canvas = (size, size)
    return DrawnPair(
        with_obj if in_target else without_obj,
        without_obj if in_target else with_obj,
        f"Is there a {category} in the image? Answer yes or no.",
        {
            "target_answer": "yes" if in_target else "no",
            "source_answer": "no" if in_target else "yes",
            "category": category,
            "object": obj.to_meta(canvas),
            "distractors": [d.to_meta(canvas) for d in distractors],
        },
    )


GENERATORS: dict[str, Callable[[random.Random, int], DrawnPair]] = {
    "counting": make_counting,
    "ocr": make_ocr,
    "grounding": make_grounding,
    "recognition": make_recognition,
}
TASKS = tuple(GENERATORS)


# ---------------------------------------------------------------- writing pair folders


def check_size(size: int) -> None:
    if size % PATCH or not 112 <= size <= 1344:
        raise FrankensteinError(f"image size {size} must be a multiple of {PATCH} between 112 and 1344")


def draw_pair(task: str, index: int, seed: int, size: int = DEFAULT_SIZE) -> DrawnPair:
    """Pair `index` of (task, seed): its own random stream, so items never depend on each other."""
    if task not in GENERATORS:
        raise FrankensteinError(f"unknown pair task {task!r}; choose from {', '.join(TASKS)}")
    check_size(size)
    return GENERATORS[task](random.Random(f"frankenstein-vision:{task}:{seed}:{index}"), size)


def write_pairs(task: str, out: str | os.PathLike, *, n: int = DEFAULT_N, seed: int = DEFAULT_SEED,
                size: int = DEFAULT_SIZE, overwrite: bool = False, progress: bool = True) -> Path:
    """Write one task's pair folder (data.jsonl + images/) at `out`, atomically."""
    from tqdm import tqdm

    if n < 1:
        raise FrankensteinError(f"--n must be at least 1 (got {n})")
    check_size(size)
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for i in tqdm(range(n), desc=f"pairs {task}", disable=not progress, leave=False):
            pair = draw_pair(task, i, seed, size)
            pid = f"{task}-{i:05d}"
            record = {"id": pid, "task": task, "target_image": f"images/{pid}-target.png",
                      "source_image": f"images/{pid}-source.png", "prompt": pair.prompt, "meta": pair.meta}
            pair.target.save(tmp / record["target_image"], format="PNG")
            pair.source.save(tmp / record["source_image"], format="PNG")
            lines.append(json.dumps(record, ensure_ascii=False))
        (tmp / "data.jsonl").write_text("\n".join(lines) + "\n")
        write_json(tmp / "pairs.json", {"task": task, "n": n, "seed": seed, "size": size,
                                        "generator_version": GENERATOR_VERSION})
    return out


def write_pair_sets(tasks: Iterable[str], out: str | os.PathLike, **kwargs: Any) -> dict[str, Path]:
    """One folder per task under `out` (the layout FRANKENSTEIN_VISION_DATA expects)."""
    tasks = list(tasks)
    if Path(out).exists() and not Path(out).is_dir():
        raise FrankensteinError(f"{out} is a file; the pairs go into a folder (one subfolder per task)")
    existing = [str(Path(out) / t) for t in tasks if (Path(out) / t).exists()]
    if existing and not kwargs.get("overwrite"):  # refuse before writing anything
        raise FrankensteinError(f"{', '.join(existing)} already exist(s) (pass --overwrite to replace)")
    return {task: write_pairs(task, Path(out) / task, **kwargs) for task in tasks}


def default_pairs(task: str, *, n: int = DEFAULT_N, seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> Path:
    """The default pair folder of a task, generated into the cache on first use."""
    import shutil
    import tempfile

    folder = cache_root() / "vision_pairs" / f"{task}-n{n}-seed{seed}-size{size}-{generator_tag()}"
    if (folder / "data.jsonl").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under a private name, then renamed into place: a crash leaves no half-made set, and
    # when several processes (ranks) race, the first rename wins and nobody's files change under them.
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".staging", dir=folder.parent))
    try:
        write_pairs(task, staging / "set", n=n, seed=seed, size=size, progress=False)
        try:
            os.rename(staging / "set", folder)
        except OSError:
            if not (folder / "data.jsonl").is_file():
                raise FrankensteinError(f"cache folder {folder} is incomplete; delete it to regenerate the pairs") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
