"""`frankenstein run`: the stages of a config in order, resumable, then the report.

The run folder holds `run.json` (what ran, with which settings, how long) and one folder per finished
stage. A stage writes into a hidden `.<stage>.partial/` folder that is renamed into place only when
the stage has finished, so a killed run never leaves a result that looks complete. Started again,
the run skips every stage recorded as done with the same settings (`--force STAGE` reruns one), and
inside an unfinished stage the `frankenstein` model reuses every response it had finished
(`.cache/responses/`, see `models/response_store.py`). A stage's settings are everything that
decides its results (`stage_settings`): the same config, but retrained or re-merged weights in the
same folders, or edited local data, rerun it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from analysis.schema import RunManifest
from frankenstein_tasks.run.config import RunConfig
from frankenstein_tasks.run.data import HUB_DATASETS, cache_local_data, read_local_data
from frankenstein_tasks.run.parallel import check_processes
from frankenstein_tasks.run.stages import STAGES, RunContext
from surgery.atomic import replace_dir, write_json
from surgery.errors import FrankensteinError

MANIFEST = "run.json"


def run(config: RunConfig, *, force: Iterable[str] = (), report: bool = True, say: Callable[[str], None] = print) -> Path:
    """Run the config's stages (skipping finished ones), then write the report; returns the run folder."""
    force = set(force)
    unknown = force - set(STAGES)
    if unknown:
        raise FrankensteinError(f"--force: unknown stage {sorted(unknown)[0]!r}; stages are {', '.join(STAGES)}")
    out = config.output_folder()
    models = config.models.by_role()
    check_processes(config.processes, config.device)
    layout = preflight(config, models)
    chosen = [name for name in STAGES if name in config.stages]
    for name in chosen:
        try:
            STAGES[name].check(config)
        except FrankensteinError as e:
            raise FrankensteinError(f"{name}: {e}") from None
    # Local data is checked as it enters, before anything is written.
    check_pair_set(config)
    check_vision_pairs(config)
    local_rows = read_local_data(config.data, needed_datasets(config))
    manifest = _open_manifest(out, config, models, layout)
    env, data_digests = cache_local_data(config.data, out / ".cache" / "datasets", local_rows)
    check_datasets(config, env)
    ctx = RunContext(config=config, out=out, models=models, env=env, say=say, data_digests=data_digests)
    for number, name in enumerate(chosen, 1):
        _run_stage(ctx, manifest, name, f"[{number}/{len(chosen)}]", force=name in force)
    for name in STAGES:
        if name not in chosen:
            manifest["stages"][name] = {"status": "not run", "seconds": None, "outputs": []}
    _write_manifest(out, manifest)
    if report:
        from analysis.report import write_report

        written = write_report([out], out / "report")
        say(f"report: {written.html}")
    return out


def preflight(config: RunConfig, models: dict[str, str]) -> dict[str, Any]:
    """Every checkpoint reachable (config and tensor names, no weights) and the layout, or one clear line."""
    from surgery import sources
    from surgery.splice import check_pair

    for role, source in models.items():
        try:
            sources.resolve(source, weights=False)
        except FrankensteinError as e:
            raise FrankensteinError(f"models.{role}: {e}") from None
    return check_pair(models["in"], models["rl"]).layouts["rl"].describe(config.cuts)


def needed_datasets(config: RunConfig) -> set[str]:
    """The datasets the config's stages read, by their `data:` field names."""
    return {name for stage in config.stages for name in STAGES[stage].datasets(config)}


def check_datasets(config: RunConfig, env: dict[str, str]) -> None:
    """Each dataset a chosen stage reads is local, cached, or (online) downloadable; else one clear line."""
    from frankenstein_tasks.hub_cache import datasets_cache_dir, entry_root
    from surgery.sources import hub_reachable

    needed = needed_datasets(config)
    cache = Path(env.get("HF_DATASETS_CACHE") or datasets_cache_dir())
    missing = [name for name in sorted(needed) if not entry_root(HUB_DATASETS[name][0], cache).is_dir()]
    if not missing:
        return
    reason = "offline: true in the config" if config.offline else hub_reachable()
    if reason is not None:
        repo = HUB_DATASETS[missing[0]][0]
        raise FrankensteinError(
            f"the stages need {repo}, which is not in the datasets cache ({cache}) and cannot be downloaded "
            f"({reason}); give a local copy as data.{missing[0]}: in the config"
        )


def check_vision_pairs(config: RunConfig) -> None:
    """A given pair folder (data.vision_pairs) holds every task the vision_swap stage runs, each line
    complete (fields, images, sizes): checked now, naming file and line, not when the stage reaches it."""
    from frankenstein_tasks.paper_protocol import PAIRS_PER_TASK
    from frankenstein_tasks.vision.dataset import (
        DATA_FILE,
        load_pairs,
        skip_bad_from_env,
    )

    root = config.data.vision_pairs
    if root is None or "vision_swap" not in config.stages:
        return
    first = PAIRS_PER_TASK if config.protocol == "paper" else None  # the lines the stage's tasks read
    for task in config.vision_swap.tasks:
        folder = Path(root) / task
        if not (folder / DATA_FILE).is_file():
            raise FrankensteinError(f"data.vision_pairs: {root} has no {task}/{DATA_FILE} (vision_swap.tasks names {task})")
        load_pairs(folder, task, skip_bad=skip_bad_from_env(), first=first)


