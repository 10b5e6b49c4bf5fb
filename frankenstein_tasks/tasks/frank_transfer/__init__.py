"""lmms-eval tasks of the transferability benchmarks (METHOD.md 3) and the attention shift (5)."""
