"""The stages of `frankenstein run`, as a table: name -> what it does and where its results go.

Each stage writes into the folder it is given (the runner renames it into place when the stage
finishes) and returns the result files it wrote, relative to that folder. The probe stages run
lmms-eval in this process (`harness.evaluate`) with the `frankenstein` model; the folder layout is
the one `frankenstein report` reads (`analysis/report/runs.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from frankenstein_tasks.run import harness
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


def _budget(tokens: int | None) -> str | None:
    return f"max_new_tokens={tokens}" if tokens else None


def _lmms_stage(ctx: RunContext, folder: Path, members: list[str], tasks: list[str], probe: dict[str, Any],
                budget: int | None, env: dict[str, str | None]) -> list[str]:
    written = []
    for k, member in enumerate(members, 1):
        args = ctx.model_args(member, **probe)
        ctx.say(f"      model {k}/{len(members)}: {member} ({args.get('splice') or 'checkpoint'})")
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

    Generated once per setting (and generator version), outside the stage folder so a rerun reuses it;
    each task's folder appears whole or not at all, so a killed run leaves some tasks done and the next
    run generates only the missing ones.
    """
    from frankenstein_tasks.vision.pairs import GENERATOR_VERSION, write_pair_sets

    if ctx.config.data.vision_pairs is not None:
        return Path(ctx.config.data.vision_pairs)
    s = ctx.config.vision_swap
    pairs = ctx.out / ".cache" / f"vision_pairs-n{s.n}-seed{s.seed}-size{s.size}-v{GENERATOR_VERSION}"
    missing = [task for task in s.tasks if not (pairs / task / "data.jsonl").is_file()]
    if missing:
        write_pair_sets(missing, pairs, n=s.n, seed=s.seed, size=s.size, overwrite=True)
    return pairs


def run_vision_swap(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.vision_swap
    pairs = vision_pairs(ctx)
    probe = {"probe": "visual_swap", "layers": s.layers, "swap_mode": s.swap_mode, "window": s.window}
    return _lmms_stage(ctx, folder, s.roles, [f"frank_vision_{t}" for t in s.tasks], probe, s.max_new_tokens,
                       {"FRANKENSTEIN_VISION_DATA": str(pairs)})


def run_reasoning(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.reasoning
    return _lmms_stage(ctx, folder, s.roles, [f"frank_{t}" for t in s.tasks], {"probe": "zero_ablation", "layers": s.layers},
                       s.max_new_tokens, {"FRANKENSTEIN_SUBSET": s.subset})


def run_reasoning_logprob(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.reasoning_logprob
    probe = {"probe": "zero_ablation", "scoring": "logprob", "layers": s.layers}
    return _lmms_stage(ctx, folder, s.roles, [f"frank_{t}" for t in s.tasks], probe, None, {"FRANKENSTEIN_SUBSET": s.subset})


def run_transfer(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.transfer
    env = {"FRANKENSTEIN_SUBSET": s.subset}
    if s.descriptions:
        env["FRANKENSTEIN_DESCRIPTIONS"] = str(s.descriptions)
    return _lmms_stage(ctx, folder, list(s.models), ["frank_transfer"], {}, s.max_new_tokens, env)


def run_attention(ctx: RunContext, folder: Path) -> list[str]:
    s = ctx.config.attention
    return _lmms_stage(ctx, folder, s.roles, ["frank_attention_shift"], {"probe": "attention"}, s.max_new_tokens,
                       {"FRANKENSTEIN_SUBSET": s.subset})


# Name -> stage, in the order they run.
STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage("delta", "weight-delta energy and SVD across Base -> IN -> RL", run_delta),
        Stage("merges", "mergekit recipes of the six splices (and checkpoints, if asked)", run_merges),
        Stage("vision_swap", "visual-token swap per layer on frank_vision", run_vision_swap),
        Stage("reasoning", "zero ablation per layer on frank_reasoning (generated answers)", run_reasoning,
              datasets=lambda c: list(c.reasoning.tasks)),
        Stage("reasoning_logprob", "zero ablation per layer, teacher-forced log-likelihood of the answers",
              run_reasoning_logprob, datasets=lambda c: list(c.reasoning_logprob.tasks)),
        Stage("transfer", "frank_transfer on IN, RL and the six splices (M_vis, M_v2r, M_rea)", run_transfer,
              datasets=lambda c: ["mathvista", "math500"]),
        Stage("attention", "attention of generated tokens on the image per layer, IN vs RL", run_attention,
              datasets=lambda c: ["mathvista"]),
    )
}


def stages_help() -> str:
    """One line per stage, for `--help` texts."""
    return "\n".join(f"  {name:<18} {stage.description}" for name, stage in STAGES.items())
