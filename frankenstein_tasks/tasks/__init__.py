"""Task YAMLs for lmms-eval; this folder is added to its task search path by LMMS_EVAL_PLUGINS."""
