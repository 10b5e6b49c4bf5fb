"""The stages of `frankenstein run`, as a table: name -> what it does and where its results go.

Each stage writes into the folder it is given (the runner renames it into place when the stage
finishes) and returns the result files it wrote, relative to that folder. The probe stages run
lmms-eval in this process (`harness.evaluate`) with the `frankenstein` model, the leaderboard stage
lm-eval (`harness.lm_eval_evaluate`) with the `frankenstein` lm-eval model; the folder layout is the
one `frankenstein report` reads (`analysis/report/runs.py`).

What decides a stage's results, so that a finished stage is skipped only while all of it is the same
(`runner.stage_settings`): its config section and the run-wide model settings, the fingerprints of
the checkpoints it reads (`Stage.models`), the content of the local datasets it reads
(`Stage.datasets`) and the other inputs it reads (`Stage.inputs`: pair folder, descriptions, grader).

With `protocol: paper` the vision, reasoning and transfer stages run the `*_paper` tasks (the authors'
protocol, `frankenstein_tasks/paper_protocol.py`) and each model gets the prompt style the authors'
rule gives its name (`RunContext.prompt_style`); every stage says which style and budget each model
gets, and the model prints its first prompt as sent.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from analysis.schema import STAGE_NAMES
from frankenstein_tasks.run import harness
from frankenstein_tasks.run.config import ROLES
from surgery.errors import FrankensteinError
from surgery.splice import VARIANTS


@dataclass
class RunContext:
    """What every stage may read: the validated config and what the runner resolved from it."""

    config: Any  # RunConfig
    out: Path
    models: dict[str, str]  # role -> checkpoint (hub id or folder)
    env: dict[str, str] = field(default_factory=dict)  # datasets cache etc., for every lmms-eval call
    say: Callable[[str], None] = print
    data_digests: dict[str, str] = field(default_factory=dict)  # data field -> content hash of its local copy
    _fingerprints: dict[str, str] = field(default_factory=dict, repr=False)

    def fingerprint(self, role: str) -> str:
        """`surgery.sources.fingerprint` of a role's checkpoint (hub ids resolved, weights fetched), once per run."""
        if role not in self._fingerprints:
            from surgery.sources import source_fingerprint

            try:
                self._fingerprints[role] = source_fingerprint(self.models[role])
            except FrankensteinError as e:
                raise FrankensteinError(f"models.{role}: {e}") from None
        return self._fingerprints[role]

    @property
    def paper(self) -> bool:
        return self.config.protocol == "paper"

    def prompt_style(self, member: str, rule: str | None) -> tuple[str | None, str]:
        """(style, why) of a member: the config's prompt_style; else, under protocol: paper, the authors'
        `rule` ("reasoning" or "transfer"); else None (the model's default from the checkpoint id)."""
        from frankenstein_tasks.paper_protocol import paper_style

        if self.config.prompt_style:
            return self.config.prompt_style, "prompt_style in the config"
        if self.paper and rule:
            return paper_style(rule, member, self.models)
        return None, "the model's default for the checkpoint id"

    def model_args(self, role_or_label: str, **probe: Any) -> dict[str, Any]:
        """lmms-eval model args for a role (base/in/rl) or a splice variant, with the run's settings."""
        c = self.config
        if role_or_label in VARIANTS:
            merged = self.out / "merges" / role_or_label
            source: dict[str, Any] = (
                {"pretrained": str(merged)} if (merged / "config.json").is_file() else
                {"in": self.models["in"], "rl": self.models["rl"], "splice": role_or_label,
                 "cuts": f"{c.cuts[0]}:{c.cuts[1]}" if c.cuts else None}
            )
        else:
            source = {"pretrained": self.models[role_or_label]}
        return {
            **source, "device": c.device, "dtype": c.dtype, "attn_implementation": c.attn_implementation,
            "device_map": c.device_map if "pretrained" in source else None,
            "max_batch_rows": c.max_batch_rows, "prompt_style": c.prompt_style,
            "response_cache": str(self.out / ".cache" / "responses"), **probe,
        }


@dataclass(frozen=True)
class Stage:
    """A stage's name is also the name of its config section (whose change reruns it)."""

    name: str
    description: str
    run: Callable[[RunContext, Path], list[str]]
    # The datasets the stage reads, by the `data:` field that can replace them with a local copy.
    datasets: Callable[[Any], list[str]] = lambda config: []
    default: bool = True  # run when a config names no stages
    # Checks of its settings that need more than the config (e.g. task names), run before any stage starts.
    check: Callable[[Any], None] = lambda config: None
    # The roles whose weights decide the results: a retrained or re-merged checkpoint reruns the stage.
    models: Callable[[Any], list[str]] = lambda config: list(ROLES)
    # Other files that decide the results, as name -> content digest.
    inputs: Callable[[RunContext], dict[str, str]] = lambda ctx: {}


