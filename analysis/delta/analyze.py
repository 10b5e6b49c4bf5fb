"""`analyze_deltas`: the Python API of the weight-delta analysis, and the metadata of a run.

It validates the options, opens the three checkpoints (headers only), plans, streams every planned
tensor through the kernels under one progress bar, summarises, and writes OUT if asked. The
metadata records what was compared, with which options, packages and hardware, and what each
metric means, so that delta.json reads on its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from analysis.delta.authors import authors_per_layer, extra_items
from analysis.delta.files import write_report
from analysis.delta.kernels import analyze_tensor
from analysis.delta.plan import Checkpoint, check_same_architecture, make_plan, open_checkpoint
from analysis.delta.schema import DeltaReport, TensorRecord
from analysis.delta.summary import GROUPS, rank_blocks, representative_layers, summarize
from surgery.errors import FrankensteinError

METRICS = ("energy", "svd")


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    items = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    bad = [m for m in items if m not in METRICS]
    if bad or not items:
        raise FrankensteinError(
            f"--metrics takes a comma-separated list of {', '.join(METRICS)}; got {','.join(items) or 'nothing'}"
        )
    # Energy is always measured: it is free once the tensors are read, and the SVD metrics use it.
    return tuple(m for m in METRICS if m in items or m == "energy")


def analyze_deltas(
    base: str | Path,
    in_: str | Path,
    rl: str | Path,
    out: str | Path | None = None,
    *,
    metrics: str | Iterable[str] = METRICS,
    topk: int = 50,
    device: str = "auto",
    filter: str | None = None,
    cuts: Sequence[int] | None = None,
    allow_missing: bool = False,
    overwrite: bool = False,
    plots: bool = True,
    keep_spectra: bool = False,
    progress: bool = True,
) -> DeltaReport:
    """Measure dIN = IN - Base and dRL = RL - IN per tensor, streaming; write OUT if given.

    `keep_spectra` keeps every matrix's singular values in `report.spectra` (by default only those
    of the representative early / mid / late layers, which the spectra plot uses).
    """
    from tqdm.auto import tqdm

    from surgery.loading import resolve_device

    started = time.perf_counter()
    metrics = parse_metrics(metrics)
    if topk < 1:
        raise FrankensteinError(f"--topk must be at least 1, got {topk}")
    if out is not None and Path(out).exists() and not overwrite:
        raise FrankensteinError(f"{out} already exists (pass --overwrite to replace it)")
    try:
        device_used = resolve_device(device)
    except FrankensteinError as e:
        raise FrankensteinError(f"--device: {e}") from None

    ckpts: dict[str, Checkpoint] = {}
    ckpts["base"] = open_checkpoint("base", base)
    scheme = ckpts["base"].layout.naming_scheme
    ckpts["in"] = open_checkpoint("in", in_, scheme)
    ckpts["rl"] = open_checkpoint("rl", rl, scheme)
    check_same_architecture(ckpts)
    cuts_t = tuple(int(c) for c in cuts) if cuts else None
    partition = ckpts["base"].layout.partition(cuts_t)
    plan = make_plan(ckpts, name_filter=filter, cuts=cuts_t, allow_missing=allow_missing)
    if not plan.items:
        raise FrankensteinError("no 2-D tensor left to analyse (all were skipped or filtered out)")

    options = {
        "metrics": list(metrics),
        "topk": topk,
        "device": device,
        "device_used": device_used,
        "filter": filter,
        "cuts": list(cuts_t) if cuts_t else None,
        "allow_missing": allow_missing,
    }
    svd = "svd" in metrics
    representative = representative_layers(partition)
    records: list[TensorRecord] = []
    spectra: dict[str, dict[str, Any]] = {}
    extras = extra_items(ckpts, plan, cuts_t)  # norms only, for the authors' aggregates
    total_bytes = sum(item.bytes for item in [*plan.items, *extras])
    with tqdm(
        total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="delta", disable=not progress
    ) as bar:
        for item in plan.items:
            bar.set_postfix_str(item.record["name"][-48:], refresh=False)
            record, sigma = analyze_tensor(item, ckpts, svd=svd, topk=topk, device=device_used, progress=bar)
            records.append(record)
            if sigma and (
                keep_spectra or (record.block is not None and record.index == representative.get(record.block))
            ):
                spectra[record.name] = sigma
        authors_only = [analyze_tensor(item, ckpts, svd=False, topk=topk, device=device_used, progress=bar)[0] for item in extras]

    summaries = {group: summarize(records, group) for group in GROUPS}
    report = DeltaReport(
        meta=_metadata(ckpts, options, representative, total_bytes),
        tensors=records,
        skipped=plan.skipped,
        mismatched=plan.mismatched,
        summaries=summaries,
        block_ranking=rank_blocks(summaries["block"]),
        authors_per_layer=authors_per_layer([*records, *authors_only]),
        authors_only_tensors=authors_only,
        spectra=spectra,
    )
    report.meta["seconds"] = round(time.perf_counter() - started, 3)
    if out is not None:
        write_report(report, Path(out), overwrite=overwrite, plots=plots)
    return report


def _metadata(
    ckpts: dict[str, Checkpoint], options: dict[str, Any], representative: dict[str, int], total_bytes: int
) -> dict[str, Any]:
    import datetime
    import platform

    import torch

    from analysis.spectra import DEFINITIONS, ZERO_RTOL

    layout = ckpts["base"].layout
    return {
        "tool": "frankenstein delta",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "models": {
            role: {
                "source": c.source,
                "path": str(c.path),
                "model_type": c.layout.model_type,
                "naming_scheme": c.layout.naming_scheme,
                "num_tensors": len(c.tensors),
            }
            for role, c in ckpts.items()
        },
        "deltas": {"in": "IN - Base (reference weight: Base)", "rl": "RL - IN (reference weight: IN)"},
        "packages": {
            "python": platform.python_version(),
            **{p: _version(p) for p in ("frankenstein-vlm", "safetensors", "numpy", "transformers")},
            "torch": torch.__version__,
        },
        "hardware": {
            "machine": platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(options["device_used"])
            if options["device_used"].startswith("cuda")
            else None,
        },
        "options": options,
        "layout": layout.describe(tuple(options["cuts"]) if options["cuts"] else None),
        "representative_layers": representative,
        "svd_route": "eigenvalues of the float64 Gram matrix, accumulated over row / column chunks",
        "zero_tolerance_rtol": ZERO_RTOL,
        "definitions": {
            "energy": "squared Frobenius norm of the delta, ||delta||_F^2",
            "relative_norm": "||delta||_F / ||W_ref||_F; for groups sqrt(sum energy / sum ||W_ref||_F^2)",
            "energy_share": "energy of the group / energy of all analysed tensors, per delta",
            "mean_stable_rank": "unweighted mean over the group's matrices",
            "mean_effective_rank": "unweighted mean over the group's matrices",
            "block_ranking": "blocks ordered by relative norm, largest first",
            "authors_per_layer": "the authors' per-layer aggregates over their tensor selection (analysis/delta/authors.py): "
            "mean and sum of ||delta||_F, mean ||delta||_F / (||W_IN||_F + 1e-8) for both deltas, mean sigma1 and mean "
            "sum(log(sigma + 1e-12)) over the top-k sigma of the layer's matrices",
            "authors_only_tensors": "tensors only the authors' selection holds (1-D weights), measured for their norms",
            "skipped": "1-D tensors, norms, non-float tensors, tensors outside the known parts",
            "Infinity": "JSON Infinity marks an infinite condition number (an all-zero delta) or relative norm",
            **DEFINITIONS,
        },
        "bytes_read": total_bytes,
    }


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
