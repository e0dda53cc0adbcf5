"""Readings -> `MeterSampled` events, one per sampling moment and context (any OCPP version).

The connector's energy, power and currents are those measured at its outlet (the default
location; `metering.is_register`): a station's inlet meter counts every connector, the car's
side is not what the connector delivers. The car's state of charge is wherever it is reported."""

from __future__ import annotations

from datetime import datetime

from smartcharge.events import MeterSampled
from smartcharge.metering import DEFAULT_LOCATION as OUTLET, ENERGY_REGISTER, Reading


def samples_to_events(station_id: str, connector_id: int, transaction_id: int | None,
                       readings: list[Reading], received_at: datetime) -> list[MeterSampled]:
    by_time: dict[tuple[datetime, str], list[Reading]] = {}
    for reading in readings:
        by_time.setdefault((reading.timestamp, reading.context), []).append(reading)
    events = []
    for (at, context), group in sorted(by_time.items(), key=lambda item: item[0][0]):
        def value(measurand: str, phase: str = "", anywhere: bool = False) -> float | None:
            found = [r.value_si for r in group if r.measurand == measurand
                     and r.phase in ((phase,) if phase else ("",)) and r.value_si is not None
                     and (anywhere or r.location == OUTLET)]
            return found[-1] if found else None

        currents = tuple(_phase_current(group, phase) for phase in ("L1", "L2", "L3"))
        events.append(MeterSampled(
            station_id, connector_id, transaction_id, at, context,
            energy_register_wh=value(ENERGY_REGISTER), power_w=value("Power.Active.Import"),
            current_a=currents, soc_percent=value("SoC", anywhere=True),
            received_at=received_at))
    return events


def _phase_current(group: list[Reading], phase: str) -> float | None:
    for reading in group:
        if reading.measurand == "Current.Import" and reading.phase in (phase, f"{phase}-N") \
                and reading.value_si is not None and reading.location == OUTLET:
            return reading.value_si
    return None
