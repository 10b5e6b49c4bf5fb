"""Outcome records: how records of one item under two conditions pair up.

The frank_transfer tasks (METHOD.md 3) ask every item under one or two conditions (A: the real image
or the question alone; B: a black image, with or without a description). For each doc they hand
lmms-eval one *outcome record* per paired metric (`analysis.schema.OutcomeRecord`, declared there
once), which lmms-eval aggregates and also writes into the samples log, one line per item and condition::

    {"item": "12", "condition": "A", "correct": true, "answer": "B", "graded_by": "rule"}

Both readers live here, so the tasks (aggregation inside lmms-eval) and the analysis (model-vs-model
differences from samples logs, `analysis.transfer_table`) pair records the same way:
`pair_conditions` gives the items with both conditions and their two outcomes, and
`item_indicators` the per-item 0/1 that a metric averages (M_vis: right with A and wrong with B;
M_v2r: right under both; M_rea: right).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from pydantic import ValidationError

from analysis.schema import BLACK, REAL, OutcomeRecord, first_error
from analysis.transitions import v2r_items, vis_items
from surgery.errors import FrankensteinError

log = logging.getLogger(__name__)

__all__ = ["BLACK", "INDICATORS", "REAL", "is_record", "item_indicators", "pair_conditions"]

# Headline metric -> per-item indicator from (right under A, right under B).
INDICATORS: dict[str, Callable[[Sequence[bool], Sequence[bool]], list[bool]]] = {
    "m_vis": vis_items,
    "m_v2r": v2r_items,
    "m_rea": lambda a, b: list(a),
}


def is_record(value: object) -> bool:
    return OutcomeRecord.claims(value)


def pair_conditions(records: Iterable[Mapping[str, object]], source: str = "") -> tuple[list[str], list[bool], list[bool]]:
    """(items, right under A, right under B) for the items that have both conditions, in first-seen order.

    Records of a single-condition task (A only) give B equal to A. Items lacking one condition (a run
    cut by `--limit`) are left out, with a warning naming `source` (where the records came from).
    """
    by_item: dict[str, dict[str, bool]] = {}
    for r in records:
        record = _record(r, source)
        seen = by_item.setdefault(record.item, {})
        if record.condition in seen:
            raise FrankensteinError(f"item {record.item!r} has two outcomes under condition {record.condition}")
        seen[record.condition] = record.correct
    if all(set(conditions) == {REAL} for conditions in by_item.values()):
        items = list(by_item)
        return items, [by_item[i][REAL] for i in items], [by_item[i][REAL] for i in items]
    items = [i for i, conditions in by_item.items() if REAL in conditions and BLACK in conditions]
    if len(items) < len(by_item):
        where = f"{source}: " if source else ""
        log.warning("%s%d of %d items lack one condition (--limit?); they are left out", where, len(by_item) - len(items), len(by_item))
    return items, [by_item[i][REAL] for i in items], [by_item[i][BLACK] for i in items]


def _record(value: object, source: str) -> OutcomeRecord:
    where = f"{source}: " if source else ""
    if not isinstance(value, Mapping):
        raise FrankensteinError(f"{where}not an outcome record: {value!r}")
    try:
        return OutcomeRecord.model_validate({**value, "item": str(value.get("item"))} if "item" in value else value)
    except ValidationError as e:
        raise FrankensteinError(f"{where}not an outcome record ({first_error(e)}): {dict(value)!r}") from None


def item_indicators(records: Iterable[Mapping[str, object]], metric: str, source: str = "") -> dict[str, bool]:
    """Per item, does it count toward `metric` (a key of INDICATORS)?"""
    items, a, b = pair_conditions(records, source)
    return dict(zip(items, INDICATORS[metric](a, b)))
