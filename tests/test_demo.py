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
    ran = {"delta", "merges", "vision_swap", "reasoning", "reasoning_logprob", "transfer", "attention"}
    # Every stage but the lm-eval leaderboard (off by default: it needs lm-eval's datasets).
    assert {name: s["status"] for name, s in manifest["stages"].items()} == {**{name: "done" for name in ran}, "leaderboard": "not run"}
    assert (demo / "demo.yaml").is_file() and (demo / "report" / "report.html").is_file()
    # The written config is a real run config: started again, every stage is found finished.
    again = run_cli([cli_path("frankenstein"), "run", str(demo / "demo.yaml"), "--no-report"], timeout=600)
    assert again.returncode == 0 and again.stdout.count("done earlier") == len(ran), again.stdout[-2000:]


def test_result_files_have_the_declared_shapes(demo):
    """Every stage's files, as the real run wrote them, validate with `analysis.schema` and its readers."""
    from test_schema import check_run_folder

    counts = check_run_folder(demo)
    assert all(counts[shape] > 0 for shape in ("curves", "estimates", "transitions", "records")), counts


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
    # Attention shift: paired over the items both real samples logs hold, mean difference by a plain loop.
    logs = {}
    for role in ("in", "rl"):
        log = sorted((demo / "attention" / role).rglob("*_samples_frank_attention_shift.jsonl"))[-1]
        logs[role] = {s["accuracy_a"]["item"]: s["visual_attention"] for s in map(json.loads, log.read_text().splitlines())}
    both = [item for item in logs["in"] if item in logs["rl"]]
    shift = rows(figures / "attention_shift.csv")
    assert len(shift) >= 8 and len(both) >= 10
    for row in shift:
        layer = row["layer"]
        expected = sum(logs["rl"][i][layer] - logs["in"][i][layer] for i in both) / len(both)
        assert row["interval"] == "paired bootstrap" and int(row["n_paired"]) == len(both)
        assert float(row["difference"]) == pytest.approx(expected, abs=1e-9)
        assert float(row["difference_low"]) <= float(row["difference"]) <= float(row["difference_high"])
    # Transfer: each M metric's difference from IN is paired over the items both samples logs hold.
    counts = {"m_vis": lambda a, b: a and not b, "m_v2r": lambda a, b: a and b, "m_rea": lambda a, b: a}
    m_rows = [r for r in rows(figures / "transfer_metrics.csv") if r["metric"] in counts and r["model"] != "in"]
    assert len(m_rows) == 7 * 3  # RL and the six splices, three M metrics each
    for row in m_rows:
        indicator = {}
        for model in (row["model"], "in"):
            log = sorted((demo / "transfer" / model).rglob(f"*_samples_{row['task']}.jsonl"))[-1]
            by_item: dict[str, dict[str, bool]] = {}
            for s in map(json.loads, log.read_text().splitlines()):
                record = s[row["metric"]]
                by_item.setdefault(record["item"], {})[record["condition"]] = record["correct"]
            indicator[model] = {i: counts[row["metric"]](c["A"], c.get("B", c["A"])) for i, c in by_item.items()}
        both = [i for i in indicator["in"] if i in indicator[row["model"]]]
        expected = sum(indicator[row["model"]][i] - indicator["in"][i] for i in both) / len(both)
        assert row["difference_paired"] == "True" and int(row["difference_n"]) == len(both) >= 10
        assert float(row["difference_vs_in"]) == pytest.approx(expected, abs=1e-9)
        assert float(row["difference_low"]) <= float(row["difference_vs_in"]) <= float(row["difference_high"])
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