def _budget(tokens: int | None) -> str | None:
    return f"max_new_tokens={tokens}" if tokens else None


def _paper_tasks(ctx: RunContext, tasks: list[str]) -> list[str]:
    """The tasks a stage runs: the `*_paper` ones under protocol: paper."""
    return [f"{t}_paper" for t in tasks] if ctx.paper else tasks


def _lmms_stage(ctx: RunContext, folder: Path, members: list[str], tasks: list[str], probe: dict[str, Any],
                budget: int | None, env: dict[str, str | None], *, rule: str | None = None,
                task_budget: str = "the task's own", styled: bool = True) -> list[str]:
    """Run `tasks` on each member; `rule`: the authors' style rule under protocol: paper; `styled`: the
    tasks use a prompt style at all (the vision probes do not)."""
    written = []
    ctx.say(f"      tasks: {', '.join(tasks)}; max_new_tokens: {budget or task_budget}")
    for k, member in enumerate(members, 1):
        style, why = ctx.prompt_style(member, rule)
        args = ctx.model_args(member, **probe, prompt_style=style)
        shown = f"; prompt style: {style or 'default'} ({why})" if styled else ""
        ctx.say(f"      model {k}/{len(members)}: {member} ({args.get('splice') or 'checkpoint'}){shown}")
        harness.evaluate(tasks, args, folder / member, gen_kwargs=_budget(budget), env={**ctx.env, **env})
        written += [str(p.relative_to(folder)) for p in sorted((folder / member).rglob("*.json*"))]
    return written


def run_delta(ctx: RunContext, folder: Path) -> list[str]:
    from analysis.delta import analyze_deltas

    m = ctx.models
    analyze_deltas(m["base"], m["in"], m["rl"], folder, metrics=ctx.config.delta.metrics, cuts=ctx.config.cuts,
                   device=ctx.config.device, overwrite=True)
    return sorted(str(p.relative_to(folder)) for p in folder.iterdir())


def check_mergeable(recipes: Any, what: str) -> None:
    """Refuse to run mergekit on recipes it is known to fail on (`GeneratedRecipes.known_issue`, e.g. its
    Qwen2-VL definition): one line naming the issue, before any work."""
    if recipes.known_issue:
        raise FrankensteinError(f"cannot {what}: {recipes.known_issue}")


def run_merges(ctx: RunContext, folder: Path) -> list[str]:
    from merge_configs.generate import generate, has_mergekit_architecture
    from merge_configs.mergekit_run import run_mergekit
    from surgery.atomic import write_text
    from surgery.splice import check_pair

    if not has_mergekit_architecture(check_pair(ctx.models["in"], ctx.models["rl"]).layout.model_type):
        return _own_splices(ctx, folder)
    recipes = generate(ctx.models["in"], ctx.models["rl"], list(VARIANTS), cuts=ctx.config.cuts, title=ctx.config.recipe)
    if ctx.config.merges.checkpoints:
        check_mergeable(recipes, "write merged checkpoints (merges.checkpoints: true)")
    for variant, text in recipes.texts.items():
        write_text(folder / "recipes" / f"{variant}.yaml", text)
    if ctx.config.merges.checkpoints:
        for k, variant in enumerate(VARIANTS, 1):
            ctx.say(f"      mergekit {k}/{len(VARIANTS)}: {variant}")
            run_mergekit(recipes.texts[variant], folder / variant, early_model=recipes.early_models[variant], overwrite=True, quiet=True)
    return sorted(str(p.relative_to(folder)) for p in (folder / "recipes").iterdir())


def _own_splices(ctx: RunContext, folder: Path) -> list[str]:
    """The merges stage for a family mergekit does not know: each splice's plan as text (there is no recipe),
    and with `merges.checkpoints` the six checkpoints written by the project's own writer."""
    from surgery.atomic import write_text
    from surgery.splice import splice_plan, write_spliced, check_pair

    layout = check_pair(ctx.models["in"], ctx.models["rl"]).layout
    for variant in VARIANTS:
        plan = splice_plan(layout, variant, ctx.config.cuts)
        write_text(folder / "plans" / f"{variant}.txt", f"{variant}: {plan.describe()}; everything else from "
                   f"{plan.early_source.upper()} (no mergekit recipe: mergekit 0.1.5 does not know {layout.model_type})\n")
    if ctx.config.merges.checkpoints:
        for k, variant in enumerate(VARIANTS, 1):
            ctx.say(f"      splice {k}/{len(VARIANTS)}: {variant} (written by the project's own writer)")
            write_spliced(ctx.models["in"], ctx.models["rl"], variant, folder / variant, cuts=ctx.config.cuts, overwrite=True)
    return sorted(str(p.relative_to(folder)) for p in (folder / "plans").iterdir())


