"""Block freezing: the names cover exactly the parameters of the chosen decoder block.

Expected names are re-derived from module identity: a parameter belongs to the block iff it is one
of the parameters of the decoder layer modules in the block's layer range.
"""

from __future__ import annotations

import re

import pytest

from conftest import cli_path, run_cli
from surgery.freeze import block_parameter_names, block_regex, freeze_block
from surgery.loading import load_model
from surgery.sources import tensor_names

# (block, cuts, layer range) on the 8-layer tiny trio: thirds are 2/3/3.
BLOCKS = [("early", None, range(0, 2)), ("mid", None, range(2, 5)), ("late", (3, 6), range(6, 8))]


@pytest.fixture(scope="module")
def loaded(tiny_trio):
    return load_model(str(tiny_trio["in"]), dtype="float32")


def expected_names(model, layers: range) -> list[str]:
    block_params = {id(p) for i in layers for p in model.model.language_model.layers[i].parameters()}
    return [n for n, p in model.named_parameters() if id(p) in block_params]


@pytest.mark.parametrize(("block", "cuts", "layers"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_names_and_regex_cover_exactly_the_block(block, cuts, layers, loaded, tiny_trio):
    model, layout = loaded
    want = expected_names(model, layers)
    assert len(want) == 12 * len(layers)  # 12 tensors per Qwen2.5-VL decoder layer
    assert block_parameter_names(model, block, cuts=cuts) == want
    # From the checkpoint alone (meta-device model): the same names.
    assert block_parameter_names(str(tiny_trio["in"]), block, cuts=cuts) == want

    regex = re.compile(block_regex(layout, block, cuts=cuts))
    all_names = [n for n, _ in model.named_parameters()]
    for match in (regex.search, regex.match, regex.fullmatch):
        assert [n for n in all_names if match(n)] == want
    wrapped = [f"module.{n}" for n in all_names]  # DDP-style prefix
    assert [n for n in wrapped if regex.search(n)] == [f"module.{n}" for n in want]


def test_freeze_block_sets_requires_grad_only_on_the_block(tiny_trio):
    model, _ = load_model(str(tiny_trio["in"]), dtype="float32")
    assert all(p.requires_grad for p in model.parameters())
    frozen = freeze_block(model, "mid")
    assert frozen == expected_names(model, range(2, 5))
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == frozen


@pytest.mark.cli
def test_cli_list_regex_and_checkpoint_names(loaded, tiny_trio):
    model, layout = loaded
    base = [cli_path("frankenstein"), "freeze-params", str(tiny_trio["in"]), "--block", "late", "--cuts", "3", "6"]
    result = run_cli(base)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected_names(model, range(6, 8))
    assert "24 parameters in decoder layers 6-7 (late)" in result.stderr

    result = run_cli(base + ["--format", "regex"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == block_regex(layout, "late", cuts=(3, 6))

    # On-disk names: exactly the checkpoint tensors of layers 6 and 7.
    result = run_cli(base + ["--scheme", "checkpoint"])
    on_disk = [n for n in tensor_names(tiny_trio["in"]) if re.match(r"model\.layers\.[67]\.", n)]
    assert sorted(result.stdout.splitlines()) == sorted(on_disk) and len(on_disk) == 24

    result = run_cli([cli_path("frankenstein"), "freeze-params", str(tiny_trio["in"]), "--block", "middle"])
    assert result.returncode == 2
    assert result.stderr.strip() == "frankenstein: error: unknown block 'middle'; blocks are early, mid, late"


# family -> (trio fixture, how its checkpoint names decoder layer tensors on disk); both have 6 layers: thirds 2/2/2.
FAMILIES = {"qwen3_vl": ("tiny_qwen3_vl", r"model\.language_model\.layers\.(\d+)\."),
            "internvl": ("tiny_internvl", r"language_model\.model\.layers\.(\d+)\.")}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_other_families_freeze_exactly_the_block(family, request):
    fixture, on_disk_layer = FAMILIES[family]
    trio = request.getfixturevalue(fixture)
    model, layout = load_model(str(trio["in"]), dtype="float32")
    want = expected_names(model, range(2, 4))  # mid
    assert want and block_parameter_names(model, "mid") == want == block_parameter_names(str(trio["in"]), "mid")
    regex = re.compile(block_regex(layout, "mid"))
    assert [n for n, _ in model.named_parameters() if regex.fullmatch(n)] == want
    on_disk = [n for n in tensor_names(trio["in"]) if (m := re.match(on_disk_layer, n)) and int(m.group(1)) in (2, 3)]
    assert sorted(block_parameter_names(str(trio["in"]), "mid", scheme="checkpoint")) == sorted(on_disk)
    assert freeze_block(model, "mid") == want and [n for n, p in model.named_parameters() if not p.requires_grad] == want
