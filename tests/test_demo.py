"""`frankenstein demo` end to end on the model organism: every stage runs, the report's numbers are the
result files' numbers, and the organism's known answers show in them.

The organism's "test" setting is trained once per machine and cached (the organism tests share it).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import cli_path, run_cli

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    done = run_cli([cli_path("frankenstein"), "demo", "--out", str(out), "--organism", "test"], timeout=2400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert f"report in {out / 'report' / 'report.html'}" in done.stdout
    return out


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def results(folder: Path) -> dict:
    found = sorted(folder.rglob("*_results.json"))
    assert found, f"no results under {folder}"
    return json.loads(found[-1].read_text())["results"]


def test_every_stage_ran_and_the_config_reruns(demo):
    manifest = json.loads((demo / "run.json").read_text())
    assert {name: s["status"] for name, s in manifest["stages"].items()} == {name: "done" for name in manifest["stages"]}
    assert (demo / "demo.yaml").is_file() and (demo / "report" / "report.html").is_file()
    # The written config is a real run config: started again, every stage is found finished.
    again = run_cli([cli_path("frankenstein"), "run", str(demo / "demo.yaml"), "--no-report"], timeout=600)
    assert again.returncode == 0 and again.stdout.count("done earlier") == len(manifest["stages"]), again.stdout[-2000:]


def test_report_numbers_are_the_result_files_numbers(demo):
    figures = demo / "report" / "figures"
    for figure, stage, metrics in (
        ("vision_swap.csv", "vision_swap", ("change_rate", "source_adoption_rate")),
        ("reasoning_ablation.csv", "reasoning", ("accuracy_by_layer",)),
        ("reasoning_logprob.csv", "reasoning_logprob", ("answer_logprob_drop",)),
    ):
        table = rows(figures / figure)
        checked = 0
        for row in table:
            if row["metric"] not in metrics:
                continue
            curve = results(demo / stage / row["role"])[row["task"]][f"{row['metric']},none"]
            j = curve["layers"].index(int(row["layer"]))
            assert float(row["value"]) == pytest.approx(curve["value"][j]) and int(row["unified_index"]) == int(row["layer"]) + 1
            checked += 1
        assert checked >= 2 * 8, figure
    delta_layers = {(r["delta"], int(r["unified_index"])): float(r["energy"]) for r in rows(figures / "weights_energy.csv")}
    summary = json.loads((demo / "delta" / "delta.json").read_text())["summaries"]["unified_layer"]
    for group in summary:
        for delta in ("in", "rl"):
            assert delta_layers[(f"d{delta.upper()}", int(group["key"]))] == pytest.approx(group["deltas"][delta]["energy"])


def test_the_organism_shows_its_known_answers(demo):
    """Real signal, measured by the demo's own stages on the trained organism (thresholds: docs/organism.md)."""
    vision = results(demo / "vision_swap" / "rl")["frank_vision_counting"]
    adoption, change = vision["source_adoption_rate,none"]["value"], vision["change_rate,none"]["value"]
    assert adoption[0] >= 0.5  # swapping the image's tokens from layer 0 makes it answer for the source image
    assert change[-1] <= 0.2  # by the last layers the visual tokens no longer matter
    ablation = results(demo / "reasoning" / "rl")["frank_gsm8k"]["accuracy_drop,none"]["value"]
    assert max(ablation) - min(ablation) >= 0.3  # some layers matter to the arithmetic, others hardly