def check_pair_set(config: RunConfig) -> None:
    """protocol: paper probes the authors' released pair set, which the config must name (before any work)."""
    if config.protocol == "paper" and "vision_swap" in config.stages and config.data.vision_pairs is None:
        from frankenstein_tasks.paper_protocol import PAIR_SET_NAME

        raise FrankensteinError(
            f"protocol: paper probes the authors' released pair set (dataset/{PAIR_SET_NAME} of "
            "github.com/xirui-li/Frankenstein), which is not shipped: name your copy as data.vision_pairs"
        )


def _open_manifest(out: Path, config: RunConfig, models: dict[str, str], layout: dict[str, Any]) -> dict[str, Any]:
    path = out / MANIFEST
    if path.is_file():
        manifest = json.loads(path.read_text())
        if manifest.get("models") != models:
            raise FrankensteinError(
                f"{out} holds a run of other models ({manifest.get('models')}); choose another out: or delete the folder"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"stages": {}}
    manifest.update(recipe=config.recipe, models=models, cuts=list(config.cuts) if config.cuts else None, layout=layout,
                    config=config.model_dump(mode="json", by_alias=True))
    return manifest


def stage_settings(ctx: RunContext, name: str) -> dict[str, Any]:
    """What decides a stage's results: its own config section (named as the stage), the run-wide model
    settings, the fingerprints of the checkpoints it reads (`surgery.sources.fingerprint`: weights, not
    names), and the content of the local datasets and other files it reads."""
    config, stage = ctx.config, STAGES[name]
    return {
        "section": getattr(config, name).model_dump(mode="json"),
        "models": config.models.by_role(), "cuts": config.cuts, "prompt_style": config.prompt_style,
        **({"protocol": config.protocol} if config.protocol != "project" else {}),
        "dtype": config.dtype, "attn": config.attn_implementation,
        "weights": {role: ctx.fingerprint(role) for role in stage.models(config)},
        "data": {d: ctx.data_digests.get(d, "hub") for d in stage.datasets(config)},
        "inputs": stage.inputs(ctx),
    }


def _settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """run.json, checked against the shape the report reads (`analysis.schema.RunManifest`) first."""
    RunManifest.model_validate(manifest)
    write_json(out / MANIFEST, manifest)


def _run_stage(ctx: RunContext, manifest: dict[str, Any], name: str, counter: str, *, force: bool) -> None:
    stage, out = STAGES[name], ctx.out
    decided = stage_settings(ctx, name)
    settings = _settings_hash(decided)
    record = manifest["stages"].get(name, {})
    if not force and record.get("status") == "done" and record.get("settings") == settings and (out / name).is_dir():
        ctx.say(f"{counter} {name}: done earlier ({record.get('seconds')} s); skipped (--force {name} reruns it)")
        return
    ctx.say(f"{counter} {name}: {stage.description} ...")
    partial = out / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    start = time.perf_counter()
    try:
        outputs = stage.run(ctx, partial)
    except BaseException as e:
        message = str(e) if isinstance(e, FrankensteinError) else f"{type(e).__name__}: {e}".splitlines()[0]
        manifest["stages"][name] = {"status": "failed", "seconds": None, "outputs": [], "error": message}
        _write_manifest(out, manifest)
        if isinstance(e, FrankensteinError):
            raise FrankensteinError(f"stage {name}: {e}") from None
        if isinstance(e, Exception):  # not Ctrl-C: a bug here or in a library; its traceback follows
            print(_unexpected_failure_line(name, e), file=sys.stderr, flush=True)
        raise
    replace_dir(partial, out / name)
    seconds = round(time.perf_counter() - start, 1)
    manifest["stages"][name] = {"status": "done", "seconds": seconds, "outputs": outputs, "settings": settings,
                                "weights": decided["weights"]}
    _write_manifest(out, manifest)
    ctx.say(f"      done in {seconds} s")


def _unexpected_failure_line(stage: str, error: BaseException) -> str:
    """What to check first when a stage dies inside a library: the versions in use against the tested set."""
    from frankenstein_tasks import tested_set

    where = f"{type(error).__module__}.{type(error).__name__}".removeprefix("builtins.")
    lock = tested_set.lock_path()
    outside: list[str] = []
    if lock is not None:
        states = tested_set.compare(tested_set.read_lock(lock), tested_set.installed_versions(), list(tested_set.STACK))
        outside = [f"{s.name} {s.installed or 'missing'} (tested {s.locked})" for s in states if s.status != "ok"]
    versions = f"outside the tested set: {', '.join(outside)}" if outside else "`frankenstein doctor` lists the versions in use"
    return (f"frankenstein: stage {stage} failed with an unexpected {where} (a bug, or a library outside the "
            f"tested set; {versions}); traceback follows")
