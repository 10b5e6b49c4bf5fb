"""Weight deltas across Base -> IN -> RL (`frankenstein delta`, `analysis.delta.analyze_deltas`)."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from analysis.delta import analyze_deltas
from analysis.spectra import ZERO_RTOL, singular_values, spectral_metrics
from surgery.arch import is_norm, layout_of_checkpoint
from surgery.errors import FrankensteinError

from conftest import cli_path, run_cli


@pytest.fixture(scope="module")
def tiny_report(tiny_trio):
    """The full analysis of the planted trio, every matrix's singular values kept."""
    return analyze_deltas(tiny_trio["base"], tiny_trio["in"], tiny_trio["rl"], keep_spectra=True, progress=False)


@pytest.fixture(scope="module")
def states(tiny_trio):
    return {role: load_file(str(tiny_trio[role] / "model.safetensors")) for role in ("base", "in", "rl")}


def _variant(src, dst, state, config_edit=None):
    """A checkpoint folder holding `state` and src's config (optionally edited)."""
    dst.mkdir(parents=True)
    config = json.loads((src / "config.json").read_text())
    if config_edit:
        config_edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def _records(report):
    return {t.name: t.model_dump() for t in report.tensors}


# -- the planted answer -------------------------------------------------------------------------


def test_planted_blocks_carry_the_rl_energy(tiny_report):
    blocks = tiny_report.summary("block")
    assert set(tiny_report.block_ranking["rl"][:2]) == {"mid", "late"}
    assert tiny_report.block_ranking["rl"][-1] == "early"
    rl = {b: s.deltas["rl"] for b, s in blocks.items()}
    # Planted 20x in relative size, so ~400x in energy per parameter.
    assert min(rl["mid"].energy_per_param, rl["late"].energy_per_param) > 100 * rl["early"].energy_per_param
    assert rl["mid"].energy_share + rl["late"].energy_share > 0.8
    # Layer by layer: every planted decoder layer beats every other unified layer.
    layers = tiny_report.summary("unified_layer")
    layout_blocks = {t.unified_index: t.block for t in tiny_report.tensors if t.unified_index is not None}
    planted = [s.deltas["rl"].relative_norm for u, s in layers.items() if layout_blocks[u] in ("mid", "late")]
    others = [s.deltas["rl"].relative_norm for u, s in layers.items() if layout_blocks[u] not in ("mid", "late")]
    assert len(planted) == 6 and len(others) == 5  # 3 + 3 planted layers; 2 early, projector, 2 vision blocks
    assert min(planted) > 10 * max(others)
    # dIN was not planted: its blocks are alike (0.02 relative everywhere).
    din = [s.deltas["in"].relative_norm for s in blocks.values()]
    assert max(din) < 1.2 * min(din)
    assert abs(blocks["early"].deltas["in"].relative_norm - 0.02) < 0.005


def test_every_matrix_is_analysed_and_the_rest_listed(tiny_report, states):
    base = states["base"]
    matrices = {n for n, t in base.items() if t.dim() >= 2 and not is_norm(n)}
    assert {t.name for t in tiny_report.tensors} == matrices
    # Embeddings, lm_head (151936 rows) and the 5-D patch embedding are all in, flattened to 2-D.
    by_name = {t.name: t for t in tiny_report.tensors}
    assert by_name["lm_head.weight"].rows == 151936 and by_name["model.embed_tokens.weight"].cols == 64
    patch = by_name["visual.patch_embed.proj.weight"]
    assert patch.shape == [32, 3, 2, 14, 14] and (patch.rows, patch.cols) == (32, 3 * 2 * 14 * 14)
    skipped = {s.name: s.reason for s in tiny_report.skipped}
    assert set(skipped) == set(base) - matrices
    assert skipped["model.layers.0.self_attn.q_proj.bias"] == "1-D"
    assert skipped["visual.merger.ln_q.weight"] == "1-D"


