"""Bad input on every path ends in one line and a failing exit status, and leaves nothing that looks complete.

One table, `CASES`: bad inputs across the `frankenstein` CLI, run configs, reports, datasets,
checkpoints, and `lmms_eval --model frankenstein` (all three spellings of that command line). Each
case runs the real command line in a fresh folder and the test asserts

* exit status 2;
* stderr ends with one line `frankenstein: error: ...` holding the case's message, and no other line
  reports an error or a traceback; for the `frankenstein` CLI nothing but progress bars precedes it
  (lmms-eval and lm-eval also log their start-up to stderr);
* no file or folder appeared or changed in the case's folder (hidden entries such as `.hf/` and
  temporary `.*.tmp` names aside), so nothing half-written can be taken for a result. A case that
  fails inside a stage of `frankenstein run` may leave `run.json`, which must record the failure.

`ISSUE_22` names the cases that issue 22 found failing (tracebacks, exit status 0, silent garbage);
the others already ended as promised and stay pinned here. The cases run as subprocesses, two at a
time (the machine's two cores), once per session for the cases pytest selected: every `lmms_eval`
case shares one tiny checkpoint and fails before the model loads, except the NaN and the task-data
cases, which load it (seconds). Starting lmms-eval or lm-eval costs tens of seconds on 2 shared
cores, so those cases are marked `slow` but for one per spelling of the lmms-eval command line:
`-m "not slow"` runs the table in a few minutes, a plain run runs all of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import pytest

from conftest import cli_path

pytestmark = pytest.mark.cli

PARALLEL = 2  # subprocesses at a time
TIMEOUT_S = 600


# ---------------------------------------------------------------------------------------------
# Inputs: the tiny trio and bad checkpoints derived from it (built once)
# ---------------------------------------------------------------------------------------------

PROCESSOR_FILES = ("generation_config.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json",
                   "processor_config.json")
NAN_TENSOR = "model.layers.2.mlp.up_proj.weight"


def _derived(source: Path, folder: Path, *, config: dict | None = None, state: dict | None = None,
             files: tuple[str, ...] = ("config.json", "model.safetensors", *PROCESSOR_FILES)) -> Path:
    """A checkpoint folder linking `source`'s files, with its own config and/or weights where given."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    for name in files:
        if (source / name).exists():
            (folder / name).symlink_to(source / name)
    if config is not None:
        (folder / "config.json").unlink(missing_ok=True)
        (folder / "config.json").write_text(json.dumps(config))
    if state is not None:
        (folder / "model.safetensors").unlink(missing_ok=True)
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def _with_layers(config: dict, n: int) -> dict:
    config = json.loads(json.dumps(config))
    for section in (config, config.get("text_config") or {}):
        if "num_hidden_layers" in section:
            section["num_hidden_layers"] = n
    return config


