"""Readings -> `MeterSampled` events, one per sampling moment and context (any OCPP version).

The connector's energy, power and currents are those measured at its outlet, or where the
station has no outlet value, at one other location (`metering.billed_location`: a
single-connector station's only meter is often at its inlet) - never two locations mixed, the
inlet's counting every connector and the car's side not being what the connector delivers.
Each event says where its register and its draw were measured: the site keeps a session's
live energy and a connector's draw to one location across messages (site/state.py). The car's
state of charge is wherever it is reported."""

from __future__ import annotations

from datetime import datetime

from smartcharge.events import MeterSampled
from smartcharge.metering import (
    DEFAULT_LOCATION,
    Reading,
    at_billed_location,
    billed_registers,
    phase_total,
)

POWER, CURRENT = "Power.Active.Import", "Current.Import"


def samples_to_events(station_id: str, connector_id: int, transaction_id: int | None,
                       readings: list[Reading], received_at: datetime) -> list[MeterSampled]:
    by_time: dict[tuple[datetime, str], list[Reading]] = {}
    for reading in readings:
        by_time.setdefault((reading.timestamp, reading.context), []).append(reading)
    events = []
    for (at, context), group in sorted(by_time.items(), key=lambda item: item[0][0]):
        def reading(measurand: str, anywhere: bool = False) -> Reading | None:
            found = [r for r in group if r.measurand == measurand and not r.phase
                     and r.value_si is not None]
            found = found if anywhere else at_billed_location(found)
            return found[-1] if found else None

        def value(measurand: str, anywhere: bool = False) -> float | None:
            found = reading(measurand, anywhere)
            return None if found is None else found.value_si

        # the draw (power - a total, else per phase - and the three phases' currents) from
        # one location
        draw = at_billed_location(r for r in group if r.value_si is not None
                                  and r.measurand in (POWER, CURRENT))
        power_w = phase_total((r.phase, r.value_si) for r in draw if r.measurand == POWER)
        currents = tuple(_phase_current(draw, phase) for phase in ("L1", "L2", "L3"))
        # the set's total, else the sum of its phases (metering.billed_registers), as billed
        registers = billed_registers(group)
        register = registers[-1] if registers else None
        events.append(MeterSampled(
            station_id, connector_id, transaction_id, at, context,
            energy_register_wh=None if register is None else register.value_wh,
            register_phases=frozenset() if register is None else register.phases,
            power_w=power_w, current_a=currents,
            soc_percent=value("SoC", anywhere=True), received_at=received_at,
            register_location=DEFAULT_LOCATION if register is None else register.location,
            draw_location=draw[0].location if draw else DEFAULT_LOCATION))
    return events


def _phase_current(draw: list[Reading], phase: str) -> float | None:
    for reading in draw:
        if reading.measurand == CURRENT and reading.phase in (phase, f"{phase}-N"):
            return reading.value_si
    return None