def test_norms_and_relative_norms_match_a_direct_computation(tiny_report, states):
    for t in tiny_report.tensors:
        b, i, r = (states[role][t.name].double().reshape(t.rows, t.cols) for role in ("base", "in", "rl"))
        for d, delta, ref in (("in", i - b, b), ("rl", r - i, i)):
            stats = t.deltas[d]
            assert stats.frobenius_norm == pytest.approx(torch.linalg.norm(delta).item(), rel=1e-12)
            assert stats.relative_norm == pytest.approx(
                (torch.linalg.norm(delta) / torch.linalg.norm(ref)).item(), rel=1e-12
            )


def test_singular_values_agree_with_svdvals_on_every_matrix(tiny_report, states):
    worst = 0.0
    for t in tiny_report.tensors:
        b, i, r = (states[role][t.name].double().reshape(t.rows, t.cols) for role in ("base", "in", "rl"))
        for d, delta in (("in", i - b), ("rl", r - i)):
            expected = torch.linalg.svdvals(delta)
            ours = tiny_report.spectra[t.name][d]
            assert ours.shape == expected.shape, t.name
            # No singular value of these deltas is near the zero tolerance, so all of them must agree.
            assert expected[-1] > 2 * ZERO_RTOL * expected[0], t.name
            rel = ((ours - expected).abs() / expected).max().item()
            worst = max(worst, rel)
            assert rel < 1e-4, (t.name, d, rel)
            # The metrics re-derived from the reference spectrum.
            stats = t.deltas[d]
            p = expected / expected.sum()
            assert stats.spectral_norm == pytest.approx(expected[0].item(), rel=1e-4)
            assert stats.nuclear_norm == pytest.approx(expected.sum().item(), rel=1e-4)
            assert stats.stable_rank == pytest.approx((delta.square().sum() / expected[0] ** 2).item(), rel=1e-4)
            assert stats.effective_rank == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-4)
            assert stats.condition_number == pytest.approx((expected[0] / expected[-1]).item(), rel=1e-4)
            k = min(50, expected.numel())
            assert stats.log_volume_topk == pytest.approx(expected[:k].log().sum().item(), rel=1e-4, abs=1e-4)
            assert stats.topk_singular_values == pytest.approx(expected[:k].tolist(), rel=1e-4)
    assert worst < 1e-4


