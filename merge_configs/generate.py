"""mergekit recipes for Frankenstein splices, generated from the one rule in `surgery.splice`.

A recipe is mergekit's own `MergeConfiguration` (no schema of ours), a modular `passthrough`
config (bfloat16) for the families mergekit 0.1.5 has an architecture definition of (Qwen2.5-VL,
Qwen3-VL; Qwen2-VL with a known issue; not InternVL, whose splices `surgery.splice.write_spliced`
writes itself): the
`text_decoder` module gets one slice per run of consecutive decoder layers from the same model,
then an empty `[n, n]` slice from the early-block model, because mergekit takes the final norm and
lm_head from the last slice's model (and the embeddings from the first slice's, which is already
the early block's). `vision_tower` and `multi_modal_projector` are taken whole from the early-block
model, which is also `base_model`: mergekit copies the config, tokenizer and (transformers 4
style) processor files from it. Each YAML starts with a comment saying which blocks come from which
model.

`python -m merge_configs.generate` rewrites the checked-in YAMLs (`checked_in_files`); a test
checks that they are exactly what this module writes.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from mergekit.common import ModelReference
from mergekit.config import (
    InputModelDefinition,
    InputSliceDefinition,
    MergeConfiguration,
    OutputModuleDefinition,
    OutputSliceDefinition,
)
from pydantic import BaseModel, ConfigDict

from surgery.arch import BLOCK_NAMES
from surgery.errors import FrankensteinError
from surgery.splice import LABELS, SPLICE_TYPES, VARIANTS, SplicePlan, check_pair, check_variant, splice_plan

from merge_configs.recipes import DEFAULT_RECIPE, RECIPES, Recipe

HERE = Path(__file__).resolve().parent


class MergekitModules(BaseModel):
    """Module names in mergekit's architecture definition for one model type."""

    model_config = ConfigDict(frozen=True)

    text_decoder: str
    taken_whole: tuple[str, ...]  # modules copied whole from the early-block model
    known_issue: str | None = None


MERGEKIT_MODULES: dict[str, MergekitModules] = {
    "qwen2_5_vl": MergekitModules(text_decoder="text_decoder", taken_whole=("vision_tower", "multi_modal_projector")),
    # mergekit's qwen3_vl_dense definition: its projector module holds the merger and the DeepStack mergers.
    "qwen3_vl": MergekitModules(text_decoder="text_decoder", taken_whole=("vision_tower", "multi_modal_projector")),
    "qwen2_vl": MergekitModules(
        text_decoder="text_decoder",
        taken_whole=("vision_tower", "multi_modal_projector"),
        known_issue=(
            "mergekit 0.1.5's qwen2_vl definition reads a top-level num_hidden_layers that transformers 5 "
            "configs do not have, so mergekit-yaml stops on this recipe; use the in-memory splice "
            "(surgery.splice.load_spliced) for Qwen2-VL"
        ),
    ),
}
assert set(MERGEKIT_MODULES) <= set(SPLICE_TYPES)
DEFAULT_MODEL_TYPE = "qwen2_5_vl"  # assumed when hub ids are given with --layers and nothing is looked up


# ---------------------------------------------------------------------------------------------
# The recipe: mergekit's own MergeConfiguration
# ---------------------------------------------------------------------------------------------

# Top-level keys in the order a reader wants them (what, in which dtype, from which base, then the modules).
YAML_KEY_ORDER = ("merge_method", "dtype", "base_model", "modules")


def build_recipe(plan: SplicePlan, models: dict[str, str], model_type: str = DEFAULT_MODEL_TYPE) -> MergeConfiguration:
    """The mergekit config for `plan`; `models` maps "in"/"rl" to what mergekit should load."""
    names = MERGEKIT_MODULES[model_type]
    early = models[plan.early_source]
    n = plan.num_layers
    slices = [
        OutputSliceDefinition(sources=[InputSliceDefinition(model=models[s], layer_range=(a, b))])
        for s, a, b in plan.runs()
    ]
    # mergekit takes model.norm and lm_head from the last slice's model: end on the early-block model.
    slices.append(OutputSliceDefinition(sources=[InputSliceDefinition(model=early, layer_range=(n, n))]))
    modules = {names.text_decoder: OutputModuleDefinition(slices=slices)}
    modules.update({m: OutputModuleDefinition(models=[InputModelDefinition(model=early)]) for m in names.taken_whole})
    return MergeConfiguration(merge_method="passthrough", dtype="bfloat16", base_model=early, modules=modules)


