"""A model dispatched by accelerate gives every probe's answers unchanged (models larger than one device).

The checkpoint is loaded twice: plainly, and with a `device_map` that offloads the vision tower, the
projector, the embeddings, the lm_head and every other decoder layer to disk (their weights stay on
the meta device; accelerate's hooks read them from the checkpoint at each forward) and keeps the
rest on the CPU. That goes through the same hooks as a multi-GPU dispatch (`AlignDevicesHook`
moving inputs to each module's execution device); what only several GPUs can show, tensors
actually crossing devices between layers, is not exercised here (README: Models larger than one
device). Every probe runs on both models through `ProbeRunner`; the outputs must be identical.
"""

from __future__ import annotations

import pytest

from conftest import FAMILY_TRIOS
from lmms_tasks import dots
from surgery.loading import load_model, load_processor
from surgery.probes import ProbeConfig, ProbeRequest, ProbeRunner

PROBES = [
    {"probe": "none"},
    {"probe": "none", "ablate": "1"},
    {"probe": "visual_swap"},
    {"probe": "visual_swap", "swap_mode": "window", "window": 2},
    {"probe": "zero_ablation"},
    {"probe": "zero_ablation", "scoring": "logprob"},
    {"probe": "attention"},
]


def offload_map(model, layout) -> dict[str, str]:
    """Vision tower, projector, embeddings, lm_head and odd decoder layers on disk; the rest on the CPU."""
    text = layout.facts.modules.text_model[0]
    placement = {"lm_head": "disk"}
    for name, _ in model.model.named_children():
        if f"model.{name}" != text:
            placement[f"model.{name}"] = "disk"  # vision tower, projector
    for name, _ in layout.text_model(model).named_children():
        if name == "layers":
            placement.update({f"{text}.layers.{i}": "disk" if i % 2 else "cpu" for i in range(layout.num_layers)})
        else:
            placement[f"{text}.{name}"] = "disk" if name == "embed_tokens" else "cpu"
    return placement


def requests() -> list[ProbeRequest]:
    return [
        ProbeRequest(text="How many circles?", images=[dots(2)], source_images=[dots(5, "blue")],
                     max_new_tokens=5, reference_answer="There are 2."),
        ProbeRequest(text="Count the dots.", images=[dots(3, size=(84, 140))], source_images=[dots(1, size=(84, 140))],
                     max_new_tokens=5, reference_answer="3"),
        ProbeRequest(text="What is 2 + 3?", max_new_tokens=5, reference_answer="5"),
    ]


@pytest.mark.parametrize("family", list(FAMILY_TRIOS))
def test_every_probe_answers_the_same_when_dispatched_with_offload(family, request, tmp_path):
    path = request.getfixturevalue(FAMILY_TRIOS[family])["in"]
    plain, layout = load_model(str(path), dtype="float32")
    dispatched, dispatched_layout = load_model(
        str(path), dtype="float32", device_map=offload_map(plain, layout), offload_folder=tmp_path / "offload"
    )
    # Really dispatched: offloaded weights are on the meta device and every placed module has its hook.
    offloaded = [n for n, p in dispatched.named_parameters() if p.device.type == "meta"]
    assert any(".layers.1." in n for n in offloaded) and not any(".layers.0." in n for n in offloaded)
    assert all(hasattr(layer, "_hf_hook") for layer in dispatched_layout.decoder_layers(dispatched))
    assert dispatched_layout.describe() == layout.describe()

    processor = load_processor(str(path))
    pairs = requests()[:2]
    for settings in PROBES:
        config = ProbeConfig(**settings)
        asked = pairs if config.probe == "visual_swap" else requests()
        want = [o.model_dump() for o in ProbeRunner(plain, layout, processor, config).run(asked)]
        got = [o.model_dump() for o in ProbeRunner(dispatched, dispatched_layout, processor, config).run(asked)]
        assert got == want, settings
        if config.probe in ("visual_swap", "zero_ablation") and config.scoring == "generate":
            # The intervention changes some answer, so equal answers say more than "both did nothing".
            assert any(a != o["baseline"] for o in want for a in o["answers"]), settings