def vision_pairs(ctx: RunContext) -> Path:
    """The pair folder of the vision_swap stage: data.vision_pairs, else generated under the run's cache.

    Generated once per setting (and generator, `generator_tag`), outside the stage folder so a rerun reuses it;
    each task's folder appears whole or not at all, so a killed run leaves some tasks done and the next
    run generates only the missing ones.
    """
    from frankenstein_tasks.vision.pairs import generator_tag, write_pair_sets

    if ctx.config.data.vision_pairs is not None:
        return Path(ctx.config.data.vision_pairs)  # under protocol: paper always (runner.check_pair_set)
    s = ctx.config.vision_swap
    pairs = ctx.out / ".cache" / f"vision_pairs-n{s.n}-seed{s.seed}-size{s.size}-{generator_tag()}"
    missing = [task for task in s.tasks if not (pairs / task / "data.jsonl").is_file()]
    if missing:
        write_pair_sets(missing, pairs, n=s.n, seed=s.seed, size=s.size, overwrite=True)
    return pairs


def vision_pairs_digest(ctx: RunContext) -> dict[str, str]:
    """The content of the pair folders the vision_swap stage reads (generated ones included: a newer
    generator, font or Pillow may draw other pixels under the same settings)."""
    pairs = vision_pairs(ctx)
    return {"vision_pairs": content_digest([pairs / task for task in ctx.config.vision_swap.tasks])}


def grading_inputs(ctx: RunContext) -> dict[str, str]:
    """Who grades the transfer tasks (FRANKENSTEIN_JUDGE=1: the endpoint's judge model, else the rule)."""
    from frankenstein_tasks.transfer import judge_enabled

    return {"grader": f"judge {_llm_model()}" if judge_enabled() else "rule"}


def transfer_inputs(ctx: RunContext) -> dict[str, str]:
    """The grader, condition B's descriptions (a file's content, else the endpoint's model: its replies are
    cached per item, model, prompt and image) and the merged checkpoints the variants are read from."""
    from frankenstein_tasks.llm_endpoint import DESCRIPTIONS_ENV
    from surgery.sources import fingerprint

    path = ctx.config.transfer.descriptions or os.environ.get(DESCRIPTIONS_ENV) or None
    described = content_digest([Path(path)]) if path else f"endpoint {_llm_model()}"
    # Variants evaluated from merged checkpoints (merges.checkpoints: true) are those folders' weights.
    merged = {v: fingerprint(ctx.out / "merges" / v) for v in ctx.config.transfer.models
              if v in VARIANTS and (ctx.out / "merges" / v / "config.json").is_file()}
    return {**grading_inputs(ctx), "descriptions": described, "merged": merged}


def _llm_model() -> str:
    from frankenstein_tasks.llm_endpoint import SETTING_ENVS

    return os.environ.get(SETTING_ENVS["model"]) or "default"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def content_digest(paths: list[Path]) -> str:
    """sha256 over the names and content of every file under `paths` (files or folders; a missing one
    counts as such); images by their pixels, so the same pictures saved by another encoder are the same."""
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for f in files:
            digest.update(str(f.relative_to(root.parent)).encode() + b"\0")
            if not f.is_file():
                digest.update(b"\0missing\0")
            elif f.suffix.lower() in IMAGE_SUFFIXES:
                from PIL import Image

                with Image.open(f) as image:
                    digest.update(f"{image.mode} {image.size}".encode() + image.tobytes())
            else:
                digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _task_budget(ctx: RunContext, stage: str) -> str:
    from frankenstein_tasks.paper_protocol import BUDGETS

    return f"{BUDGETS[stage]} (the authors')" if ctx.paper and stage in BUDGETS else "the task's own"


