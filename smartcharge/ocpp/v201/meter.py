"""OCPP 2.0.1 meter values -> the version-neutral `metering.Reading`.

2.0.1 sends `value` as a JSON number and the unit as `unitOfMeasure {unit, multiplier}` (a power
of ten); the defaults are 1.6's (Energy.Active.Import.Register, Sample.Periodic, Outlet, Wh for
energy). A signed meter value travels beside the plain one and is kept only in the raw message.
"""

from __future__ import annotations

from collections.abc import Sequence

from smartcharge.clock import parse_ocpp_time
from smartcharge.metering import (
    DEFAULT_CONTEXT,
    DEFAULT_FORMAT,
    DEFAULT_LOCATION,
    DEFAULT_MEASURAND,
    Reading,
    to_si,
)


def parse_meter_values(meter_values: Sequence[dict]) -> list[Reading]:
    """2.0.1 MeterValue objects (snake_case keys, as the `ocpp` library hands them) -> Readings.

    Timestamps have already been checked at the edge; this raises ValueError if one slipped by.
    """
    readings = []
    for meter_value in meter_values:
        timestamp = parse_ocpp_time(meter_value["timestamp"])
        for sampled in meter_value.get("sampled_value", []):
            unit_of_measure = sampled.get("unit_of_measure") or {}
            unit = unit_of_measure.get("unit", "")
            multiplier = int(unit_of_measure.get("multiplier", 0))
            value = sampled["value"]
            value_si = to_si(repr(float(value)), unit, DEFAULT_FORMAT)
            if value_si is not None and multiplier:
                value_si *= 10.0 ** multiplier
            readings.append(Reading(
                timestamp=timestamp,
                value_text=_text(value),
                measurand=sampled.get("measurand", DEFAULT_MEASURAND),
                phase=sampled.get("phase", ""),
                unit=f"{unit}e{multiplier}" if multiplier else unit,
                context=sampled.get("context", DEFAULT_CONTEXT),
                location=sampled.get("location", DEFAULT_LOCATION),
                format=DEFAULT_FORMAT,
                value_si=value_si,
            ))
    return readings


def _text(value: float | int) -> str:
    """The number as sent (12.0 and 12 are the same reading)."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)
