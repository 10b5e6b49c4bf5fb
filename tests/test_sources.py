"""Model sources: clear one-line errors for bad paths, pickle-only folders and an unreachable hub."""

from __future__ import annotations

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