def run_vision_swap(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.vision_swap
    pairs = vision_pairs(ctx)
    probe = {"probe": "visual_swap", "layers": s.layers, "swap_mode": s.swap_mode, "window": s.window,
             "swap_decode": s.swap_decode if s.swap_decode != "prefill" else None}
    return _lmms_stage(ctx, folder, s.roles, _paper_tasks(ctx, [f"frank_vision_{t}" for t in s.tasks]), probe,
                       s.max_new_tokens, {"FRANKENSTEIN_VISION_DATA": str(pairs)}, task_budget=_task_budget(ctx, "vision_swap"),
                       styled=False)


def run_reasoning(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.reasoning
    return _lmms_stage(ctx, folder, s.roles, _paper_tasks(ctx, [f"frank_{t}" for t in s.tasks]),
                       {"probe": "zero_ablation", "layers": s.layers}, s.max_new_tokens, {"FRANKENSTEIN_SUBSET": s.subset},
                       rule="reasoning", task_budget=_task_budget(ctx, "reasoning"))


def run_reasoning_logprob(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.reasoning_logprob
    probe = {"probe": "zero_ablation", "scoring": "logprob", "layers": s.layers}
    return _lmms_stage(ctx, folder, s.roles, _paper_tasks(ctx, [f"frank_{t}" for t in s.tasks]), probe, None,
                       {"FRANKENSTEIN_SUBSET": s.subset}, rule="reasoning", task_budget="none (nothing is generated)")


def run_transfer(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.transfer
    env = {"FRANKENSTEIN_SUBSET": s.subset, **({"FRANKENSTEIN_JUDGE": "1"} if s.judge else {})}
    if s.descriptions:
        env["FRANKENSTEIN_DESCRIPTIONS"] = str(s.descriptions)
    return _lmms_stage(ctx, folder, list(s.models), _paper_tasks(ctx, ["frank_transfer"]), {}, s.max_new_tokens, env,
                       rule="transfer", task_budget=_task_budget(ctx, "transfer"))


def run_leaderboard(ctx: RunContext, folder: Path) -> list[str]:
    """lm-eval's own tasks through its Python API with the frankenstein lm-eval model, one model at a time
    (IN, RL, splices in memory unless merged); results as `lm_eval --output_path` writes them."""
    s = ctx.config.leaderboard
    written = []
    for k, member in enumerate(s.models, 1):
        args = {**ctx.model_args(member), "max_length": s.max_length, "response_cache": None}
        ctx.say(f"      model {k}/{len(s.models)}: {member} ({args.get('splice') or 'checkpoint'}) on {', '.join(s.tasks)}")
        # lm-eval's datasets come from the usual datasets cache: the run's own (ctx.env) holds only the
        # `data:` copies of the frank_* tasks' datasets.
        harness.lm_eval_evaluate(s.tasks, args, folder / member, num_fewshot=s.num_fewshot, limit=s.limit,
                                 apply_chat_template=s.apply_chat_template)
        written += [str(p.relative_to(folder)) for p in sorted((folder / member).rglob("*.json*"))]
    return written


def check_leaderboard(config: Any) -> None:
    """Before any stage runs: every task name is one lm-eval knows."""
    harness.check_lm_eval_tasks(config.leaderboard.tasks)


def run_attention(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.attention
    return _lmms_stage(ctx, folder, s.roles, ["frank_attention_shift"], {"probe": "attention"}, s.max_new_tokens,
                       {"FRANKENSTEIN_SUBSET": s.subset})


# Name -> stage, in the order they run.
STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage("delta", "weight-delta energy and SVD across Base -> IN -> RL", run_delta),
        # Recipes name the checkpoints and need no weights; merged checkpoints are made of IN's and RL's.
        Stage("merges", "mergekit recipes of the six splices (and checkpoints, if asked)", run_merges,
              models=lambda c: ["in", "rl"] if c.merges.checkpoints else []),
        Stage("vision_swap", "visual-token swap per layer on frank_vision", run_vision_swap,
              models=lambda c: list(c.vision_swap.roles), inputs=vision_pairs_digest),
        Stage("reasoning", "zero ablation per layer on frank_reasoning (generated answers)", run_reasoning,
              datasets=lambda c: list(c.reasoning.tasks), models=lambda c: list(c.reasoning.roles)),
        Stage("reasoning_logprob", "zero ablation per layer, teacher-forced log-likelihood of the answers",
              run_reasoning_logprob, datasets=lambda c: list(c.reasoning_logprob.tasks),
              models=lambda c: list(c.reasoning_logprob.roles)),
        Stage("transfer", "frank_transfer on IN, RL and the six splices (M_vis, M_v2r, M_rea)", run_transfer,
              datasets=lambda c: ["mathvista", "math500"], models=lambda c: ["in", "rl"], inputs=transfer_inputs),
        Stage("leaderboard", "lm-eval tasks (default: the leaderboard group) on IN, RL and the six splices; off by default",
              run_leaderboard, default=False, check=check_leaderboard, models=lambda c: ["in", "rl"]),
        Stage("attention", "attention of generated tokens on the image per layer, IN vs RL", run_attention,
              datasets=lambda c: ["mathvista"], models=lambda c: list(c.attention.roles), inputs=grading_inputs),
    )
}
if tuple(STAGES) != STAGE_NAMES:  # the order the report reads them in, declared once in analysis.schema
    raise RuntimeError(f"run stages {tuple(STAGES)} differ from analysis.schema.STAGE_NAMES {STAGE_NAMES}")


def default_stages() -> list[str]:
    """The stages a config (or the demo) runs when it names none: all but those off by default."""
    return [name for name, stage in STAGES.items() if stage.default]


def stages_help() -> str:
    """One line per stage, for `--help` texts."""
    return "\n".join(f"  {name:<18} {stage.description}" for name, stage in STAGES.items())