def has_mergekit_architecture(model_type: str) -> bool:
    """Whether mergekit 0.1.5 defines this model type (else the project's own writer makes the splices)."""
    return model_type in MERGEKIT_MODULES


def no_recipe_message(model_type: str) -> str:
    return (
        f"mergekit 0.1.5 has no architecture definition for {model_type}, so there is no recipe to write; "
        "`frankenstein merge-config --in IN --rl RL --variant V --merge OUT` writes the splice with the project's "
        "own writer (safetensors, checked tensor for tensor), and the splice= model arg builds it in memory"
    )


def _mergekit_models(models: dict[str, str]) -> None:
    """Model locations mergekit cannot parse (its validators raise RuntimeError) as a one-line error now,
    rather than from mergekit-yaml later."""
    for role, location in models.items():
        try:
            ModelReference.model_validate(location)
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FrankensteinError(f"mergekit cannot read the {LABELS[role]} model location {location!r}: {first}") from None


def recipe_yaml(config: MergeConfiguration) -> str:
    """The config as YAML: mergekit's own dump of it, laid out for reading.

    Not `MergeConfiguration.to_yaml()`: that sorts the keys alphabetically and does not indent
    lists. And the dump is in Python mode: mergekit 0.1.5's ModelReference serialiser returns the
    object itself for a path holding a space or a quote, which JSON mode reports as a circular
    reference; `_Dumper` writes such a reference as its string, which mergekit parses back the same.
    """
    data = config.model_dump(mode="python", exclude_none=True)
    ordered = {k: data[k] for k in YAML_KEY_ORDER if k in data} | {k: v for k, v in data.items() if k not in YAML_KEY_ORDER}
    return yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


