"""frankenstein delta --base B --in I --rl R --out DIR: weight-delta energy and SVD across Base -> IN -> RL."""

from __future__ import annotations

import argparse

from frankenstein_tasks.commands._options import add_cuts, cuts_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Compare three checkpoints tensor by tensor without building a model: dIN = IN - Base and "
        "dRL = RL - IN. Tensors are streamed from the safetensors files one name at a time (a few tensors "
        "in memory at most, whatever the model size). Per 2-D tensor (higher ranks flattened; 1-D "
        "tensors and norms skipped): Frobenius norm, energy, relative norm ||delta|| / ||W_ref|| (W_ref = Base "
        "for dIN, IN for dRL) and, with --metrics svd, spectral and nuclear norm, stable and effective rank, "
        "condition number, top-k log-volume and top-k singular values, for every matrix including the "
        "embeddings and lm_head. Writes DIR/delta.json (metadata, per-tensor records, summaries per unified "
        "layer, section, component, block and part), DIR/tensors.csv, DIR/layers.csv, DIR/spectra.npz (svd) and "
        "PNG plots, all at once when complete."
    )
    p.add_argument("--base", required=True, metavar="B", help="Base checkpoint: folder or hub id")
    p.add_argument("--in", dest="in_", required=True, metavar="I", help="IN (SFT) checkpoint: folder or hub id")
    p.add_argument("--rl", required=True, metavar="R", help="RL checkpoint: folder or hub id")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist unless --overwrite)")
    p.add_argument(
        "--metrics",
        default="energy,svd",
        help="comma-separated: energy (norms only: seconds per GB) and/or svd (adds the spectral metrics); "
        "default energy,svd",
    )
    p.add_argument(
        "--topk", type=int, default=50, help="singular values kept per matrix and used by the log-volume (default 50)"
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]; used for the SVD metrics"
    )
    p.add_argument(
        "--filter",
        metavar="REGEX",
        help="analyse only tensors whose name (as in the Base checkpoint) matches this regular expression "
        "(re.search), e.g. '^model\\.layers\\.'",
    )
    add_cuts(p, "for the early/mid/late summary")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip (and list) tensors missing from a checkpoint or with different shapes instead of failing",
    )
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from analysis.delta import analyze_deltas

    report = analyze_deltas(
        args.base,
        args.in_,
        args.rl,
        args.out,
        metrics=args.metrics,
        topk=args.topk,
        device=args.device,
        filter=args.filter,
        cuts=cuts_of(args),
        allow_missing=args.allow_missing,
        overwrite=args.overwrite,
        plots=not args.no_plots,
        progress=not args.quiet,
    )
    print(format_summary(report))
    print(f"wrote {args.out}/ (delta.json, tensors.csv, layers.csv{'' if args.no_plots else ', plots'})")
    return 0


def format_summary(report) -> str:
    lines = []
    if report.mismatched:
        lines.append(f"skipped {len(report.mismatched)} tensors that do not match across the checkpoints:")
        lines += [f"  {m.name}: {m.reason}" for m in report.mismatched]
    reasons: dict[str, int] = {}
    for s in report.skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    skipped = ", ".join(f"{n} {r}" for r, n in reasons.items()) or "none"
    lines.append(f"analysed {len(report.tensors)} matrices in {report.meta['seconds']:.1f}s (skipped: {skipped})")
    lines.append(f"{'group':<12} {'dIN rel.norm':>13} {'dIN share':>10} {'dRL rel.norm':>13} {'dRL share':>10}")
    for group in ("section", "block"):
        for s in report.summaries[group]:
            i, r = s.deltas["in"], s.deltas["rl"]
            lines.append(
                f"{str(s.key):<12} {i.relative_norm:>13.4g} {i.energy_share:>10.1%} {r.relative_norm:>13.4g} {r.energy_share:>10.1%}"
            )
    ranking = report.block_ranking
    lines.append(f"blocks by dRL relative norm: {' > '.join(ranking['rl'])}; by dIN: {' > '.join(ranking['in'])}")
    return "\n".join(lines)
