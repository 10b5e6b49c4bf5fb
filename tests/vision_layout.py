"""Pair folders written by hand in the layout researchers share (not by our generator)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = (168, 112)  # not square, not the generator's size: the loader must take any equal-size pair


def _image(path: Path, draw_fn) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", SIZE, "white")
    draw_fn(ImageDraw.Draw(img))
    img.save(path)


def _dots(n):
    return lambda d: [d.ellipse([8 + 16 * k, 40, 20 + 16 * k, 52], fill="red") for k in range(n)]


def _word(w):
    return lambda d: d.text((20, 40), w, fill="black")


def _box(xyxy):
    return lambda d: d.rectangle([xyxy[0], xyxy[1], xyxy[2] - 1, xyxy[3] - 1], fill="blue")


def write_shared_layout(root: Path) -> dict[str, list[dict]]:
    """root/<task>/data.jsonl + images in nested folders; two pairs per task. Returns the lines."""
    specs = {
        "counting": [
            (_dots(2), _dots(5), "How many red dots are there?", {"target_answer": 2, "source_answer": 5, "source": "lab-set-3"}),
            (_dots(4), _dots(1), "How many red dots are there?", {"target_answer": 4, "source_answer": 1}),
        ],
        "ocr": [
            (_word("cat"), _word("dog"), "Read the word.", {"target_text": "cat", "source_text": "dog"}),
            (_word("sun"), _word("map"), "Read the word.", {"target_text": "sun", "source_text": "map"}),
        ],
        "grounding": [
            (_box([10, 10, 50, 50]), _box([100, 50, 140, 90]), "Box of the blue square, x1,y1,x2,y2?",
             {"target_bbox_xyxy": [10, 10, 50, 50], "source_bbox_xyxy": [100, 50, 140, 90],
              "canvas_size": list(SIZE), "iou_threshold": 0.5}),
            (_box([60, 20, 90, 60]), _box([5, 60, 35, 100]), "Box of the blue square, x1,y1,x2,y2?",
             {"target_bbox_xyxy": [60, 20, 90, 60], "source_bbox_xyxy": [5, 60, 35, 100],
              "canvas_size": list(SIZE), "iou_threshold": 0.5}),
        ],
        "recognition": [
            (_dots(1), _dots(0), "Is there a red dot? yes or no", {"target_answer": "Yes", "source_answer": "No"}),
            (_dots(0), _dots(1), "Is there a red dot? yes or no", {"target_answer": "no", "source_answer": "yes"}),
        ],
    }
    lines = {}
    for task, items in specs.items():
        folder = root / task
        rows = []
        for i, (target_fn, source_fn, prompt, meta) in enumerate(items):
            target, source = f"imgs/t/{i}.png", f"imgs/s/{i}.png"
            _image(folder / target, target_fn)
            _image(folder / source, source_fn)
            rows.append({"id": 100 + i, "task": task, "target_image": target, "source_image": source,
                         "prompt": prompt, "meta": meta})
        (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        lines[task] = rows
    return lines
