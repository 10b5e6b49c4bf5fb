"""Model sources: clear one-line errors for bad paths, pickle-only folders and an unreachable hub."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from surgery.errors import FrankensteinError
from surgery.sources import resolve

from conftest import cli_path, run_cli


def test_local_folder_resolves(tiny_trio):
    assert resolve(str(tiny_trio["base"])) == tiny_trio["base"]


def test_missing_path(tmp_path):
    with pytest.raises(FrankensteinError, match="no checkpoint folder at"):
        resolve(str(tmp_path / "nope"))


def test_file_is_not_a_checkpoint(tiny_trio):
    with pytest.raises(FrankensteinError, match="is a file, not a checkpoint folder"):
        resolve(str(tiny_trio["base"] / "config.json"))


def test_folder_without_config(tmp_path):
    with pytest.raises(FrankensteinError, match="has no config.json"):
        resolve(str(tmp_path))


@pytest.fixture
def pickle_only(tiny_trio, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_trio["base"] / "config.json", folder / "config.json")
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    return folder


def test_pickle_only_folder_is_refused(pickle_only):
    with pytest.raises(FrankensteinError, match=r"only pickle weights \(pytorch_model.bin\).*--allow-pickle"):
        resolve(str(pickle_only))
    assert resolve(str(pickle_only), allow_pickle=True) == pickle_only


def test_pickle_only_folder_cli(pickle_only):
    refused = run_cli([cli_path("frankenstein"), "layout", str(pickle_only)])
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "--allow-pickle" in refused.stderr
    allowed = run_cli([cli_path("frankenstein"), "layout", str(pickle_only), "--allow-pickle"])
    assert allowed.returncode == 0, allowed.stderr
    assert "num_decoder_layers" in allowed.stdout


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(FrankensteinError, match="cannot reach the Hugging Face hub for Qwen/Qwen2.5-VL-7B-Instruct"):
        resolve("Qwen/Qwen2.5-VL-7B-Instruct")


def test_offline_hub_id_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FrankensteinError, match="not in the local Hugging Face cache"):
        resolve("OpenMMReasoner/OpenMMReasoner-RL")


def test_cli_errors_are_one_line(tmp_path, tiny_trio):
    """Each bad input reaches the check it is about (bad cuts on a real checkpoint, not on a hub id that
    fails first), and says so in one line."""
    cases = [
        (["layout", str(tmp_path / "missing")], "no checkpoint folder at"),
        (["layout", "Org/Model"], "Org/Model is not in the local Hugging Face cache"),
        (["layout", str(tiny_trio["base"]), "--cuts", "3", "2"], "0 < c1 < c2 < 8 (the number of decoder layers); got c1=3, c2=2"),
    ]
    for args, message in cases:
        result = run_cli([cli_path("frankenstein"), *args], env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("frankenstein: error:"), result.stderr
        assert message in lines[0], (args, lines[0])


# ---------------------------------------------------------------------------------------------
# fingerprint: the same weights or not
# ---------------------------------------------------------------------------------------------


def _flip_byte(path, offset: int) -> None:
    """Change one byte in place, keeping the file's size and modification time."""
    import os

    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _tensor_spans(path) -> dict[str, tuple[int, int]]:
    """Tensor name -> absolute [start, end) in the file, read with safetensors' own reader (not the fingerprint's)."""
    import json
    import struct

    from safetensors import safe_open

    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    offsets = json.loads(raw[8:8 + length])
    with safe_open(str(path), framework="pt") as handle:
        names = list(handle.keys())
    return {n: (8 + length + offsets[n]["data_offsets"][0], 8 + length + offsets[n]["data_offsets"][1]) for n in names}


def test_fingerprint_follows_the_content_not_the_name(tiny_trio, tmp_path):
    from surgery.sources import fingerprint, source_fingerprint

    folder = tmp_path / "model"
    shutil.copytree(tiny_trio["in"], folder)
    original = fingerprint(folder)
    assert original == fingerprint(tiny_trio["in"]) == source_fingerprint(str(folder))  # a copy: the same
    assert original != fingerprint(tiny_trio["rl"])
    (folder / "README.md").write_text("notes")  # decides no output
    assert fingerprint(folder) == original

    config = folder / "config.json"
    settings = json.loads(config.read_text())
    settings["text_config"]["rms_norm_eps"] *= 10  # decides every output
    config.write_text(json.dumps(settings))
    assert fingerprint(folder) != original
    shutil.copy(tiny_trio["in"] / "config.json", config)
    assert fingerprint(folder) == original


def test_fingerprint_sees_each_tensors_start_middle_and_end(tiny_trio, tmp_path):
    """One byte changed in place (size and mtime kept) at the start, middle or end of any tensor changes it."""
    from surgery.sources import fingerprint

    folder = tmp_path / "model"
    shutil.copytree(tiny_trio["in"], folder)
    weights = folder / "model.safetensors"
    original = fingerprint(folder)
    spans = _tensor_spans(weights)
    by_size = sorted(spans, key=lambda n: spans[n][1] - spans[n][0])
    chosen = {by_size[0], by_size[len(by_size) // 2], by_size[-1], "lm_head.weight"}  # a norm ... the largest
    for name in sorted(chosen):
        start, end = spans[name]
        for offset in (start, (start + end) // 2, end - 1):
            _flip_byte(weights, offset)
            assert fingerprint(folder) != original, (name, offset - start)
            _flip_byte(weights, offset)  # back
            assert fingerprint(folder) == original


def test_fingerprint_of_sharded_and_pickle_checkpoints(tiny_trio, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from surgery.sources import fingerprint

    state = load_file(tiny_trio["in"] / "model.safetensors")
    names = sorted(state)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(tiny_trio["in"] / "config.json", sharded)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2], "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, part in halves.items():
        save_file({n: state[n] for n in part}, sharded / file)
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {n: f for f, part in halves.items() for n in part}}))
    original = fingerprint(sharded)
    second = sharded / "model-00002-of-00002.safetensors"
    start, _ = _tensor_spans(second)[halves["model-00002-of-00002.safetensors"][-1]]
    _flip_byte(second, start)
    assert fingerprint(sharded) != original

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_trio["in"] / "config.json", pickled)
    torch.save({"w": torch.arange(1 << 20, dtype=torch.float32)}, pickled / "pytorch_model.bin")  # 4 MiB: sampled
    before = fingerprint(pickled)
    torch.save({"w": torch.arange(1 << 20, dtype=torch.float32).flip(0)}, pickled / "pytorch_model.bin")
    assert fingerprint(pickled) != before
