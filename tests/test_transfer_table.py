"""The transfer table and the attention shift from result files written here in lmms-eval's layout.

Each run is a `<date>_results.json` plus `<date>_samples_<task>.jsonl` files, as `lmms_eval
--output_path OUT --log_samples` writes them (test_transfer_lmms.py reads real ones). The per-item
outcomes are small tables written by hand, and every expected difference is worked out by hand from
them; the models are named only by the runs' model_args (and a merged folder's mergekit_config.yml).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from analysis.attention_shift import attention_shift, shift_from_samples
from analysis.lmms_runs import find_runs
from analysis.model_identity import identify_runs, merge_layer_sources
from analysis.transfer_table import transfer_table, write_transfer_table
from frankenstein_tasks import cli
from surgery.errors import FrankensteinError

T, F = True, False
TASK_METRIC = {"frank_general_vqa": "m_vis", "frank_math_vqa": "m_v2r", "frank_math500_rea": "m_rea"}
RECORD_METRICS = {"frank_general_vqa": ("m_vis", "accuracy_a", "accuracy_b", "transitions"),
                  "frank_math_vqa": ("m_v2r", "accuracy_a", "accuracy_b", "transitions"),
                  "frank_math500_rea": ("m_rea", "accuracy_a"),
                  "frank_attention_shift": ("accuracy_a",)}

# Per model and task: item -> (right under A, right under B) or (right,). Indicators worked out by hand:
OUTCOMES = {
    "IN": {
        "frank_general_vqa": {"i1": (T, F), "i2": (T, T), "i3": (F, F), "i4": (T, F)},  # M_vis items i1, i4: 2/4
        "frank_math_vqa": {"i5": (T, T), "i6": (T, F)},  # M_v2r item i5: 1/2
        "frank_math500_rea": {"a": (T,), "b": (F,), "c": (F,)},  # M_rea 1/3
    },
    "RL": {
        "frank_general_vqa": {"i1": (T, F), "i2": (T, F), "i3": (T, F), "i4": (F, F)},  # i1, i2, i3: 3/4
        "frank_math_vqa": {"i5": (T, T), "i6": (T, T)},  # 2/2
        "frank_math500_rea": {"a": (T,), "b": (T,), "c": (F,)},  # 2/3
    },
    "mid_late": {  # a --limit run: i4 missing, and i3 without B (left out)
        "frank_general_vqa": {"i1": (T, T), "i2": (T, F), "i3": (F,)},  # i2 of i1, i2: 1/2
    },
}
# Differences from IN, paired over the items both have, by hand:
#   RL M_vis:       IN [1,0,0,1], RL [1,1,1,0] over i1..i4 -> 3/4 - 2/4 = +1/4
#   RL M_v2r:       IN [1,0], RL [1,1] -> +1/2
#   RL M_rea:       IN [1,0,0], RL [1,1,0] -> +1/3
#   mid_late M_vis: common items i1, i2: IN [1,0], mid_late [0,1] -> 0
EXPECTED_DIFF = {("RL", "M_vis"): (0.25, 4), ("RL", "M_v2r"): (0.5, 2), ("RL", "M_rea"): (1 / 3, 3), ("mid_late", "M_vis"): (0.0, 2)}


def _estimate(value: float | None, n: int, half: float = 0.1) -> dict:
    """An estimate as the results hold it (the interval is arbitrary here: the table must copy it)."""
    if value is None:
        return {"value": None, "low": None, "high": None, "n": n}
    return {"value": value, "low": round(value - half, 6), "high": round(value + half, 6), "n": n}


def _samples(task: str, outcomes: dict[str, tuple]) -> list[dict]:
    lines = []
    for item, values in outcomes.items():
        for condition, right in zip("AB", values):
            record = {"item": item, "condition": condition, "correct": right, "answer": "x", "graded_by": "rule"}
            lines.append({"doc_id": len(lines), "target": "y", "filtered_resps": "reply", **{m: record for m in RECORD_METRICS[task]}})
    return lines


def _hand_value(task: str, outcomes: dict[str, tuple]) -> tuple[float, int]:
    """The task's headline value over complete items, by the definitions of METHOD.md 3."""
    pairs = [v for v in outcomes.values() if len(v) == (1 if task == "frank_math500_rea" else 2)]
    if task == "frank_general_vqa":
        hits = sum(a and not b for a, b in pairs)
    elif task == "frank_math_vqa":
        hits = sum(a and b for a, b in pairs)
    else:
        hits = sum(a for (a,) in pairs)
    return hits / len(pairs), len(pairs)


