"""`frankenstein run CONFIG.yaml`: a whole Frankenstein analysis of one recipe, resumable, with a report.

    config.py    the pydantic config (and the example configs in examples/)
    stages.py    the stages as a table (delta, merges, vision_swap, reasoning, reasoning_logprob,
                 transfer, attention)
    harness.py   lmms-eval driven through its Python API, results saved as its CLI saves them
    data.py      local copies of the benchmark datasets for offline machines
    runner.py    order, resume, run.json, the report at the end
"""
