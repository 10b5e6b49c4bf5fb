"""The frank_transfer tasks end to end through the real `lmms_eval` CLI on tiny checkpoints, offline.

Data: local rows in the MathVista and MATH-500 hub schemas, written as `datasets` cache entries
(tests/transfer_data.py), so the unchanged tasks load them as they would load the hub's. Four runs:

    A  frankenstein in=IN,rl=RL,splice=mid_late on frank_transfer; descriptions and (opt-in) judge
       verdicts from a local chat-completions server, with an API key
    B  qwen2_5_vl pretrained=RL (the built-in model) on frank_transfer + frank_attention_shift
    C  frankenstein pretrained=IN,probe=attention on frank_transfer + frank_attention_shift
    D  frankenstein pretrained=RL,probe=attention on frank_attention_shift

Tiny random models answer at random, so run A asks the judge, whose verdict here is a fixed function
of the reply: outcomes are mixed, and the results are checked against counts made by hand from the
samples log. `frankenstein transfer A B C D` then names the runs from their metadata alone, and its
table and attention shift are checked against the results files and samples logs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from chat_server import ChatServer, Reply
from conftest import cli_path, run_cli
from transfer_data import cache_transfer_data, items_of

pytestmark = [pytest.mark.cli, pytest.mark.slow]
KEY = f"sk-e2e-{uuid.uuid4().hex}"
TRANSFER = ("frank_general_vqa", "frank_math_vqa", "frank_math500_rea")
GEN = ["--gen_kwargs", "max_new_tokens=8"]


def verdict(output: str) -> bool:
    """The scripted judge: a fixed function of the reply, so outcomes are mixed but reproducible."""
    return hashlib.sha256(output.strip().encode()).digest()[0] % 2 == 0


def judge_and_describe(n: int, body: dict, headers: dict) -> Reply:
    content = body["messages"][0]["content"]
    if isinstance(content, str):  # the judge prompt (llm_endpoint.JUDGE_TEMPLATE)
        output = content.split("Model output:\n", 1)[1].split("\n\nDoes the model output", 1)[0]
        return Reply(text="Correct" if verdict(output) else "Incorrect")
    return Reply(text=f"A described picture (request {n}).")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("transfer_env")
    descriptions = root / "descriptions.json"
    descriptions.write_text(json.dumps({pid: f"Picture {pid}." for pid in items_of("math-targeted-vqa")}))
    base = {"HF_DATASETS_CACHE": str(cache_transfer_data(root / "hf_datasets")), "FRANKENSTEIN_CACHE": str(root / "cache"),
            "FRANKENSTEIN_DESCRIPTIONS": str(descriptions), "FRANKENSTEIN_JUDGE": "", "FRANKENSTEIN_SUBSET": "",
            "FRANKENSTEIN_LLM_API_KEY": "", "OPENAI_API_KEY": "", "FRANKENSTEIN_LLM_BASE_URL": "", "LMMS_EVAL_PLUGINS": ""}
    return base


def lmms_eval(model: str, model_args: str, tasks: str, out: Path, env: dict) -> Path:
    result = run_cli([sys.executable, "-m", "lmms_eval", "--model", model, "--model_args", model_args, "--tasks", tasks,
                      *GEN, "--output_path", str(out), "--log_samples"], env=env)
    found = list(out.rglob("*_results.json"))
    assert result.returncode == 0 and len(found) == 1, result.stdout[-3000:] + result.stderr[-3000:]
    return found[0]


def samples(results: Path, task: str) -> list[dict]:
    date = results.name[: -len("_results.json")]
    path = results.with_name(f"{date}_samples_{task}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_item(lines: list[dict], metric: str) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for s in lines:
        out.setdefault(s[metric]["item"], {})[s[metric]["condition"]] = s[metric]["correct"]
    return out


@pytest.fixture(scope="module")
def splice_run(tiny_trio, env, tmp_path_factory):
    server = ChatServer(judge_and_describe, max_requests=200)
    out = tmp_path_factory.mktemp("run_a")
    run_env = {**env, "FRANKENSTEIN_DESCRIPTIONS": "", "FRANKENSTEIN_JUDGE": "1",
               "FRANKENSTEIN_LLM_BASE_URL": server.url, "FRANKENSTEIN_LLM_API_KEY": KEY}
    try:
        results = lmms_eval("frankenstein", f"in={tiny_trio['in']},rl={tiny_trio['rl']},splice=mid_late,device=cpu",
                            "frank_transfer", out, run_env)
        yield {"results": results, "out": out, "server": server, "env": run_env}
    finally:
        server.close()
    assert not server.problems, server.problems


@pytest.fixture(scope="module")
def model_runs(tiny_trio, env, tmp_path_factory):
    both = "frank_transfer,frank_attention_shift"
    return {
        "B": lmms_eval("qwen2_5_vl", f"pretrained={tiny_trio['rl']},device=cpu,device_map=cpu", both, tmp_path_factory.mktemp("run_b"), env),
        "C": lmms_eval("frankenstein", f"pretrained={tiny_trio['in']},device=cpu,probe=attention", both, tmp_path_factory.mktemp("run_c"), env),
        "D": lmms_eval("frankenstein", f"pretrained={tiny_trio['rl']},device=cpu,probe=attention", "frank_attention_shift",
                       tmp_path_factory.mktemp("run_d"), env),
    }


def check_against_samples(results: Path) -> None:
    """Every transfer metric of a run equals the count, by hand, of its logged outcome records."""
    metrics = json.loads(results.read_text())["results"]
    for task in TRANSFER:
        lines = samples(results, task)
        outcomes = by_item(lines, "accuracy_a")
        n = len(outcomes)
        if task == "frank_math500_rea":
            assert all(set(c) == {"A"} for c in outcomes.values()) and len(lines) == n
            right = sum(c["A"] for c in outcomes.values())
            assert metrics[task]["m_rea,none"]["value"] == pytest.approx(right / n, abs=1e-6)
            assert metrics[task]["m_rea,none"]["n"] == n == metrics[task]["accuracy_a,none"]["n"]
            continue
        assert all(set(c) == {"A", "B"} for c in outcomes.values()) and len(lines) == 2 * n  # both conditions logged
        cells = Counter(("T" if c["A"] else "F") + ("T" if c["B"] else "F") for c in outcomes.values())
        t = metrics[task]["transitions,none"]
        assert (t["n"], t["TT"], t["TF"], t["FT"], t["FF"]) == (n, cells["TT"], cells["TF"], cells["FT"], cells["FF"])
        assert t["net_gain"]["value"] == cells["FT"] - cells["TF"]
        headline = "m_vis" if task == "frank_general_vqa" else "m_v2r"
        hits = cells["TF"] if headline == "m_vis" else cells["TT"]
        assert metrics[task][f"{headline},none"]["value"] == pytest.approx(hits / n, abs=1e-6)
        assert metrics[task]["accuracy_a,none"]["value"] == pytest.approx((cells["TT"] + cells["TF"]) / n, abs=1e-6)
        assert metrics[task]["accuracy_b,none"]["value"] == pytest.approx((cells["TT"] + cells["FT"]) / n, abs=1e-6)


# ----------------------------------------------------------------------------------- run A


def test_splice_run_results_are_the_samples_logs_outcomes(splice_run):
    results = splice_run["results"]
    config = json.loads(results.read_text())["config"]
    assert config["model"] == "frankenstein" and "splice=mid_late" in config["model_args"]
    check_against_samples(results)
    lines = samples(results, "frank_general_vqa") + samples(results, "frank_math_vqa") + samples(results, "frank_math500_rea")
    # each outcome is the judge's verdict on the logged reply, and the verdicts are mixed
    assert all(s["m_vis" if "m_vis" in s else "m_v2r" if "m_v2r" in s else "m_rea"]["graded_by"] == "judge" for s in lines)
    assert all(s["accuracy_a"]["correct"] == verdict(s["filtered_resps"]) for s in lines)
    assert {s["accuracy_a"]["correct"] for s in lines} == {True, False}
    # condition B of math_vqa showed the description (the logged prompt), A did not
    for s in samples(results, "frank_math_vqa"):
        assert ("A described picture" in s["input"]) == (s["accuracy_a"]["condition"] == "B")


def test_endpoint_descriptions_cached_and_key_never_written(splice_run, monkeypatch):
    import datasets

    from frankenstein_tasks import llm_endpoint
    from frankenstein_tasks.tasks.frank_transfer import utils

    server, run_env = splice_run["server"], splice_run["env"]
    bodies = [body for body, _ in server.requests]
    described = [b for b in bodies if not isinstance(b["messages"][0]["content"], str)]
    assert len(described) == len(items_of("math-targeted-vqa"))  # one per item, not per condition
    for path in [p for root in (splice_run["out"], Path(run_env["FRANKENSTEIN_CACHE"])) for p in root.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path
    # A second pass (this process, the same cache): zero requests for descriptions and verdicts.
    for name in ("FRANKENSTEIN_CACHE", "FRANKENSTEIN_LLM_BASE_URL", "FRANKENSTEIN_LLM_API_KEY", "FRANKENSTEIN_JUDGE"):
        monkeypatch.setenv(name, run_env[name])
    monkeypatch.delenv("FRANKENSTEIN_DESCRIPTIONS", raising=False)
    llm_endpoint.default_endpoint.cache_clear()
    before = server.count
    mathvista = datasets.load_dataset("AI4Math/MathVista", cache_dir=run_env["HF_DATASETS_CACHE"])["testmini"]
    docs = utils.process_docs_math_vqa(mathvista)
    for s in samples(splice_run["results"], "frank_math_vqa"):
        again = utils.process_results_math_vqa(docs[s["doc_id"]], [s["filtered_resps"]])
        assert again["m_v2r"] == s["m_v2r"]
    assert server.count == before
    llm_endpoint.default_endpoint.cache_clear()


# ------------------------------------------------------------------------------ runs B, C, D


def test_plain_model_and_attention_probe_runs(model_runs):
    plain = json.loads(model_runs["B"].read_text())["results"]
    check_against_samples(model_runs["B"])
    assert set(plain["frank_attention_shift"]) >= {"accuracy_a,none"} and "visual_attention,none" not in plain["frank_attention_shift"]
    check_against_samples(model_runs["C"])
    for run in ("C", "D"):
        curve = json.loads(model_runs[run].read_text())["results"]["frank_attention_shift"]["visual_attention,none"]
        lines = samples(model_runs[run], "frank_attention_shift")
        assert curve["layers"] == list(range(8)) and curve["n"] == len(lines) == len(items_of("math-targeted-vqa"))
        for j, layer in enumerate(curve["layers"]):
            mean = sum(s["visual_attention"][str(layer)] for s in lines) / len(lines)
            assert curve["value"][j] == pytest.approx(mean, abs=1e-6) and 0 < mean < 1


def test_transfer_table_and_attention_shift_from_the_runs(splice_run, model_runs, tmp_path):
    out = tmp_path / "table"
    runs = {"mid_late": splice_run["results"], "RL": model_runs["B"], "IN": model_runs["C"]}
    made = run_cli([cli_path("frankenstein"), "transfer", str(splice_run["out"]), *(str(model_runs[k].parent.parent) for k in "BCD"),
                    "-o", str(out)])
    assert made.returncode == 0, made.stderr
    rows = list(csv.DictReader((out / "transfer_table.csv").open()))
    assert {r["model"] for r in rows} == {"IN", "RL", "mid_late"} and len(rows) == 9
    headline = {"M_vis": ("frank_general_vqa", "m_vis"), "M_v2r": ("frank_math_vqa", "m_v2r"), "M_rea": ("frank_math500_rea", "m_rea")}
    for row in rows:
        task, metric = headline[row["metric"]]
        est = json.loads(runs[row["model"]].read_text())["results"][task][f"{metric},none"]
        assert float(row["value"]) == est["value"] and int(row["n"]) == est["n"]
        if row["model"] == "IN":
            continue
        # paired difference by hand: per item 0/1 of the model minus IN's, averaged over items
        indicator = {"m_vis": lambda c: c["A"] and not c["B"], "m_v2r": lambda c: c["A"] and c["B"], "m_rea": lambda c: c["A"]}[metric]
        mine, base = (by_item(samples(runs[m], task), "accuracy_a") for m in (row["model"], "IN"))
        diff = sum(indicator(mine[i]) - indicator(base[i]) for i in base) / len(base)
        assert row["diff_paired"] == "True" and float(row["diff_vs_in"]) == pytest.approx(diff, abs=1e-6)
    shift = list(csv.DictReader((out / "attention_shift.csv").open()))
    att = {k: {s["accuracy_a"]["item"]: s["visual_attention"] for s in samples(model_runs[k], "frank_attention_shift")} for k in "CD"}
    assert [int(r["layer"]) for r in shift] == list(range(8))
    for r in shift:
        diffs = [att["D"][i][r["layer"]] - att["C"][i][r["layer"]] for i in att["C"]]
        assert float(r["rl_minus_in"]) == pytest.approx(sum(diffs) / len(diffs), abs=1e-9)


def test_wrong_dataset_ends_with_one_line(tiny_trio, tmp_path):
    """MATH-500 rows cached under MathVista's name: one line naming the task and the missing fields, exit 2."""
    from frankenstein_tasks.hub_cache import cache_dataset
    from transfer_data import math500_rows

    cache_dataset("AI4Math/MathVista", None, {"testmini": math500_rows()}, cache_dir=tmp_path / "hf")
    result = run_cli([cli_path("lmms_eval"), "--model", "qwen2_5_vl", "--model_args", f"pretrained={tiny_trio['in']},device=cpu,device_map=cpu",
                      "--tasks", "frank_general_vqa", *GEN, "--output_path", str(tmp_path / "out")],
                     env={"HF_DATASETS_CACHE": str(tmp_path / "hf")})
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == ["frankenstein: error: frank_general_vqa: the AI4Math/MathVista data has no 'pid', 'question', 'decoded_image', "
                      "'choices', 'question_type', 'metadata' fields (columns: problem, solution, answer, subject, level, unique_id); "
                      "is it the right dataset?"]
    assert "Traceback" not in result.stderr and not list((tmp_path / "out").rglob("*_results.json"))
