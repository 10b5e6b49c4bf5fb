"""The organism's numbers in docs/organism.md and README.md, written from the shipped organism's measurements.

Every measured number the docs give about the organism sits in a generated block between the lines
`<!-- organism:NAME -->` and `<!-- /organism:NAME -->`, written from one file,
docs/organism/measurements.json, which `measure` writes from the shipped organisms (`shipped.py`)
with the probes of `report.probe_report`, stating each shipped file's digest and the package
versions that trained and measured it. `tests/test_organism.py` fails when a block differs from what
`render` makes of the measurements, or when the measurements are not of the shipped files.

    python -m frankenstein_tasks.organism.documented measure [SETTING ...]   # shipped organisms -> measurements.json
    python -m frankenstein_tasks.organism.documented measure-seeds   # SEED_SETTING trained at SEEDS -> measurements.json
    python -m frankenstein_tasks.organism.documented write     # measurements.json -> the blocks of the docs
    python -m frankenstein_tasks.organism.documented check     # exit status 1 when a block is stale

The known answers the docs state (`findings`) are computed from the same measurements. The tests
assert the shipped test organism's on it, and what holds on every training seed (`across_seeds`),
in the retrain tier, on the test setting trained afresh at each of SEEDS.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from surgery.arch import BLOCK_NAMES, BlockPartition

REPO = Path(__file__).resolve().parents[2]
DOCS = {"organism": REPO / "docs" / "organism.md", "readme": REPO / "README.md"}
MEASUREMENTS = REPO / "docs" / "organism" / "measurements.json"
SETTINGS = ("default", "test")  # the shipped organisms the docs describe
PROBE_ITEMS = 100
SEED_SETTING, SEEDS = "test", (0, 1, 2)  # the recipe's known answers are measured on these training seeds
ROLES = ("base", "in", "rl")
BLOCKS = BLOCK_NAMES
NAMES = {"base": "Base", "in": "IN", "rl": "RL"}

# What the findings call a known answer (the tests and the docs share these definitions).
ADOPTION_GAP = 0.15  # "reads the count at layer 0": source adoption at L=0 within this of the source accuracy
UNCHANGED = 0.10  # a swap "changes nothing" from the first layer whose change rate is at most this
NECESSARY = 0.25  # a layer is necessary when ablating it leaves less than this share of the baseline accuracy
CARRIES = 0.5  # a splice "carries the gain" when it recovers at least this share of RL's gain over IN


# ---------------------------------------------------------------------------------------------
# Findings: the known answers, computed from one probe report
# ---------------------------------------------------------------------------------------------


def findings(report: dict[str, Any]) -> dict[str, Any]:
    """The known answers of one probe report (`report.probe_report`'s swap, ablation and splice)."""
    swap = report["swap"]["base"]
    change = swap["change_rate"]
    reads = abs(swap["source_adoption"][0] - swap["source_accuracy"]) <= ADOPTION_GAP and change[0] >= 0.8
    gone = next((swap["layers"][i] for i, c in enumerate(change) if c <= UNCHANGED), None)
    ablation = report["ablation"]["base"]
    necessary = [layer for layer, acc in zip(ablation["layers"], ablation["accuracy"])
                 if acc < NECESSARY * ablation["baseline_accuracy"]]
    blocks = BlockPartition.make(len(ablation["layers"]))
    splice = report["splice"]
    return {
        "base_reads_count_at_layer0": reads,
        "count_leaves_visual_tokens_by_layer": gone,
        "necessary_layers": necessary,
        "necessary_blocks": [b for b in BLOCKS if any(blocks.block_of(layer) == b for layer in necessary)],
        "rl_gain": round(splice["rl"] - splice["in"], 4),
        "gain_travels_with": gain_blocks(splice),
    }


def across_seeds(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The known answers that hold on every seed of `per_seed` ({seed: entry with its findings}): what
    the docs state about the recipe rather than about one trained organism."""
    found = [entry["findings"] for entry in per_seed.values()]
    return {
        "seeds": sorted(int(seed) for seed in per_seed),
        "base_reads_count_at_layer0": all(f["base_reads_count_at_layer0"] for f in found),
        "min_rl_gain": min(f["rl_gain"] for f in found),
        "gain_travels_with": [b for b in BLOCKS if all(b in f["gain_travels_with"] for f in found)],
        "necessary_layers": sorted(set.intersection(*(set(f["necessary_layers"]) for f in found))),
        "necessary_on_some_seed": sorted(set.union(*(set(f["necessary_layers"]) for f in found))),
        "never_necessary_blocks": [b for b in BLOCKS if not any(b in f["necessary_blocks"] for f in found)],
    }


def carriers(splice: dict[str, float]) -> list[str]:
    """The splice variants that recover at least CARRIES of RL's gain over IN."""
    gain = splice["rl"] - splice["in"]
    return [v for v, s in splice.items() if v not in ("in", "rl") and gain > 0 and s - splice["in"] >= CARRIES * gain]


def gain_blocks(splice: dict[str, float]) -> list[str]:
    """The RL blocks the gain travels with: those whose splice alone (that block of RL in IN) carries it."""
    carrying = set(carriers(splice))
    return [b for b in BLOCKS if b in carrying]


# ---------------------------------------------------------------------------------------------
# Measuring the shipped organisms
# ---------------------------------------------------------------------------------------------


def measure(settings: tuple[str, ...] = SETTINGS, out: Path = MEASUREMENTS, *, progress: bool = True) -> dict[str, Any]:
    """Run every probe on the named shipped organisms and write their entries of the measurements
    (keeping the other settings' entries), and the figures of the default one (docs/organism/*.png)."""
    import tempfile

    from surgery.atomic import write_json

    from .pipeline import stack_versions
    from .report import probe_report
    from .shipped import file_digest, read_metadata, shipped_file, shipped_trio

    result: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {"organisms": {}}
    for setting in settings:
        path = shipped_file(setting)
        trio = shipped_trio(setting) if path is not None else None
        if trio is None:
            raise SystemExit(f"frankenstein: error: no current shipped {setting} organism "
                             "(python -m frankenstein_tasks.organism.shipped)")
        info = read_metadata(path)["info"]
        figures = out.parent if setting == "default" else Path(tempfile.mkdtemp(prefix="organism-figures-"))
        report = probe_report(trio, figures, n=PROBE_ITEMS, progress=progress)
        report.pop("rl_rewards", None)
        result["organisms"][setting] = {
            "file": path.name, "sha256": file_digest(path), "bytes": path.stat().st_size,
            "trained_with": info.get("stack", {}), "measured_with": stack_versions(), "probe_items": PROBE_ITEMS,
            "settings": info["settings"],
            "training": {"first_reward": info["training"]["rl"]["first_reward"],
                         "final_reward": info["training"]["rl"]["final_reward"],
                         "losses": {s: info["training"][s]["final_loss"] for s in ("base", "in")}},
            "eval_items": info["settings"]["eval_n"], **report, "findings": findings(report),
        }
    write_json(out, result)
    return result


def measure_seeds(seeds: tuple[int, ...] = SEEDS, out: Path = MEASUREMENTS, *, progress: bool = True) -> dict[str, Any]:
    """Train the SEED_SETTING organism from scratch at each seed (cached), probe it, and write the
    measurements' "seeds" entry: per seed its accuracies, rewards, the probes the findings read, and
    its findings; `across_seeds` of them is what the docs state about the recipe."""
    import tempfile

    from surgery.atomic import write_json

    from .pipeline import organism_info, organism_trio, stack_versions
    from .report import probe_report

    result: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {"organisms": {}}
    per_seed: dict[str, Any] = {}
    for seed in seeds:
        trio = organism_trio(SEED_SETTING, seed=seed, shipped=False, progress=progress)
        with tempfile.TemporaryDirectory(prefix=f"organism-seed{seed}-") as figures:
            report = probe_report(trio, figures, n=PROBE_ITEMS, progress=progress)
        info = organism_info(trio)
        per_seed[str(seed)] = {
            "key": info["key"], "accuracy": report["accuracy"],
            "training": {"first_reward": info["training"]["rl"]["first_reward"], "final_reward": info["training"]["rl"]["final_reward"]},
            "swap": {"base": report["swap"]["base"]}, "ablation": {"base": report["ablation"]["base"]},
            "splice": report["splice"], "findings": findings(report),
        }
    result["seeds"] = {"setting": SEED_SETTING, "probe_items": PROBE_ITEMS, "measured_with": stack_versions(),
                       "per_seed": per_seed, "across_seeds": across_seeds(per_seed)}
    write_json(out, result)
    return result


# ---------------------------------------------------------------------------------------------
# Rendering the blocks
# ---------------------------------------------------------------------------------------------

SETS = (("general_vqa", "general_vqa (counting)"), ("recognition", "recognition (yes / no; chance 50%)"),
        ("gsm8k", "gsm8k (word problems)"), ("math500", "math500 (other word problems)"),
        ("math_vqa", "math_vqa (count-then-compute, the RL task)"))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}".rstrip("0").rstrip(".") + "%"


def _f2(x: float) -> str:
    return f"{x:.2f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _layers(values: list[float], test: list[float] | None = None) -> list[str]:
    return [f"{_f2(a)} [{_f2(b)}]" if test is not None else _f2(a) for a, b in zip(values, test or values)]


def _findings_text(f: dict[str, Any], ft: dict[str, Any]) -> list[str]:
    def layers(xs: list[int]) -> str:
        return ", ".join(map(str, xs)) or "none"

    def blocks(xs: list[str]) -> str:
        return ", ".join(xs) if xs else "none"

    return [
        f"- Base reads the count at layer 0 (swapping the whole image makes it answer the source's count): "
        f"{'yes' if f['base_reads_count_at_layer0'] else 'no'} [{'yes' if ft['base_reads_count_at_layer0'] else 'no'}]; "
        f"swapping changes at most {UNCHANGED:.0%} of the answers from layer {_layer(f['count_leaves_visual_tokens_by_layer'])} "
        f"[{_layer(ft['count_leaves_visual_tokens_by_layer'])}] on.",
        f"- RL gains on its task (count-then-compute, {PROBE_ITEMS} held-out items): {f['rl_gain']:+.2f} [{ft['rl_gain']:+.2f}].",
        f"- RL blocks that carry the splice gain alone (spliced into IN by itself, the block recovers at least "
        f"{CARRIES:.0%} of RL's gain over IN): {blocks(f['gain_travels_with'])} [{blocks(ft['gain_travels_with'])}].",
        f"- Necessary layers for word problems (ablating one leaves under {NECESSARY:.0%} of Base's accuracy): "
        f"{layers(f['necessary_layers'])} [{layers(ft['necessary_layers'])}].",
    ]


def _layer(layer: int | None) -> str:
    return "none" if layer is None else str(layer)


def _stack(m: dict[str, Any]) -> str:
    d = m["organisms"]["default"]
    trained = ", ".join(f"{k} {v}" for k, v in d["trained_with"].items())
    measured = ", ".join(f"{k} {v}" for k, v in d["measured_with"].items())
    files = "; ".join(f"`shipped/{o['file']}` {o['bytes'] / 2**20:.1f} MiB, sha256 {o['sha256'][:12]}"
                      for o in m["organisms"].values())
    return (f"Generated by `python -m frankenstein_tasks.organism.documented` from "
            f"`docs/organism/measurements.json`: the shipped organisms ({files}), trained with {trained}; "
            f"measured with {measured}. Default setting; the test setting in brackets.")


def render(m: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{doc: {block name: text}} for the measurements `m`."""
    d, t = m["organisms"]["default"], m["organisms"]["test"]
    acc, acct = d["accuracy"], t["accuracy"]
    blocks: dict[str, dict[str, str]] = {"organism": {}, "readme": {}}
    lines = [_stack(m), "",
             f"Greedy decoding of the saved bf16 checkpoints through the surgery engine, {d['eval_items']} held-out items "
             f"per set (test: {t['eval_items']}).", "",
             _row(["set (what it holds)", "Base", "IN", "RL", "test: Base", "IN", "RL"]), _row(["---"] * 7)]
    lines += [_row([label] + [_pct(acc[r][s]) for r in ROLES] + [_pct(acct[r][s]) for r in ROLES]) for s, label in SETS]
    lines += ["", f"RL raises its own task by {100 * (acc['rl']['math_vqa'] - acc['in']['math_vqa']):.1f} points "
              f"(test: {100 * (acct['rl']['math_vqa'] - acct['in']['math_vqa']):.1f}) and the training reward from "
              f"{d['training']['first_reward']:.2f} to {d['training']['final_reward']:.2f} "
              f"(test: {t['training']['first_reward']:.2f} to {t['training']['final_reward']:.2f}; first and last 20 steps)."]
    blocks["organism"]["accuracy"] = "\n".join(lines)

    sec, sect = d["seconds"], t["seconds"]
    cols = ("data", "base", "in", "rl", "measure", "total")
    blocks["organism"]["walltime"] = "\n".join([
        _row(["setting", "data", "Base", "IN", "RL", "measure", "total"]), _row(["---"] * 7),
        _row(["default"] + [f"{sec[c]:.0f} s" for c in cols]), _row(["test"] + [f"{sect[c]:.0f} s" for c in cols])])

    sw, swt = d["swap"], t["swap"]
    n = len(sw["base"]["layers"])
    lines = [_row(["swap from layer L"] + [str(x) for x in sw["base"]["layers"]]), _row(["---"] * (n + 1))]
    for role in ROLES:
        lines.append(_row([f"{NAMES[role]} change rate"] + _layers(sw[role]["change_rate"], swt[role]["change_rate"])))
    lines.append(_row(["Base source adoption"] + _layers(sw["base"]["source_adoption"], swt["base"]["source_adoption"])))
    lines += ["", f"Source accuracy (the model on the source images): Base {_f2(sw['base']['source_accuracy'])} "
              f"[{_f2(swt['base']['source_accuracy'])}], RL {_f2(sw['rl']['source_accuracy'])} [{_f2(swt['rl']['source_accuracy'])}]; "
              f"self-swap change rate: {'0 at every layer' if all(not any(sw[r]['self_swap_change_rate']) for r in ROLES) else 'NOT 0'} "
              f"[{'0 at every layer' if all(not any(swt[r]['self_swap_change_rate']) for r in ROLES) else 'NOT 0'}]."]
    blocks["organism"]["swap"] = "\n".join(lines)

    ab, abt = d["ablation"], t["ablation"]
    lines = [_row(["ablated layer"] + [str(x) for x in ab["base"]["layers"]]), _row(["---"] * (len(ab["base"]["layers"]) + 1))]
    for role in ROLES:
        lines.append(_row([f"{NAMES[role]} ({_pct(ab[role]['baseline_accuracy'])} →)"] + _layers(ab[role]["accuracy"])))
    lines.append(_row([f"test Base ({_pct(abt['base']['baseline_accuracy'])} →)"] + _layers(abt["base"]["accuracy"])))
    blocks["organism"]["ablation"] = "\n".join(lines)

    de, det = d["delta"]["relative_norm_by_block"], t["delta"]["relative_norm_by_block"]
    blocks["organism"]["delta"] = (
        "Relative norm ‖ΔRL‖/‖W_IN‖ per block: " + ", ".join(f"{b} {de[b]:.3f} [{det[b]:.3f}]" for b in BLOCKS)
        + "; block ranking ΔRL " + " > ".join(d["delta"]["block_ranking"]["rl"])
        + f" [{' > '.join(t['delta']['block_ranking']['rl'])}], ΔIN " + " > ".join(d["delta"]["block_ranking"]["in"])
        + f" [{' > '.join(t['delta']['block_ranking']['in'])}].")

    sp, spt = d["splice"], t["splice"]
    names = list(sp)
    blocks["organism"]["splice"] = "\n".join([
        _row([NAMES.get(k, k) for k in names]), _row(["---"] * len(names)),
        _row([f"{_f2(sp[k])} [{_f2(spt[k])}]" for k in names]), "",
        "Splices that carry the gain (recover ≥ 50% of RL − IN): " + (", ".join(carriers(sp)) or "none")
        + " [" + (", ".join(carriers(spt)) or "none") + "]."])

    blocks["organism"]["findings"] = "\n".join(_findings_text(d["findings"], t["findings"]))
    blocks["organism"]["seeds"] = "\n".join(_seeds_text(m))

    blocks["readme"]["accuracy"] = "\n".join(
        [f"Held-out accuracy of the shipped default organism ({d['eval_items']} items per set; generated from "
         "docs/organism/measurements.json, see docs/organism.md):", "",
         _row(["set", "Base", "IN", "RL"]), _row(["---"] * 4)]
        + [_row([label] + [_pct(acc[r][s]) for r in ROLES]) for s, label in SETS]
        + ["", "Known answers (default [test setting]):", ""] + _findings_text(d["findings"], t["findings"])
        + ["", _across_text(m["seeds"])])
    return blocks


def _across_text(seeds: dict[str, Any]) -> str:
    a = seeds["across_seeds"]
    some = [layer for layer in a["necessary_on_some_seed"] if layer not in a["necessary_layers"]]
    return (f"Held on every training seed measured ({', '.join(map(str, a['seeds']))}; {seeds['setting']} setting, "
            f"trained from scratch): Base reads the count at layer 0: {'yes' if a['base_reads_count_at_layer0'] else 'no'}; "
            f"RL gains at least {a['min_rl_gain']:+.2f}; the splice gain travels with RL's "
            f"{', '.join(a['gain_travels_with']) or 'no single'} block; necessary layers: "
            f"{', '.join(map(str, a['necessary_layers'])) or 'none'} on every seed"
            + (f" ({', '.join(map(str, some))} on some)" if some else "")
            + (f", none in the {' or '.join(a['never_necessary_blocks'])} block" if a["never_necessary_blocks"] else "") + ".")


def _seeds_text(m: dict[str, Any]) -> list[str]:
    seeds, shipped = m["seeds"], m["organisms"][m["seeds"]["setting"]]
    layers = shipped["ablation"]["base"]["layers"]
    lines = [f"The {seeds['setting']} setting trained from scratch at each seed (`documented measure-seeds`, "
             f"{seeds['probe_items']} held-out items per probe; measured with "
             + ", ".join(f"{k} {v}" for k, v in seeds["measured_with"].items()) + "):", "",
             _row(["seed", "count-then-compute IN → RL", "RL reward first → last 20 steps", "Base reads at layer 0",
                   "gain travels with", "necessary layers", "Base word problems, ablated layer " + " / ".join(map(str, layers))]),
             _row(["---"] * 7)]
    for seed, e in sorted(seeds["per_seed"].items(), key=lambda kv: int(kv[0])):
        f, ab = e["findings"], e["ablation"]["base"]
        lines.append(_row([seed, f"{_f2(e['splice']['in'])} → {_f2(e['splice']['rl'])}",
                           f"{_f2(e['training']['first_reward'])} → {_f2(e['training']['final_reward'])}",
                           "yes" if f["base_reads_count_at_layer0"] else "no", ", ".join(f["gain_travels_with"]) or "none",
                           ", ".join(map(str, f["necessary_layers"])) or "none",
                           f"{_pct(ab['baseline_accuracy'])} → " + " / ".join(_f2(a) for a in ab["accuracy"])]))
    zero = seeds["per_seed"].get(str(shipped["settings"]["seed"]))
    if zero is not None:
        same = zero["accuracy"] == shipped["accuracy"]
        lines += ["", f"Seed {shipped['settings']['seed']} is the shipped organism's seed; its held-out accuracies here "
                  + ("equal the shipped organism's." if same else
                     "differ from the shipped organism's (another CPU or library version trained it).")]
    return lines + ["", _across_text(seeds)]


# ---------------------------------------------------------------------------------------------
# The blocks in the documents
# ---------------------------------------------------------------------------------------------


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- organism:{name} -->\n)(.*?)(\n<!-- /organism:{name} -->)", re.DOTALL)


def current_blocks(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- organism:(\w+) -->\n(.*?)\n<!-- /organism:\1 -->", text, re.DOTALL)}


def stale(m: dict[str, Any] | None = None) -> list[str]:
    """'doc:block' for every block whose text is not what the measurements render (or is missing)."""
    m = m if m is not None else json.loads(MEASUREMENTS.read_text())
    wrong = []
    for doc, wanted in render(m).items():
        have = current_blocks(DOCS[doc].read_text())
        wrong += [f"{doc}:{name}" for name, text in wanted.items() if have.get(name) != text]
    return wrong


def write(m: dict[str, Any] | None = None) -> None:
    from surgery.atomic import write_text

    m = m if m is not None else json.loads(MEASUREMENTS.read_text())
    for doc, wanted in render(m).items():
        text = DOCS[doc].read_text()
        for name, body in wanted.items():
            pattern = _pattern(name)
            if not pattern.search(text):
                raise SystemExit(f"frankenstein: error: {DOCS[doc]} has no block <!-- organism:{name} -->")
            text = pattern.sub(lambda mm, body=body: mm.group(1) + body + mm.group(3), text)
        write_text(DOCS[doc], text)


def _check() -> int:
    wrong = stale()
    print("\n".join(f"stale: {name}" for name in wrong) or "the organism blocks agree with the measurements")
    return 1 if wrong else 0


# Command -> what it does with the settings named after it (default: every shipped one).
COMMANDS: dict[str, Callable[[tuple[str, ...]], int]] = {
    "measure": lambda settings: (measure(settings or SETTINGS), 0)[-1],
    "measure-seeds": lambda settings: (measure_seeds(), 0)[-1],
    "write": lambda settings: (write(), 0)[-1],
    "check": lambda settings: _check(),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS or any(s not in SETTINGS for s in argv[1:]):
        print(f"usage: python -m frankenstein_tasks.organism.documented {{{','.join(COMMANDS)}}} "
              f"[{' '.join(SETTINGS)}]", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](tuple(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
