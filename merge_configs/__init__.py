"""mergekit recipes for the block-spliced (Frankenstein) checkpoints, and their generator."""