@pytest.fixture(scope="module")
def inputs(tiny_trio, tmp_path_factory) -> dict[str, str]:
    """Placeholder -> path for the case table: the trio and one bad checkpoint per kind of damage."""
    import torch
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("bad_checkpoints")
    base, rl = Path(tiny_trio["base"]), Path(tiny_trio["rl"])
    config = json.loads((base / "config.json").read_text())
    state = load_file(str(rl / "model.safetensors"))
    made: dict[str, Path] = {}

    made["trunc"] = _derived(base, root / "trunc", files=("config.json", *PROCESSOR_FILES))
    data = (base / "model.safetensors").read_bytes()
    (made["trunc"] / "model.safetensors").write_bytes(data[: len(data) // 2])  # header intact, data cut

    made["pickled"] = _derived(base, root / "pickled", files=("config.json", *PROCESSOR_FILES))
    torch.save({"w": torch.zeros(2)}, made["pickled"] / "pytorch_model.bin")

    nan_state = dict(state)
    nan_state[NAN_TENSOR] = nan_state[NAN_TENSOR].clone()
    nan_state[NAN_TENSOR][3, 5] = float("nan")
    made["nan"] = _derived(rl, root / "nan", state=nan_state)

    made["noproc"] = _derived(base, root / "noproc", files=("config.json", "model.safetensors"))
    made["llama"] = _derived(base, root / "llama", config={**config, "model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    made["badjson"] = _derived(base, root / "badjson")
    (made["badjson"] / "config.json").unlink()
    (made["badjson"] / "config.json").write_text('{"model_type": "qwen2_5_vl",\n')
    made["nine"] = _derived(base, root / "nine", config=_with_layers(config, 9))
    made["six"] = _derived(rl, root / "six", config=_with_layers(config, 6),
                           state={k: v for k, v in state.items() if not re.match(r"model\.layers\.[67]\.", k)})
    shape_state = dict(state)
    shape_state["model.layers.3.mlp.up_proj.weight"] = state["model.layers.3.mlp.up_proj.weight"][:-8].contiguous()
    made["shape"] = _derived(rl, root / "shape", state=shape_state)
    return {"base": str(base), "in": str(tiny_trio["in"]), "rl": str(rl), **{k: str(v) for k, v in made.items()}}


# ---------------------------------------------------------------------------------------------
# Setups: what a case writes into its folder before the command runs
# ---------------------------------------------------------------------------------------------


def write(relative: str, text: str) -> Callable[[Path, dict], None]:
    def setup(ws: Path, inputs: dict) -> None:
        path = ws / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**inputs))
    return setup


def jsonl(relative: str, *rows: dict) -> Callable[[Path, dict], None]:
    return write(relative, "".join(json.dumps(r).replace("{", "{{").replace("}", "}}") + "\n" for r in rows))


def both(*setups: Callable[[Path, dict], None]) -> Callable[[Path, dict], None]:
    def setup(ws: Path, inputs: dict) -> None:
        for s in setups:
            s(ws, inputs)
    return setup


def folder(relative: str) -> Callable[[Path, dict], None]:
    return lambda ws, inputs: (ws / relative).mkdir(parents=True)


GSM8K_ROW = {"question": "Tom has 2 apples and buys 3. How many now?", "answer": "2 + 3 = 5\n#### 5"}
MATHVISTA_ROW = {"pid": "1", "question": "What colour?", "decoded_image": "img/1.png", "choices": None,
                 "answer": "red", "question_type": "free_form", "metadata": {"category": "general-vqa"}}


def run_config(**overrides) -> Callable[[Path, dict], None]:
    """ws/run.yaml: an offline run of the trio (JSON is YAML), the reasoning stage on ws/gsm8k.jsonl."""
    def setup(ws: Path, inputs: dict) -> None:
        (ws / "gsm8k.jsonl").write_text(json.dumps(GSM8K_ROW) + "\n")
        config = {
            "recipe": "Tiny", "out": "out", "offline": True, "device": "cpu",
            "models": {"base": inputs["base"], "in": inputs["in"], "rl": inputs["rl"]},
            "stages": ["reasoning"], "reasoning": {"tasks": ["gsm8k"], "subset": "all", "max_new_tokens": 4},
            "data": {"gsm8k": "gsm8k.jsonl"},
        }
        for key, value in overrides.items():
            config[key] = {k: (v.format(**inputs) if isinstance(v, str) else v) for k, v in value.items()} \
                if isinstance(value, dict) else value
        (ws / "run.yaml").write_text(json.dumps(config))
    return setup


def run_folder(manifest: str) -> Callable[[Path, dict], None]:
    return write("runs/a/run.json", manifest)


def pair_folder(meta: dict) -> Callable[[Path, dict], None]:
    """ws/pairs/counting/: one pair whose meta is `meta` (two equal-size images)."""
    def setup(ws: Path, inputs: dict) -> None:
        from PIL import Image

        task = ws / "pairs" / "counting"
        (task / "img").mkdir(parents=True)
        for name in ("t", "s"):
            Image.new("RGB", (112, 112), "white").save(task / "img" / f"{name}.png")
        line = {"id": "p1", "task": "counting", "target_image": "img/t.png", "source_image": "img/s.png",
                "prompt": "How many red dots?", "meta": meta}
        (task / "data.jsonl").write_text(json.dumps(line) + "\n")
    return setup


def cached_gsm8k(rows: list[dict]) -> Callable[[Path, dict], None]:
    """ws/.hf/datasets: openai/gsm8k as a datasets cache entry holding `rows` (written directly, as a
    download would leave it, so the task's own check is what meets them)."""
    def setup(ws: Path, inputs: dict) -> None:
        from frankenstein_tasks.hub_cache import cache_dataset

        cache_dataset("openai/gsm8k", "main", {"test": rows, "train": rows}, cache_dir=ws / ".hf" / "datasets")
    return setup


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]  # argv[0]: frankenstein, lmms_eval, lmms-eval or "python -m lmms_eval"; {placeholders}
    message: str  # what the one line must hold ({placeholders} too)
    setup: Callable[[Path, dict], None] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    may_leave: tuple[str, ...] = ()  # paths (relative to the case folder) allowed to appear: a failed run's record
    slow: bool | None = None  # marked slow; default: the cases that start lmms-eval or lm-eval (tens of seconds each)

    @property
    def marks(self) -> list[pytest.MarkDecorator]:
        return [pytest.mark.slow] if (self.harness if self.slow is None else self.slow) else []

    @property
    def harness(self) -> bool:
        """Runs inside lmms-eval or lm-eval, whose start-up logs go to stderr too."""
        return self.argv[0] != "frankenstein" or self.argv[1] == "lm-eval"


def F(*args: str, message: str, **kw) -> Case:
    return Case(("frankenstein", *args), message, **kw)


def LMMS(model_args: str, message: str, *, program: str = "lmms_eval", tasks: str = "frank_vision_counting", **kw) -> Case:
    return Case((program, "--model", "frankenstein", "--model_args", model_args, "--tasks", tasks,
                 "--output_path", "{ws}/results", "--log_samples"), message, **kw)


RUN = ("run", "{ws}/run.yaml")
TRIO = ("--base", "{base}", "--in", "{in}", "--rl", "{rl}")
MERGE = ("merge-config", "--in", "{in}")
CASES: dict[str, Case] = {
    # -- the command line itself
    "cli-unknown-command": F("bogus", message="argument COMMAND: invalid choice: 'bogus'"),
    "cli-missing-argument": F("layout", message="the following arguments are required: model (see frankenstein layout --help)"),
    "cli-bad-number": F("make-tiny", "{ws}/x", "--layers", "two", message="argument --layers: invalid int value: 'two'"),
    # -- checkpoints
    "layout-missing-folder": F("layout", "{ws}/missing", message="no checkpoint folder at {ws}/missing"),
    "layout-hub-id-not-cached": F("layout", "Org/Model", message="Org/Model is not in the local Hugging Face cache"),
    "layout-file-not-folder": F("layout", "{base}/config.json", message="is a file, not a checkpoint folder"),
    "layout-no-config": F("layout", "{ws}/empty", setup=folder("empty"), message="has no config.json"),
    "layout-config-not-json": F("layout", "{badjson}", message="config.json is not valid JSON"),
    "layout-pickle-only": F("layout", "{pickled}", message="holds only pickle weights (pytorch_model.bin)"),
    "layout-truncated-safetensors": F("layout", "{trunc}", message="{trunc}/model.safetensors is not a readable safetensors file"),
    "layout-unsupported-model": F("layout", "{llama}", message="unsupported model_type 'llama'"),
    "layout-config-disagrees-with-weights": F("layout", "{nine}", message="config says 9 decoder layers but the weights hold 8"),
    "layout-bad-cuts": F("layout", "{base}", "--cuts", "3", "2", message="0 < c1 < c2 < 8"),
    "freeze-unknown-block": F("freeze-params", "{base}", "--block", "middle", message="unknown block 'middle'"),
    # -- merge recipes
    "merge-unknown-variant": F(*MERGE, "--rl", "{rl}", "--variant", "mid_early", "-o", "{ws}/r.yaml", message="unknown variant 'mid_early'"),
    "merge-cuts-out-of-range": F(*MERGE, "--rl", "{rl}", "--variant", "mid", "--cuts", "3", "8", "-o", "{ws}/r.yaml",
                                 message="cuts must satisfy 0 < c1 < c2 < 8"),
    "merge-layer-counts-differ": F(*MERGE, "--rl", "{six}", "--all", "-o", "{ws}/recipes", message="differ in decoder layer counts"),
    "merge-shapes-differ": F(*MERGE, "--rl", "{shape}", "--variant", "mid", "-o", "{ws}/r.yaml",
                             message="model.layers.3.mlp.up_proj.weight is [128, 64] in IN but [120, 64] in RL"),
    "merge-unsupported-model": F(*MERGE, "--rl", "{llama}", "--variant", "mid", "-o", "{ws}/r.yaml", message="unsupported model_type 'llama'"),
    "merge-all-without-folder": F(*MERGE, "--rl", "{rl}", "--all", message="--all writes one file per variant"),
    "merge-output-is-a-folder": F(*MERGE, "--rl", "{rl}", "--variant", "mid", "-o", "{ws}/dir", setup=folder("dir"),
                                  message="-o {ws}/dir is a folder"),
    "merge-into-existing-folder": F(*MERGE, "--rl", "{rl}", "--variant", "mid", "--merge", "{ws}/merged", setup=folder("merged"),
                                    message="{ws}/merged already exists"),
    "merge-rl-missing": F(*MERGE, "--variant", "mid", message="both --in IN and --rl RL are needed"),
    # -- weight deltas
    "delta-nan-weights": F("delta", *TRIO[:4], "--rl", "{nan}", "--out", "{ws}/delta", "--metrics", "energy", "--no-plots", "--quiet",
                           message=f"tensor {NAN_TENSOR} in RL ({{nan}}) holds 1 NaN/Inf value"),
    "delta-truncated-safetensors": F("delta", "--base", "{trunc}", *TRIO[2:], "--out", "{ws}/delta", "--quiet",
                                     message="{trunc}/model.safetensors is not a readable safetensors file"),
    "delta-out-exists": F("delta", *TRIO, "--out", "{ws}/delta", setup=folder("delta"), message="{ws}/delta already exists"),
    "delta-unknown-metric": F("delta", *TRIO, "--out", "{ws}/delta", "--metrics", "energy,svg", message="--metrics takes"),
    "delta-bad-filter": F("delta", *TRIO, "--out", "{ws}/delta", "--filter", "(", message="not a valid regular expression"),
    "delta-filter-matches-nothing": F("delta", *TRIO, "--out", "{ws}/delta", "--filter", "^nothing", message="matches no tensor"),
    "delta-unknown-device": F("delta", *TRIO, "--out", "{ws}/delta", "--device", "quantum",
                              message="--device: 'quantum' is not a device on this machine; available here: auto, cpu"),
    # -- results, transfer tables, reports
    "curves-no-results": F("curves", "{ws}", message="no lmms-eval *_results.json at {ws}"),
    "transfer-no-runs": F("transfer", "-o", "{ws}/t", message="name at least one lmms-eval results file"),
    "merge-output-under-a-file": F(*MERGE, "--rl", "{rl}", "--variant", "mid", "-o", "{ws}/f/r.yaml", setup=write("f", "x"),
                                   message="cannot write {ws}/f/r.yaml: {ws}/f is a file, not a folder"),
    "transfer-bad-label": F("transfer", "-o", "{ws}/t", "--label", "mid", message="--label 'mid' is not NAME=RESULTS"),
    "report-not-a-run-folder": F("report", "{ws}", message="{ws} is not a frankenstein run folder: no run.json"),
    "report-several-runs-without-out": F("report", "{ws}/a", "{ws}/b", message="2 run folders need --out REPORT"),
    "report-run-json-not-json": F("report", "{ws}/runs/a", setup=run_folder("{{"), message="run.json is not valid JSON"),
    "report-run-json-incomplete": F("report", "{ws}/runs/a", setup=run_folder('{{"stages": {{}}}}'), message="run.json: recipe: Field required"),
    # -- tiny checkpoints and the demo
    "make-tiny-onto-existing-folder": F("make-tiny", "{ws}/trio", setup=folder("trio"), message="{ws}/trio already exists"),
    "make-tiny-onto-a-file": F("make-tiny", "{ws}/trio", setup=write("trio", "x"), message="{ws}/trio is a file"),
    "make-tiny-trained-with-plant": F("make-tiny", "{ws}/x", "--trained", "--plant", "mid", message="--plant do(es) not apply to --trained"),
    "make-tiny-unknown-setting": F("make-tiny", "{ws}/x", "--trained", "--setting", "huge", message="unknown organism setting 'huge'"),
    "make-tiny-setting-without-trained": F("make-tiny", "{ws}/x", "--setting", "test", message="--setting applies to --trained only"),
    "make-tiny-cuts-out-of-range": F("make-tiny", "{ws}/x", "--cuts", "5", "2", message="cuts must satisfy"),
    "demo-unknown-stage": F("demo", "--out", "{ws}/demo", "--only", "nonsense", message="unknown stage nonsense"),
    "demo-out-is-a-file": F("demo", "--out", "{ws}/demo", setup=write("demo", "x"), message="--out {ws}/demo is a file"),
    "demo-items-zero": F("demo", "--out", "{ws}/demo", "--items", "0", message="--items must be at least 1, got 0"),
    "demo-models-role-missing": F("demo", "--out", "{ws}/demo", "--models", "{ws}/trio", setup=folder("trio/base"),
                                  message="{ws}/trio/base has no config.json"),
    "demo-unknown-device": F("demo", "--out", "{ws}/demo", "--device", "quantum", message="'quantum' is not a device on this machine"),
    # -- data: probe pairs and local copies of the benchmarks
    "pairs-out-is-a-file": F("data", "make-pairs", "--task", "counting", "--n", "2", "--out", "{ws}/pairs", setup=write("pairs", "x"),
                             message="{ws}/pairs is a file"),
    "pairs-task-folder-exists": F("data", "make-pairs", "--task", "ocr", "--n", "2", "--out", "{ws}/pairs", setup=folder("pairs/ocr"),
                                  message="{ws}/pairs/ocr already exist(s)"),
    "pairs-no-pairs": F("data", "make-pairs", "--task", "ocr", "--n", "0", "--out", "{ws}/pairs", message="--n must be at least 1"),
    "pairs-bad-size": F("data", "make-pairs", "--task", "ocr", "--size", "100", "--out", "{ws}/pairs", message="must be a multiple of 28"),
    "cache-dataset-no-file": F("data", "cache-dataset", "gsm8k", "{ws}/g.jsonl", message="no file at {ws}/g.jsonl"),
    "cache-dataset-not-json": F("data", "cache-dataset", "gsm8k", "{ws}/g.jsonl", "--cache-dir", "{ws}/cache",
                                setup=write("g.jsonl", '{{"question": 1\n'), message="{ws}/g.jsonl:1: not a JSON line"),
    "cache-dataset-empty": F("data", "cache-dataset", "gsm8k", "{ws}/g.jsonl", "--cache-dir", "{ws}/cache",
                             setup=write("g.jsonl", "\n"), message="{ws}/g.jsonl holds no rows"),
    "cache-dataset-gsm8k-fields-missing": F("data", "cache-dataset", "gsm8k", "{ws}/g.jsonl", "--cache-dir", "{ws}/cache",
                                            setup=jsonl("g.jsonl", GSM8K_ROW, {"question": "What is 2 + 2?"}),
                                            message="{ws}/g.jsonl:2: no 'answer' field; openai/gsm8k rows need question, answer"),
    "cache-dataset-gsm8k-no-final-answer": F("data", "cache-dataset", "gsm8k", "{ws}/g.jsonl", "--cache-dir", "{ws}/cache",
                                             setup=jsonl("g.jsonl", {"question": "2 + 2?", "answer": "four"}),
                                             message="{ws}/g.jsonl:1: GSM8K answer field has no final answer after '####'"),
    "cache-dataset-math500-fields-missing": F("data", "cache-dataset", "math500", "{ws}/m.jsonl", "--cache-dir", "{ws}/cache",
                                              setup=jsonl("m.jsonl", {"question": "2 + 2?", "answer": "4"}),
                                              message="{ws}/m.jsonl:1: no 'problem' field"),
    "cache-dataset-mathvista-fields-missing": F("data", "cache-dataset", "mathvista", "{ws}/v.jsonl", "--cache-dir", "{ws}/cache",
                                                setup=jsonl("v.jsonl", {k: v for k, v in MATHVISTA_ROW.items() if k != "question_type"}),
                                                message="{ws}/v.jsonl:1: no 'question_type' field"),
    "cache-dataset-mathvista-image-missing": F("data", "cache-dataset", "mathvista", "{ws}/v.jsonl", "--cache-dir", "{ws}/cache",
                                               setup=jsonl("v.jsonl", MATHVISTA_ROW), message="decoded_image {ws}/img/1.png does not exist"),
    # -- run configs
    "run-no-config": F("run", message="give a config file"),
    "run-unknown-example": F("run", "--print-config", "bogus", message="no example config 'bogus'"),
    "run-config-missing": F(*RUN, message="no config file at {ws}/run.yaml"),
    "run-config-is-a-folder": F("run", "{ws}", message="{ws} is a folder; give the run config file"),
    "run-yaml-syntax": F(*RUN, setup=write("run.yaml", "recipe: x\nmodels:\n  base: a\n   in: b\n"),
                         message="{ws}/run.yaml:4:6: not valid YAML: mapping values are not allowed here"),
    "run-config-not-a-mapping": F(*RUN, setup=write("run.yaml", "- recipe\n"), message="a run config is a mapping"),
    "run-unknown-stage": F(*RUN, setup=run_config(stages=["delta", "vison_swap"]), message="stages: unknown stage 'vison_swap'"),
    "run-unknown-field": F(*RUN, setup=run_config(reasoning={"subest": "10"}), message="reasoning.subest: unknown field"),
    "run-hub-id-not-cached": F(*RUN, setup=run_config(models={"base": "{base}", "in": "{in}", "rl": "Nobody/NotCached-7B"}),
                               message="models.rl: Nobody/NotCached-7B is not in the local Hugging Face cache"),
    "run-bad-subset": F(*RUN, setup=run_config(reasoning={"subset": "ten"}), message="reasoning.subset: subset 'ten' is not"),
    "run-data-file-missing": F(*RUN, setup=run_config(data={"gsm8k": "missing.jsonl"}), message="data.gsm8k: {ws}/missing.jsonl does not exist"),
    "run-out-is-a-file": F(*RUN, setup=both(write("out", "x"), run_config()), message="out: {ws}/out is a file, not a folder"),
    "run-unknown-device": F(*RUN, setup=run_config(device="quantum"),
                            message="device: 'quantum' is not a device on this machine; available here: auto, cpu"),
    "run-unknown-dtype": F(*RUN, setup=run_config(dtype="fp8"), message="dtype: unknown dtype 'fp8'"),
    "run-force-unknown-stage": F(*RUN, "--force", "bogus", setup=run_config(), message="--force: unknown stage 'bogus'"),
    "run-layer-counts-differ": F(*RUN, setup=run_config(models={"base": "{base}", "in": "{in}", "rl": "{six}"}),
                                 message="IN and RL differ in decoder layer counts"),
    "run-cuts-out-of-range": F(*RUN, setup=run_config(cuts=[5, 2]), message="cuts must satisfy 0 < c1 < c2 < 8"),
    "run-out-holds-other-models": F(*RUN, setup=both(run_config(), write("out/run.json", '{{"models": {{"base": "x"}}, "stages": {{}}}}')),
                                    message="holds a run of other models"),
    "run-data-rows-lack-fields": F(*RUN, setup=both(run_config(), jsonl("gsm8k.jsonl", {"question": "2 + 2?"})),
                                   message="data.gsm8k: {ws}/gsm8k.jsonl:1: no 'answer' field"),
    "run-vision-pairs-lack-fields": F(*RUN, setup=both(pair_folder({"target_answer": 2}),
                                                       run_config(stages=["vision_swap"], vision_swap={"tasks": ["counting"]},
                                                                  data={"vision_pairs": "pairs"})),
                                      message="{ws}/pairs/counting/data.jsonl:1: meta.source_answer: missing"),
    "run-unknown-device-map": F(*RUN, setup=run_config(device_map="everywhere"),
                                message="device_map: device_map 'everywhere' is neither a placement strategy"),
    "run-paper-other-subset": F(*RUN, setup=run_config(protocol="paper"),
                                message="protocol: paper asks the paper's items (100:123: 100 items, seed 123); reasoning.subset is 'all'"),
    "run-paper-without-pair-set": F(*RUN, setup=run_config(protocol="paper", stages=["vision_swap"], reasoning={"tasks": ["gsm8k"]}),
                                    message="protocol: paper probes the authors' released pair set"),
    "run-paper-pair-set-lacks-task": F(*RUN, setup=both(pair_folder({"target_answer": 2, "source_answer": 3}),
                                                        run_config(protocol="paper", stages=["vision_swap"], reasoning={"tasks": ["gsm8k"]},
                                                                   vision_swap={"tasks": ["counting", "ocr"]}, data={"vision_pairs": "pairs"})),
                                       message="data.vision_pairs: {ws}/pairs has no ocr/data.jsonl"),
    "run-leaderboard-unknown-task": F(*RUN, setup=run_config(stages=["leaderboard"], leaderboard={"tasks": ["arc_easyy"]}),
                                      message="leaderboard: lm-eval knows no task or group 'arc_easyy'", slow=True),
    # A FrankensteinError inside lmms-eval's Python API reaches the run, which reports the stage.
    "run-stage-fails-in-lmms-eval": F(*RUN, setup=run_config(stages=["vision_swap"],
                                                             vision_swap={"tasks": ["counting"], "n": 2, "size": 112, "layers": "99"}),
                                      message="stage vision_swap: layers [99] are out of range", may_leave=("out", "out/run.json"), slow=True),
    # -- lm-eval's own CLI with the frankenstein model
    "lm-eval-probe-it-cannot-run": F("lm-eval", "run", "--model", "frankenstein", "--model_args", "pretrained={base},device=cpu,probe=attention",
                                     "--tasks", "gsm8k", "--output_path", "{ws}/results",
                                     message="the lm-eval frankenstein model runs probe=none or probe=zero_ablation"),
    "lm-eval-max-length-zero": F("lm-eval", "run", "--model", "frankenstein", "--model_args", "pretrained={base},device=cpu,max_length=0",
                                 "--tasks", "gsm8k", "--output_path", "{ws}/results", message="model arg max_length:"),
    # -- lmms_eval --model frankenstein: model args
    "lmms-unknown-model-arg": LMMS("pretrained={base},bogus=1", "unknown model arg 'bogus' for frankenstein", program="lmms-eval", slow=False),
    "lmms-unknown-probe": LMMS("pretrained={base},probe=bogus", "model arg probe: unknown probe 'bogus'", program="python -m lmms_eval", slow=False),
    "lmms-layer-out-of-range": LMMS("pretrained={base},probe=visual_swap,layers=99", "layers [99] are out of range: the model has decoder layers 0..7", slow=False),
    "lmms-unknown-swap-mode": LMMS("pretrained={base},probe=visual_swap,swap_mode=bogus", "model arg swap_mode:"),
    "lmms-window-zero": LMMS("pretrained={base},probe=visual_swap,swap_mode=window,window=0", "model arg window:"),
    "lmms-unreadable-layers": LMMS("pretrained={base},probe=zero_ablation,layers=3-x", "cannot read layers '3-x'"),
    "lmms-unknown-splice": LMMS("in={in},rl={rl},splice=bogus", "unknown variant 'bogus'"),
    "lmms-unknown-device": LMMS("pretrained={base},device=quantum", "'quantum' is not a device on this machine; available here: auto, cpu"),
    "lmms-unknown-swap-decode": LMMS("pretrained={base},probe=visual_swap,swap_decode=bogus", "model arg swap_decode:"),
    "lmms-swap-decode-without-swap": LMMS("pretrained={base},probe=zero_ablation,swap_decode=reinsert",
                                          "swap_decode=reinsert works with probe=visual_swap only"),
    "lmms-unknown-device-map": LMMS("pretrained={base},device_map=everywhere",
                                    "model arg device_map: device_map 'everywhere' is neither a placement strategy"),
    "lmms-splice-with-device-map": LMMS("in={in},rl={rl},splice=mid,device_map=auto", "splice=... builds the splice on one device"),
    # -- lmms_eval --model frankenstein: checkpoints
    "lmms-missing-checkpoint": LMMS("pretrained={ws}/missing", "no checkpoint folder at {ws}/missing"),
    "lmms-no-processor-files": LMMS("pretrained={noproc}", "could not load the processor of {noproc}"),
    "lmms-truncated-safetensors": LMMS("pretrained={trunc}", "{trunc}/model.safetensors is not a readable safetensors file"),
    "lmms-pickle-only": LMMS("pretrained={pickled}", "holds only pickle weights (pytorch_model.bin)"),
    "lmms-nan-weights": LMMS("pretrained={nan}", f"tensor {NAN_TENSOR} in {{nan}} holds 1 NaN/Inf value"),
    # -- lmms_eval: task data, as it enters the task
    "lmms-vision-data-task-missing": LMMS("pretrained={base}", "FRANKENSTEIN_VISION_DATA={ws}/pairs has no counting/data.jsonl",
                                          setup=folder("pairs"), env={"FRANKENSTEIN_VISION_DATA": "{ws}/pairs"}),
    "lmms-vision-data-lacks-fields": LMMS("pretrained={base}", "{ws}/pairs/counting/data.jsonl:1: meta.source_answer: missing",
                                          setup=pair_folder({"target_answer": 2}), env={"FRANKENSTEIN_VISION_DATA": "{ws}/pairs"}),
    "lmms-paper-task-without-pair-set": LMMS("pretrained={base}", "frank_vision_counting_paper reads the authors' released pair set",
                                             tasks="frank_vision_counting_paper"),
    "lmms-gsm8k-lacks-fields": LMMS("pretrained={base}", "frank_gsm8k: the openai/gsm8k data has no 'answer' field", tasks="frank_gsm8k",
                                    setup=cached_gsm8k([{"question": "2 + 2?"}]), env={"HF_DATASETS_CACHE": "{ws}/.hf/datasets"}),
}

# The 16 cases issue 22 found failing (a traceback, exit status 0, or a bad input accepted), as the
# issue lists them; the rest ended as promised before and stay pinned.
ISSUE_22 = (
    "lmms-unknown-model-arg", "lmms-unknown-probe", "lmms-layer-out-of-range", "lmms-unknown-swap-mode", "lmms-window-zero",
    "lmms-unreadable-layers", "lmms-unknown-splice", "lmms-no-processor-files", "lmms-truncated-safetensors", "lmms-pickle-only",
    "lmms-nan-weights", "cache-dataset-gsm8k-fields-missing", "run-out-is-a-file", "run-unknown-device", "delta-unknown-device",
    "pairs-out-is-a-file",
)
# Smaller ones the issue names besides: a YAML error without its line, a folder taken for a missing
# config, make-tiny refusing an existing folder only after building (and `--no-report`, below).
ISSUE_22_SMALLER = ("run-yaml-syntax", "run-config-is-a-folder", "make-tiny-onto-existing-folder")


# ---------------------------------------------------------------------------------------------
# Running the table
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    before: dict[str, tuple]
    after: dict[str, tuple]
    values: dict[str, str]


def snapshot(ws: Path) -> dict[str, tuple]:
    """Every visible file and folder under `ws` (hidden names and what they hold left out), with size and mtime."""
    found = {}
    for path in sorted(ws.rglob("*")):
        relative = path.relative_to(ws)
        if any(part.startswith(".") for part in relative.parts):
            continue
        stat = path.lstat()
        found[str(relative)] = ("dir",) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return found


def command(program: str) -> list[str]:
    if program == "python -m lmms_eval":
        return [sys.executable, "-m", "lmms_eval"]
    return [cli_path(program)]


def run_case(name: str, ws: Path, inputs: dict[str, str]) -> Outcome:
    case = CASES[name]
    ws.mkdir(parents=True)
    values = {**inputs, "ws": str(ws)}
    if case.setup is not None:
        case.setup(ws, values)
    before = snapshot(ws)
    env = {**os.environ, "HF_HOME": str(ws / ".hf"), "FRANKENSTEIN_CACHE": str(ws / ".frankenstein"),
           "OMP_NUM_THREADS": "1", **{k: v.format(**values) for k, v in case.env.items()}}
    for key in ("FRANKENSTEIN_VISION_DATA", "FRANKENSTEIN_SUBSET", "HF_DATASETS_CACHE", "LMMS_EVAL_PLUGINS"):
        if key not in case.env:
            env.pop(key, None)
    argv = command(case.argv[0]) + [a.format(**values) for a in case.argv[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=ws)
    return Outcome(done.returncode, done.stdout, done.stderr, before, snapshot(ws), values)


@pytest.fixture(scope="module")
def outcomes(request, inputs, tmp_path_factory) -> dict[str, Outcome]:
    """Every selected case, run two at a time."""
    selected = [item.callspec.params["name"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_bad_input" and hasattr(item, "callspec")]
    root = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = pool.map(lambda name: run_case(name, root / name, inputs), selected)
        return dict(zip(selected, results))


PROGRESS_BAR = re.compile(r"\d+%\||\d+/\d+ \[")  # tqdm: "37%|###  " or "2/9 [00:01<..."


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r"error|traceback|exception", line, re.IGNORECASE)]


@pytest.mark.parametrize("name", [pytest.param(name, marks=case.marks) for name, case in CASES.items()])
def test_bad_input(name, outcomes):
    case, outcome = CASES[name], outcomes[name]
    shown = f"exit {outcome.returncode}\nstderr:\n{outcome.stderr[-3000:]}\nstdout:\n{outcome.stdout[-1500:]}"
    assert outcome.returncode == 2, shown
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("frankenstein: error: "), shown
    assert case.message.format(**outcome.values) in lines[-1], shown
    assert error_lines(outcome.stderr) == [lines[-1]], shown  # no traceback, no "Error during evaluation"
    if not case.harness:
        assert all(PROGRESS_BAR.search(line) for line in lines[:-1]), shown
    appeared = {p: v for p, v in outcome.after.items() if outcome.before.get(p) != v and p not in case.may_leave}
    assert not appeared, f"left behind or changed: {sorted(appeared)}"
    if "out/run.json" in case.may_leave and "out/run.json" in outcome.after:
        stages = json.loads((Path(outcome.values["ws"]) / "out" / "run.json").read_text())["stages"]
        assert stages and all(s["status"] == "failed" for s in stages.values()), stages


# Model args of the harness models that must fail before any weight is read (and what the line says).
BEFORE_WEIGHTS = {
    "pretrained={base},probe=bogus": "unknown probe 'bogus'",
    "pretrained={base},probe=visual_swap,layers=99": "layers [99] are out of range",
    "pretrained={base},probe=zero_ablation,layers=3-x": "cannot read layers '3-x'",
    "pretrained={base},probe=visual_swap,swap_mode=bogus": "model arg swap_mode:",
    "pretrained={base},probe=visual_swap,swap_mode=window,window=0": "model arg window:",
    "pretrained={base},probe=visual_swap,scoring=logprob": "scoring=logprob works with probe=zero_ablation only",
    "pretrained={base},ablate=12": "layers [12] are out of range",
    "in={in},rl={rl},splice=bogus": "unknown variant 'bogus'",
    "in={in},splice=mid": "splice=... needs both in=PATH and rl=PATH",
    "in={in},rl={rl},splice=mid,device_map=auto": "splice=... builds the splice on one device",
    "pretrained={base},probe=zero_ablation,swap_decode=reinsert": "swap_decode=reinsert works with probe=visual_swap only",
    "in={in},rl={six},splice=mid": "IN and RL differ in decoder layer counts",
    "in={in},rl={rl},splice=mid,cuts=5:2": "cuts must satisfy 0 < c1 < c2 < 8",
    "probe=visual_swap": "frankenstein needs pretrained=PATH",
    "pretrained={missing}": "no checkpoint folder at",
    "pretrained={noproc}": "could not load the processor of",
    "pretrained={trunc}": "model.safetensors is not a readable safetensors file",
    "pretrained={pickled}": "holds only pickle weights",
    "pretrained={nine}": "config says 9 decoder layers but the weights hold 8",
}


@pytest.mark.parametrize("model_args", [*BEFORE_WEIGHTS, "pretrained={base}"])
def test_model_args_fail_before_the_weights_load(model_args, inputs, tmp_path, monkeypatch):
    """Every bad model arg or checkpoint is refused from its config and headers, in seconds, before a
    (7B) model loads; a good one reaches the load (the control)."""
    import surgery.loading
    import surgery.splice
    from frankenstein_tasks.models.model_args import ModelArgs, load_runner
    from surgery.errors import FrankensteinError

    class WeightsLoaded(Exception):
        pass

    def load(*args, **kwargs):
        raise WeightsLoaded()

    monkeypatch.setattr(surgery.loading, "load_model", load)
    monkeypatch.setattr(surgery.splice, "load_spliced", load)
    given = dict(pair.split("=", 1) for pair in model_args.format(**inputs, missing=tmp_path / "missing").split(","))
    if model_args not in BEFORE_WEIGHTS:
        with pytest.raises(WeightsLoaded):
            load_runner(ModelArgs.parse(**given), "cpu")
        return
    with pytest.raises(FrankensteinError, match=re.escape(BEFORE_WEIGHTS[model_args])):
        load_runner(ModelArgs.parse(**given), "cpu")


def test_the_table_holds_every_case_of_issue_22():
    assert set(ISSUE_22) | set(ISSUE_22_SMALLER) <= set(CASES)
    assert len(ISSUE_22) == 16


def test_no_report_run_does_not_say_it_wrote_one(tiny_trio, tmp_path):
    """`frankenstein run --no-report` ends with what it wrote: run.json, not a report it skipped."""
    run_config(stages=[])(tmp_path, {k: str(v) for k, v in tiny_trio.items()})
    done = subprocess.run([cli_path("frankenstein"), "run", str(tmp_path / "run.yaml"), "--no-report"],
                          capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last == f"run finished: {tmp_path / 'out'} (run.json)", last
    assert (tmp_path / "out" / "run.json").is_file() and not (tmp_path / "out" / "report").exists()


def test_make_tiny_refuses_an_existing_folder_before_building(tmp_path, monkeypatch, capsys):
    """make-tiny onto an existing folder used to build the trio (seconds; with --trained, train the
    organism) and only then refuse: the refusal must come before any building."""
    import frankenstein_tasks.organism.pipeline as pipeline
    import surgery.tiny
    from frankenstein_tasks.cli import main

    def build(*args, **kwargs):
        raise AssertionError("built before refusing")

    monkeypatch.setattr(surgery.tiny, "build_state_dicts", build)
    monkeypatch.setattr(pipeline, "organism_trio", build)
    (tmp_path / "trio").mkdir()
    for extra in ([], ["--trained", "--setting", "test"]):
        assert main(["make-tiny", str(tmp_path / "trio"), *extra]) == 2
        assert capsys.readouterr().err == f"frankenstein: error: {tmp_path / 'trio'} already exists (pass --overwrite to replace it)\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "trio"] and not list((tmp_path / "trio").iterdir())


@pytest.mark.parametrize("scheme", ["hf4", "hf5"])
def test_load_names_a_non_finite_tensor_as_its_checkpoint_does(scheme, tiny_trio, tmp_path):
    """A probe's model load refuses a NaN / Inf anywhere (here an Inf in a vision block), naming the
    tensor as the file names it, in either naming scheme; the clean checkpoint loads."""
    from safetensors.torch import load_file

    from surgery.arch import layout_of_checkpoint
    from surgery.errors import FrankensteinError
    from surgery.loading import load_model

    layout = layout_of_checkpoint(str(tiny_trio["base"]))
    state = {layout.rename(n, scheme): t for n, t in load_file(str(tiny_trio["base"] / "model.safetensors")).items()}
    name = layout.rename("visual.blocks.1.mlp.down_proj.weight", scheme)
    state[name] = state[name].clone()
    state[name][0, :3] = float("inf")
    folder = _derived(Path(tiny_trio["base"]), tmp_path / "inf", state=state)
    assert layout_of_checkpoint(str(folder)).naming_scheme == scheme
    with pytest.raises(FrankensteinError, match=rf"^tensor {re.escape(name)} in {re.escape(str(folder))} holds 3 NaN/Inf values$"):
        load_model(str(folder))
    load_model(str(tiny_trio["base"]))


def test_load_reads_disk_offloaded_weights_for_the_check(tiny_trio, tmp_path):
    """A model dispatched with disk offload keeps those weights on the meta device; the check reads them
    from the checkpoint instead, so a NaN in an offloaded decoder layer is refused, named as on disk.
    The clean checkpoint loads with the same map, and that layer is on the meta device there (the
    check above had to read it from the file)."""
    import torch
    from safetensors.torch import load_file

    from surgery.errors import FrankensteinError
    from surgery.loading import load_model
    from test_offload import offload_map

    base = Path(tiny_trio["base"])
    plain, layout = load_model(str(base), dtype="float32")
    device_map = offload_map(plain, layout)  # odd decoder layers on disk
    name = "model.layers.3.mlp.up_proj.weight"
    state = load_file(str(base / "model.safetensors"))
    state[name] = state[name].clone()
    state[name][0, 0] = float("nan")
    folder = _derived(base, tmp_path / "nan", state=state)
    with pytest.raises(FrankensteinError, match=rf"^tensor {re.escape(name)} in {re.escape(str(folder))} holds 1 NaN/Inf value$"):
        load_model(str(folder), dtype="float32", device_map=device_map, offload_folder=tmp_path / "offload")
    model, layout = load_model(str(base), dtype="float32", device_map=device_map, offload_folder=tmp_path / "offload2")
    assert layout.text_model(model).layers[3].mlp.up_proj.weight.device == torch.device("meta")
