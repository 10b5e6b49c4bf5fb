"""Shared fixtures: tiny offline checkpoints (built once per session) and CLI helpers.

Everything here runs without a GPU and without any model or dataset hub.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# No test may reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist each worker (and every program it starts) gets its share of the cores, not all of
# them: N workers x all-core torch threads would only fight over the same cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


# The files that take longest (minutes of CLI runs and demos each, measured on 2 cores), handed to
# the pytest-xdist workers first: a long file started last would leave one worker busy alone at the
# end. Only the order changes; a file missing here simply runs after them.
LONGEST_FILES_FIRST = (
    "test_bad_input.py", "test_merge.py", "test_run.py", "test_reasoning.py", "test_demo.py",
    "test_family_runs.py", "test_paper_protocol.py", "test_organism.py", "test_lmms_frankenstein.py",
    "test_loglikelihood.py", "test_transfer_lmms.py", "test_vision_lmms.py", "test_lmms_no_setup.py",
)


def pytest_collection_modifyitems(config, items):
    """Longest files first (see LONGEST_FILES_FIRST; with `--no-loadscope-reorder` xdist keeps this
    order). The retrain tier (`@pytest.mark.retrain`: organisms trained from scratch, minutes each)
    runs only when selected (`pytest -m retrain --dist load`: its tests share one file, and the default
    file-per-worker scheduling would run them all on one worker); every other test runs under the plain command."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order
    if "retrain" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="retrain tier: select it with -m retrain --dist load")
    for item in items:
        if "retrain" in item.keywords:
            item.add_marker(skip)


def cli_path(name: str) -> str:
    """A console script installed next to this interpreter (the venv's bin/)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} is not installed; run the README install command")
    return found


def run_cli(args: list[str], *, env: dict | None = None, timeout: float = 600, cwd=None) -> subprocess.CompletedProcess:
    """Run a real command line; returns the completed process (text mode)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)


@pytest.fixture(scope="session")
def tiny_trio(tmp_path_factory) -> dict[str, Path]:
    """Qwen2.5-VL Base / IN / RL, 8 layers (blocks 2/3/3), RL deltas planted in mid and late."""
    from surgery.tiny import TinySpec, make_tiny

    out = tmp_path_factory.mktemp("tiny") / "trio"
    return make_tiny(out, TinySpec(layers=8, vision_depth=2, seed=0, plant=("mid", "late")))


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tmp_path_factory) -> dict[str, Path]:
    """Qwen2-VL trio, 6 layers, 3 vision blocks."""
    from surgery.tiny import TinySpec, make_tiny

    out = tmp_path_factory.mktemp("tiny2vl") / "trio"
    return make_tiny(out, TinySpec(arch="qwen2_vl", layers=6, vision_depth=3, seed=1))


@pytest.fixture(scope="session")
def tiny_qwen3_vl(tmp_path_factory) -> dict[str, Path]:
    """Qwen3-VL trio, 6 layers (blocks 2/2/2), 3 vision blocks feeding 3 DeepStack mergers, RL deltas planted in late."""
    from surgery.tiny import TinySpec, make_tiny

    out = tmp_path_factory.mktemp("tiny3vl") / "trio"
    return make_tiny(out, TinySpec(arch="qwen3_vl", layers=6, vision_depth=3, seed=0, plant=("late",)))


@pytest.fixture(scope="session")
def tiny_internvl(tmp_path_factory) -> dict[str, Path]:
    """InternVL trio (Qwen3 decoder, InternViT tiles), 6 layers, 2 vision blocks, RL deltas planted in mid."""
    from surgery.tiny import TinySpec, make_tiny

    out = tmp_path_factory.mktemp("tinyinternvl") / "trio"
    return make_tiny(out, TinySpec(arch="internvl", layers=6, vision_depth=2, seed=0, plant=("mid",)))


# Trio fixture of each vision-language family whose invariants are pinned per family (tests/README.md).
FAMILY_TRIOS = {"qwen2_5_vl": "tiny_trio", "qwen3_vl": "tiny_qwen3_vl", "internvl": "tiny_internvl"}


@pytest.fixture(scope="session")
def tiny_qwen2_text(tmp_path_factory) -> Path:
    """A text-only Qwen2 checkpoint (the lm-eval path), 4 layers, with the real Qwen tokenizer and chat template."""
    import json

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from surgery.tiny import GENERATION_CONFIG, TOKEN_IDS, qwen_tokenizer

    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=151936, **TOKEN_IDS, tie_word_embeddings=False,
    )
    out = tmp_path_factory.mktemp("qwen2") / "text"
    Qwen2ForCausalLM(config).save_pretrained(out)
    qwen_tokenizer().save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    return out
