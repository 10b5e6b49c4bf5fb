"""The frank_vision_* tasks end to end through the real `lmms_eval` CLI, with the built-in qwen2_5_vl.

The tiny model answers at random, so what is checked is the plumbing: every task and the group found
(through --include_path and through LMMS_EVAL_PLUGINS), the docs coming from the chosen pair folder,
and each logged per-sample accuracy being our scorer's verdict on the logged answer.
lmms-eval 0.7.3 exits 0 even when a run fails, so success is judged by the results file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import cli_path, run_cli
from vision_layout import write_shared_layout

import frankenstein_tasks
from frankenstein_tasks.vision.pairs import TASKS, generator_tag
from frankenstein_tasks.vision.scoring import is_correct, truth_text

TASKS_DIR = Path(frankenstein_tasks.__file__).parent / "tasks"
pytestmark = pytest.mark.cli


def _lmms_eval(model_dir: Path, tasks: str, out: Path, *, env: dict, limit: int | None = None, include: bool = True,
               cwd: Path | None = None):
    args = [
        sys.executable, "-m", "lmms_eval", "--model", "qwen2_5_vl",
        "--model_args", f"pretrained={model_dir},device=cpu,device_map=cpu",
        "--tasks", tasks, "--output_path", str(out), "--log_samples",
    ]
    if include:
        args += ["--include_path", str(TASKS_DIR)]
    if limit is not None:
        args += ["--limit", str(limit)]
    # the plain path must not depend on these being unset in the caller's environment
    base = {"FRANKENSTEIN_VISION_DATA": "", "FRANKENSTEIN_VISION_SKIP_BAD": "", "LMMS_EVAL_PLUGINS": ""}
    result = run_cli(args, env={**base, **env}, cwd=cwd)
    return result, result.stdout + result.stderr


def _results(out: Path, log: str) -> dict:
    found = list(out.rglob("*_results.json"))
    assert len(found) == 1, log[-4000:]
    return json.loads(found[0].read_text())


def _samples(out: Path, task: str) -> list[dict]:
    (path,) = out.rglob(f"*_samples_{task}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def _pair_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "data.jsonl").read_text().splitlines() if line.strip()]


def _check_plain_samples(samples: list[dict], task: str, lines: list[dict]) -> None:
    """Each logged sample is pair `doc_id` of the folder, scored by our scorer on the logged answer."""
    from frankenstein_tasks.vision.dataset import META_MODELS

    for s in samples:
        line = lines[s["doc_id"]]
        meta = META_MODELS[task].model_validate(line["meta"])
        assert s["input"] == line["prompt"]
        assert s["target"] == truth_text(task, meta, "target")
        assert isinstance(s["filtered_resps"], str)
        assert s["accuracy"] == float(is_correct(task, s["filtered_resps"], meta, "target"))
        assert "change_rate" not in s and "source_adoption_rate" not in s


def test_group_through_include_path_on_generated_pairs(tiny_trio, tmp_path):
    pairs_dir = tmp_path / "pairs"
    made = run_cli([cli_path("frankenstein"), "data", "make-pairs", "--n", "3", "--size", "112", "--out", str(pairs_dir)])
    assert made.returncode == 0, made.stderr
    out = tmp_path / "out"
    result, log = _lmms_eval(tiny_trio["in"], "frank_vision", out, limit=2, env={"FRANKENSTEIN_VISION_DATA": str(pairs_dir)})
    results = _results(out, log)["results"]
    assert set(results) == {"frank_vision", *(f"frank_vision_{t}" for t in TASKS)}
    for task in TASKS:
        metrics = results[f"frank_vision_{task}"]
        # a plain model: accuracy only, no probe curves and no skip count
        assert {k.split(",")[0] for k in metrics if not k.startswith(("alias", "accuracy"))} == set(), metrics
        samples = _samples(out, f"frank_vision_{task}")
        assert [s["doc_id"] for s in samples] == [0, 1]
        _check_plain_samples(samples, task, _pair_lines(pairs_dir / task))
        assert metrics["accuracy,none"] == pytest.approx(sum(s["accuracy"] for s in samples) / 2)
    assert "accuracy,none" in results["frank_vision"]
    assert "frank_vision_counting" in log  # the printed table


def test_plugin_discovery_and_default_cache(tiny_trio, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    result, log = _lmms_eval(
        tiny_trio["in"], "frank_vision_recognition", out, limit=1, include=False, cwd=tmp_path,
        env={"LMMS_EVAL_PLUGINS": "frankenstein_tasks", "FRANKENSTEIN_CACHE": str(cache)},
    )
    results = _results(out, log)["results"]
    assert "accuracy,none" in results["frank_vision_recognition"]
    # no data named: the default set was generated into the cache, complete, and the run read it
    folder = cache / "vision_pairs" / f"recognition-n100-seed0-size448-{generator_tag()}"
    lines = _pair_lines(folder)
    assert len(lines) == 100 and [p.name for p in folder.parent.iterdir()] == [folder.name]
    _check_plain_samples(_samples(out, "frank_vision_recognition"), "recognition", lines)


def test_shared_layout_folder_runs_and_bad_lines_are_skipped_on_request(tiny_trio, tmp_path):
    root = tmp_path / "user_pairs"
    lines = write_shared_layout(root)
    with open(root / "ocr" / "data.jsonl", "a") as f:  # a third line whose image is missing
        f.write(json.dumps({**lines["ocr"][0], "id": "lost", "source_image": "imgs/s/lost.png"}) + "\n")
    out = tmp_path / "out"
    result, log = _lmms_eval(
        tiny_trio["in"], "frank_vision_ocr,frank_vision_grounding", out,
        env={"FRANKENSTEIN_VISION_DATA": str(root), "FRANKENSTEIN_VISION_SKIP_BAD": "1"},
    )
    results = _results(out, log)["results"]
    assert set(results) == {"frank_vision_ocr", "frank_vision_grounding"}
    assert re.search(r"skipped 1 bad line\(s\) of .*ocr/data\.jsonl; first: .*data\.jsonl:3: source_image .*lost\.png does not exist", log)
    for task in ("ocr", "grounding"):
        samples = _samples(out, f"frank_vision_{task}")
        assert len(samples) == 2  # every good pair, nothing else
        _check_plain_samples(samples, task, lines[task])


def test_bad_pair_file_stops_the_run_naming_file_and_line(tiny_trio, tmp_path):
    root = tmp_path / "user_pairs"
    write_shared_layout(root)
    data = root / "counting" / "data.jsonl"
    data.write_text(data.read_text() + '{"id": 9, "task": "counting", "target_image": \n')
    out = tmp_path / "out"
    result, log = _lmms_eval(tiny_trio["in"], "frank_vision_counting", out, env={"FRANKENSTEIN_VISION_DATA": str(root)})
    assert f"{data}:3: malformed JSON" in log
    assert not list(out.rglob("*_results.json"))
