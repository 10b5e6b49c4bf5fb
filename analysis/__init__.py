"""Analyses of the Frankenstein method: weight deltas across Base -> IN -> RL, and the reading of
harness results into per-layer curves, tables and plots."""
