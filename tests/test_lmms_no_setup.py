"""`lmms_eval --tasks frank_*` right after `pip install`: no --include_path, no LMMS_EVAL_PLUGINS.

Also: the end-of-run console table shows curves compactly while the results JSON keeps them whole,
and `accelerate launch --cpu --num_processes 2` gives the same answers and curves as one process.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from frankenstein_tasks import contract
from conftest import cli_path, run_cli

pytestmark = pytest.mark.cli

FRANK_TASKS = ("frank_vision", "frank_vision_counting", "frank_vision_ocr")


SETUP_VARIABLES = ("LMMS_EVAL_PLUGINS", "PYTHONPATH_EXTRA")


def clean_env() -> dict:
    """The environment of a user who set nothing up."""
    return {k: v for k, v in os.environ.items() if k not in SETUP_VARIABLES}


@pytest.fixture(autouse=True)
def no_setup_variables(monkeypatch):
    """run_cli starts from os.environ and adds the env it is given, so what clean_env() leaves out
    must be gone from os.environ too to be gone from the commands' environment."""
    for name in SETUP_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("spelling", ["lmms_eval", "lmms-eval", "python -m lmms_eval"])
def test_task_list_shows_frank_tasks_for_every_spelling(spelling, tmp_path):
    command = [sys.executable, "-m", "lmms_eval"] if spelling.startswith("python") else [cli_path(spelling)]
    done = run_cli(command + ["--tasks", "list"], env=clean_env(), cwd=tmp_path, timeout=300)
    listed = done.stdout + done.stderr
    for task in FRANK_TASKS:
        assert f" - {task}\n" in listed, f"{spelling} --tasks list does not show {task}: {listed[-2000:]}"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "pairs"
    made = run_cli([cli_path("frankenstein"), "data", "make-pairs", "--task", "counting", "--n", "4", "--size", "112", "--out", str(out)])
    assert made.returncode == 0, made.stderr
    return out


def swap_run(launcher: list[str], model: str, pairs, out) -> tuple[dict, list[dict], str]:
    env = {**clean_env(), "FRANKENSTEIN_VISION_DATA": str(pairs)}
    done = run_cli(launcher + [
        "--model", "frankenstein", "--model_args", f"pretrained={model},probe=visual_swap,max_new_tokens=6",
        "--tasks", "frank_vision_counting", "--output_path", str(out), "--log_samples",
    ], env=env, timeout=900)
    results = list(out.rglob("*_results.json"))
    assert done.returncode == 0 and len(results) == 1, (done.stdout + done.stderr)[-4000:]
    task = json.loads(results[0].read_text())["results"]["frank_vision_counting"]
    samples = [json.loads(line) for p in out.rglob("*_samples_frank_vision_counting.jsonl") for line in p.read_text().splitlines()]
    return task, sorted(samples, key=lambda s: s["doc_id"]), done.stdout


@pytest.mark.slow
def test_one_process_vs_two_with_accelerate(tiny_trio, pairs, tmp_path):
    single, single_samples, printed = swap_run([cli_path("lmms_eval")], str(tiny_trio["rl"]), pairs, tmp_path / "one")

    # The results JSON keeps each curve whole; the console shows a one-line summary and a per-layer table.
    curve = single["change_rate,none"]
    assert contract.is_curve(curve) and curve["layers"] == list(range(8)) and curve["n"] == 4
    assert contract.curve_summary(curve) in printed
    assert "change_rate per decoder layer" in printed and "'layers':" not in printed

    accelerate = [cli_path("accelerate"), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lmms_eval"]
    double, double_samples, _ = swap_run(accelerate, str(tiny_trio["rl"]), pairs, tmp_path / "two")
    assert [s["doc_id"] for s in double_samples] == [0, 1, 2, 3]
    # Same per-item, per-layer answers, and the same aggregated curves.
    for a, b in zip(single_samples, double_samples):
        assert contract.decode(a["filtered_resps"]) == contract.decode(b["filtered_resps"])
    for metric in ("change_rate,none", "source_adoption_rate,none"):
        assert double[metric] == single[metric]
    assert double["accuracy,none"] == single["accuracy,none"]


def test_curve_summary_by_hand():
    curve = {"layers": [0, 1, 2, 3, 4], "value": [0.4, 1.0, 0.6, 0.45, 0.0], "stderr": [0] * 5, "n": 7}
    # peak 1.0 at layer 1; the first later value below 0.5 is 0.45 at layer 3
    assert contract.half_peak_layer(curve) == 3
    assert contract.sparkline(curve["value"]) == "▄█▅▄▁"
    assert contract.curve_summary(curve) == "▄█▅▄▁ peak 1.00 @L1, <½ from L3 (n=7)"
    flat = {"layers": [0, 1], "value": [0.5, 0.5], "stderr": [0, 0], "n": 2}
    assert contract.half_peak_layer(flat) is None and "<½" not in contract.curve_summary(flat)
