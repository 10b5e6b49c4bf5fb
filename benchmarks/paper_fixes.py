"""The deliberate fixes to the authors' protocol, measured on the model organism in one run.

Not a speed benchmark: each part runs the project's way and the authors' way on the same inputs and
prints what the difference does to the figure (docs/METHOD.md section 6).

    swap      change-rate and source-adoption curves per layer with the swap in the prefill only (the
              method) and with the authors' decode-time re-insertion (`swap_decode=reinsert`); both
              change rates (the project's test and the authors' substring rule)
    extract   how many transfer outputs hold an <answer> that the authors' letter-stripping regex
              misreads (e.g. "3.5" -> "5"), under the reasoner prompt
    deltas    the authors' per-layer aggregates from float64 deltas (the project) and from float16
              deltas (their load), and the log-volume with sigma at or below 1e-5 sigma1 read as 0 (the
              project's Gram route) and exact (float64 svdvals)

    python benchmarks/paper_fixes.py                   # the cached organism, "test" setting
    python benchmarks/paper_fixes.py --setting default --pairs 100
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import hardware, timed  # noqa: E402

AUTHORS_ANSWER_LETTER = re.compile(r"^\s*([A-Ha-h0-9])\s*[\.\)\:\-]\s*(.+?)\s*$")  # transferability_test.py _extract_answer


def swap_part(trio: dict, pairs_root: Path, n: int, role: str, tokens: int) -> dict:
    from frankenstein_tasks.contract import normalize_answer
    from frankenstein_tasks.paper_protocol import answers_differ
    from frankenstein_tasks.vision.dataset import load_pairs
    from frankenstein_tasks.vision.scoring import is_correct
    from surgery.loading import load_model, load_processor
    from surgery.probes import ProbeRequest, ProbeRunner
    from surgery.stack import DecoderStack
    from surgery.swap import SwapPair, SwapSpec, swap_sweep

    model, layout = load_model(str(trio[role]), dtype="float32", device="cpu")
    processor = load_processor(str(trio[role]))
    runner = ProbeRunner(model, layout, processor)
    stack, layers = DecoderStack(model, layout), list(range(layout.num_layers))
    out = {}
    for task in ("counting", "recognition"):
        pair_set = load_pairs(pairs_root / task, task, first=n)
        from PIL import Image

        pairs, metas = [], []
        for p in pair_set.pairs:
            request = ProbeRequest(text=p.prompt, images=[Image.open(p.target_image).convert("RGB")])
            pairs.append(SwapPair(runner.encode(request), runner.encode(request, [Image.open(p.source_image).convert("RGB")])))
            metas.append(p.meta)
        curves = {}
        for decode in ("prefill", "reinsert"):
            with timed() as t:
                outcomes = swap_sweep(stack, pairs, layers, SwapSpec(decode=decode), max_new_tokens=tokens,
                                      eos_token_ids=runner.eos_token_ids, max_batch_rows=64)
            base = [runner.decode(o.baseline, []) for o in outcomes]
            by = [{layer: runner.decode(o.by_layer[layer], []) for layer in layers} for o in outcomes]
            curves[decode] = {
                "change_rate": [sum(normalize_answer(b[l]) != normalize_answer(a) for a, b in zip(base, by)) / len(by) for l in layers],
                "change_rate_authors": [sum(answers_differ(a, b[l]) for a, b in zip(base, by)) / len(by) for l in layers],
                "source_adoption": [sum(is_correct(task, b[l], m, "source") for b, m in zip(by, metas)) / len(by) for l in layers],
                "seconds": round(t["seconds"], 2),
            }
        out[task] = {"pairs": len(pairs), **curves}
    return out


def extract_part(trio: dict, data: dict, tokens: int) -> dict:
    import datasets

    from frankenstein_tasks.paper_protocol import (
        IMAGE_CAP,
        SYSTEM_PROMPTS,
        mathvista_question,
        transfer_user_text,
    )
    from surgery.loading import load_model, load_processor
    from surgery.probes import ProbeConfig, ProbeRequest, ProbeRunner

    rows = datasets.load_dataset("parquet", data_files=str(data["mathvista"] / "testmini.parquet"), split="train")
    model, layout = load_model(str(trio["rl"]), dtype="float32", device="cpu")
    runner = ProbeRunner(model, layout, load_processor(str(trio["rl"])), ProbeConfig(max_batch_rows=64))
    requests = [ProbeRequest(text=transfer_user_text(mathvista_question(r["question"], r["question_type"], r["choices"])),
                             images=[IMAGE_CAP.apply(r["decoded_image"].convert("RGB"))], max_new_tokens=tokens,
                             system_prompt=SYSTEM_PROMPTS["reasoner"]) for r in rows]
    outputs = [o.baseline for o in runner.run(requests)]
    tags = [m.group(1).strip() for o in outputs for m in [re.search(r"<answer>(.*?)</answer>", o, re.S | re.I)] if m]
    misread = [t for t in tags if AUTHORS_ANSWER_LETTER.match(t)]
    return {"outputs": len(outputs), "with_answer_tag": len(tags), "misread_by_the_authors": len(misread), "example": outputs[0][:120]}


def deltas_part(trio: dict) -> dict:
    """The authors' per-layer aggregates as the project computes them vs with their float16 deltas and
    exact (float64 svdvals, nothing zeroed) singular values: the largest relative difference per aggregate."""
    from safetensors.torch import load_file

    from analysis.delta import analyze_deltas
    from analysis.delta.authors import in_selection

    report = analyze_deltas(trio["base"], trio["in"], trio["rl"], progress=False)
    states = {r: load_file(str(trio[r] / "model.safetensors")) for r in ("base", "in", "rl")}
    theirs: dict[tuple[int, str], dict[str, list[float]]] = {}
    zeroed = 0
    for t in [*report.tensors, *report.authors_only_tensors]:
        if not in_selection(t.name, t.unified_index):
            continue
        b, i, r = (states[x][t.name] for x in ("base", "in", "rl"))
        for d, (hi, lo) in {"in": (i, b), "rl": (r, i)}.items():
            entry = theirs.setdefault((t.unified_index, d), {"fro_norm_mean": [], "log_volume_mean": []})
            entry["fro_norm_mean"].append(float((hi.half() - lo.half()).float().norm()))  # their float16 load and subtraction
            if t.deltas[d].topk_singular_values is not None:
                sigma = torch.linalg.svdvals((hi.double() - lo.double()).flatten(1))[:50]
                entry["log_volume_mean"].append(float(torch.log(sigma + 1e-12).sum()))
                zeroed += any(v == 0.0 for v in t.deltas[d].topk_singular_values)
    worst = {"fro_norm_mean": 0.0, "log_volume_mean": 0.0}
    for layer in report.authors_per_layer:
        for d, stats in layer.deltas.items():
            for name, values in theirs[(layer.key, d)].items():
                mine = getattr(stats, name)
                if values and mine is not None:
                    worst[name] = max(worst[name], abs(mine - sum(values) / len(values)) / abs(sum(values) / len(values)))
    return {"max_rel_diff_per_layer": worst, "matrices_with_a_top50_sigma_read_as_0": zeroed,
            "matrices": sum(len(v["log_volume_mean"]) for v in theirs.values())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", default="test", help="organism setting (trained once, then cached)")
    p.add_argument("--pairs", type=int, default=100, help="pairs per task (the cached eval sets hold 100)")
    p.add_argument("--role", default="base", help="the model the swap localizes (the authors: Base)")
    p.add_argument("--new-tokens", type=int, default=64, help="the authors' vision budget")
    p.add_argument("--items", type=int, default=40, help="transfer items per MathVista category for the extraction count")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()

    from frankenstein_tasks.organism.evalsets import write_eval_sets
    from frankenstein_tasks.organism.pipeline import organism_trio

    torch.manual_seed(0)
    trio = organism_trio(args.setting, progress=False)
    results = {"setting": args.setting, "hardware": hardware("cpu")}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_eval_sets(Path(tmp) / "data", n=max(args.pairs, args.items), seed=0)
        results["swap"] = swap_part(trio, data["pairs"], args.pairs, args.role, args.new_tokens)
        results["extract"] = extract_part(trio, data, 256)
    results["deltas"] = deltas_part(trio)

    for task, r in results["swap"].items():
        print(f"\n{task} ({r['pairs']} pairs, {args.role}); layer:  " + " ".join(f"{i:>5}" for i in range(len(r['prefill']['change_rate']))))
        for decode in ("prefill", "reinsert"):
            for metric in ("change_rate", "change_rate_authors", "source_adoption"):
                print(f"  {decode:<8} {metric:<20} " + " ".join(f"{v:5.2f}" for v in r[decode][metric]))
    print("\nextraction:", results["extract"])
    print("deltas:", results["deltas"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
