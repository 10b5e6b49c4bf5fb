"""Entry point for lmms-eval's model registry (group `lmms_eval.models`).

Kept free of heavy imports: lmms-eval loads every entry point when it starts.
"""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="frankenstein", simple_class_path="surgery.lmms_model.Frankenstein")