def test_gram_route_on_rank_deficient_and_zero_matrices():
    torch.manual_seed(0)
    m, n, rank = 3000, 40, 25
    u, _ = torch.linalg.qr(torch.randn(m, n, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    sigma = torch.zeros(n, dtype=torch.float64)
    sigma[:rank] = torch.logspace(0, -3, rank, dtype=torch.float64)
    matrix = (u * sigma) @ v.T
    for a in (matrix, matrix.T):  # tall and wide
        ours = singular_values(a)
        assert torch.allclose(ours[:rank], sigma[:rank], rtol=1e-8, atol=0)
        assert (ours[rank:] == 0).all()  # below the tolerance: reported as exact zeros
        metrics = spectral_metrics(ours, float(a.square().sum()), topk=50)
        assert metrics["numerical_rank"] == rank
        assert metrics["condition_number"] == pytest.approx(1e3, rel=1e-6)  # smallest nonzero sigma, not 0
        assert metrics["log_volume_topk"] == pytest.approx(sigma[:rank].log().sum().item(), rel=1e-8)
    zero = spectral_metrics(singular_values(torch.zeros(50, 20)), 0.0, topk=5)
    assert zero["condition_number"] == math.inf
    assert zero["stable_rank"] == zero["effective_rank"] == zero["nuclear_norm"] == 0.0
    assert zero["topk_singular_values"] == [0.0] * 5


# -- checkpoints that are sharded or named differently -----------------------------------------------


def test_sharded_and_hf5_named_checkpoints_give_identical_results(tiny_trio, tiny_report, states, tmp_path):
    # Base split into two shards with an index, as on the hub.
    names = sorted(states["base"])
    sharded = tmp_path / "base_sharded"
    sharded.mkdir()
    shutil.copy(tiny_trio["base"] / "config.json", sharded / "config.json")
    weight_map = {}
    for k, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        file = f"model-{k + 1:05d}-of-00002.safetensors"
        save_file({n: states["base"][n] for n in part}, str(sharded / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    # RL saved under the transformers-5 module names (model.language_model.layers.*, model.visual.*).
    layout = layout_of_checkpoint(str(tiny_trio["rl"]))
    hf5 = _variant(tiny_trio["rl"], tmp_path / "rl_hf5", {layout.rename(n, "hf5"): t for n, t in states["rl"].items()})
    assert layout_of_checkpoint(str(hf5)).naming_scheme == "hf5"

    report = analyze_deltas(sharded, tiny_trio["in"], hf5, keep_spectra=False, progress=False)
    assert _records(report) == _records(tiny_report)
    assert report.summaries == tiny_report.summaries


# -- bad input ----------------------------------------------------------------------------------------


def test_nan_is_an_error_naming_the_tensor_and_nothing_is_written(tiny_trio, states, tmp_path):
    bad = dict(states["rl"])
    bad["model.layers.5.mlp.up_proj.weight"] = bad["model.layers.5.mlp.up_proj.weight"].clone()
    bad["model.layers.5.mlp.up_proj.weight"][3, 7] = float("nan")
    rl = _variant(tiny_trio["rl"], tmp_path / "rl_nan", bad)
    out = tmp_path / "results" / "delta"
    with pytest.raises(FrankensteinError, match=r"model\.layers\.5\.mlp\.up_proj\.weight in RL .* 1 NaN/Inf value"):
        analyze_deltas(tiny_trio["base"], tiny_trio["in"], rl, out, progress=False)
    assert not out.exists()
    assert not (tmp_path / "results").exists() or list((tmp_path / "results").iterdir()) == []


@pytest.mark.cli
def test_cli_inf_in_base_fails_with_one_line_and_writes_nothing(tiny_trio, states, tmp_path):
    bad = dict(states["base"])
    bad["visual.blocks.1.attn.qkv.weight"] = bad["visual.blocks.1.attn.qkv.weight"].clone()
    bad["visual.blocks.1.attn.qkv.weight"][0, :4] = float("inf")
    base = _variant(tiny_trio["base"], tmp_path / "base_inf", bad)
    out = tmp_path / "out"
    result = run_cli(
        [
            cli_path("frankenstein"),
            "delta",
            "--base",
            str(base),
            "--in",
            str(tiny_trio["in"]),
            "--rl",
            str(tiny_trio["rl"]),
            "--out",
            str(out),
            "--quiet",
            "--filter",
            r"^visual\.",
        ]
    )
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()
    assert len(message) == 1
    assert "visual.blocks.1.attn.qkv.weight in Base" in message[0] and "4 NaN/Inf values" in message[0]
    assert list(tmp_path.iterdir()) == [base]


def test_different_layer_counts_are_an_error(tiny_trio, states, tmp_path):
    fewer = {n: t for n, t in states["in"].items() if not n.startswith("model.layers.7.")}

    def seven_layers(config):
        config["text_config"]["num_hidden_layers"] = 7

    inn = _variant(tiny_trio["in"], tmp_path / "in7", fewer, seven_layers)
    for allow in (False, True):
        with pytest.raises(FrankensteinError, match="Base has decoder layers 8 but IN .* has 7"):
            analyze_deltas(tiny_trio["base"], inn, tiny_trio["rl"], allow_missing=allow, progress=False)


@pytest.mark.cli
def test_missing_tensor_is_an_error_unless_allowed(tiny_trio, states, tmp_path):
    gone = "model.layers.2.mlp.up_proj.weight"
    inn = _variant(tiny_trio["in"], tmp_path / "in_missing", {n: t for n, t in states["in"].items() if n != gone})
    reshaped = dict(states["rl"])
    reshaped["visual.merger.mlp.2.weight"] = reshaped["visual.merger.mlp.2.weight"][:32].clone()
    rl = _variant(tiny_trio["rl"], tmp_path / "rl_shape", reshaped)
    args = [
        cli_path("frankenstein"),
        "delta",
        "--base",
        str(tiny_trio["base"]),
        "--in",
        str(inn),
        "--rl",
        str(rl),
        "--metrics",
        "energy",
        "--no-plots",
        "--quiet",
    ]

    failed = run_cli(args + ["--out", str(tmp_path / "strict")])
    assert failed.returncode == 2
    assert f"{gone}: missing in IN" in failed.stderr
    assert "visual.merger.mlp.2.weight: shapes differ: Base [64, 128], IN [64, 128], RL [32, 128]" in failed.stderr
    assert "--allow-missing" in failed.stderr
    assert not (tmp_path / "strict").exists()

    out = tmp_path / "lenient"
    ok = run_cli(args + ["--out", str(out), "--allow-missing"])
    assert ok.returncode == 0, ok.stderr
    assert f"{gone}: missing in IN" in ok.stdout
    data = json.loads((out / "delta.json").read_text())
    assert {m["name"] for m in data["mismatched"]} == {gone, "visual.merger.mlp.2.weight"}
    names = {row["name"] for row in csv.DictReader(open(out / "tensors.csv"))}
    assert gone not in names and "model.layers.2.mlp.gate_proj.weight" in names
    assert data["tensors"][0]["deltas"]["rl"]["stable_rank"] is None  # energy only: no spectral metrics


def test_bad_options(tiny_trio, tmp_path):
    args = (tiny_trio["base"], tiny_trio["in"], tiny_trio["rl"])
    with pytest.raises(FrankensteinError, match="--metrics"):
        analyze_deltas(*args, metrics="energy,rank", progress=False)
    with pytest.raises(FrankensteinError, match="matches no tensor"):
        analyze_deltas(*args, filter="no_such_tensor", progress=False)
    with pytest.raises(FrankensteinError, match="not a valid regular expression"):
        analyze_deltas(*args, filter="(", progress=False)
    with pytest.raises(FrankensteinError, match="cuts must satisfy"):
        analyze_deltas(*args, cuts=(5, 3), progress=False)
    (tmp_path / "exists").mkdir()
    with pytest.raises(FrankensteinError, match="already exists"):
        analyze_deltas(*args, tmp_path / "exists", progress=False)


# -- the command line ---------------------------------------------------------------------------------


@pytest.mark.cli
def test_cli_end_to_end(tiny_trio, tiny_report, tmp_path):
    out = tmp_path / "delta"
    result = run_cli(
        [
            cli_path("frankenstein"),
            "delta",
            "--base",
            str(tiny_trio["base"]),
            "--in",
            str(tiny_trio["in"]),
            "--rl",
            str(tiny_trio["rl"]),
            "--out",
            str(out),
            "--topk",
            "5",
            "--cuts",
            "3",
            "6",
            "--filter",
            r"^(model\.layers|visual)\.",
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "B/s" in result.stderr  # the progress bar reports bytes per second
    for name in ("delta.json", "tensors.csv", "layers.csv", "spectra.npz"):
        assert (out / name).stat().st_size > 0, name
    for png in ("energy_per_layer.png", "rank_per_layer.png", "spectra.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []

    data = json.loads((out / "delta.json").read_text())
    assert data["meta"]["options"]["topk"] == 5 and data["meta"]["options"]["cuts"] == [3, 6]
    assert data["meta"]["layout"]["blocks"] == {"early": [0, 3], "mid": [3, 6], "late": [6, 8]}
    assert data["meta"]["packages"]["torch"] == torch.__version__
    assert data["meta"]["models"]["rl"]["source"] == str(tiny_trio["rl"])
    assert all(len(t["deltas"]["rl"]["topk_singular_values"]) == 5 for t in data["tensors"])
    names = {t["name"] for t in data["tensors"]}
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" not in names  # filtered out
    assert "visual.merger.mlp.0.weight" in names
    # Same numbers as the Python API on the same tensors.
    full = {t.name: t for t in tiny_report.tensors}
    for t in data["tensors"]:
        assert t["deltas"]["rl"]["energy"] == pytest.approx(full[t["name"]].deltas["rl"].energy, rel=1e-12)
        assert t["deltas"]["rl"]["condition_number"] == pytest.approx(
            full[t["name"]].deltas["rl"].condition_number, rel=1e-9
        )

    rows = list(csv.DictReader(open(out / "tensors.csv")))
    assert {r["name"] for r in rows} == names
    layers = list(csv.DictReader(open(out / "layers.csv")))
    assert [int(r["unified_index"]) for r in layers] == list(range(-2, 9)) and len(layers) == 11
    assert {r["block"] for r in layers if r["part"] == "decoder_layer"} == {"early", "mid", "late"}
    assert "blocks by dRL relative norm" in result.stdout

    again = run_cli(
        [
            cli_path("frankenstein"),
            "delta",
            "--base",
            str(tiny_trio["base"]),
            "--in",
            str(tiny_trio["in"]),
            "--rl",
            str(tiny_trio["rl"]),
            "--out",
            str(out),
        ]
    )
    assert again.returncode == 2 and "already exists" in again.stderr


# -- the header walk every reader of checkpoints goes through ------------------------------------------


def _headers_by_hand(file):
    """A safetensors header read by hand: 8-byte little-endian length, then JSON (names, dtypes, shapes, offsets)."""
    import struct

    with open(file, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    return sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])  # data order


def test_tensor_index_reads_headers_of_plain_and_sharded_checkpoints(tiny_trio, states, tmp_path):
    from surgery.sources import tensor_index, tensor_names

    names = sorted(states["rl"])
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(tiny_trio["rl"] / "config.json", sharded / "config.json")
    # Index order differs from file-name order; in the second shard the last name is float32, which
    # safetensors stores before the bf16 ones, so data order differs from name order there.
    parts = {"b-00001.safetensors": names[len(names) // 2 :], "a-00002.safetensors": names[: len(names) // 2]}
    odd = parts["a-00002.safetensors"][-1]
    state = {**states["rl"], odd: states["rl"][odd].float()}
    for file, part in parts.items():
        save_file({n: state[n] for n in part}, str(sharded / file), metadata={"format": "pt"})
    weight_map = {n: file for file, part in parts.items() for n in part}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    for folder, files in ((tiny_trio["rl"], ["model.safetensors"]), (sharded, list(parts))):
        expected = [(n, (folder / f, tuple(h["shape"]), h["dtype"])) for f in files for n, h in _headers_by_hand(folder / f)]
        got = [(n, (e.file, e.shape, e.dtype)) for n, e in tensor_index(folder).items()]
        assert got == expected, folder  # same entries, in disk order
        assert tensor_names(folder) == {n: f for n, (f, _, _) in expected}
    assert [n for n, e in tensor_index(sharded).items() if e.file.name == "a-00002.safetensors"][0] == odd
    assert tensor_index(sharded)[odd].dtype == "F32" and tensor_index(tiny_trio["rl"])[odd].dtype == "BF16"
    assert {n: e.shape for n, e in tensor_index(sharded).items()} == {n: tuple(t.shape) for n, t in states["rl"].items()}

    # A hub snapshot resolved without weights has the index only: names still come from it.
    (sharded / "b-00001.safetensors").rename(tmp_path / "moved.safetensors")
    assert set(tensor_names(sharded)) == set(names)
    with pytest.raises(FrankensteinError, match=r"shard b-00001.safetensors named in model.safetensors.index.json is missing"):
        tensor_index(sharded)


def test_tensor_index_corrupt_header_is_one_line(tiny_trio, tmp_path):
    from surgery.sources import tensor_index

    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(tiny_trio["rl"] / "config.json", bad / "config.json")
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(FrankensteinError, match=r"model\.safetensors is not a readable safetensors file \(") as err:
        tensor_index(bad)
    assert "\n" not in str(err.value)


# -- the authors' per-layer aggregates ------------------------------------------------------------


def test_authors_aggregates_equal_a_plain_loop_over_their_selection(tiny_report, states, tiny_trio):
    """The authors' aggregates (analysis/delta/authors.py) == their scripts' rule written out here.

    Their selection by name (a weight, not a norm, of a vision block, the merger or a decoder layer),
    the unified index by regex (vision block j -> j - V, merger 0, decoder layer i -> i + 1), norms and
    singular values by torch in float64, relative norms against the IN weight for both deltas,
    log-volume sum(log(sigma + 1e-12)) over the top 50; then plain means and sums per layer.
    """
    import re

    depth = json.loads((tiny_trio["base"] / "config.json").read_text())["vision_config"]["depth"]
    base, inn, rl = states["base"], states["in"], states["rl"]
    per_layer: dict[int, list[dict]] = {}
    for name in base:
        if "weight" not in name or "norm" in name.lower():
            continue
        if m := re.search(r"visual\.blocks\.(\d+)\.", name):
            layer = int(m.group(1)) - depth
        elif "merger" in name:
            layer = 0
        elif m := re.search(r"(?:^|\.)layers\.(\d+)\.", name):
            layer = int(m.group(1)) + 1
        else:
            continue
        b, i, r = (t[name].double() for t in (base, inn, rl))
        entry = {}
        for d, delta in (("in", i - b), ("rl", r - i)):
            entry[d] = {"fro": float(delta.norm()), "rel": float(delta.norm()) / (float(i.norm()) + 1e-8)}
            if delta.dim() >= 2:
                sigma = torch.linalg.svdvals(delta.flatten(1))
                entry[d].update(sigma1=float(sigma[0]), logvol=float(torch.log(sigma[:50] + 1e-12).sum()))
        per_layer.setdefault(layer, []).append(entry)

    got = {layer.key: layer for layer in tiny_report.authors_per_layer}
    assert sorted(got) == sorted(per_layer) == list(range(-depth, 9))
    assert got[0].n_tensors == 3 and got[0].n_matrices == 2  # the merger's 1-D ln_q counts in norms, not spectra
    assert [t.name for t in tiny_report.authors_only_tensors] == ["visual.merger.ln_q.weight"]
    for layer, entries in per_layer.items():
        for d in ("in", "rl"):
            stats = got[layer].deltas[d]
            matrices = [e[d] for e in entries if "sigma1" in e[d]]
            expected = {
                "fro_norm_mean": sum(e[d]["fro"] for e in entries) / len(entries),
                "fro_norm_sum": sum(e[d]["fro"] for e in entries),
                "relative_norm_mean": sum(e[d]["rel"] for e in entries) / len(entries),
                "spectral_norm_mean": sum(m["sigma1"] for m in matrices) / len(matrices),
                "log_volume_mean": sum(m["logvol"] for m in matrices) / len(matrices),
            }
            for name, value in expected.items():
                assert getattr(stats, name) == pytest.approx(value, rel=1e-6), (layer, d, name)
    # The planted RL update stands out in the authors' aggregates too: mid and late decoder layers (2/3/3 blocks).
    rl_rel = {k: got[k].deltas["rl"].relative_norm_mean for k in got}
    assert min(rl_rel[k] for k in range(3, 9)) > 10 * max(rl_rel[k] for k in range(-depth, 3))


def test_authors_aggregates_are_written_beside_the_projects(tiny_trio, tmp_path):
    out = tmp_path / "delta"
    report = analyze_deltas(tiny_trio["base"], tiny_trio["in"], tiny_trio["rl"], out, metrics="energy", plots=False, progress=False)
    stored = json.loads((out / "delta.json").read_text())
    assert [row["key"] for row in stored["authors_per_layer"]] == [layer.key for layer in report.authors_per_layer]
    assert stored["summaries"]["unified_layer"]  # the project's summaries stay
    with open(out / "layers_authors.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["unified_index"]) for r in rows] == [layer.key for layer in report.authors_per_layer]
    first = report.authors_per_layer[0].deltas["rl"]
    assert float(rows[0]["rl_fro_norm_sum"]) == pytest.approx(first.fro_norm_sum)
    assert rows[0]["rl_spectral_norm_mean"] == "" and first.spectral_norm_mean is None  # energy only: no spectra


# -- other families: Qwen3-VL (DeepStack mergers placed and named) and InternVL ---------------------

# family -> (trio fixture, planted block, vision blocks V, tensor-name patterns -> (part, unified index from the match))
FAMILY_PARTS = {
    "qwen3_vl": ("tiny_qwen3_vl", "late", 3, [
        (r"model\.language_model\.layers\.(\d+)\.", "decoder_layer", lambda i: i + 1),
        (r"model\.visual\.deepstack_merger_list\.(\d+)\.", "deepstack_merger", lambda k: 0),
        (r"model\.visual\.merger\.", "projector", lambda: 0),
        (r"model\.visual\.blocks\.(\d+)\.", "vision_block", lambda j: j - 3),
    ]),
    "internvl": ("tiny_internvl", "mid", 2, [
        (r"language_model\.model\.layers\.(\d+)\.", "decoder_layer", lambda i: i + 1),
        (r"multi_modal_projector\.", "projector", lambda: 0),
        (r"vision_tower\.encoder\.layer\.(\d+)\.", "vision_block", lambda j: j - 2),
    ]),
}


@pytest.mark.parametrize("family", list(FAMILY_PARTS))
def test_other_families_place_every_tensor_and_find_the_planted_block(family, request, tmp_path):
    """Each tensor's part and unified index against the family's names written out here; the DeepStack
    mergers sit with the projector at unified index 0 under their own part and index; the planted block
    carries the RL energy; energies per part equal a direct sum over the safetensors."""
    import re

    fixture, planted, vision_blocks, patterns = FAMILY_PARTS[family]
    trio = request.getfixturevalue(fixture)
    report = analyze_deltas(trio["base"], trio["in"], trio["rl"], tmp_path / "delta", metrics="energy", progress=False)
    for t in report.tensors:
        for pattern, part, unified in patterns:
            m = re.match(pattern, t.name)
            if m:
                assert (t.part, t.unified_index) == (part, unified(*map(int, m.groups()))), t.name
                if part == "deepstack_merger":
                    assert (t.index, t.section, t.local_name) == (int(m.group(1)), "projector", t.name[m.end():])
                break
        else:
            assert t.unified_index is None, t.name  # embeddings, lm_head, patch / position embeddings
    assert report.block_ranking["rl"][0] == planted
    states = {role: load_file(str(trio[role] / "model.safetensors")) for role in ("in", "rl")}
    for part, summary in report.summary("part").items():
        names = [t.name for t in report.tensors if t.part == part]
        energy = sum((states["rl"][n].double() - states["in"][n].double()).square().sum().item() for n in names)
        assert summary.deltas["rl"].energy == pytest.approx(energy, rel=1e-9), part
    layers = {int(r["unified_index"]): r for r in csv.DictReader((tmp_path / "delta" / "layers.csv").open())}
    assert layers[0]["part"] == "projector" and sorted(layers) == list(range(-vision_blocks, 7))
    mergers = report.meta["layout"].get("deepstack_mergers", [])
    if family == "qwen3_vl":
        assert {t.index for t in report.tensors if t.part == "deepstack_merger"} == {0, 1, 2}
        assert [(m["from_vision_block"], m["added_after_decoder_layer"]) for m in mergers] == [(0, 0), (1, 1), (2, 2)]
    else:
        assert mergers == []
