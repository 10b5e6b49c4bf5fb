"""Loading pair folders: the shared layout, errors that name file and line, counted skips, data selection."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image
from vision_layout import SIZE, write_shared_layout

from frankenstein_tasks.contract import SOURCE_IMAGE_KEY, source_visual
from frankenstein_tasks.vision import dataset
from frankenstein_tasks.vision.dataset import DATA_ENV, SKIP_ENV, load_pairs, pair_folder, task_docs, to_docs
from frankenstein_tasks.vision.pairs import generator_tag, write_pairs
from surgery.errors import FrankensteinError


@pytest.fixture
def shared(tmp_path):
    lines = write_shared_layout(tmp_path / "pairs")
    return tmp_path / "pairs", lines


def _rewrite(folder: Path, rows: list) -> Path:
    data = folder / "data.jsonl"
    data.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return data


def test_shared_layout_loads(shared):
    root, lines = shared
    for task, rows in lines.items():
        ps = load_pairs(root / task, task)
        assert [p.id for p in ps.pairs] == [str(r["id"]) for r in rows] and not ps.skipped
        for p, r in zip(ps.pairs, rows):
            assert p.target_image == (root / task / r["target_image"]).resolve() and p.target_image.is_absolute()
            assert p.source_image == (root / task / r["source_image"]).resolve()
            assert p.image_size == SIZE and p.prompt == r["prompt"]
    rec = load_pairs(root / "recognition").pairs[0].meta
    assert (rec.target_answer, rec.source_answer) == ("yes", "no")  # "Yes"/"No" normalised
    assert load_pairs(root / "counting").pairs[0].meta.model_dump()["source"] == "lab-set-3"  # extra meta kept


def test_docs_follow_the_contract(shared):
    root, lines = shared
    docs = to_docs(load_pairs(root / "grounding"))
    assert len(docs) == 2
    for doc, row in zip(docs, lines["grounding"]):
        assert Path(doc[SOURCE_IMAGE_KEY]).is_absolute()
        assert doc[SOURCE_IMAGE_KEY] == str((root / "grounding" / row["source_image"]).resolve())
        assert source_visual(doc).size == SIZE
        assert doc["target_answer"] == ",".join(str(v) for v in row["meta"]["target_bbox_xyxy"])
        assert json.loads(doc["meta"])["iou_threshold"] == 0.5
        assert doc["pair_file"].endswith(f"data.jsonl:{lines['grounding'].index(row) + 1}")


def _bad_cases(folder: Path, good: dict):
    """(description, line 2 of data.jsonl, what the error must say) for one bad second line."""
    Image.new("RGB", (SIZE[0] + 28, SIZE[1]), "white").save(folder / "wide.png")
    (folder / "notanimage.png").write_text("this is not a PNG")
    png = (folder / good["target_image"]).read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    meta_missing = {**good, "meta": {k: v for k, v in good["meta"].items() if k != "source_answer"}}
    return [
        ("missing image", {**good, "source_image": "nope/missing.png"}, "source_image .*missing.png does not exist"),
        ("unreadable image", {**good, "target_image": "notanimage.png"}, "cannot read target_image .*notanimage.png"),
        ("truncated image", {**good, "target_image": "truncated.png"}, "cannot read target_image .*truncated.png"),
        ("different sizes", {**good, "source_image": "wide.png"}, "target_image imgs/t/0.png is 168x112 but source_image wide.png is 196x112: .*same size"),
        ("malformed JSON", '{"id": 1, "task": "counting",', "malformed JSON"),
        ("not an object", "[1, 2]", "a line must be a JSON object"),
        ("missing meta field", meta_missing, "meta.source_answer: missing"),
        ("bad meta value", {**good, "meta": {"target_answer": "three", "source_answer": 1}}, "meta.target_answer"),
        ("missing top field", {k: v for k, v in good.items() if k != "prompt"}, "prompt: missing"),
        ("other task", {**good, "task": "ocr"}, "task is 'ocr' but this is the counting folder"),
        ("duplicate id", good, "id '100' already used on line 1"),
    ]


def test_bad_lines_name_file_and_line(shared):
    root, lines = shared
    folder = root / "counting"
    good = lines["counting"][0]
    for description, bad, message in _bad_cases(folder, good):
        data = _rewrite(folder, [good, bad])
        with pytest.raises(FrankensteinError, match=f"^{re.escape(str(data))}:2: {message}") as err:
            load_pairs(folder, "counting")
        assert "\n" not in str(err.value), description


def test_grounding_meta_checks(shared):
    root, lines = shared
    folder = root / "grounding"
    good = lines["grounding"][0]
    flipped = {**good, "id": 7, "meta": {**good["meta"], "target_bbox_xyxy": [50, 10, 10, 50]}}
    short = {**good, "id": 8, "meta": {**good["meta"], "source_bbox_xyxy": [1, 2, 3]}}
    no_canvas = {**good, "id": 9, "meta": {k: v for k, v in good["meta"].items() if k not in ("canvas_size", "iou_threshold")}}
    data = _rewrite(folder, [good, flipped])
    with pytest.raises(FrankensteinError, match=f"{data}:2: meta.*x2 > x1"):
        load_pairs(folder)
    data = _rewrite(folder, [good, short])
    with pytest.raises(FrankensteinError, match=f"{data}:2: meta.source_bbox_xyxy"):
        load_pairs(folder)
    _rewrite(folder, [no_canvas])
    meta = load_pairs(folder).pairs[0].meta
    assert tuple(meta.canvas_size) == SIZE and meta.iou_threshold == 0.5  # defaults: the image size, METHOD's 0.5


def test_skip_counts_every_bad_line(shared, monkeypatch):
    root, lines = shared
    folder = root / "counting"
    good = lines["counting"]
    cases = _bad_cases(folder, good[0])
    rows = [good[0], *(bad for _, bad, _ in cases), "", good[1]]  # blank lines are not pairs
    data = _rewrite(folder, rows)
    ps = load_pairs(folder, "counting", skip_bad=True)
    assert [p.id for p in ps.pairs] == ["100", "101"]
    assert [p.line for p in ps.pairs] == [1, len(rows)]
    assert len(ps.skipped) == len(cases)
    assert [s.split(": ", 1)[0] for s in ps.skipped] == [f"{data}:{i}" for i in range(2, 2 + len(cases))]
    # the lmms-eval tasks skip when the environment asks for it
    monkeypatch.setenv(DATA_ENV, str(root))
    with pytest.raises(FrankensteinError, match=f"{data}:2:"):
        task_docs("counting")
    monkeypatch.setenv(SKIP_ENV, "1")
    assert [d["id"] for d in task_docs("counting")] == ["100", "101"]
    _rewrite(folder, [cases[0][1]])
    with pytest.raises(FrankensteinError, match="no usable pairs .1 skipped"):
        load_pairs(folder, skip_bad=True)


def test_missing_data_file(tmp_path):
    with pytest.raises(FrankensteinError, match="data.jsonl does not exist"):
        load_pairs(tmp_path)
    (tmp_path / "data.jsonl").write_text("\n")
    with pytest.raises(FrankensteinError, match="no usable pairs"):
        load_pairs(tmp_path)


def test_data_env_selects_the_folder(shared, monkeypatch, tmp_path):
    root, _ = shared
    monkeypatch.setenv(DATA_ENV, str(root))
    assert pair_folder("ocr") == root / "ocr"
    assert [d["target_answer"] for d in task_docs("ocr")] == ["cat", "sun"]
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(FrankensteinError, match=f"{DATA_ENV}=.*elsewhere has no ocr/data.jsonl"):
        pair_folder("ocr")


def _file_identity(path: Path) -> tuple[int, int]:
    """(inode, mtime): changes when the file is rewritten or another file is renamed over it."""
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def test_default_set_is_generated_once_into_the_cache(monkeypatch, tmp_path):
    from frankenstein_tasks.vision import pairs

    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv("FRANKENSTEIN_CACHE", str(tmp_path / "cache"))
    generated = []
    original = pairs.write_pairs

    def counted(task, out, **kw):
        generated.append(task)
        return original(task, out, **kw)

    monkeypatch.setattr(pairs, "write_pairs", counted)
    folder = dataset.default_pairs("recognition", n=3)
    assert folder == tmp_path / "cache" / "vision_pairs" / f"recognition-n3-seed0-size448-{generator_tag()}"
    first = _file_identity(folder / "data.jsonl")
    assert len(load_pairs(folder, "recognition").pairs) == 3
    assert dataset.default_pairs("recognition", n=3) == folder
    assert generated == ["recognition"]  # reused, not regenerated
    assert _file_identity(folder / "data.jsonl") == first  # and the file in place was left alone
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary leftovers
    # the tasks' default (n=100) goes to the same cache
    assert pair_folder("ocr").parent == folder.parent


def test_generated_folder_loads_as_shared_layout(tmp_path):
    folder = write_pairs("grounding", tmp_path / "grounding", n=3, progress=False)
    docs = to_docs(load_pairs(folder, "grounding"))
    raw = [json.loads(line) for line in (folder / "data.jsonl").read_text().splitlines()]
    assert [d["target_answer"] for d in docs] == [",".join(map(str, r["meta"]["target_bbox_xyxy"])) for r in raw]


def test_default_set_race_keeps_the_first_complete_set(monkeypatch, tmp_path):
    from frankenstein_tasks.vision import pairs

    monkeypatch.setenv("FRANKENSTEIN_CACHE", str(tmp_path))
    folder = tmp_path / "vision_pairs" / f"ocr-n2-seed0-size448-{generator_tag()}"
    original = pairs.write_pairs
    theirs = []

    def other_process_finishes_first(task, out, **kw):
        original(task, folder, **kw)  # the other rank's complete set lands while we draw ours
        theirs.append(_file_identity(folder / "data.jsonl"))
        return original(task, out, **kw)

    monkeypatch.setattr(pairs, "write_pairs", other_process_finishes_first)
    assert pairs.default_pairs("ocr", n=2) == folder
    assert [_file_identity(folder / "data.jsonl")] == theirs  # the other rank's file is the one in place
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # ours was dropped, no staging left
    assert len(load_pairs(folder).pairs) == 2
    # a damaged cache folder is reported, not silently mixed with a new set
    monkeypatch.setattr(pairs, "write_pairs", original)
    (folder / "data.jsonl").unlink()
    with pytest.raises(FrankensteinError, match="is incomplete; delete it"):
        pairs.default_pairs("ocr", n=2)
