"""Reading harness results: errors for folders without results or without per-layer curves."""

from __future__ import annotations

import json

from conftest import cli_path, run_cli


def test_curves_needs_a_results_file(tmp_path):
    result = run_cli([cli_path("frankenstein"), "curves", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip() == f"frankenstein: error: no lmms-eval *_results.json at {tmp_path}"


def test_curves_of_a_plain_run_is_a_clear_error(tmp_path):
    plain = {"results": {"frank_vision_ocr": {"alias": "frank_vision_ocr", "accuracy,none": 0.5}}}
    path = tmp_path / "x_results.json"
    path.write_text(json.dumps(plain))
    result = run_cli([cli_path("frankenstein"), "curves", str(path), "-o", str(tmp_path / "out")])
    assert result.returncode == 2 and "holds no per-layer curves" in result.stderr
    assert not (tmp_path / "out").exists()


# -- the unified layer index of result files, from a Layout -------------------------------------------


def _results(path, model_args, layers=(0, 2, 5, 7)):
    curve = {"layers": list(layers), "value": [0.1 * k for k in layers], "stderr": [0.01] * len(layers), "n": 3}
    data = {"results": {"frank_vision_counting": {"change_rate,none": curve}}}
    if model_args is not None:
        data["config"] = {"model": "frankenstein", "model_args": model_args}
    path.write_text(json.dumps(data))
    return path


def test_layout_from_description_rebuilds_every_layout(tiny_trio, tiny_qwen2_vl, tiny_qwen2_text, tmp_path):
    from safetensors.torch import load_file, save_file

    from surgery.arch import layout_from_description, layout_of_checkpoint

    hf5 = tmp_path / "hf5"
    hf5.mkdir()
    (hf5 / "config.json").write_text((tiny_trio["rl"] / "config.json").read_text())
    rl = layout_of_checkpoint(str(tiny_trio["rl"]))
    save_file({rl.rename(n, "hf5"): t for n, t in load_file(str(tiny_trio["rl"] / "model.safetensors")).items()},
              str(hf5 / "model.safetensors"), metadata={"format": "pt"})
    for source, cuts in ((tiny_trio["rl"], (3, 6)), (hf5, None), (tiny_qwen2_vl["in"], None), (tiny_qwen2_text, (1, 3))):
        layout = layout_of_checkpoint(str(source))
        stored = json.loads(json.dumps(layout.describe(cuts)))  # as read back from a result file
        assert layout_from_description(stored) == layout, source
    assert layout_of_checkpoint(str(hf5)).naming_scheme == "hf5"


def test_layout_from_description_refuses_what_is_not_one(tiny_trio):
    import pytest

    from surgery.arch import layout_from_description, layout_of_checkpoint
    from surgery.errors import FrankensteinError

    good = layout_of_checkpoint(str(tiny_trio["rl"])).describe()
    cases = {
        "num_decoder_layers": ({k: v for k, v in good.items() if k != "num_decoder_layers"}, "not a layout description"),
        "model_type": ({**good, "model_type": "llama"}, "unsupported model_type 'llama'"),
        "scheme": ({**good, "naming_scheme": "hf6"}, "names scheme 'hf6'"),
        "no vision": ({**good, "num_vision_blocks": 0}, "0 vision blocks"),
        "not a dict": ([1, 2], "not a layout description"),
    }
    for case, (described, message) in cases.items():
        with pytest.raises(FrankensteinError, match=message):
            layout_from_description(described)


def test_layer_axis_from_a_stored_description(tiny_trio):
    from analysis.plots import LayerAxis
    from surgery.arch import layout_of_checkpoint

    # Tiny trio: 2 vision blocks, 8 decoder layers; by hand: block j -> j - 2, projector 0, layer i -> i + 1.
    axis = LayerAxis.from_description(json.loads(json.dumps(layout_of_checkpoint(str(tiny_trio["rl"])).describe((3, 6)))))
    assert axis.cuts == (3, 6)
    assert axis.blocks == {"early": (0, 3), "mid": (3, 6), "late": (6, 8)}
    assert axis.sections == {"vision": (-2.5, -0.5), "projector": (-0.5, 0.5), "llm": (0.5, 8.5)}
    assert axis.decoder_only().sections == {"llm": (0.5, 8.5)}
    assert axis.decoder_layer_positions == [1, 2, 3, 4, 5, 6, 7, 8]


def test_curves_are_placed_on_the_probed_models_layout(tiny_trio, tmp_path):
    import csv

    from analysis.harness import probed_axis, write_curves

    path = _results(tmp_path / "a_results.json", f"pretrained={tiny_trio['in']},device=cpu,probe=visual_swap")
    written = write_curves(path, tmp_path / "out")
    rows = list(csv.DictReader(open(written["csv"])))
    assert [(int(r["layer"]), int(r["unified_index"])) for r in rows] == [(0, 1), (2, 3), (5, 6), (7, 8)]
    assert written["change_rate"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A splice: IN's layout, and the cuts it was spliced at mark the blocks.
    spliced = _results(tmp_path / "b_results.json", f"in={tiny_trio['in']},rl={tiny_trio['rl']},splice=mid,cuts=3:5")
    assert probed_axis(spliced).blocks == {"early": (0, 3), "mid": (3, 5), "late": (5, 8)}


def test_curves_without_a_layout_are_a_clear_error(tiny_trio, tmp_path):
    import pytest

    from analysis.harness import write_curves
    from analysis.plots import LayerAxis
    from surgery.arch import layout_of_checkpoint
    from surgery.errors import FrankensteinError

    with pytest.raises(FrankensteinError, match="does not name the probed model .*pass --model"):
        write_curves(_results(tmp_path / "a_results.json", None), tmp_path / "a")
    gone = _results(tmp_path / "b_results.json", f"pretrained={tmp_path / 'moved'}")
    with pytest.raises(FrankensteinError, match="cannot read the layout of the probed model: no checkpoint folder .*pass --model"):
        write_curves(gone, tmp_path / "b")
    # Curves over layers the given model does not have: refused before anything is written.
    axis = LayerAxis.from_layout(layout_of_checkpoint(str(tiny_trio["in"])))
    with pytest.raises(FrankensteinError, match="decoder layer index 9 is out of range 0..7"):
        write_curves(_results(tmp_path / "c_results.json", None, layers=(0, 9)), tmp_path / "c", axis)
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))
