"""`frankenstein run`: config errors are one line, and a killed run resumes without recomputing finished work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_path, run_cli
from hub_data import GSM8K, MATH500
from ranks import assert_shares

pytest_plugins = ("organism_fixture",)

pytestmark = pytest.mark.cli


def write_config(folder: Path, trio: dict, **overrides) -> Path:
    (folder / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K + GSM8K[:2]))
    (folder / "math500.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MATH500))
    config = {
        "recipe": "Tiny", "out": "out", "offline": True, "device": "cpu", "max_batch_rows": 9,
        "models": {"base": str(trio["base"]), "in": str(trio["in"]), "rl": str(trio["rl"])},
        "stages": ["reasoning"],
        "reasoning": {"tasks": ["gsm8k"], "subset": "all", "max_new_tokens": 24},
        "data": {"gsm8k": "gsm8k.jsonl", "math500": "math500.jsonl"},
        **overrides,
    }
    path = folder / "run.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def frankenstein(*args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_cli([cli_path("frankenstein"), *args], cwd=cwd, timeout=timeout)


@pytest.mark.slow
def test_bad_configs_end_with_one_line(tiny_trio, tmp_path):
    cases = {
        "typo": ({"stages": ["delta", "vison_swap"]}, "stages: unknown stage 'vison_swap'; stages are delta, merges,"),
        "field": ({"reasoning": {"subest": "10"}}, "reasoning.subest: unknown field"),
        "hub": ({"models": {"base": str(tiny_trio["base"]), "in": str(tiny_trio["in"]), "rl": "Nobody/NotCached-7B"}},
                "models.rl: Nobody/NotCached-7B is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
        "subset": ({"reasoning": {"subset": "ten"}}, "reasoning.subset: subset 'ten' is not 'all', 'K' or 'K:SEED'"),
        "data": ({"data": {"gsm8k": "missing.jsonl"}}, "data.gsm8k: "),
        "ranks": ({"processes": 2, "device_map": "auto"}, "config: processes: 2 gives each rank a whole model on its own device"),
    }
    for name, (override, expected) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        done = frankenstein("run", str(write_config(folder, tiny_trio, **override)), cwd=folder, timeout=300)
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        assert done.returncode == 2 and lines == [lines[-1]] and expected in lines[-1], (name, done.stderr[-2000:])
        if name == "data":
            assert lines[-1].endswith(f"{folder / 'missing.jsonl'} does not exist")
        assert not (folder / "out" / "reasoning").exists()
    # A folder that is not a run folder, given to the report.
    done = frankenstein("report", str(tmp_path))
    assert done.returncode == 2 and "is not a frankenstein run folder" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def responses(out: Path, rank: int | str = "*") -> list[dict]:
    """The finished responses in the run's store (of one rank, or all); a line cut short by a kill is not one."""
    found = []
    for f in sorted((out / ".cache" / "responses").glob(f"responses.rank{rank}.jsonl")):
        for line in f.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing(tiny_trio, tmp_path):
    items = len(GSM8K) + 2
    folder = tmp_path / "killed"
    folder.mkdir()
    config = write_config(folder, tiny_trio)
    out = folder / "out"
    first = subprocess.Popen([cli_path("frankenstein"), "run", str(config), "--no-report"], cwd=folder,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None:
        if 1 <= len(responses(out)) < items:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the run finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)  # a real signal to the real process group
    first.wait()
    finished_before = {r["key"] for r in responses(out)}
    assert 1 <= len(finished_before) < items
    # Nothing looks complete: the stage folder does not exist yet, run.json does not say done.
    assert not (out / "reasoning").exists()
    manifest = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {"stages": {}}
    assert manifest["stages"].get("reasoning", {}).get("status") != "done"

    second = frankenstein("run", str(config), "--no-report", cwd=folder)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(finished_before)} finished responses reused" in second.stdout + second.stderr
    keys = [r["key"] for r in responses(out)]
    assert len(keys) == items and len(set(keys)) == items  # each item answered once, across both runs
    assert json.loads((out / "run.json").read_text())["stages"]["reasoning"]["status"] == "done"

    # The same config, never interrupted, gives the same results.
    clean = tmp_path / "clean"
    clean.mkdir()
    third = frankenstein("run", str(write_config(clean, tiny_trio)), "--no-report", cwd=clean)
    assert third.returncode == 0, third.stderr[-3000:]
    assert _results(out) == _results(clean / "out")

    # Started again after finishing: the stage is skipped, and --force reruns it (from the stored answers).
    again = frankenstein("run", str(config), "--no-report", cwd=folder)
    assert "reasoning: done earlier" in again.stdout
    forced = frankenstein("run", str(config), "--no-report", "--force", "reasoning", cwd=folder)
    assert "reasoning: zero ablation" in forced.stdout and _results(out) == _results(clean / "out")