class _Dumper(yaml.SafeDumper):
    """Block style with indented lists; number lists (layer ranges) in flow style."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):  # noqa: ARG002
        return super().increase_indent(flow, False)

    def represent_list(self, data):
        flow = all(isinstance(e, int) for e in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    def represent_model_reference(self, ref: ModelReference):
        return self.represent_str(str(ref))


_Dumper.add_representer(list, _Dumper.represent_list)
_Dumper.add_representer(tuple, _Dumper.represent_list)
_Dumper.add_representer(ModelReference, _Dumper.represent_model_reference)


def header(plan: SplicePlan, models: dict[str, str], model_type: str, title: str | None = None) -> str:
    early = LABELS[plan.early_source]
    n = plan.num_layers
    sizes = "/".join(str(s) for s in plan.partition.sizes)
    of = f" of the {title} recipe" if title else ""
    lines = [
        f'Frankenstein merge "{plan.variant}"{of} ({model_type}, {n} decoder layers, blocks {sizes}, '
        f"cuts {plan.cuts[0]} {plan.cuts[1]}):",
        f"  IN = {models['in']}",
        f"  RL = {models['rl']}",
        "Decoder layers:",
    ]
    for block in BLOCK_NAMES:
        r = plan.partition.ranges[block]
        lines.append(f"  {f'{r.start}-{r.stop - 1}':<7} {block:<5} <- {LABELS[plan.block_source(block)]}")
    lines += [
        "Everything else (embeddings, vision tower, projector, final norm, lm_head, config, tokenizer and",
        f"processor files) <- {early}, the model that supplies the early block (METHOD.md section 3).",
        "mergekit passthrough takes the final norm and lm_head from the last slice's model, so the",
        f"text_decoder slices end with an empty [{n}, {n}] slice from {early}; base_model ({early}) supplies",
        "the config and tokenizer files; vision_tower and multi_modal_projector are taken whole from it.",
        "Run: mergekit-yaml THIS_FILE OUT   (mergekit 0.1.5, no extra flags needed)",
        "mergekit copies tokenizer files, chat_template.json/.jinja, preprocessor_config.json and",
        "generation_config.json from base_model, but not processor_config.json (where transformers 5",
        f"saves a processor): copy it from {early} if it has one, or run `frankenstein merge-config ... --merge OUT`,",
        "which does.",
    ]
    issue = MERGEKIT_MODULES[model_type].known_issue
    if issue:
        lines.append(f"WARNING: {issue}.")
    lines.append("Generated by `frankenstein merge-config` (merge_configs/generate.py); edits are overwritten.")
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def recipe_text(plan: SplicePlan, models: dict[str, str], model_type: str = DEFAULT_MODEL_TYPE, title: str | None = None) -> str:
    return header(plan, models, model_type, title) + recipe_yaml(build_recipe(plan, models, model_type))


# ---------------------------------------------------------------------------------------------
# From sources or seed recipes
# ---------------------------------------------------------------------------------------------


class GeneratedRecipes(BaseModel):
    """Recipe texts for one IN/RL pair: variant -> YAML text."""

    model_config = ConfigDict(frozen=True)

    model_type: str
    models: dict[str, str]
    num_layers: int
    texts: dict[str, str]
    early_models: dict[str, str]  # variant -> the model that supplies its early block, config and files

    @property
    def known_issue(self) -> str | None:
        return MERGEKIT_MODULES[self.model_type].known_issue


def generate(
    in_source: str | Path,
    rl_source: str | Path,
    variants: list[str] | tuple[str, ...],
    *,
    cuts: tuple[int, int] | list[int] | None = None,
    layers: int | None = None,
    title: str | None = None,
) -> GeneratedRecipes:
    """Recipes for IN/RL, validated; the layer count comes from the checkpoints unless `layers` is given.

    With `layers` and two hub ids nothing is looked up (no hub needed). Local folders are always
    checked: same architecture (one mergekit knows), layer counts and tensor shapes.
    """
    for v in variants:
        check_variant(v)
    local = any(Path(str(s)).expanduser().is_dir() for s in (in_source, rl_source))
    if layers is None or local:
        pair = check_pair(in_source, rl_source)
        for role, layout in pair.layouts.items():
            if pair.is_local(role) and layout.naming_scheme != "hf4":  # type: ignore[arg-type]
                raise FrankensteinError(
                    f"{pair.locations[role]} stores tensors under transformers 5 module names "
                    f"({layout.naming.decoder_layer.format(i=0)}...); mergekit 0.1.5 expects hub names "
                    "(model.layers.0....): re-save it with save_pretrained, or use the in-memory splice"
                )
        if layers is not None and layers != pair.layout.num_layers:
            raise FrankensteinError(f"--layers {layers} but the checkpoints have {pair.layout.num_layers} decoder layers")
        model_type, num_layers, models = pair.layout.model_type, pair.layout.num_layers, pair.locations
        if not has_mergekit_architecture(model_type):
            raise FrankensteinError(no_recipe_message(model_type))
    else:
        model_type, num_layers, models = DEFAULT_MODEL_TYPE, layers, {"in": str(in_source), "rl": str(rl_source)}
    _mergekit_models(models)
    plans = {v: splice_plan(num_layers, v, cuts) for v in variants}
    return GeneratedRecipes(
        model_type=model_type,
        models=models,
        num_layers=num_layers,
        texts={v: recipe_text(plan, models, model_type, title) for v, plan in plans.items()},
        early_models={v: models[plan.early_source] for v, plan in plans.items()},
    )


def recipe_texts(rec: Recipe, *, layers: int | None = None, cuts: tuple[int, int] | None = None) -> dict[str, str]:
    """The six recipes of a seed recipe, from its hub ids (with a layer count nothing is looked up)."""
    n = layers if layers is not None else rec.num_layers
    return generate(rec.in_model, rec.rl_model, list(VARIANTS), cuts=cuts, layers=n, title=rec.title).texts


def checked_in_files(layers: int | None = None) -> dict[str, str]:
    """Path relative to merge_configs/ -> text, for every checked-in YAML."""
    files: dict[str, str] = {}
    for name, rec in RECIPES.items():
        for variant, text in recipe_texts(rec, layers=layers).items():
            files[f"{name}/{variant}.yaml"] = text
            if name == DEFAULT_RECIPE:
                files[f"{variant}.yaml"] = text
    return files


def main() -> None:
    """Rewrite the checked-in YAMLs under merge_configs/."""
    from surgery.atomic import write_text

    for rel, text in checked_in_files().items():
        write_text(HERE / rel, text)
        print(f"wrote merge_configs/{rel}")


if __name__ == "__main__":  # pragma: no cover
    main()