def write_run(folder: Path, model: str, model_args: str, tasks: dict[str, dict], *, samples: bool = True,
              extra: dict | None = None, date: str = "20260101_000000") -> Path:
    """An lmms-eval output folder for one run; `tasks`: task -> item outcomes. Returns the results file."""
    results, sub = {}, folder / model
    sub.mkdir(parents=True, exist_ok=True)
    for task, outcomes in tasks.items():
        value, n = _hand_value(task, outcomes)
        results[task] = {"alias": task, f"{TASK_METRIC[task]},none": _estimate(value, n), f"{TASK_METRIC[task]}_stderr,none": "N/A"}
        if samples:
            (sub / f"{date}_samples_{task}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in _samples(task, outcomes)))
    results.update(extra or {})
    path = sub / f"{date}_results.json"
    path.write_text(json.dumps({"results": results, "config": {"model": model, "model_args": model_args}}))
    return path


@pytest.fixture
def checkpoints(tmp_path):
    """IN and RL 'checkpoints' (only their folders matter here) and a mergekit output folder for 'late'."""
    from merge_configs.generate import build_recipe
    from surgery.splice import splice_plan

    ckpt = {"in": tmp_path / "ckpt" / "in", "rl": tmp_path / "ckpt" / "rl", "late": tmp_path / "ckpt" / "merged-late"}
    for p in ckpt.values():
        p.mkdir(parents=True)
    recipe = build_recipe(splice_plan(8, "late"), {"in": str(ckpt["in"]), "rl": str(ckpt["rl"])})
    (ckpt["late"] / "mergekit_config.yml").write_text(recipe.to_yaml())  # what mergekit writes into OUT
    return ckpt


@pytest.fixture
def runs(tmp_path, checkpoints):
    out = tmp_path / "runs"
    ckpt = checkpoints
    return {
        "IN": write_run(out / "a", "qwen2_5_vl", f"pretrained={ckpt['in']}/,device=cpu", OUTCOMES["IN"]),
        "RL": write_run(out / "b", "frankenstein", f"pretrained={ckpt['rl']},device=cpu", OUTCOMES["RL"]),
        "mid_late": write_run(out / "c", "frankenstein", f"in={ckpt['in']},rl={ckpt['rl']},splice=mid_late,device=cpu", OUTCOMES["mid_late"]),
        # no samples log: its difference from IN is unpaired
        "late": write_run(out / "d", "qwen2_5_vl", f"pretrained={ckpt['late']}",
                          {"frank_general_vqa": {"i1": (T, F), "i2": (F, F), "i3": (T, F), "i4": (T, T)}}, samples=False),
    }


def test_identity_from_metadata_only(runs, checkpoints):
    found = find_runs([runs["IN"].parent.parent.parent])  # the whole output tree: folder names say nothing
    identities = identify_runs(found)
    assert {identity.label for identity in identities.values()} == {"IN", "RL", "mid_late", "late"}
    by_file = {p.resolve(): identities[p].label for p in identities}
    assert all(by_file[f.resolve()] == label for label, f in runs.items())
    assert "mergekit_config.yml" in identities[next(p for p in identities if by_file[p.resolve()] == "late")].reason
    assert merge_layer_sources(checkpoints["late"] / "mergekit_config.yml") == [str(checkpoints["in"])] * 5 + [str(checkpoints["rl"])] * 3


def test_table_holds_the_results_numbers_and_hand_computed_differences(runs, tmp_path):
    found = find_runs(runs.values())
    table = transfer_table(found, identify_runs(found))
    assert table.models == ["IN", "RL", "late", "mid_late"]  # IN, RL, then variants in surgery.splice order
    written = write_transfer_table(table, tmp_path / "table")
    rows = list(csv.DictReader((tmp_path / "table" / "transfer_table.csv").open()))
    results = {label: json.loads(path.read_text())["results"] for label, path in runs.items()}
    shown = {"frank_general_vqa": "M_vis", "frank_math_vqa": "M_v2r", "frank_math500_rea": "M_rea"}
    expected_rows = {(label, shown[task]) for label, r in results.items() for task in r}
    assert {(r["model"], r["metric"]) for r in rows} == expected_rows
    for row in rows:
        task = next(t for t, m in shown.items() if m == row["metric"])
        est = results[row["model"]][task][f"{TASK_METRIC[task]},none"]
        assert (float(row["value"]), float(row["low"]), float(row["high"]), int(row["n"])) == (est["value"], est["low"], est["high"], est["n"])
        assert row["task"] == task and Path(row["results"]) == runs[row["model"]].resolve()
        if row["model"] == "IN":
            assert row["diff_vs_in"] == ""
            continue
        if row["model"] == "late":  # unpaired: value difference, half-widths 0.1 and 0.1 in quadrature
            assert row["diff_paired"] == "False"
            in_value = results["IN"]["frank_general_vqa"]["m_vis,none"]["value"]
            assert float(row["diff_vs_in"]) == pytest.approx(est["value"] - in_value)
            assert float(row["diff_high"]) - float(row["diff_vs_in"]) == pytest.approx(math.sqrt(0.1**2 + 0.1**2))
            continue
        value, n = EXPECTED_DIFF[(row["model"], row["metric"])]
        assert row["diff_paired"] == "True" and int(row["diff_n"]) == n
        assert float(row["diff_vs_in"]) == pytest.approx(value)
        assert float(row["diff_low"]) <= float(row["diff_vs_in"]) <= float(row["diff_high"])
    markdown = written["markdown"].read_text()
    assert "| RL | 0.75 [0.65, 0.85] (n=4) | 1.00 [0.90, 1.10] (n=2) | 0.67 [0.57, 0.77] (n=3) | +0.25 [" in markdown
    assert "| mid_late | 0.50 [0.40, 0.60] (n=2) | not run | not run | +0.00 [" in markdown
    assert "† unpaired" in markdown
    assert written["plot"].stat().st_size > 0


def test_cli_writes_the_table_and_names_each_run(runs, tmp_path, capsys):
    assert cli.main(["transfer", *map(str, runs.values()), "-o", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "splice=mid_late in its model_args" in out and "is the IN model" in out
    assert (tmp_path / "t" / "transfer_table.csv").is_file() and (tmp_path / "t" / "transfer_table.png").is_file()


def test_unknown_model_is_one_line_saying_how_to_label_it(runs, tmp_path, capsys):
    stray = write_run(tmp_path / "stray", "qwen2_5_vl", f"pretrained={tmp_path}", OUTCOMES["RL"])
    assert cli.main(["transfer", str(runs["IN"]), str(runs["mid_late"]), str(stray), "-o", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"frankenstein: error: {stray}: cannot tell which model {tmp_path} is")
    assert "--label NAME=RESULTS" in err
    # labelled by hand, it is tabulated under that name
    assert cli.main(["transfer", str(runs["IN"]), str(runs["mid_late"]), "--label", f"RL={stray}", "-o", str(tmp_path / "t")]) == 0
    rows = list(csv.DictReader((tmp_path / "t" / "transfer_table.csv").open()))
    assert {r["model"] for r in rows} == {"IN", "RL", "mid_late"}


def test_identity_errors(runs, checkpoints, tmp_path):
    with pytest.raises(FrankensteinError, match="no splice run or --in/--rl names IN and RL"):
        identify_runs(find_runs([runs["IN"]]))
    assert identify_runs(find_runs([runs["IN"]]), in_model=str(checkpoints["in"]))[runs["IN"].resolve()].label == "IN"
    with pytest.raises(FrankensteinError, match="IN and RL are unknown"):
        identify_runs(find_runs([runs["late"]]))
    with pytest.raises(FrankensteinError, match=r"takes decoder layers \[5, 6, 7\] of 8 from RL, which is no variant with cuts 3:6"):
        identify_runs(find_runs([runs["late"], runs["mid_late"]]), cuts=(3, 6))
    odd = write_run(tmp_path / "odd", "frankenstein", f"in={checkpoints['in']},rl={checkpoints['rl']},splice=middle", OUTCOMES["RL"])
    with pytest.raises(FrankensteinError, match="unknown variant 'middle'"):
        identify_runs(find_runs([odd]))


def test_one_metric_twice_for_a_model_or_no_metric_at_all(runs, tmp_path):
    again = write_run(tmp_path / "again", "qwen2_5_vl", f"pretrained={json.loads(runs['IN'].read_text())['config']['model_args'].split(',')[0].split('=')[1]}",
                      {"frank_math_vqa": OUTCOMES["IN"]["frank_math_vqa"]})
    found = find_runs([runs["IN"], runs["mid_late"], again])
    with pytest.raises(FrankensteinError, match="M_v2r of IN appears twice"):
        transfer_table(found, identify_runs(found))
    empty = write_run(tmp_path / "empty", "qwen2_5_vl", "pretrained=x", {})
    with pytest.raises(FrankensteinError, match="holds a transfer metric"):
        transfer_table(find_runs([empty]), identify_runs(find_runs([empty]), labels={empty: "IN"}))
    with pytest.raises(FrankensteinError, match="no lmms-eval \\*_results.json under"):
        find_runs([tmp_path / "ckpt"])


# ------------------------------------------------------------------------------------ attention shift


def _attention_samples(curves: dict[str, list[float]]) -> list[dict]:
    return [{"doc_id": k, "visual_attention": {str(layer): v for layer, v in enumerate(values)},
             "accuracy_a": {"item": item, "condition": "A", "correct": False, "answer": None, "graded_by": "rule"}}
            for k, (item, values) in enumerate(curves.items())]


IN_ATTENTION = {"p": [0.10, 0.20, 0.30], "q": [0.20, 0.20, 0.10], "r": [0.30, 0.10, 0.20], "only_in": [0.9, 0.9, 0.9]}
RL_ATTENTION = {"q": [0.10, 0.40, 0.40], "p": [0.10, 0.30, 0.60], "r": [0.30, 0.30, 0.20], "only_rl": [0.0, 0.0, 0.0]}
# RL - IN per item: p [0, .1, .3], q [-.1, .2, .3], r [0, .2, 0]; mean per layer [-1/30, 1/6, 0.2]


def test_attention_shift_by_hand_and_a_plain_bootstrap_loop():
    shift = shift_from_samples(_attention_samples(IN_ATTENTION), _attention_samples(RL_ATTENTION), iters=200, seed=5)
    assert shift.layers == [0, 1, 2] and shift.n == 3
    assert [e.value for e in shift.shift] == pytest.approx([-1 / 30, 1 / 6, 0.2])
    assert shift.in_mean == pytest.approx([0.2, 0.5 / 3, 0.2]) and shift.rl_mean == pytest.approx([0.5 / 3, 1 / 3, 0.4])
    # reference: resample the three paired items 200 times with the same generator, plain loops
    diffs = {"p": [0, 0.1, 0.3], "q": [-0.1, 0.2, 0.3], "r": [0, 0.2, 0]}
    order = ["q", "p", "r"]  # the items sorted by their values (the bootstrap's documented order)
    draws = np.random.default_rng(5).integers(0, 3, size=(200, 3))
    for layer in range(3):
        means = sorted(sum(diffs[order[i]][layer] for i in row) / 3 for row in draws)
        lo, hi = np.percentile(means, [2.5, 97.5])
        assert (shift.shift[layer].low, shift.shift[layer].high) == pytest.approx((lo, hi))


def test_attention_shift_from_runs_and_through_the_cli(runs, checkpoints, tmp_path, capsys):
    in_run = write_run(tmp_path / "att_in", "frankenstein", f"pretrained={checkpoints['in']},probe=attention", {},
                       extra={"frank_attention_shift": {"visual_attention,none": {"layers": [0, 1, 2], "value": [0, 0, 0], "stderr": [0, 0, 0], "n": 4}}})
    rl_run = write_run(tmp_path / "att_rl", "frankenstein", f"pretrained={checkpoints['rl']},probe=attention", {},
                       extra={"frank_attention_shift": {"visual_attention,none": {"layers": [0, 1, 2], "value": [0, 0, 0], "stderr": [0, 0, 0], "n": 4}}})
    for run, curves in ((in_run, IN_ATTENTION), (rl_run, RL_ATTENTION)):
        (run.parent / "20260101_000000_samples_frank_attention_shift.jsonl").write_text(
            "".join(json.dumps(s) + "\n" for s in _attention_samples(curves)))
    assert [e.value for e in attention_shift(in_run, rl_run).shift] == pytest.approx([-1 / 30, 1 / 6, 0.2])
    assert cli.main(["transfer", str(runs["mid_late"]), str(in_run), str(rl_run), "-o", str(tmp_path / "t")]) == 0
    rows = list(csv.DictReader((tmp_path / "t" / "attention_shift.csv").open()))
    assert [float(r["rl_minus_in"]) for r in rows] == pytest.approx([-1 / 30, 1 / 6, 0.2])
    assert {r["n"] for r in rows} == {"3"} and (tmp_path / "t" / "attention_shift.png").stat().st_size > 0
    assert "largest at layer 2" in capsys.readouterr().out


def test_the_analysis_modules_import_without_task_code():
    """analysis never imports frankenstein_tasks: these modules load with it blocked."""
    import subprocess
    import sys

    script = (
        "import importlib, sys\n"
        "class Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'frankenstein_tasks':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "for m in sys.argv[1:]:\n"
        "    importlib.import_module(m)\n"
    )
    modules = ["analysis.outcomes", "analysis.lmms_runs", "analysis.model_identity", "analysis.transfer_table", "analysis.attention_shift"]
    done = subprocess.run([sys.executable, "-c", script, *modules], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
