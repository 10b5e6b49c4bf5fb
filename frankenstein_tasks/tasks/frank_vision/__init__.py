"""lmms-eval tasks frank_vision_*: visual-token-swapping probe pairs (see utils.py)."""
