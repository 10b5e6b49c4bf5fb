"""The probe-pair generator: deterministic, and every recorded answer re-derived from the pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from frankenstein_tasks.vision import pairs
from frankenstein_tasks.vision.pairs import PALETTE, TASKS, write_pair_sets, write_pairs
from surgery.errors import FrankensteinError

N = 24


@pytest.fixture(scope="module")
def pair_sets(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    write_pair_sets(TASKS, out, n=N, seed=7, progress=False)
    return out


def _records(folder):
    return [json.loads(line) for line in (folder / "data.jsonl").read_text().splitlines()]


def _pixels(folder, rel):
    with Image.open(folder / rel) as img:
        return np.asarray(img.convert("RGB"))


def _mask(arr, color):
    return np.all(arr == np.array(PALETTE[color], dtype=arr.dtype), axis=-1)


def _non_white(arr):
    return np.any(arr != 255, axis=-1)


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _components(mask):
    return ndimage.label(mask, structure=np.ones((3, 3)))[1]  # 8-connected blobs


def test_same_seed_same_bytes_and_n_is_a_prefix(tmp_path):
    for task in TASKS:
        a = write_pairs(task, tmp_path / "a" / task, n=5, seed=3, size=224, progress=False)
        b = write_pairs(task, tmp_path / "b" / task, n=5, seed=3, size=224, progress=False)
        small = write_pairs(task, tmp_path / "small" / task, n=2, seed=3, size=224, progress=False)
        other = write_pairs(task, tmp_path / "other" / task, n=5, seed=4, size=224, progress=False)
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        for rel in files:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert _records(small) == _records(a)[:2]
        for rel in (r["target_image"] for r in _records(small)):
            assert (small / rel).read_bytes() == (a / rel).read_bytes()
        assert [r["meta"] for r in _records(other)] != [r["meta"] for r in _records(a)]


@pytest.mark.parametrize("task", TASKS)
def test_pairs_have_equal_sizes_and_layout_fields(pair_sets, task):
    folder = pair_sets / task
    records = _records(folder)
    assert len(records) == N and len({r["id"] for r in records}) == N
    for r in records:
        assert set(r) == {"id", "task", "target_image", "source_image", "prompt", "meta"} and r["task"] == task
        assert not r["target_image"].startswith("/")
        with Image.open(folder / r["target_image"]) as t, Image.open(folder / r["source_image"]) as s:
            assert t.size == s.size == (448, 448)
        assert (folder / r["target_image"]).read_bytes() != (folder / r["source_image"]).read_bytes()


def test_counting_answers_are_the_blobs_in_each_image(pair_sets):
    folder = pair_sets / "counting"
    counts = set()
    for r in _records(folder):
        meta = r["meta"]
        assert meta["target_answer"] != meta["source_answer"]
        assert r["prompt"].startswith(f"How many {meta['color']} {pairs.plural(meta['kind'])} ")
        for side in ("target", "source"):
            arr = _pixels(folder, r[f"{side}_image"])
            mask = _mask(arr, meta["color"])
            assert (mask == _non_white(arr)).all()  # nothing else is drawn
            assert _components(mask) == meta[f"{side}_answer"] == len(meta[f"{side}_objects"])
            assert 1 <= meta[f"{side}_answer"] <= 10
            for obj in meta[f"{side}_objects"]:
                x1, y1, x2, y2 = obj["bbox_xyxy"]
                assert mask[y1:y2, x1:x2].any() and (obj["kind"], obj["color"]) == (meta["kind"], meta["color"])
            counts.add(meta[f"{side}_answer"])
    assert len(counts) >= 6  # the counts spread over 1..10


def test_ocr_word_is_the_ink_of_each_image(pair_sets):
    folder = pair_sets / "ocr"
    vocabulary = set(pairs.words())
    for r in _records(folder):
        meta = r["meta"]
        assert meta["target_text"] != meta["source_text"]
        font = ImageFont.truetype(str(pairs.font_path()), meta["font_size"])
        for side in ("target", "source"):
            word = meta[f"{side}_text"]
            assert word in vocabulary
            arr = _pixels(folder, r[f"{side}_image"])
            ink = _bbox(_non_white(arr))
            x1, y1, x2, y2 = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(tuple(meta["center"]), word, font=font, anchor="mm")
            # the ink lies where the recorded word, font and centre put the text, inside the image
            assert x1 - 1 <= ink[0] and y1 - 1 <= ink[1] and ink[2] <= x2 + 1 and ink[3] <= y2 + 1
            assert 0 < ink[0] and 0 < ink[1] and ink[2] < arr.shape[1] and ink[3] < arr.shape[0]
            assert ink[2] - ink[0] > 0.5 * (x2 - x1)  # the whole word, not a stray mark
            # and it is that word: drawing the other word there gives different pixels
            other = meta["source_text" if side == "target" else "target_text"]
            redrawn = np.asarray(pairs.render_word(word, arr.shape[1], meta["font_size"], tuple(meta["center"])))
            assert (redrawn == arr).all()
            assert not (np.asarray(pairs.render_word(other, arr.shape[1], meta["font_size"], tuple(meta["center"]))) == arr).all()


def test_grounding_box_is_where_the_named_shape_is(pair_sets):
    folder = pair_sets / "grounding"
    for r in _records(folder):
        meta = r["meta"]
        color, kind = meta["target_object"]["color"], meta["target_object"]["kind"]
        assert f"the {color} {kind}?" in r["prompt"] and meta["canvas_size"] == [448, 448]
        assert meta["iou_threshold"] == 0.5
        for side in ("target", "source"):
            arr = _pixels(folder, r[f"{side}_image"])
            mask = _mask(arr, color)
            assert _components(mask) == 1
            assert _bbox(mask) == meta[f"{side}_bbox_xyxy"]
            for d in meta["distractors"]:
                assert d["color"] != color and d["kind"] != kind
                assert _bbox(_mask(arr, d["color"])) == d["bbox_xyxy"]
        t, s = meta["target_bbox_xyxy"], meta["source_bbox_xyxy"]
        assert t[2] <= s[0] or s[2] <= t[0] or t[3] <= s[1] or s[3] <= t[1]  # disjoint: IoU 0
        assert (t[2] - t[0], t[3] - t[1]) == (s[2] - s[0], s[3] - s[1])  # same shape, moved


def test_recognition_object_is_in_exactly_one_image(pair_sets):
    folder = pair_sets / "recognition"
    answers = []
    for r in _records(folder):
        meta = r["meta"]
        obj = meta["object"]
        assert {meta["target_answer"], meta["source_answer"]} == {"yes", "no"}
        assert r["prompt"] == f"Is there a {meta['category']} in the image? Answer yes or no."
        assert obj["kind"] == meta["category"]
        assert all(d["kind"] != meta["category"] and d["color"] != obj["color"] for d in meta["distractors"])
        arrays = {side: _pixels(folder, r[f"{side}_image"]) for side in ("target", "source")}
        for side, arr in arrays.items():
            present = _mask(arr, obj["color"])
            assert present.any() == (meta[f"{side}_answer"] == "yes")
            if present.any():
                assert _bbox(present) == obj["bbox_xyxy"]
        # the images differ only where the object is
        x1, y1, x2, y2 = obj["bbox_xyxy"]
        differ = np.any(arrays["target"] != arrays["source"], axis=-1)
        assert differ[y1:y2, x1:x2].any() and not differ.sum() - differ[y1:y2, x1:x2].sum()
        answers.append(meta["target_answer"])
    assert 0 < answers.count("yes") < len(answers)


def test_small_canvas_keeps_the_ground_truths(tmp_path):
    folder = write_pairs("counting", tmp_path / "counting", n=10, seed=1, size=112, progress=False)
    for r in _records(folder):
        arr = _pixels(folder, r["target_image"])
        assert arr.shape[:2] == (112, 112)
        assert _components(_mask(arr, r["meta"]["color"])) == r["meta"]["target_answer"]


def test_bad_generator_arguments(tmp_path):
    with pytest.raises(FrankensteinError, match="multiple of 28"):
        write_pairs("ocr", tmp_path / "x", n=2, size=100)
    with pytest.raises(FrankensteinError, match="at least 1"):
        write_pairs("ocr", tmp_path / "x", n=0)
    with pytest.raises(FrankensteinError, match="unknown pair task"):
        pairs.draw_pair("colour", 0, 0)
    write_pairs("ocr", tmp_path / "set" / "ocr", n=1, progress=False)
    with pytest.raises(FrankensteinError, match="already exist"):
        write_pair_sets(TASKS, tmp_path / "set", n=1)
    assert not (tmp_path / "set" / "counting").exists()  # refused before writing anything
