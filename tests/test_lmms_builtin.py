"""lmms-eval's own models and tasks, with this package installed, run as they do without it.

Proof that make-tiny checkpoints are real for the harness (lmms-eval's built-in qwen2_5_vl runs
them), and that installing this package changes nothing for a run that uses none of it: lmms-eval's
built-in `pope` task (on a local copy of its dataset) gives the same results file, samples log and
console table with the package's hooks installed as in a process where the package is not there
(`lmms_eval_as_installed.py` says how that process is made).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from frankenstein_tasks.hub_cache import OFFLINE_ENV, cache_dataset
from lmms_tasks import dots, read_run, write_counting_task

LAUNCHER = Path(__file__).with_name("lmms_eval_as_installed.py")


@pytest.mark.slow
@pytest.mark.cli
def test_builtin_qwen2_5_vl_runs_tiny_checkpoint(tiny_trio, tmp_path):
    tasks = write_counting_task(tmp_path)
    out = tmp_path / "out"
    result = run_cli([
        sys.executable, "-m", "lmms_eval",
        "--model", "qwen2_5_vl",
        "--model_args", f"pretrained={tiny_trio['in']},device=cpu,device_map=cpu",
        "--tasks", "tiny_count", "--include_path", str(tasks),
        "--output_path", str(out), "--log_samples",
    ])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results, samples = read_run(out, "tiny_count")
    assert "exact_match,none" in results
    assert len(samples) == 2
    assert all(isinstance(s["filtered_resps"], str) and "exact_match" in s for s in samples)


def pope_env(root: Path) -> dict[str, str]:
    """A local copy of lmms-eval's POPE dataset (its hub schema, three rows) where its task finds it offline."""
    import datasets

    rows = [{"question_id": str(i), "question": f"Is there a {color} circle in the image?", "answer": answer,
             "image_source": f"local_{i}", "image": dots(n, color), "category": "adversarial"}
            for i, (n, color, answer) in enumerate([(2, "red", "yes"), (3, "blue", "no"), (1, "red", "yes")])]
    features = datasets.Features({key: datasets.Value("string") for key in rows[0] if key != "image"} | {"image": datasets.Image()})
    cache = root / "datasets"
    cache_dataset("lmms-lab-encoder/POPE", None, {"test": rows}, cache_dir=cache, features=features)
    return {"HF_DATASETS_CACHE": str(cache), **OFFLINE_ENV}


# What differs between any two runs of the same evaluation: clocks, durations and speeds, and where
# a function object happens to sit in memory. Everything else in the results file must be equal.
VOLATILE_KEYS = {"date", "start_time", "end_time", "total_evaluation_time_seconds", "total_elapsed_time", "avg_speed"}


def _steady(value):
    if isinstance(value, dict):
        return {k: _steady(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_steady(v) for v in value]
    return re.sub(r" at 0x[0-9a-f]+>", ">", value) if isinstance(value, str) else value


def _table(stdout: str) -> str:
    """The end-of-run console block: the run line, the banner, the results table, then lmms-eval's
    throughput table with its clock readings masked (its column widths follow them, so they go too)."""
    block = stdout[stdout.index("qwen2_5_vl ("):]
    results, _, throughput = block.partition("Throughput Summary")
    throughput = re.sub(r"\|\s*(total_elapsed_time|avg_latency|avg_speed)\s*\|\s*[\d.]+\s*\|", r"|\1|<clock>|", throughput)
    throughput = re.sub(r"-{3,}", "---", re.sub(r" *\| *", "|", throughput))
    return results + "Throughput Summary" + throughput


@pytest.mark.slow
@pytest.mark.cli
def test_a_builtin_task_runs_the_same_with_and_without_this_package(tiny_trio, tmp_path):
    env = pope_env(tmp_path)
    runs = {}
    out = tmp_path / "out"  # the same output path for both (it is part of the results file), moved after each run
    for mode in ("with", "without"):
        report = tmp_path / f"{mode}.json"
        hide = ["--without-this-package"] if mode == "without" else []
        done = run_cli([sys.executable, str(LAUNCHER), *hide, "--",
                        "--model", "qwen2_5_vl", "--model_args", f"pretrained={tiny_trio['in']},device=cpu,device_map=cpu",
                        "--tasks", "pope", "--output_path", str(out), "--log_samples", "--seed", "0"],
                       env={**env, "LMMS_EVAL_AS_INSTALLED_REPORT": str(report)},
                       cwd=tmp_path)  # outside any git checkout: lmms-eval records the cwd's commit
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        kept = out.rename(tmp_path / mode)
        (results_file,) = kept.rglob("*_results.json")
        (samples_file,) = kept.rglob("*_samples_pope.jsonl")
        runs[mode] = {"results": json.loads(results_file.read_text()), "samples": samples_file.read_text(),
                      "table": _table(done.stdout), "loaded": json.loads(report.read_text())}
    with_, without = runs["with"], runs["without"]
    # The two runs are what they claim: one with every hook installed, one with none of the package.
    assert without["loaded"] == {"package_modules": [], "hooked": []}
    assert "frankenstein_tasks.models" in with_["loaded"]["package_modules"]
    hooked = set(with_["loaded"]["hooked"])
    assert {"lmms_eval.tasks.TaskManager", "lmms_eval.utils.make_table", "lmms_eval.api.task.ConfigurableTask"} <= hooked
    # ... and they agree: results (but clocks), every logged sample, and the console table.
    assert with_["results"]["results"]["pope"]["pope_accuracy,none"] is not None
    assert _steady(with_["results"]) == _steady(without["results"])
    assert with_["samples"] == without["samples"] and len(without["samples"].splitlines()) == 3
    assert with_["table"] == without["table"] and "pope_accuracy" in without["table"]


def test_the_console_table_hook_hands_plain_tables_to_lmms_eval_untouched():
    """In process, for the fast tier: a table without this package's values goes to lmms-eval's own
    `make_table` as it is (the same text, and the same side effect: it pops each task's alias)."""
    import copy

    import lmms_eval.utils

    import frankenstein_tasks.models  # noqa: F401  (installs the hooks)

    hooked = lmms_eval.utils.make_table
    assert getattr(hooked, "_frankenstein_curves", False)
    original = hooked.__wrapped__
    plain = {"results": {"pope": {"alias": "POPE", "pope_accuracy,none": 0.5, "pope_accuracy_stderr,none": "N/A"}},
             "n-shot": {"pope": 0}, "higher_is_better": {"pope": {"pope_accuracy": True}},
             "throughput": {"total_gen_tokens": 12, "avg_speed": 3.5}}
    mine, theirs = copy.deepcopy(plain), copy.deepcopy(plain)
    assert hooked(mine) == original(theirs) and mine == theirs and "alias" not in mine["results"]["pope"]
    # A table with a curve is the one the hook rewrites.
    curve = {"layers": [0, 1], "value": [0.5, 0.25], "stderr": [0.1, 0.1], "n": 4}
    shown = hooked({"results": {"frank_x": {"changed,none": curve}}, "n-shot": {"frank_x": 0}})
    assert "per decoder layer" in shown and "'layers'" not in shown