PARALLEL_ITEMS = 12  # 6 per rank, one per batch: time to kill a rank while both have work left


def parallel_config(folder: Path, organism: dict, processes: int) -> Path:
    """The reasoning stage on the organism's word problems (its layers matter: accuracies differ)."""
    return write_config(folder, organism, processes=processes, max_batch_rows=9,
                        reasoning={"tasks": ["gsm8k"], "subset": f"{PARALLEL_ITEMS}:0", "max_new_tokens": 20},
                        data={"gsm8k": str(organism["in"].parent / "eval" / "gsm8k" / "test.jsonl")})


def rank_processes(run: subprocess.Popen) -> dict[int, "psutil.Process"]:
    """rank -> the worker process of that rank, among the run's children."""
    import psutil

    workers = [p for p in psutil.Process(run.pid).children(recursive=True) if "frankenstein_tasks.run.parallel" in " ".join(p.cmdline())]
    return {int(p.environ()["RANK"]): p for p in workers}


def wait_for(condition, run: subprocess.Popen, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert run.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_run(folder: Path, config: Path, name: str) -> subprocess.Popen:
    """`frankenstein run CONFIG --no-report` in the background (its own session), output to NAME.out/.err."""
    with open(folder / f"{name}.out", "w") as stdout, open(folder / f"{name}.err", "w") as stderr:
        return subprocess.Popen([cli_path("frankenstein"), "run", str(config), "--no-report"], cwd=folder,
                                stdout=stdout, stderr=stderr, start_new_session=True)


@pytest.mark.slow
def test_two_processes_rank_killed_and_resumed_equal_one(organism, tmp_path):
    """processes: 2 runs a stage in two ranks, each answering its own share. A rank killed ends the run
    with one line and nothing that looks complete; the restart recomputes nothing finished, and the
    results equal an uninterrupted one-process run."""
    import psutil

    one = tmp_path / "one"
    one.mkdir()
    done = frankenstein("run", str(parallel_config(one, organism, processes=1)), "--no-report", cwd=one)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(set(_results(one / "out")["frank_gsm8k"]["accuracy_by_layer,none"]["value"])) > 1  # layers differ

    folder = tmp_path / "two"
    folder.mkdir()
    config = parallel_config(folder, organism, processes=2)
    out = folder / "out"

    # Rank 1 killed once both ranks have finished something: the run ends with one line naming it.
    first = start_run(folder, config, "first")
    wait_for(lambda: responses(out, 0) and responses(out, 1), first, "both ranks finished an item")
    ranks = rank_processes(first)
    assert sorted(ranks) == [0, 1]
    ranks[1].send_signal(signal.SIGKILL)
    assert first.wait(timeout=120) == 2
    err = (folder / "first.err").read_text()
    assert err.strip().splitlines()[-1].startswith("frankenstein: error: stage reasoning: rank 1 of 2 was killed by SIGKILL")
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(list(ranks.values()), timeout=30)
    assert not alive  # rank 0 was stopped with it
    assert not (out / "reasoning").exists()
    assert json.loads((out / "run.json").read_text())["stages"]["reasoning"]["status"] == "failed"
    finished = {r["key"] for r in responses(out)}
    assert len(finished) < PARALLEL_ITEMS

    # Run again to the end: nothing finished is computed again; each rank says what it reused.
    again = frankenstein("run", str(config), "--no-report", cwd=folder)
    assert again.returncode == 0, again.stderr[-3000:]
    reused = [int(n) for n in re.findall(r"frankenstein: (\d+) finished responses reused from \S+ \(rank \d of 2\)", again.stderr)]
    assert len(reused) == 2 and sum(reused) == len(finished)
    keys = [r["key"] for r in responses(out)]
    assert len(keys) == len(set(keys)) == PARALLEL_ITEMS  # every item answered once, over both runs
    assert responses(out, 0) and responses(out, 1)

    # Each rank answered its own share, and together they are the one-process run.
    (found,) = (out / "reasoning").rglob("*_results.json")
    assert_shares(json.loads(found.read_text())["frankenstein"]["docs_by_rank"]["frank_gsm8k"], range(PARALLEL_ITEMS))
    assert _results(out) == _results(one / "out")
    assert _answers(out) == _answers(one / "out")


@pytest.mark.slow
def test_two_processes_die_with_a_killed_run(organism, tmp_path):
    """The run killed as a whole (not its process group) while both ranks work: no rank outlives it,
    so no orphan keeps writing behind a restarted run, and nothing looks complete."""
    import psutil

    config = parallel_config(tmp_path, organism, processes=2)
    out = tmp_path / "out"
    run = start_run(tmp_path, config, "run")
    wait_for(lambda: responses(out) and len(rank_processes(run)) == 2, run, "answers from two ranks")
    ranks = rank_processes(run)
    run.send_signal(signal.SIGKILL)
    run.wait()
    _, alive = psutil.wait_procs(list(ranks.values()), timeout=5)
    assert not alive, "ranks outlived the killed run"
    # Orphaned ranks would have kept working (alive above) or finished every item by now.
    assert len(responses(out)) < PARALLEL_ITEMS and not (out / "reasoning").exists()


def _results(out: Path) -> dict:
    (found,) = (out / "reasoning").rglob("*_results.json")
    return json.loads(found.read_text())["results"]


def test_cache_dataset_command(tmp_path):
    """A local JSONL copy becomes the dataset `datasets.load_dataset("openai/gsm8k", "main")` returns offline."""
    rows = tmp_path / "gsm8k.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in GSM8K))
    done = frankenstein("data", "cache-dataset", "gsm8k", str(rows), "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    loader = (
        "import datasets, json, sys; d = datasets.load_dataset('openai/gsm8k', 'main', cache_dir=sys.argv[1]);"
        "print(json.dumps([d['test'][i] for i in range(len(d['test']))]))"
    )
    loaded = run_cli([sys.executable, "-c", loader, str(tmp_path / "cache")], env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == GSM8K
    missing = frankenstein("data", "cache-dataset", "gsm8k", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"frankenstein: error: no file at {tmp_path / 'nope.jsonl'}"


@pytest.mark.slow
def test_vision_pairs_killed_midway_are_completed(tmp_path):
    """A run killed after some pair tasks were generated generates only the missing ones next time."""
    import shutil

    from frankenstein_tasks.run.config import RunConfig
    from frankenstein_tasks.run.stages import RunContext, vision_pairs
    from frankenstein_tasks.vision.pairs import generator_tag

    config = RunConfig.model_validate({
        "recipe": "Tiny", "models": {"base": "b", "in": "i", "rl": "r"},
        "vision_swap": {"tasks": ["counting", "recognition"], "n": 2, "size": 112},
    })
    ctx = RunContext(config=config, out=tmp_path, models=config.models.by_role())
    pairs = vision_pairs(ctx)
    assert pairs.name.endswith(f"-{generator_tag()}")
    done = pairs / "counting" / "data.jsonl"
    before = (done.read_text(), done.stat().st_mtime_ns)
    shutil.rmtree(pairs / "recognition")  # killed after counting/ was written, before recognition/
    assert vision_pairs(ctx) == pairs
    assert (pairs / "recognition" / "data.jsonl").is_file()
    assert (done.read_text(), done.stat().st_mtime_ns) == before  # the finished task is not regenerated


def test_merges_stage_refuses_checkpoints_mergekit_cannot_write(tiny_qwen2_vl, tmp_path):
    """merges.checkpoints: true on Qwen2-VL stops at once with mergekit's known issue, as merge-config --merge does."""
    from frankenstein_tasks.run.config import RunConfig
    from frankenstein_tasks.run.stages import RunContext, run_merges
    from surgery.errors import FrankensteinError

    config = RunConfig.model_validate({
        "recipe": "Tiny2VL", "models": {role: str(path) for role, path in tiny_qwen2_vl.items()},
        "merges": {"checkpoints": True},
    })
    ctx = RunContext(config=config, out=tmp_path, models=config.models.by_role())
    with pytest.raises(FrankensteinError, match=r"^cannot write merged checkpoints \(merges.checkpoints: true\): mergekit 0.1.5"):
        run_merges(ctx, tmp_path / "merges")
    assert not (tmp_path / "merges").exists()


def test_every_stage_has_its_config_section():
    """A stage's settings hash reads the config section of the same name."""
    from pydantic import BaseModel

    from frankenstein_tasks.run.config import RunConfig
    from frankenstein_tasks.run.stages import STAGES

    for name in STAGES:
        assert name in RunConfig.model_fields and issubclass(RunConfig.model_fields[name].annotation, BaseModel), name


@pytest.mark.slow
def test_leaderboard_stage_scores_in_and_splices_with_lm_eval(tiny_trio, tmp_path):
    """The `leaderboard` stage (off by default): lm-eval's arc_easy on IN and a splice, results as lm-eval
    writes them, each model's the right one, shown in the report's transfer section; a task name lm-eval
    does not know stops the run before any stage with one line."""
    import numpy as np
    from lm_eval.api.instance import Instance

    from frankenstein_tasks.models.lm_eval_model import FrankensteinLM
    from frankenstein_tasks.run.config import RunConfig
    from hub_data import leaderboard_env

    assert "leaderboard" not in RunConfig.model_validate({"recipe": "x", "models": {"base": "b", "in": "i", "rl": "r"}}).stages
    env = leaderboard_env(tmp_path / "hub")
    settings = {"tasks": ["arc_easy"], "models": ["in", "mid_late"], "limit": 4, "num_fewshot": 0}
    bad = write_config(tmp_path, tiny_trio, stages=["reasoning", "leaderboard"], leaderboard={**settings, "tasks": ["arc_eazy"]})
    done = run_cli([cli_path("frankenstein"), "run", str(bad)], cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "frankenstein: error: leaderboard: lm-eval knows no task or group 'arc_eazy' (`lm-eval ls tasks` lists them)")
    assert not (tmp_path / "out" / "reasoning").exists()

    config = write_config(tmp_path, tiny_trio, stages=["leaderboard"], leaderboard=settings)
    done = run_cli([cli_path("frankenstein"), "run", str(config)], cwd=tmp_path, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out" / "leaderboard"
    logged = {}
    for label in ("in", "mid_late"):
        (results_file,) = (out / label).rglob("results_*.json")
        assert json.loads(results_file.read_text())["results"]["arc_easy"]["acc,none"] is not None
        (samples_file,) = (out / label).rglob("samples_arc_easy_*.jsonl")
        logged[label] = [json.loads(line) for line in samples_file.read_text().splitlines()]
    # The splice's responses are the splice's: the lm-eval model on in=,rl=,splice=mid_late gives them again.
    requests = [tuple(a.values()) for s in logged["mid_late"] for a in s["arguments"].values()]
    lm = FrankensteinLM.create_from_arg_string(f"in={tiny_trio['in']},rl={tiny_trio['rl']},splice=mid_late,device=cpu")
    again = lm.loglikelihood([Instance("loglikelihood", doc={}, arguments=r, idx=0, metadata=("t", 0, 1)) for r in requests])
    for label in ("mid_late", "in"):
        values = [float(r[0][0]) for s in logged[label] for r in s["resps"]]
        agree = np.allclose(values, [ll for ll, _ in again], atol=1e-4)
        assert agree == (label == "mid_late"), label
    report = (tmp_path / "out" / "report" / "report.md").read_text()
    transfer = report.split("## Transfer: M_vis")[1].split("\n## ")[0]
    assert re.search(r"\| Tiny \| arc_easy \| acc \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± [0-9.]+ \|", transfer), transfer


def _copy_trio(trio: dict, folder: Path) -> dict:
    import shutil

    for role, path in trio.items():
        shutil.copytree(path, folder / role)
    return {role: folder / role for role in trio}


def _rewrite_weights_in_place(folder: Path, source: Path) -> None:
    """`source`'s weights written over `folder`'s: same file, size and modification time (a retrain in place)."""
    weights = folder / "model.safetensors"
    before = weights.stat()
    new = (source / "model.safetensors").read_bytes()
    assert len(new) == before.st_size
    with open(weights, "r+b") as handle:
        handle.write(new)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.slow
def test_retrained_weights_in_the_same_folder_rerun_the_stage(tiny_trio, tmp_path):
    """Stage skipping keys on the weights: new weights written into RL's folder rerun the reasoning stage,
    reuse no stored answer, and give what a run on those weights gives; an unchanged rerun skips it."""
    from test_schema import check_run_folder

    folder = tmp_path / "retrained"
    folder.mkdir()
    trio = _copy_trio(tiny_trio, folder / "models")
    reasoning = {"tasks": ["gsm8k"], "subset": "3:0", "max_new_tokens": 12, "layers": "0-2"}
    config = write_config(folder, trio, reasoning=reasoning)
    out = folder / "out"
    first = frankenstein("run", str(config), "--no-report", cwd=folder)
    assert first.returncode == 0, first.stderr[-3000:]
    # The console keeps the stage lines and progress bars, not the warnings the run's own choices cause
    # (its offline dataset copies, its budget given as gen_kwargs).
    console = first.stdout + first.stderr
    assert "reasoning: zero ablation" in first.stdout and "frankenstein (zero_ablation" in first.stderr
    for caused in ("Using the latest cached version", "Found the latest cached dataset configuration", "generation_kwargs specified"):
        assert caused not in console, caused
    before = _answers(out)
    assert check_run_folder(out)["curves"] >= 2  # a real run's files have the declared shapes

    again = frankenstein("run", str(config), "--no-report", cwd=folder)
    assert "reasoning: done earlier" in again.stdout

    _rewrite_weights_in_place(trio["rl"], tiny_trio["base"])  # reasoning runs on RL only
    retrained = frankenstein("run", str(config), "--no-report", cwd=folder)
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    assert "reasoning: zero ablation" in retrained.stdout and "done earlier" not in retrained.stdout
    assert "finished responses reused" not in retrained.stdout + retrained.stderr
    after = _answers(out)

    # Expected: a clean run whose RL is Base's checkpoint (the same files the rewrite put there).
    clean = tmp_path / "clean"
    clean.mkdir()
    expected = frankenstein("run", str(write_config(clean, {**tiny_trio, "rl": tiny_trio["base"]}, reasoning=reasoning)),
                            "--no-report", cwd=clean)
    assert expected.returncode == 0, expected.stderr[-3000:]
    assert after == _answers(clean / "out") and _results(out) == _results(clean / "out")
    assert after != before  # the new weights answer differently, so stale answers would have been caught


def _answers(out: Path) -> list:
    """Every item's logged reply (its per-layer answers), by doc id."""
    (found,) = (out / "reasoning").rglob("*_samples_frank_gsm8k.jsonl")
    lines = [json.loads(line) for line in found.read_text().splitlines() if line.strip()]
    return [line["filtered_resps"] for line in sorted(lines, key=lambda line: line["doc_id"])]


def test_stage_settings_name_what_decides_results(tiny_trio, tmp_path, monkeypatch):
    """Each stage's settings change with what decides its results and only with that."""
    from frankenstein_tasks.run.config import RunConfig
    from frankenstein_tasks.run.data import cache_local_data, read_local_data
    from frankenstein_tasks.run.runner import needed_datasets, stage_settings
    from frankenstein_tasks.run.stages import RunContext

    trio = _copy_trio(tiny_trio, tmp_path / "models")
    (tmp_path / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K))
    base = {
        "recipe": "Tiny", "out": str(tmp_path / "out"), "models": {role: str(p) for role, p in trio.items()},
        "stages": ["delta", "merges", "vision_swap", "reasoning", "transfer"], "data": {"gsm8k": str(tmp_path / "gsm8k.jsonl")},
        "vision_swap": {"tasks": ["counting"], "n": 2, "size": 112},
    }

    def settings(**overrides) -> dict:
        config = RunConfig.model_validate({**base, **overrides})
        rows = read_local_data(config.data, needed_datasets(config))
        env, digests = cache_local_data(config.data, tmp_path / "out" / ".cache" / "datasets", rows)
        ctx = RunContext(config=config, out=tmp_path / "out", models=config.models.by_role(), env=env, data_digests=digests)
        return {name: stage_settings(ctx, name) for name in config.stages}

    first = settings()
    assert settings() == first
    assert settings(max_batch_rows=3, device="cpu", processes=2) == first  # speed only
    assert first["merges"]["weights"] == {}  # recipes need no weights

    _rewrite_weights_in_place(trio["base"], tiny_trio["rl"])
    changed = settings()
    assert changed["delta"] != first["delta"]  # reads Base
    assert {k: changed[k] for k in ("merges", "vision_swap", "reasoning")} == {k: first[k] for k in ("merges", "vision_swap", "reasoning")}

    (tmp_path / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K[:-1]))  # the local data edited
    edited = settings()
    assert edited["reasoning"] != changed["reasoning"] and edited["vision_swap"] == changed["vision_swap"]

    pairs = next((tmp_path / "out" / ".cache").glob("vision_pairs-*")) / "counting" / "data.jsonl"
    pairs.write_text(pairs.read_text().replace("How many", "Count how many"))  # another pair set, same settings
    repaired = settings()
    assert repaired["vision_swap"] != edited["vision_swap"] and repaired["reasoning"] == edited["reasoning"]

    monkeypatch.setenv("FRANKENSTEIN_JUDGE", "1")  # the transfer tasks graded by the endpoint's judge
    judged = settings()
    assert judged["transfer"] != repaired["transfer"] and judged["reasoning"] == repaired["reasoning"]
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps({"1": "a chart"}))
    described = settings(transfer={"descriptions": str(descriptions)})
    descriptions.write_text(json.dumps({"1": "a table"}))
    assert settings(transfer={"descriptions": str(descriptions)})["transfer"] != described["transfer"]

    import shutil

    merged = tmp_path / "out" / "merges" / "mid"  # a variant read from a merged checkpoint, then re-merged
    shutil.copytree(trio["in"], merged)
    with_merged = settings()
    _rewrite_weights_in_place(merged, tiny_trio["rl"])
    assert settings()["transfer"] != with_merged["transfer"]
