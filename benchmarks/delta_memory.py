"""Streaming weight deltas vs loading all three models: peak memory and wall time, in one run.

Builds a Base / IN / RL trio with Qwen2-1.5B shapes (hidden 1536, intermediate 8960, 28 layers,
12 heads / 2 KV heads, vocab 151936, untied lm_head: 1.78B parameters, random bf16, 4 shards each)
in a temporary folder, then runs each mode in its own subprocess so that its peak RSS is its own:

  read           a plain sequential read of the same files (the I/O floor)
  stream-energy  `analyze_deltas(..., metrics="energy")`: the streaming energy pass
  stream-svd     `analyze_deltas(..., metrics="energy,svd")`: streaming with every SVD metric
  old-style      the old scripts' way: `from_pretrained` all three models, then the same energies
                 from `named_parameters()`
  svd-routes     singular values of one mid layer's dRL matrices and of lm_head's, by the Gram route
                 and by `torch.linalg.svdvals` in float64: time and agreement

It checks that streaming and old-style energies agree per tensor, that streaming peak RSS stays
under 1.5 GB + 3x the largest tensor and that the two SVD routes agree to 1e-4, prints tables and
ratios, and removes the trio (exit status 1 if a check fails).

    python benchmarks/delta_memory.py                 # ~10 GB of disk under $TMPDIR, 15-25 min on 2 cores
    python benchmarks/delta_memory.py --no-svd        # skip the (CPU-heavy) SVD mode
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Qwen2-1.5B shapes.
HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, VOCAB = 1536, 8960, 28, 12, 2, 151936
IN_REL, RL_REL, RL_PLANTED = 0.02, 0.01, 0.05  # delta sizes relative to the weight scale; RL larger in mid+late
SHARDS = 4
MODES = ("read", "stream-energy", "stream-svd", "old-style", "svd-routes")


# ---------------------------------------------------------------------------------------------
# The trio
# ---------------------------------------------------------------------------------------------


def tensor_shapes(layout) -> dict[str, tuple[int, ...]]:
    """Qwen2-1.5B tensor shapes, named where the architecture adapter says each part lives."""
    head_dim = HIDDEN // HEADS
    kv = KV_HEADS * head_dim
    naming = layout.naming
    shapes: dict[str, tuple[int, ...]] = {naming.embed + "weight": (VOCAB, HIDDEN)}
    for i in range(layout.num_layers):
        p = layout.decoder_layer_prefix(i)
        shapes.update(
            {
                p + "input_layernorm.weight": (HIDDEN,),
                p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
                p + "self_attn.q_proj.bias": (HIDDEN,),
                p + "self_attn.k_proj.weight": (kv, HIDDEN),
                p + "self_attn.k_proj.bias": (kv,),
                p + "self_attn.v_proj.weight": (kv, HIDDEN),
                p + "self_attn.v_proj.bias": (kv,),
                p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                p + "post_attention_layernorm.weight": (HIDDEN,),
                p + "mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN),
                p + "mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
                p + "mlp.down_proj.weight": (HIDDEN, INTERMEDIATE),
            }
        )
    shapes[naming.final_norm + "weight"] = (HIDDEN,)
    shapes[naming.lm_head + "weight"] = (VOCAB, HIDDEN)
    return shapes


def trio_layout(layers: int = LAYERS):
    """The adapter's layout of the trio (a text-only Qwen2): names, counts and blocks come from it."""
    from surgery.arch import layout_from_config

    return layout_from_config(config(layers))


def config(layers: int = LAYERS) -> dict:
    from transformers import Qwen2Config

    cfg = Qwen2Config(
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        vocab_size=VOCAB,
        tie_word_embeddings=False,
        max_position_embeddings=32768,
    ).to_dict()
    cfg["architectures"] = ["Qwen2ForCausalLM"]
    cfg["dtype"] = "bfloat16"
    return cfg


