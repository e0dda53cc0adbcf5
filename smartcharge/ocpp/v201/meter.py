"""OCPP 2.0.1 meter values -> the version-neutral `metering.Reading`.

2.0.1 sends `value` as a JSON number and the unit as `unitOfMeasure {unit, multiplier}` (a power
of ten); the defaults are 1.6's (Energy.Active.Import.Register, Sample.Periodic, Outlet, Wh for
energy). A signed meter value travels beside the plain one and is kept only in the raw message.
"""

from __future__ import annotations

from collections.abc import Sequence

from smartcharge import metering
from smartcharge.metering import DEFAULT_FORMAT, Reading, to_si


def parse_meter_values(meter_values: Sequence[dict]) -> list[Reading]:
    """2.0.1 MeterValue objects (snake_case keys, as the `ocpp` library hands them) -> Readings."""
    return metering.parse_meter_values(meter_values, value_of=_value)


def _value(sampled: dict) -> tuple[str, str, float | None]:
    """(the number as sent, the unit as sent, the value in SI units)."""
    unit_of_measure = sampled.get("unit_of_measure") or {}
    unit = unit_of_measure.get("unit", "")
    multiplier = int(unit_of_measure.get("multiplier", 0))
    number = float(sampled["value"])
    # a valid message whatever the multiplier (the schema bounds neither): past what a float
    # holds it is no reading (None)
    value_si = to_si(repr(number), unit, DEFAULT_FORMAT, multiplier)
    # 12.0 and 12 are the same reading
    value_text = str(int(number)) if number.is_integer() else repr(number)
    return value_text, f"{unit}e{multiplier}" if multiplier else unit, value_si
