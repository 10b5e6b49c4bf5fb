"""frankenstein report: the CSVs behind every figure hold the numbers of the source result files, runs
overlay, missing stages read "not run", bad input is one line, and the HTML renders in headless Chromium.

The run folders are fakes with chosen numbers (tests/report_fixtures.py); every expected value below
is rebuilt from those numbers by hand (unified index of decoder layer i is i + 1, METHOD.md 0), never
read back through the report code.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_path, run_cli
from report_fixtures import TRANSFER_LABELS, TWO_CONDITION, FakeRun, make_run

# ---------------------------------------------------------------------------------------------
# Expected rows, from the fixture's numbers
# ---------------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def num(text: str) -> float | None:
    return None if text == "" else float(text)


def curve_expectation(fake: FakeRun, label: str, stage: str, drawn: tuple[str, ...], references: tuple[str, ...]) -> set[tuple]:
    """(run, role, task, metric, layer, unified index, value, stderr, n) for every number the figure draws."""
    rows = set()
    for role, tasks in fake.curves[stage].items():
        for task, metrics in tasks.items():
            for metric, d in metrics.items():
                if metric in drawn:
                    for layer, value, stderr in zip(d["layers"], d["value"], d["stderr"]):
                        rows.add((label, role, task, metric, layer, layer + 1, value, stderr, d["n"]))
                elif metric in references:
                    rows.add((label, role, task, metric, None, None, d["value"], d["stderr"], d["n"]))
    return rows


def curve_rows(path: Path) -> set[tuple]:
    out = set()
    for r in read_rows(path):
        layer = None if r["layer"] == "" else int(r["layer"])
        unified = None if r["unified_index"] == "" else int(r["unified_index"])
        out.add((r["run"], r["role"], r["task"], r["metric"], layer, unified, num(r["value"]), num(r["stderr"]), int(r["n"])))
    return out


def part_by_hand(unified: int, vision_blocks: int, cuts: tuple[int, int]) -> tuple[str, int | None, str | None]:
    """METHOD.md 0: vision block j at j - V, projector at 0, decoder layer i at i + 1; blocks [0,c1) [c1,c2) [c2,n)."""
    if unified < 0:
        return "vision_block", unified + vision_blocks, None
    if unified == 0:
        return "projector", None, None
    i = unified - 1
    return "decoder_layer", i, "early" if i < cuts[0] else "mid" if i < cuts[1] else "late"


def check_weights(folder: Path, fakes: dict[str, FakeRun], cuts: dict[str, tuple[int, int]], name: str = "weights_energy") -> None:
    expected = set()
    for label, fake in fakes.items():
        for u, by_delta in fake.delta.items():
            part, index, block = part_by_hand(u, fake.vision_blocks, cuts[label])
            for d, v in by_delta.items():
                expected.add((label, f"d{d.upper()}", u, part, index, block, v["energy"], v["relative_norm"], v["mean_stable_rank"], v["mean_effective_rank"]))
    got = {
        (r["run"], r["delta"], int(r["unified_index"]), r["part"], None if r["index"] == "" else int(r["index"]), r["block"] or None,
         num(r["energy"]), num(r["relative_norm"]), num(r["mean_stable_rank"]), num(r["mean_effective_rank"]))
        for r in read_rows(folder / f"{name}.csv")
    }
    assert got == expected


def check_authors_weights(folder: Path, fakes: dict[str, FakeRun], name: str = "weights_authors") -> None:
    """The authors' aggregates figure draws delta.json's authors_per_layer, every layer and delta."""
    fields = ("fro_norm_sum", "relative_norm_mean", "spectral_norm_mean", "log_volume_mean", "fro_norm_mean")
    expected = {(label, f"d{d.upper()}", u, *(v[f] for f in fields))
                for label, fake in fakes.items() for u, by_delta in fake.authors.items() for d, v in by_delta.items()}
    got = {(r["run"], r["delta"], int(r["unified_index"]), *(num(r[f]) for f in fields)) for r in read_rows(folder / f"{name}.csv")}
    assert got == expected


def check_probe_curves(folder: Path, fakes: dict[str, FakeRun], suffix: str = "") -> None:
    figures = {  # figure -> (stage, metrics drawn, reference numbers drawn)
        "vision_swap": ("vision_swap", ("change_rate", "source_adoption_rate"), ("accuracy",)),
        "reasoning_ablation": ("reasoning", ("accuracy_by_layer",), ("accuracy",)),
        "reasoning_logprob": ("reasoning_logprob", ("answer_logprob_drop", "answer_logprob_per_token_drop"), ()),
    }
    for name, (stage, drawn, refs) in figures.items():
        expected = set().union(*(curve_expectation(f, label, stage, drawn, refs) for label, f in fakes.items()))
        assert curve_rows(folder / f"{name}{suffix}.csv") == expected, name


def check_transfer(folder: Path, fakes: dict[str, FakeRun]) -> None:
    expected = set()
    for label, fake in fakes.items():
        for model, tasks in fake.estimates.items():
            for task, metrics in tasks.items():
                for metric, e in metrics.items():
                    diff = None if model == "in" else e["value"] - fake.estimates["in"][task][metric]["value"]
                    expected.add((label, model, task, metric, e["value"], e["low"], e["high"], e["n"], diff))
    got = {
        (r["run"], r["model"], r["task"], r["metric"], num(r["value"]), num(r["low"]), num(r["high"]), int(r["n"]), num(r["difference_vs_in"]))
        for r in read_rows(folder / "transfer_metrics.csv")
    }
    assert got == expected
    assert len(got) == len(fakes) * len(TRANSFER_LABELS) * 8  # 3 + 3 + 2 estimates per model
    # The fixture's samples logs hold no outcome records, so the M metrics' differences from IN are
    # unpaired: half-widths of the two intervals in quadrature (the paired path: test_demo.py).
    for r in read_rows(folder / "transfer_metrics.csv"):
        if r["model"] == "in" or not r["metric"].startswith("m_"):
            assert (r["difference_low"], r["difference_high"], r["difference_paired"]) == ("", "", "")
            continue
        e, base = (fakes[r["run"]].estimates[model][r["task"]][r["metric"]] for model in (r["model"], "in"))
        half = math.sqrt(((e["high"] - e["low"]) / 2) ** 2 + ((base["high"] - base["low"]) / 2) ** 2)
        diff = e["value"] - base["value"]
        assert r["difference_paired"] == "False"
        assert (num(r["difference_low"]), num(r["difference_high"])) == (pytest.approx(diff - half), pytest.approx(diff + half))


def check_leaderboard(folder: Path, fakes: dict[str, FakeRun]) -> None:
    """Every lm-eval score of every model, and the headline rows: what the run named (mmlu's group row, not its subtasks)."""
    expected = {(label, model, task, metric, value, stderr, task != "mmlu_anatomy" and task != "mmlu_virology")
                for label, fake in fakes.items() for model, tasks in fake.leaderboard.items()
                for task, metrics in tasks.items() for metric, (value, stderr) in metrics.items()}
    got = {(r["run"], r["model"], r["task"], r["metric"], num(r["value"]), num(r["stderr"]), r["headline"] == "True")
           for r in read_rows(folder / "leaderboard.csv")}
    assert got == expected and len(got) == len(fakes) * len(TRANSFER_LABELS) * 5


def check_transitions(path: Path, label: str, fake: FakeRun) -> None:
    expected = set()
    for model, tasks in fake.transitions.items():
        for task, t in tasks.items():
            stats = tuple(t[s][k] for s in ("net_gain", "side_effect_rate", "lift_rate") for k in ("value", "low", "high"))
            expected.add((label, model, task, t["n"], t["TT"], t["TF"], t["FT"], t["FF"], *stats))
    cols = [f"{s}{p}" for s in ("net_gain", "side_effect_rate", "lift_rate") for p in ("", "_low", "_high")]
    got = {
        (r["run"], r["model"], r["task"], int(r["n"]), int(r["TT"]), int(r["TF"]), int(r["FT"]), int(r["FF"]), *(num(r[c]) for c in cols))
        for r in read_rows(path)
    }
    assert got == expected
    assert len(got) == len(TRANSFER_LABELS) * len(TWO_CONDITION)


def attention_samples(fake: FakeRun, role: str) -> list[dict[str, Any]]:
    newest = sorted((fake.path / "attention" / role).rglob("*_samples_frank_attention_shift.jsonl"))[-1]
    return [json.loads(line) for line in newest.read_text().splitlines()]


def check_attention(folder: Path, fakes: dict[str, FakeRun], suffix: str = "") -> None:
    """Both curves as written; RL − IN paired over the items both samples logs hold (their mean difference,
    computed here by a plain loop, inside the bootstrap interval), or from the curves with the two standard
    errors combined where the logs hold no per-item curves."""
    from analysis.attention_shift import shift_from_samples

    got = {(r["run"], int(r["layer"])): r for r in read_rows(folder / f"attention_shift{suffix}.csv")}
    paired_intervals = {
        label: shift_from_samples(*(attention_samples(fake, role) for role in ("in", "rl"))).shift
        for label, fake in fakes.items() if fake.attention_items is not None
    }
    count = 0
    for label, fake in fakes.items():
        task = "frank_attention_shift"
        a_in = fake.curves["attention"]["in"][task]["visual_attention"]
        a_rl = fake.curves["attention"]["rl"][task]["visual_attention"]
        for layer in range(fake.layers):
            r = got[(label, layer)]
            assert int(r["unified_index"]) == layer + 1
            assert (num(r["in_value"]), num(r["in_stderr"]), num(r["rl_value"]), num(r["rl_stderr"])) == (
                a_in["value"][layer], a_in["stderr"][layer], a_rl["value"][layer], a_rl["stderr"][layer])
            if fake.attention_items is None:
                diff = a_rl["value"][layer] - a_in["value"][layer]
                half = 1.96 * math.sqrt(a_in["stderr"][layer] ** 2 + a_rl["stderr"][layer] ** 2)
                assert r["interval"].startswith("unpaired") and r["n_paired"] == ""
                assert num(r["difference"]) == pytest.approx(diff, abs=1e-12)
                assert num(r["difference_low"]) == pytest.approx(diff - half, abs=2e-5)
                assert num(r["difference_high"]) == pytest.approx(diff + half, abs=2e-5)
            else:
                items_in, items_rl = (fake.attention_items[role][task] for role in ("in", "rl"))
                both = [item for item in items_in if item in items_rl]
                assert len(both) == len(items_in) - 2  # RL's log lacks two items: pairing is visible
                total = 0.0
                for item in both:
                    total += items_rl[item][layer] - items_in[item][layer]
                diff = total / len(both)
                assert r["interval"] == "paired bootstrap" and int(r["n_paired"]) == len(both)
                assert num(r["difference"]) == pytest.approx(diff, abs=1e-12)
                assert num(r["difference"]) != pytest.approx(a_rl["value"][layer] - a_in["value"][layer], abs=1e-9)
                assert num(r["difference_low"]) < diff < num(r["difference_high"])
                paired = paired_intervals[label]  # the bootstrap itself is pinned in test_transfer_table
                assert (num(r["difference_low"]), num(r["difference_high"])) == (paired[layer].low, paired[layer].high)
            count += 1
    assert len(got) == count


def check_html_and_markdown(report: Path) -> None:
    """Every PNG is inlined in the HTML byte for byte and referenced by the Markdown; nothing is fetched."""
    pngs = sorted((report / "figures").glob("*.png"))
    page = (report / "report.html").read_text()
    inlined = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert sorted(base64.b64decode(b) for b in inlined) == sorted(p.read_bytes() for p in pngs)
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # no external resource, only data URIs and anchors
    md = (report / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert sorted(linked) == sorted(f"figures/{p.name}" for p in pngs)
    for csv_link in re.findall(r"\]\((figures/[^)]+\.csv)\)", md):
        assert (report / csv_link).is_file()


# ---------------------------------------------------------------------------------------------
# One run, two runs, different layouts
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_run_report(tmp_path_factory) -> tuple[FakeRun, Path]:
    from analysis.report import write_report

    root = tmp_path_factory.mktemp("report_one")
    fake = make_run(root / "runA", recipe="OpenMMReasoner")
    files = write_report([fake.path], root / "report", progress=False)
    return fake, files.folder


def test_one_run_csvs_hold_the_source_numbers(one_run_report):
    fake, report = one_run_report
    folder = report / "figures"
    fakes = {"OpenMMReasoner": fake}
    check_weights(folder, fakes, {"OpenMMReasoner": (2, 5)})
    check_weights(folder, fakes, {"OpenMMReasoner": (2, 5)}, name="weights_rank")
    check_authors_weights(folder, fakes)
    check_probe_curves(folder, fakes)
    check_transfer(folder, fakes)
    check_leaderboard(folder, fakes)
    check_transitions(folder / "transitions.csv", "OpenMMReasoner", fake)
    check_attention(folder, fakes)
    check_html_and_markdown(report)
    md = (report / "report.md").read_text()
    assert "not run." not in md and "not run (" not in md  # every stage shows


def test_two_runs_overlay_in_the_same_figures(tmp_path):
    from analysis.report import write_report

    a = make_run(tmp_path / "a", recipe="OpenMMReasoner", seed=0)
    b = make_run(tmp_path / "b", recipe="MMR1", seed=1)
    report = write_report([a.path, b.path], tmp_path / "report", progress=False).folder
    folder, fakes = report / "figures", {"OpenMMReasoner": a, "MMR1": b}
    check_weights(folder, fakes, {"OpenMMReasoner": (2, 5), "MMR1": (2, 5)})
    check_probe_curves(folder, fakes)
    check_transfer(folder, fakes)
    check_leaderboard(folder, fakes)
    check_transitions(folder / "transitions_1.csv", "OpenMMReasoner", a)
    check_transitions(folder / "transitions_2.csv", "MMR1", b)
    check_attention(folder, fakes)
    check_html_and_markdown(report)
    # Same layout: one figure each holds both recipes.
    assert {p.name for p in folder.glob("vision_swap*.png")} == {"vision_swap.png"}
    assert {p.name for p in folder.glob("weights_energy*.png")} == {"weights_energy.png"}


def test_runs_of_different_layouts_get_one_figure_each(tmp_path):
    from analysis.report import write_report

    a = make_run(tmp_path / "a", recipe="OpenMMReasoner", stages=("delta", "vision_swap", "attention"), seed=0)
    b = make_run(tmp_path / "b", recipe="Qwen-3B", layers=10, vision_blocks=3, cuts=None, stages=("delta", "vision_swap", "attention"), seed=2)
    folder = write_report([a.path, b.path], tmp_path / "report", progress=False).folder / "figures"
    check_weights(folder, {"OpenMMReasoner": a}, {"OpenMMReasoner": (2, 5)}, name="weights_energy_1")
    check_weights(folder, {"Qwen-3B": b}, {"Qwen-3B": (10 // 3, 2 * 10 // 3)}, name="weights_energy_2")  # thirds
    assert curve_rows(folder / "vision_swap_1.csv") == curve_expectation(a, "OpenMMReasoner", "vision_swap", ("change_rate", "source_adoption_rate"), ("accuracy",))
    assert curve_rows(folder / "vision_swap_2.csv") == curve_expectation(b, "Qwen-3B", "vision_swap", ("change_rate", "source_adoption_rate"), ("accuracy",))
    check_attention(folder, {"OpenMMReasoner": a}, suffix="_1")
    check_attention(folder, {"Qwen-3B": b}, suffix="_2")


def test_same_recipe_twice_is_told_apart_by_folder(tmp_path):
    from analysis.report import write_report

    a = make_run(tmp_path / "first", stages=("attention",), seed=0)
    b = make_run(tmp_path / "second", stages=("attention",), seed=1, attention_items=False)  # and falls back to unpaired
    folder = write_report([a.path, b.path], tmp_path / "report", progress=False).folder / "figures"
    check_attention(folder, {"OpenMMReasoner (first)": a, "OpenMMReasoner (second)": b})


# ---------------------------------------------------------------------------------------------
# Missing stages, bad input
# ---------------------------------------------------------------------------------------------


def section_text(md: str, title_start: str) -> str:
    part = md.split(f"## {title_start}", 1)[1]
    return part.split("\n## ", 1)[0]


def test_missing_stages_read_not_run(tmp_path):
    from analysis.report import write_report

    # vision done; reasoning never run; transfer failed; attention marked done but its folder is missing.
    fake = make_run(tmp_path / "run", stages=("delta", "vision_swap"), status={"transfer": "failed", "attention": "done"})
    report = write_report([fake.path], tmp_path / "report", progress=False).folder
    md = (report / "report.md").read_text()
    assert "OpenMMReasoner: reasoning not run." in section_text(md, "Reasoning")
    assert "OpenMMReasoner: reasoning_logprob not run." in section_text(md, "Reasoning")
    assert "OpenMMReasoner: transfer not run (stage failed)." in section_text(md, "Transfer: M_vis")
    assert "OpenMMReasoner: transfer not run (stage failed)." in section_text(md, "Transfer: transition")
    assert "OpenMMReasoner: attention not run (no curves under" in section_text(md, "Attention")
    names = {p.name for p in (report / "figures").iterdir()}
    assert not any(n.startswith(("reasoning", "transfer", "transitions", "attention")) for n in names)
    check_weights(report / "figures", {"OpenMMReasoner": fake}, {"OpenMMReasoner": (2, 5)})
    check_html_and_markdown(report)


def test_a_run_with_nothing_done_still_gives_a_report(tmp_path):
    from analysis.report import write_report

    fake = make_run(tmp_path / "run", stages=())
    report = write_report([fake.path], tmp_path / "report", progress=False).folder
    md = (report / "report.md").read_text()
    for stage in ("delta", "vision_swap", "reasoning", "reasoning_logprob", "transfer", "attention"):
        assert f"OpenMMReasoner: {stage} not run." in md
    assert not list((report / "figures").glob("*.png"))


@pytest.mark.cli
def test_cli_writes_the_report_next_to_the_run(tmp_path):
    fake = make_run(tmp_path / "run", stages=("delta", "transfer"))
    result = run_cli([cli_path("frankenstein"), "report", str(fake.path), "--quiet"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (fake.path / "report" / "report.html").is_file() and "wrote" in result.stdout
    check_transfer(fake.path / "report" / "figures", {"OpenMMReasoner": fake})
    again = run_cli([cli_path("frankenstein"), "report", str(fake.path), "--quiet"])  # an earlier report is replaced
    assert again.returncode == 0, again.stderr[-3000:]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.cli
def test_cli_folder_that_is_not_a_run_folder_is_one_line(tmp_path):
    (tmp_path / "results").mkdir()
    line = one_line_error(run_cli([cli_path("frankenstein"), "report", str(tmp_path / "results")]))
    assert line == f"frankenstein: error: {tmp_path / 'results'} is not a frankenstein run folder: no run.json"
    assert not (tmp_path / "results" / "report").exists()


@pytest.mark.cli
def test_cli_several_runs_need_out(tmp_path):
    a, b = make_run(tmp_path / "a", stages=()), make_run(tmp_path / "b", stages=(), recipe="MMR1")
    line = one_line_error(run_cli([cli_path("frankenstein"), "report", str(a.path), str(b.path)]))
    assert "need --out" in line


def test_unreadable_results_file_is_one_line_naming_it(tmp_path):
    from analysis.report import write_report
    from surgery.errors import FrankensteinError

    fake = make_run(tmp_path / "run", stages=("vision_swap",), old_results=False)
    broken = next((fake.path / "vision_swap" / "rl").rglob("*_results.json"))
    broken.write_text('{"results": {"frank_vision_ocr": ')
    with pytest.raises(FrankensteinError, match=re.escape(str(broken)) + " is not valid JSON"):
        write_report([fake.path], tmp_path / "report", progress=False)
    assert not (tmp_path / "report").exists()  # nothing half-written


@pytest.mark.parametrize("stage, log", [("transfer", "frank_general_vqa"), ("attention", "frank_attention_shift")])
def test_unreadable_samples_log_is_one_line_not_an_unpaired_interval(tmp_path, stage, log):
    """A samples log the paired intervals read is bad input when broken, not a reason to fall back quietly."""
    from analysis.report import write_report
    from surgery.errors import FrankensteinError

    fake = make_run(tmp_path / "run", stages=(stage,), old_results=False)
    broken = next((fake.path / stage / "rl").rglob(f"*_samples_{log}.jsonl"))
    broken.write_text("{broken\n")
    with pytest.raises(FrankensteinError, match=re.escape(str(broken)) + " line 1 is not JSON"):
        write_report([fake.path], tmp_path / "report", progress=False)
    assert not (tmp_path / "report").exists()


def test_malformed_shapes_and_manifests_are_one_line(tmp_path):
    from analysis.report import write_report
    from surgery.errors import FrankensteinError

    fake = make_run(tmp_path / "run", stages=("transfer",))
    results = next((fake.path / "transfer" / "in").rglob("*_results.json"))
    data = json.loads(results.read_text())
    data["results"]["frank_general_vqa"]["transitions,none"]["TT"] = "many"
    results.write_text(json.dumps(data))
    with pytest.raises(FrankensteinError, match=r"frank_general_vqa transitions is not TransitionCounts \(TT = 'many': "):
        write_report([fake.path], tmp_path / "report", progress=False)

    manifest = json.loads((fake.path / "run.json").read_text())
    del manifest["recipe"]
    (fake.path / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(FrankensteinError, match=r"run\.json: recipe: Field required"):
        write_report([fake.path], tmp_path / "report", progress=False)
    (fake.path / "run.json").write_text("{not json")
    with pytest.raises(FrankensteinError, match=r"run\.json is not valid JSON"):
        write_report([fake.path], tmp_path / "report", progress=False)


def test_out_that_is_not_a_report_is_left_alone(tmp_path):
    from analysis.report import write_report
    from surgery.errors import FrankensteinError

    fake = make_run(tmp_path / "run", stages=())
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("keep me")
    with pytest.raises(FrankensteinError, match="is not a frankenstein report"):
        write_report([fake.path], precious, progress=False)
    assert (precious / "chapter1.tex").read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# Headless Chromium
# ---------------------------------------------------------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Inserted before the report's Content-Security-Policy, so it runs (the report itself has no script) and
# records what a reader's browser would meet: resource and script errors, console.error calls, blocked
# fetches (CSP violations), and, once the page has loaded, the state of every image.
PROBE = """<script>
window.__problems = [];
window.addEventListener('error', e => __problems.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)) || 'resource')), true);
document.addEventListener('securitypolicyviolation', e => __problems.push('blocked: ' + e.violatedDirective + ' ' + e.blockedURI));
const __consoleError = console.error;
console.error = (...args) => { __problems.push('console.error: ' + args.join(' ')); __consoleError(...args); };
window.addEventListener('load', () => {
  const images = Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}));
  const out = document.createElement('pre'); out.id = '__probe';
  out.textContent = JSON.stringify({images: images, problems: __problems});
  document.body.appendChild(out);
});
</script>"""


def chromium_or_skip() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium not found (looked for chromium, chromium-browser, google-chrome); "
                "install it with `apt-get install chromium` to check that the HTML report renders")


def headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0",
    ]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=180, check=False)


def test_html_renders_in_headless_chromium(one_run_report, tmp_path):
    chromium = chromium_or_skip()
    _, report = one_run_report
    page = (report / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    result = headless(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="__probe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert found, f"the page did not finish loading: {result.stderr[-2000:]}"
    state: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    assert state["problems"] == []
    # Console messages the page produced (Chromium logs them as CONSOLE lines): none.
    assert [line for line in result.stderr.splitlines() if ":CONSOLE" in line] == []
    pngs = list((report / "figures").glob("*.png"))
    assert len(state["images"]) == len(pngs) > 0
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in state["images"]), state["images"]


def test_chromium_probe_catches_a_broken_image(tmp_path):
    """The probe above is not vacuous: a broken image and a blocked fetch are reported."""
    chromium = chromium_or_skip()
    from analysis.report.document import CSP

    page = tmp_path / "bad.html"
    page.write_text(
        f'<!DOCTYPE html><html><head>{PROBE}<meta http-equiv="Content-Security-Policy" content="{CSP}"></head><body>'
        '<img src="data:image/png;base64,AAAA"><img src="http://example.invalid/x.png"></body></html>'
    )
    result = headless(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    state = json.loads(html.unescape(re.search(r'<pre id="__probe">(.*?)</pre>', result.stdout, re.DOTALL).group(1)))
    assert [i["width"] for i in state["images"]] == [0, 0]
    assert any(p.startswith("blocked: img-src") for p in state["problems"])


def test_vision_caption_names_the_swap_mode_of_the_run(tmp_path):
    from analysis.report import write_report

    fake = make_run(tmp_path / "run", stages=("vision_swap",), old_results=False)
    for results in (fake.path / "vision_swap").rglob("*_results.json"):
        data = json.loads(results.read_text())
        data["config"]["model_args"] = "pretrained=/models/rl,probe=visual_swap,swap_mode=only"
        results.write_text(json.dumps(data))
    md = (write_report([fake.path], tmp_path / "report", progress=False).markdown).read_text()
    assert "visual tokens of layer L alone are swapped" in md