def build_trio(folder: Path, layers: int = LAYERS) -> dict[str, Path]:
    """Write base/, in/, rl/ (SHARDS safetensors shards + index each), one shard's tensors in memory at a time."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    layout = trio_layout(layers)
    planted = layout.partition()  # RL's larger deltas go to the mid and late blocks
    shapes = tensor_shapes(layout)
    shards: list[list[str]] = [[]]
    budget = sum(math.prod(s) for s in shapes.values()) / SHARDS
    for name, shape in shapes.items():  # consecutive names, about equal parameter counts
        if shards[-1] and sum(math.prod(shapes[n]) for n in shards[-1]) + math.prod(shape) > budget * 1.05:
            shards.append([])
        shards[-1].append(name)
    roles = {r: folder / r for r in ("base", "in", "rl")}
    for path in roles.values():
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps(config(layers), indent=2))
    g = torch.Generator().manual_seed(0)
    weight_map = {}
    total = sum(math.prod(s) for s in shapes.values())
    with tqdm(total=total * 2 * 3, unit="B", unit_scale=True, desc="building trio") as bar:
        for k, names in enumerate(shards):
            file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            state: dict[str, dict] = {r: {} for r in roles}
            for name in names:
                shape = shapes[name]
                base = (
                    torch.randn(shape, generator=g) * 0.02
                    if len(shape) > 1
                    else 1 + 0.1 * torch.randn(shape, generator=g)
                )
                scale = base.abs().mean().item()
                inn = base + IN_REL * scale * torch.randn(shape, generator=g)
                rl_rel = RL_PLANTED if _block(layout, planted, name) in ("mid", "late") else RL_REL
                rl = inn + rl_rel * scale * torch.randn(shape, generator=g)
                for role, t in (("base", base), ("in", inn), ("rl", rl)):
                    state[role][name] = t.to(torch.bfloat16).contiguous()
                weight_map[name] = file
                bar.update(int(base.numel()) * 2 * 3)
                del base, inn, rl
            for role, path in roles.items():
                save_file(state[role], str(path / file), metadata={"format": "pt"})
            del state
    for path in roles.values():
        (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return roles


def _block(layout, partition, name: str) -> str | None:
    """early / mid / late for a decoder layer's tensor, None for the rest."""
    from surgery.arch import Part

    role = layout.classify(name)
    return partition.block_of(role.index) if role.part is Part.DECODER_LAYER else None


# ---------------------------------------------------------------------------------------------
# Modes (each runs in its own process)
# ---------------------------------------------------------------------------------------------


def _analysed(name: str, shape) -> bool:
    from surgery.arch import is_norm

    return len(shape) >= 2 and not is_norm(name)


def mode_read(trio: dict[str, Path]) -> dict:
    buffer = bytearray(64 << 20)
    total = 0
    for path in trio.values():
        for f in sorted(path.glob("*.safetensors")):
            with open(f, "rb", buffering=0) as fh:
                while n := fh.readinto(buffer):
                    total += n
    return {"bytes": total}


def mode_stream(trio: dict[str, Path], metrics: str) -> dict:
    from analysis.delta import analyze_deltas

    report = analyze_deltas(trio["base"], trio["in"], trio["rl"], metrics=metrics, progress=False)
    energies = {
        t.name: [
            t.deltas["in"].energy,
            t.deltas["rl"].energy,
            t.deltas["in"].reference_norm,
            t.deltas["rl"].reference_norm,
        ]
        for t in report.tensors
    }
    return {"energies": energies, "block_ranking_rl": report.block_ranking["rl"], "bytes": report.meta["bytes_read"]}


def mode_old_style(trio: dict[str, Path]) -> dict:
    """What the old scripts do: hold all three models, walk named_parameters, compute per tensor."""
    import torch
    from transformers import AutoModelForCausalLM

    from analysis.delta.kernels import SumsOfSquares

    models = {r: AutoModelForCausalLM.from_pretrained(str(p), dtype=torch.bfloat16) for r, p in trio.items()}
    params = {r: dict(m.named_parameters()) for r, m in models.items()}
    energies = {}
    for name, w_base in params["base"].items():
        if not _analysed(name, w_base.shape):
            continue
        # The same float64 kernel as the streaming pass, so the two modes differ only in how they read.
        sums = SumsOfSquares()
        sums.add(w_base.detach(), params["in"][name].detach(), params["rl"][name].detach())
        s = sums.sums
        energies[name] = [s["d_in"], s["d_rl"], math.sqrt(s["base"]), math.sqrt(s["in"])]
    return {"energies": energies}


