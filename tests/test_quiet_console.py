"""`frankenstein run`'s console: the warnings its own choices cause are silenced during a harness call,
every other message passes, and everything is as before once the call is over (`run/quiet.py`)."""

from __future__ import annotations

import logging

import pytest

from frankenstein_tasks.hub_cache import cache_dataset
from frankenstein_tasks.run.quiet import silenced
from hub_data import GSM8K

CACHED = ("Using the latest cached version of the dataset since openai/gsm8k couldn't be found",
          "Found the latest cached dataset configuration 'main'")
GEN_KWARGS = "generation_kwargs specified through cli"


def test_datasets_offline_copy_messages_are_silenced_and_others_kept(tmp_path, caplog):
    import datasets

    cache = tmp_path / "datasets"
    cache_dataset("openai/gsm8k", "main", {"test": GSM8K}, cache_dir=cache)

    def load() -> str:
        caplog.clear()
        assert len(datasets.load_dataset("openai/gsm8k", "main", split="test", cache_dir=str(cache))) == len(GSM8K)
        return "\n".join(r.getMessage() for r in caplog.records)

    caplog.set_level(logging.WARNING)
    assert all(message in load() for message in CACHED)  # what datasets logs for the offline copy
    with silenced():
        quiet = load()
        logging.getLogger("datasets.load").warning("a real warning from datasets.load")
        kept = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(message in quiet for message in CACHED)
    assert "a real warning from datasets.load" in kept
    assert all(message in load() for message in CACHED)  # the filters are gone after the block


def test_lmms_eval_gen_kwargs_warning_is_silenced_and_its_errors_kept(capfd):
    from lmms_eval import evaluator

    def run() -> str:
        # lmms-eval warns about gen_kwargs, then fails to find the model: one message the run caused, one real.
        with pytest.raises(ValueError, match="no_such_model"):
            evaluator.simple_evaluate(model="no_such_model", tasks=["x"], gen_kwargs="max_new_tokens=4")
        out = capfd.readouterr()
        return out.out + out.err

    logger = evaluator.eval_logger
    assert GEN_KWARGS in run()
    with silenced():
        quiet = run()
    assert GEN_KWARGS not in quiet and "Failed to import model from 'no_such_model'" in quiet
    assert evaluator.eval_logger is logger and GEN_KWARGS in run()
