"""`frankenstein demo`-style runs on a tiny trio of each new family, through the real command lines.

For Qwen3-VL and InternVL: `frankenstein make-tiny --arch` writes a planted trio, `frankenstein demo
--models TRIO` runs every stage of `frankenstein run` on it (weight deltas, splices, the four probes
through lmms-eval, the report), and the real `lmms_eval` CLI, run separately on the same pairs, gives
each item the same per-layer answers as the run's vision_swap stage. Random weights answer nonsense;
what is checked is that every stage runs on the family and that the numbers agree with their sources.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from conftest import cli_path, run_cli
from frankenstein_tasks import contract

pytestmark = pytest.mark.cli

ITEMS = 4
# family -> (planted block, vision blocks)
FAMILIES = {"qwen3_vl": ("late", 3), "internvl": ("mid", 2)}


def samples_by_doc(folder: Path, task: str) -> dict[int, dict]:
    (log,) = sorted(folder.rglob(f"*_samples_{task}.jsonl"))
    return {s["doc_id"]: s for s in map(json.loads, log.read_text().splitlines())}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_demo_style_run_on_a_tiny_trio(family, tmp_path):
    planted, vision_blocks = FAMILIES[family]
    trio = tmp_path / "trio"
    made = run_cli([cli_path("frankenstein"), "make-tiny", str(trio), "--arch", family, "--layers", "6",
                    "--vision-depth", str(vision_blocks), "--plant", planted])
    assert made.returncode == 0, made.stderr[-2000:]
    out = tmp_path / "demo"
    done = run_cli([cli_path("frankenstein"), "demo", "--models", str(trio), "--out", str(out), "--items", str(ITEMS)],
                   timeout=2400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert f"report in {out / 'report' / 'report.html'}" in done.stdout

    manifest = json.loads((out / "run.json").read_text())
    assert {name: s["status"] for name, s in manifest["stages"].items()} == {
        **{name: "done" for name in ("delta", "merges", "vision_swap", "reasoning", "reasoning_logprob", "transfer", "attention")},
        "leaderboard": "not run",  # off by default: it needs lm-eval's own datasets
    }
    # The weight deltas find the planted block; its layers are the family's.
    delta = json.loads((out / "delta" / "delta.json").read_text())
    assert delta["block_ranking"]["rl"][0] == planted and delta["meta"]["layout"]["model_type"] == family
    # Splices: mergekit recipes where mergekit knows the family, else the plans of the project's own writer.
    merges = sorted(p.name for p in (out / "merges").rglob("*") if p.is_file())
    assert merges == sorted(f"{v}.{'yaml' if family == 'qwen3_vl' else 'txt'}" for v in
                            ("early", "mid", "late", "early_mid", "mid_late", "early_late"))
    # Every probe stage reports a curve over all 6 decoder layers; the report draws them.
    figures = out / "report" / "figures"
    rows = [r for r in csv.DictReader((figures / "vision_swap.csv").open()) if r["metric"] == "change_rate"]
    assert {int(r["layer"]) for r in rows} == set(range(6)) and {r["task"] for r in rows} == {"frank_vision_counting", "frank_vision_recognition"}
    assert (figures / "attention_shift.csv").is_file() and (figures / "reasoning_ablation.csv").is_file()

    # The real lmms_eval CLI, on the same pairs and checkpoint, answers every item as the run did.
    cli_out = tmp_path / "lmms"
    result = run_cli([
        sys.executable, "-m", "lmms_eval", "--model", "frankenstein",
        "--model_args", f"pretrained={out / 'models' / 'rl'},device=cpu,probe=visual_swap",
        "--tasks", "frank_vision_counting", "--gen_kwargs", "max_new_tokens=8",  # the demo's vision budget
        "--output_path", str(cli_out), "--log_samples",
    ], env={"FRANKENSTEIN_VISION_DATA": str(out / "data" / "pairs"), "HF_DATASETS_OFFLINE": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    from_cli = samples_by_doc(cli_out, "frank_vision_counting")
    from_run = samples_by_doc(out / "vision_swap" / "rl", "frank_vision_counting")
    assert sorted(from_cli) == sorted(from_run) == list(range(ITEMS))
    for doc in from_cli:
        a, b = contract.decode(from_cli[doc]["filtered_resps"]), contract.decode(from_run[doc]["filtered_resps"])
        assert a.error is None and a.layers == list(range(6))
        assert (a.baseline, a.answers) == (b.baseline, b.answers), doc
