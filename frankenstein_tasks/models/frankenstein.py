"""`LMMS_EVAL_PLUGINS=frankenstein_tasks` finds the model here; the implementation lives in surgery."""

from surgery.lmms_model import Frankenstein

__all__ = ["Frankenstein"]
