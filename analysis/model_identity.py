"""Which model an lmms-eval run evaluated: IN, RL or a Frankenstein variant, from the run's own metadata.

The transfer table (METHOD.md 3) compares IN, RL and the six splices; it must not guess that from
folder names. A run says what it evaluated in its results file's `config.model_args`:

* `in=I,rl=R,splice=VARIANT[,cuts=C1:C2]` (the `frankenstein` model's in-memory splice): that variant,
  and it names IN and RL;
* `pretrained=X` (any model; vLLM's `model=X`): IN if X is the IN the splice runs name (or `--in`), RL
  likewise; else, if X is a folder merged by mergekit, its `mergekit_config.yml` says which decoder
  layers came from which model, and the variant is the one whose `surgery.splice` plan takes those
  layers from RL (with the splice runs' cuts, `--cuts`, or the default thirds).

Anything else is an error that says how to label the run by hand (`NAME=RESULTS`). Labels given by
hand win over the metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.lmms_runs import Run
from surgery.arch import parse_cuts
from surgery.errors import FrankensteinError
from surgery.splice import LABELS, VARIANTS, check_variant, splice_plan

IN, RL = LABELS["in"], LABELS["rl"]
MODEL_ORDER = (IN, RL, *VARIANTS)  # the table's row order
MERGEKIT_CONFIG = "mergekit_config.yml"
LABEL_HINT = "label it with --label NAME=RESULTS (NAME: IN, RL or a variant such as mid_late)"


@dataclass(frozen=True)
class Identity:
    label: str  # IN, RL, a variant name, or a label given by hand
    reason: str  # how it was determined, for the command's report


def canonical_label(name: str) -> str:
    """IN / RL in capitals, variant names as `surgery.splice` spells them, other labels as given."""
    low = name.strip().lower()
    if low in ("in", "rl"):
        return LABELS[low]
    return low if low in VARIANTS else name.strip()


def identify_runs(
    runs: Iterable[Run],
    *,
    labels: Mapping[Path, str] | None = None,
    in_model: str | None = None,
    rl_model: str | None = None,
    cuts: tuple[int, int] | None = None,
) -> dict[Path, Identity]:
    """Results file -> Identity for every run (see the module docstring)."""
    runs = list(runs)
    labels = {Path(p).resolve(): canonical_label(n) for p, n in (labels or {}).items()}
    pair = _known_pair(runs, in_model, rl_model)
    cuts = cuts or _splice_cuts(runs)
    out: dict[Path, Identity] = {}
    for run in runs:
        if run.path.resolve() in labels:
            out[run.path] = Identity(labels[run.path.resolve()], "labelled by hand")
        else:
            out[run.path] = _identify(run, pair, cuts)
    return out


def _identify(run: Run, pair: dict[str, str], cuts: tuple[int, int] | None) -> Identity:
    args = run.model_args
    if args.get("splice"):
        variant = _variant_name(run, str(args["splice"]))
        return Identity(variant, f"splice={variant} in its model_args")
    model = args.get("pretrained") or args.get("model")
    if not model:
        raise FrankensteinError(f"{run.path}: its model_args name no model (no pretrained=, model= or splice=); {LABEL_HINT}")
    key = normalise_location(str(model))
    for role in ("in", "rl"):
        if pair.get(role) == key:
            return Identity(LABELS[role], f"pretrained={model} is the {LABELS[role]} model")
    merged = Path(str(model)).expanduser() / MERGEKIT_CONFIG
    if merged.is_file():
        return _identify_merge(run, merged, pair, cuts)
    known = ", ".join(f"{LABELS[r]} is {pair[r]}" for r in ("in", "rl") if r in pair) or "no splice run or --in/--rl names IN and RL"
    raise FrankensteinError(f"{run.path}: cannot tell which model {model} is ({known}; it has no {MERGEKIT_CONFIG}); {LABEL_HINT}")


def _variant_name(run: Run, name: str) -> str:
    try:
        check_variant(name)
    except FrankensteinError as e:
        raise FrankensteinError(f"{run.path}: {e}") from None
    return name


def _known_pair(runs: list[Run], in_model: str | None, rl_model: str | None) -> dict[str, str]:
    """IN and RL locations: from --in / --rl, else from the splice runs (which must agree)."""
    pair = {role: normalise_location(m) for role, m in (("in", in_model), ("rl", rl_model)) if m}
    for run in runs:
        args = run.model_args
        if not args.get("splice"):
            continue
        for role in ("in", "rl"):
            if not args.get(role):
                raise FrankensteinError(f"{run.path}: splice={args['splice']} without {role}=; {LABEL_HINT}")
            seen = normalise_location(str(args[role]))
            if pair.setdefault(role, seen) != seen:
                raise FrankensteinError(
                    f"{run.path}: its {LABELS[role]} ({args[role]}) differs from {pair[role]} named elsewhere; "
                    "tabulate one IN/RL pair at a time"
                )
    return pair


def _splice_cuts(runs: list[Run]) -> tuple[int, int] | None:
    found = {str(r.model_args["cuts"]) for r in runs if r.model_args.get("splice") and r.model_args.get("cuts")}
    if len(found) > 1:
        raise FrankensteinError(f"the splice runs use different cuts ({', '.join(sorted(found))}); tabulate one setting at a time")
    return parse_cuts(found.pop()) if found else None


def normalise_location(location: str) -> str:
    """A local folder as its resolved path, anything else (a hub id) as given without a trailing slash."""
    path = Path(location).expanduser()
    return str(path.resolve()) if path.exists() else location.rstrip("/")


# ---------------------------------------------------------------------------------------------
# Checkpoints merged by mergekit
# ---------------------------------------------------------------------------------------------


def merge_layer_sources(config_file: Path) -> list[str]:
    """Per decoder layer, the model location a mergekit passthrough config takes it from."""
    import yaml

    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise FrankensteinError(f"{config_file} cannot be read: {e}") from None
    slices = _decoder_slices(config)
    if slices is None:
        raise FrankensteinError(f"{config_file} has no decoder slices (modules.text_decoder.slices or slices)")
    layers: dict[int, str] = {}
    for s in slices:
        sources = (s or {}).get("sources") or []
        if len(sources) != 1 or "layer_range" not in sources[0]:
            raise FrankensteinError(f"{config_file}: each slice must take one layer range from one model (a passthrough splice)")
        start, stop = (int(x) for x in sources[0]["layer_range"])
        for i in range(start, stop):
            layers[i] = str(sources[0]["model"])
    if sorted(layers) != list(range(len(layers))):
        raise FrankensteinError(f"{config_file}: the slices do not cover decoder layers 0..n-1 once each")
    return [layers[i] for i in range(len(layers))]


def _decoder_slices(config: Any) -> list | None:
    if not isinstance(config, dict):
        return None
    if isinstance(config.get("slices"), list):
        return config["slices"]
    for module in (config.get("modules") or {}).values():
        if isinstance(module, dict) and isinstance(module.get("slices"), list):
            return module["slices"]
    return None


def _identify_merge(run: Run, config_file: Path, pair: dict[str, str], cuts: tuple[int, int] | None) -> Identity:
    if set(pair) != {"in", "rl"}:
        raise FrankensteinError(
            f"{run.path}: {config_file} says which layers come from which model, but IN and RL are unknown "
            f"(no splice run, no --in/--rl); pass --in and --rl, or {LABEL_HINT}"
        )
    role_of = {pair["in"]: "in", pair["rl"]: "rl"}
    sources = []
    for model in merge_layer_sources(config_file):
        role = role_of.get(normalise_location(model))
        if role is None:
            raise FrankensteinError(f"{run.path}: {config_file} takes layers from {model}, which is neither IN ({pair['in']}) nor RL ({pair['rl']}); {LABEL_HINT}")
        sources.append(role)
    n = len(sources)
    for variant in VARIANTS:
        plan = splice_plan(n, variant, cuts)
        if list(plan.layer_sources) == sources:
            return Identity(variant, f"{config_file.name}: {plan.describe()}")
    rl_layers = [i for i, s in enumerate(sources) if s == "rl"]
    shown = f"cuts {cuts[0]}:{cuts[1]}" if cuts else "the default thirds"
    raise FrankensteinError(
        f"{run.path}: {config_file} takes decoder layers {rl_layers} of {n} from RL, which is no variant with {shown}; "
        f"pass --cuts, or {LABEL_HINT}"
    )
