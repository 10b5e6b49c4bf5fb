"""`lmms_eval --tasks frank_*` right after `pip install`: no --include_path, no LMMS_EVAL_PLUGINS.

Also: the end-of-run console table shows curves compactly while the results JSON keeps them whole,
and two ranks under torchrun (gloo on CPU) each answer a disjoint, non-empty share of the items and
together give the same per-item answers and curves as one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from frankenstein_tasks import contract
from conftest import cli_path, run_cli
from ranks import assert_shares, torchrun

pytest_plugins = ("organism_fixture",)

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


# One spelling in the fast tier; the other two start lmms-eval again for the same check.
@pytest.mark.parametrize("spelling", ["lmms_eval", pytest.param("lmms-eval", marks=pytest.mark.slow),
                                      pytest.param("python -m lmms_eval", marks=pytest.mark.slow)])
def test_task_list_shows_frank_tasks_for_every_spelling(spelling, tmp_path):
    command = [sys.executable, "-m", "lmms_eval"] if spelling.startswith("python") else [cli_path(spelling)]
    done = run_cli(command + ["--tasks", "list"], env=clean_env(), cwd=tmp_path, timeout=300)
    listed = done.stdout + done.stderr
    for task in FRANK_TASKS:
        assert f" - {task}\n" in listed, f"{spelling} --tasks list does not show {task}: {listed[-2000:]}"


ITEMS = 5  # odd: the ranks get 3 and 2 items, and lmms-eval evens them out by repeating one


def swap_run(launcher: list[str], organism: dict, out) -> tuple[dict, list[dict], subprocess.CompletedProcess]:
    """The visual-swap probe on the organism's counting pairs: (results JSON, samples by doc, the run)."""
    env = {**clean_env(), "FRANKENSTEIN_VISION_DATA": str(organism["rl"].parent / "eval" / "pairs")}
    done = run_cli(launcher + [
        "--model", "frankenstein", "--model_args", f"pretrained={organism['rl']},device=cpu,probe=visual_swap,max_new_tokens=6",
        "--tasks", "frank_vision_counting", "--limit", str(ITEMS), "--output_path", str(out), "--log_samples",
    ], env=env, timeout=900)
    results = list(out.rglob("*_results.json"))
    assert done.returncode == 0 and len(results) == 1, (done.stdout + done.stderr)[-4000:]
    samples = [json.loads(line) for p in out.rglob("*_samples_frank_vision_counting.jsonl") for line in p.read_text().splitlines()]
    return json.loads(results[0].read_text()), sorted(samples, key=lambda s: s["doc_id"]), done


@pytest.mark.slow
def test_two_ranks_under_torchrun_share_the_items_and_equal_one(organism, tmp_path):
    one, one_samples, single = swap_run([cli_path("lmms_eval")], organism, tmp_path / "one")
    task = one["results"]["frank_vision_counting"]

    # The results JSON keeps each curve whole; the console shows a one-line summary and a per-layer table.
    curve = task["change_rate,none"]
    assert contract.is_curve(curve) and curve["layers"] == list(range(8)) and curve["n"] == ITEMS
    assert contract.curve_summary(curve) in single.stdout
    assert "change_rate per decoder layer" in single.stdout and "'layers':" not in single.stdout
    assert len(set(curve["value"])) > 1  # the organism's layers differ, so answers of the wrong layer would show
    assert one["frankenstein"]["docs_by_rank"] == {"frank_vision_counting": [list(range(ITEMS))]}

    two, two_samples, double = swap_run([*torchrun(2), "-m", "lmms_eval"], organism, tmp_path / "two")
    # Both ranks ran (each says so) and each answered its own, non-empty share of the items.
    for rank in (0, 1):
        assert f"frankenstein: rank {rank} of 2 answers" in double.stderr, double.stderr[-3000:]
    assert_shares(two["frankenstein"]["docs_by_rank"]["frank_vision_counting"], range(ITEMS))
    # Merged, they are the one-process run: every item once, the same per-layer answers and curves.
    assert [s["doc_id"] for s in two_samples] == list(range(ITEMS))
    for a, b in zip(one_samples, two_samples):
        assert contract.decode(a["filtered_resps"]) == contract.decode(b["filtered_resps"])
    for metric in ("change_rate,none", "source_adoption_rate,none", "accuracy,none"):
        assert two["results"]["frank_vision_counting"][metric] == task[metric]


def test_curve_summary_by_hand():
    curve = {"layers": [0, 1, 2, 3, 4], "value": [0.4, 1.0, 0.6, 0.45, 0.0], "stderr": [0] * 5, "n": 7}
    # peak 1.0 at layer 1; the first later value below 0.5 is 0.45 at layer 3
    assert contract.half_peak_layer(curve) == 3
    assert contract.sparkline(curve["value"]) == "▄█▅▄▁"
    assert contract.curve_summary(curve) == "▄█▅▄▁ peak 1.00 @L1, <½ from L3 (n=7)"
    flat = {"layers": [0, 1], "value": [0.5, 0.5], "stderr": [0, 0], "n": 2}
    assert contract.half_peak_layer(flat) is None and "<½" not in contract.curve_summary(flat)