def mode_svd_routes(trio: dict[str, Path], layers: int) -> dict:
    """Singular values of real-shape dRL matrices two ways: the Gram route vs torch.linalg.svdvals (float64)."""
    import torch
    from safetensors import safe_open

    from analysis.spectra import ZERO_RTOL, one_thread, singular_values
    from surgery.sources import tensor_index

    layout = trio_layout(layers)
    layer = layout.decoder_layer_prefix(layout.num_layers // 2)
    modules = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )
    names = [f"{layer}{m}.weight" for m in modules] + [layout.naming.lm_head + "weight"]
    files = {r: tensor_index(trio[r]) for r in ("in", "rl")}
    rows = []
    for name in names:
        tensors = {}
        for r in ("in", "rl"):
            with safe_open(str(files[r][name].file), framework="pt") as fh:
                tensors[r] = fh.get_tensor(name).double()
        delta = tensors["rl"] - tensors["in"]
        del tensors
        t0 = time.perf_counter()
        gram = singular_values(delta)
        t_gram = time.perf_counter() - t0
        # The direct SVD gets its better thread setting (the pool helps it on an idle machine, hurts on a busy one).
        t0 = time.perf_counter()
        direct = torch.linalg.svdvals(delta)
        t_all = time.perf_counter() - t0
        t0 = time.perf_counter()
        with one_thread():
            torch.linalg.svdvals(delta)
        t_one = time.perf_counter() - t0
        kept = direct > ZERO_RTOL * direct[0]
        rel = float(((gram[kept] - direct[kept]).abs() / direct[kept]).max())
        rows.append(
            {
                "name": name,
                "shape": list(delta.shape),
                "gram_s": t_gram,
                "svdvals_s": min(t_all, t_one),
                "max_rel_diff": rel,
            }
        )
    return {"routes": rows}


