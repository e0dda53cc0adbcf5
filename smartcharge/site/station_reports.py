"""What stations report about the car and about limits set outside us, as the site takes it
(version-neutral events; 2.0.1 sends them: NotifyEVChargingNeeds, NotifyChargingLimit,
ClearedChargingLimit):

- `ChargingNeedsReported` (ISO 15118): the EV's energy and departure become the session's need
  - the energy still wanted now plus what the session already took - unless a person (driver or
  operator, through the API) set the need: what people say wins over what the car says;
- `ExternalLimitReported` (the station's own energy manager, an EMS, a DSO relay): a cap on that
  EVSE over time (on each of the station's connectors when it names none). The station applies
  the lowest of its limits and ours, so planning more than the cap only strands capacity others
  could use; `ExternalLimitCleared` lifts it (per source).
Each re-plans. The controller asks `cap_w` per connector and slot when it builds a problem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from smartcharge import events as ev
from smartcharge import units
from smartcharge.site.state import SiteState
from smartcharge.site.topology import ConnectorRef, SiteTopology

log = logging.getLogger(__name__)

NEED_BY_PEOPLE = "operator"   # Session.need_source of a need set through the API
NEED_BY_EV = "ev"


class StationReports:
    def __init__(self, topology: SiteTopology, state: SiteState,
                 request_replan: Callable[[str], None]) -> None:
        self.topology = topology
        self.state = state
        self.request_replan = request_replan
        # (station, EVSE or None, source) -> the limit in force until cleared or replaced
        self.external: dict[tuple[str, int | None, str], ev.ExternalLimitReported] = {}

    def on_event(self, event) -> None:
        if isinstance(event, ev.ChargingNeedsReported):
            self._needs(event)
        elif isinstance(event, ev.ExternalLimitReported):
            if not self.topology_has(event.station_id):
                return
            self.external[(event.station_id, event.connector_id, event.source)] = event
            self.request_replan(f"external-limit:{event.station_id}/{event.connector_id}")
        elif isinstance(event, ev.ExternalLimitCleared):
            if self.external.pop((event.station_id, event.connector_id, event.source), None):
                self.request_replan(f"external-cleared:{event.station_id}/{event.connector_id}")

    def topology_has(self, station_id: str) -> bool:
        return self.topology.site.station(station_id) is not None

    # --- the EV's needs ---------------------------------------------------------------------
    def _needs(self, event: ev.ChargingNeedsReported) -> None:
        ref = ConnectorRef(event.station_id, event.connector_id)
        session = (self.state.session_by_id(event.transaction_id)
                   if event.transaction_id is not None else None) or self.state.sessions.get(ref)
        if session is None:
            log.info("station %s EVSE %d: EV needs with no session running: kept for nothing",
                     event.station_id, event.connector_id)
            return
        if session.need_source == NEED_BY_PEOPLE:
            log.info("session %d: the EV asks %s Wh by %s; the need a person set stands",
                     session.transaction_id, event.energy_wh, event.departure)
            return
        requested = None if event.energy_wh is None else session.energy_wh + event.energy_wh
        departure = event.departure if event.departure is not None \
            and event.departure > event.at else None
        if requested is None and departure is None:
            return
        self.state.set_need(session.transaction_id, requested_wh=requested,
                            departure=departure, source=NEED_BY_EV)
        self.request_replan(f"ev-needs:{event.station_id}/{event.connector_id}")

    # --- external limits --------------------------------------------------------------------
    def cap_w(self, ref: ConnectorRef, starts: list[datetime], ends: list[datetime],
              phases: int) -> np.ndarray | None:
        """The lowest external limit on a connector within each slot [W] (inf: none then);
        None when no external limit names it."""
        found = [e for (sid, evse, _), e in self.external.items()
                 if sid == ref.station_id and evse in (None, ref.connector_id)]
        if not found:
            return None
        voltage = self.topology.station(ref.station_id).voltage_v
        out = np.full(len(starts), np.inf)
        for event in found:
            for schedule in event.schedules:
                steps = _steps_w(schedule, event.at, phases, voltage)
                for i, (begin, end) in enumerate(zip(starts, ends)):
                    # the value at the slot's start and at every step inside it
                    inside = [w for at, w in steps if begin < at < end]
                    out[i] = min([out[i], _value_at(steps, begin), *inside])
        return out


def _steps_w(schedule: ev.ReportedSchedule, reported_at: datetime, phases: int,
             voltage_v: float) -> list[tuple[datetime, float]]:
    """A reported schedule as (from when, W) steps, ending in inf where it ends."""
    begin = schedule.start or reported_at
    steps = [(begin + timedelta(seconds=offset),
              units.rate_to_w(limit, schedule.unit, min(used or phases, phases), voltage_v))
             for offset, limit, used in zip(schedule.offsets_s, schedule.limits,
                                            schedule.phases)]
    if schedule.duration_s is not None:
        steps.append((begin + timedelta(seconds=schedule.duration_s), np.inf))
    return steps


def _value_at(steps: list[tuple[datetime, float]], moment: datetime) -> float:
    value = np.inf
    for at, w in steps:
        if at <= moment:
            value = w
    return value


__all__ = ["NEED_BY_EV", "NEED_BY_PEOPLE", "StationReports"]
