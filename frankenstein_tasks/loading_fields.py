"""Checks for the fields that say how a model loads (device, device_map, dtype), as pydantic validators.

The model args of both harness models and `frankenstein run`'s config accept the same three fields;
each is checked where it is parsed, by the engine's own check (`surgery.loading`), so a typo fails with
one line listing what this machine offers before any weights load. Use: `device: Annotated[str,
CHECK_DEVICE] = "auto"`.
"""

from __future__ import annotations

from typing import Any

from pydantic import AfterValidator

from surgery.errors import FrankensteinError


def _engine_check(name: str) -> AfterValidator:
    """The `surgery.loading` check called `name`, its one-line error handed to pydantic for the field."""

    def check(value: Any) -> Any:
        from surgery import loading  # imported on use: parsing arguments stays light

        try:
            return getattr(loading, name)(value)
        except FrankensteinError as e:
            raise ValueError(str(e)) from None

    return AfterValidator(check)


CHECK_DEVICE = _engine_check("check_device")
CHECK_DEVICE_MAP = _engine_check("check_device_map")
CHECK_DTYPE = _engine_check("check_dtype")