def peak_rss() -> int:
    """This process's peak RSS in bytes. VmHWM starts afresh at exec; getrusage's ru_maxrss does not
    (a child forked from a large parent starts with the parent's RSS as its maximum)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB elsewhere


def child(mode: str, trio_dir: Path, result: Path, layers: int) -> None:
    import psutil
    import torch  # imported before the clock starts in every mode, so baselines compare

    trio = {r: trio_dir / r for r in ("base", "in", "rl")}
    baseline = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if mode == "read":
        out = mode_read(trio)
    elif mode == "stream-energy":
        out = mode_stream(trio, "energy")
    elif mode == "stream-svd":
        out = mode_stream(trio, "energy,svd")
    elif mode == "old-style":
        out = mode_old_style(trio)
    elif mode == "svd-routes":
        out = mode_svd_routes(trio, layers)
    else:
        raise SystemExit(f"unknown mode {mode}")
    out["wall_s"] = time.perf_counter() - start
    out["peak_rss"] = peak_rss()
    out["baseline_rss"] = baseline
    out["torch_threads"] = torch.get_num_threads()
    result.write_text(json.dumps(out))


def run_child(mode: str, trio_dir: Path, work: Path, layers: int) -> dict:
    result = work / f"{mode}.json"
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--trio",
            str(trio_dir),
            "--result",
            str(result),
            "--layers",
            str(layers),
        ]
    )
    if proc.returncode != 0:
        raise SystemExit(f"mode {mode} failed with exit status {proc.returncode}")
    out = json.loads(result.read_text())
    out["process_s"] = time.perf_counter() - started
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def hardware() -> str:
    import psutil
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def max_relative_difference(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        raise SystemExit(f"tensor sets differ: {sorted(a.keys() ^ b.keys())[:5]}")
    worst = 0.0
    for name in a:
        for x, y in zip(a[name], b[name]):
            worst = max(worst, abs(x - y) / max(abs(y), 1e-300))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="where to build the trio (default: a new temp folder, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the trio")
    parser.add_argument("--no-svd", action="store_true", help="skip the stream-svd mode")
    parser.add_argument(
        "--layers", type=int, default=LAYERS, help=f"decoder layers (default {LAYERS}; fewer only to smoke-test)"
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--trio", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_trio(Path(args.build), args.layers)
        return 0
    if args.child:
        child(args.child, Path(args.trio), Path(args.result), args.layers)
        return 0

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="delta_memory_"))
    trio_dir = work / "trio"
    print(f"hardware: {hardware()}")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        t0 = time.perf_counter()
        if (trio_dir / "rl" / "model.safetensors.index.json").is_file():
            print(f"reusing the trio in {trio_dir}")
        else:
            shutil.rmtree(trio_dir, ignore_errors=True)
            # In a child process too, so that this parent stays small while the modes run.
            subprocess.run(
                [sys.executable, __file__, "--build", str(trio_dir), "--layers", str(args.layers)], check=True
            )
            print(f"built the trio in {time.perf_counter() - t0:.0f}s")
        shapes = tensor_shapes(trio_layout(args.layers))
        params = sum(math.prod(s) for s in shapes.values())
        largest = max(math.prod(s) * 2 for s in shapes.values())
        files = sum(f.stat().st_size for f in trio_dir.rglob("*.safetensors"))
        print(
            f"trio: {params / 1e9:.2f}B parameters per model, {gib(files)} of safetensors in all; "
            f"largest tensor {gib(largest)} (bf16)"
        )

        # A first read brings the files into the page cache as far as memory allows, so that every mode
        # after it finds the same cache state; the second read is the floor the energy pass is compared with.
        modes = ["read"] + [m for m in MODES if not (args.no_svd and m == "stream-svd")]
        results = {}
        for k, mode in enumerate(modes):
            label = "first read" if k == 0 else mode
            print(f"running {label} ...", flush=True)
            results[label] = run_child(mode, trio_dir, work, args.layers)
            r = results[label]
            print(f"  {r['wall_s']:.1f}s, peak RSS {gib(r['peak_rss'])}", flush=True)

        routes = results.pop("svd-routes")["routes"]
        print()
        print(f"{'mode':<15} {'wall s':>8} {'GiB/s':>7} {'peak RSS':>11} {'RSS after imports':>18}")
        for mode, r in results.items():
            print(
                f"{mode:<15} {r['wall_s']:>8.1f} {files / r['wall_s'] / 2**30:>7.2f} {gib(r['peak_rss']):>11} {gib(r['baseline_rss']):>18}"
            )

        stream, old, read = results["stream-energy"], results["old-style"], results["read"]
        agree = max_relative_difference(stream["energies"], old["energies"])
        print()
        print(
            f"streaming vs old-style energies and reference norms: max relative difference {agree:.2e} "
            f"over {len(stream['energies'])} tensors"
        )
        if "stream-svd" in results:
            agree_svd = max_relative_difference(results["stream-svd"]["energies"], stream["energies"])
            print(f"stream-svd vs stream-energy energies: max relative difference {agree_svd:.2e}")
        print(
            f"old-style / streaming: peak RSS x{old['peak_rss'] / stream['peak_rss']:.1f}, "
            f"wall time x{old['wall_s'] / stream['wall_s']:.2f}"
        )
        print(
            f"streaming energy pass / plain read of the same files: wall time x{stream['wall_s'] / read['wall_s']:.2f}"
        )
        limit = 1.5e9 + 3 * largest
        ok = all(results[m]["peak_rss"] < limit for m in ("stream-energy", "stream-svd") if m in results)
        print(f"streaming peak RSS limit 1.5 GB + 3 x largest tensor = {gib(limit)}: {'PASS' if ok else 'FAIL'}")
        print(f"dRL block ranking (planted mid+late): {' > '.join(stream['block_ranking_rl'])}")
        print()
        print("singular values of dRL, Gram route (float64) vs torch.linalg.svdvals (float64):")
        print(f"{'matrix':<38} {'shape':>14} {'Gram s':>8} {'svdvals s':>10} {'speed-up':>9} {'max rel diff':>13}")
        for r in routes:
            print(
                f"{r['name']:<38} {'x'.join(map(str, r['shape'])):>14} {r['gram_s']:>8.2f} {r['svdvals_s']:>10.2f} "
                f"{r['svdvals_s'] / r['gram_s']:>8.1f}x {r['max_rel_diff']:>13.1e}"
            )
        total_gram, total_svd = sum(r["gram_s"] for r in routes), sum(r["svdvals_s"] for r in routes)
        worst = max(r["max_rel_diff"] for r in routes)
        print(
            f"{'all':<38} {'':>14} {total_gram:>8.2f} {total_svd:>10.2f} {total_svd / total_gram:>8.1f}x {worst:>13.1e}"
        )
        ok = ok and worst < 1e-4
        print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0 if ok and agree < 1e-9 else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
