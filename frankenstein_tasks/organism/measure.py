"""What the organism does, measured with the surgery engine on held-out items.

Every number here is a greedy decode of a saved checkpoint (bf16, full vocabulary) through
`surgery.probes.ProbeRunner`, the engine the lmms-eval model and the demo use:

    accuracies      per held-out set, the share of right answers (`data.is_correct`)
    swap_curves     visual-token swap on counting pairs: change rate and source adoption per layer,
                    the model's accuracy on the source images, and the self-swap change rate
    ablation_curve  zero ablation on word problems: accuracy with each decoder layer ablated
    splice_scores   accuracy of IN, RL and the six IN/RL splices (in memory) on one set
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .data import Item, is_correct

MAX_NEW_TOKENS = 48  # the longest organism answer is ~30 tokens


def load(folder: str | Path) -> tuple[Any, Any, Any]:
    """(model, layout, processor) of a checkpoint folder, as saved (bf16), on the CPU."""
    from surgery.loading import load_model, load_processor

    model, layout = load_model(folder)
    return model, layout, load_processor(folder)


def _runner(model: Any, layout: Any, processor: Any, probe: str = "none") -> Any:
    from surgery.probes import ProbeConfig, ProbeRunner

    return ProbeRunner(model, layout, processor, ProbeConfig(probe=probe, max_batch_rows=64, default_max_new_tokens=MAX_NEW_TOKENS))


def _request(item: Item, source: Any = None) -> Any:
    from surgery.probes import ProbeRequest

    images = [item.image] if item.image is not None else []
    return ProbeRequest(item.prompt, images, source_images=None if source is None else [source])


def answers(model: Any, layout: Any, processor: Any, items: Sequence[Item]) -> list[str]:
    """Greedy answers of the unmodified model."""
    return [o.baseline for o in _runner(model, layout, processor).run([_request(it) for it in items])]


def accuracy(items: Sequence[Item], responses: Sequence[str]) -> float:
    return sum(is_correct(it, r) for it, r in zip(items, responses)) / max(1, len(items))


def accuracies(folder: str | Path, sets: dict[str, Sequence[Item]]) -> dict[str, float]:
    """Accuracy of one checkpoint on each named set."""
    model, layout, processor = load(folder)
    return {name: accuracy(items, answers(model, layout, processor, items)) for name, items in sets.items()}


def swap_curves(folder: str | Path, pair_folder: str | Path, n: int | None = None) -> dict[str, Any]:
    """Visual-token swap (probe=visual_swap, mode `from`) on a frank_vision pair folder."""
    from PIL import Image

    from frankenstein_tasks.vision.dataset import load_pairs
    from frankenstein_tasks.vision.scoring import is_correct as pair_correct
    from frankenstein_tasks.vision.scoring import normalize

    pairs = load_pairs(pair_folder).pairs[:n]
    task = pairs[0].task
    targets = [Image.open(p.target_image).convert("RGB") for p in pairs]
    sources = [Image.open(p.source_image).convert("RGB") for p in pairs]
    model, layout, processor = load(folder)

    def requests(images: list[Any], source_images: list[Any] | None) -> list[Any]:
        sources_ = source_images or [None] * len(pairs)
        return [_request(Item(task, p.prompt, "", "", image), source) for p, image, source in zip(pairs, images, sources_)]

    swap = _runner(model, layout, processor, "visual_swap")
    swapped = swap.run(requests(targets, sources))
    selfswap = swap.run(requests(targets, targets))
    on_source = _runner(model, layout, processor).run(requests(sources, None))

    def rate(hits: list[list[bool]]) -> list[float]:  # per layer, the share of pairs
        return [sum(h[i] for h in hits) / len(hits) for i in range(len(swapped[0].layers))]

    def changed(outputs: list[Any]) -> list[list[bool]]:
        return [[normalize(a) != normalize(o.baseline) for a in o.answers] for o in outputs]

    return {
        "task": task,
        "n": len(pairs),
        "layers": swapped[0].layers,
        "target_accuracy": sum(pair_correct(task, o.baseline, p.meta, "target") for o, p in zip(swapped, pairs)) / len(pairs),
        "source_accuracy": sum(pair_correct(task, o.baseline, p.meta, "source") for o, p in zip(on_source, pairs)) / len(pairs),
        "change_rate": rate(changed(swapped)),
        "source_adoption": rate([[pair_correct(task, a, p.meta, "source") for a in o.answers] for o, p in zip(swapped, pairs)]),
        "self_swap_change_rate": rate(changed(selfswap)),
    }


def ablation_curve(folder: str | Path, items: Sequence[Item]) -> dict[str, Any]:
    """Zero ablation of each decoder layer (probe=zero_ablation): accuracy per ablated layer."""
    model, layout, processor = load(folder)
    outputs = _runner(model, layout, processor, "zero_ablation").run([_request(it) for it in items])
    layers = outputs[0].layers
    return {
        "n": len(items),
        "layers": layers,
        "baseline_accuracy": accuracy(items, [o.baseline for o in outputs]),
        "accuracy": [accuracy(items, [o.answers[i] for o in outputs]) for i in range(len(layers))],
    }


def splice_scores(in_folder: str | Path, rl_folder: str | Path, items: Sequence[Item]) -> dict[str, float]:
    """Accuracy on `items` of IN, RL and each splice variant (RL blocks into IN, in memory)."""
    from surgery.loading import load_processor
    from surgery.splice import VARIANTS, load_spliced

    scores = {"in": accuracies(in_folder, {"x": items})["x"], "rl": accuracies(rl_folder, {"x": items})["x"]}
    for variant in VARIANTS:
        model, layout, early = load_spliced(in_folder, rl_folder, variant)
        scores[variant] = accuracy(items, answers(model, layout, load_processor(early), items))
    return scores
