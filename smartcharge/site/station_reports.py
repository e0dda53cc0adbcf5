"""What stations report about the car and about limits set outside us, as the site takes it
(version-neutral events; 2.0.1 sends them: NotifyEVChargingNeeds, NotifyChargingLimit,
ClearedChargingLimit):

- `ChargingNeedsReported` (ISO 15118): the EV's energy and departure become the session's need
  - the energy still wanted now plus what the session already took - unless a person (driver or
  operator, through the API) set the need: what people say wins over what the car says; the
  most the car says it takes (evMaxCurrent, evMaxPower) caps its connector while it stays, and
  the least it takes (evMinCurrent) is its connector's minimum while it stays (below it the car
  would not charge at all, so planning less only strands the energy);
- `ExternalLimitReported` (the station's own energy manager, an EMS, a DSO relay): a cap on that
  EVSE over time; one that names no EVSE limits the station's total, all its EVSEs together
  (OCPP 2.0.1 K12.FR.01: "the total load of all EVSEs SHALL NOT exceed this given limit") -
  and so each of them too. The station applies the lowest of its limits and ours, so planning
  more than the cap only strands capacity others could use (a station-wide limit taken per
  EVSE planned a two-EVSE station at twice what it delivers); `ExternalLimitCleared` lifts it
  (per source; one that names no EVSE lifts that source's limits on every EVSE too:
  `clear_external`).
Each re-plans. The controller asks `cap_w` per connector and slot, `station_caps` per station
and `car_min_w` when it builds a problem. After a restart `site/restore.py` feeds the stored events back in
(`take_needs` with the energy the session had when the car asked).

A car's needs may come before its session: ISO 15118-2 sends ChargeParameterDiscovery before
PowerDelivery closes the power path, so a station whose transaction starts then (TxStartPoint
PowerPathClosed or EnergyTransfer) reports the needs first and its Started after them. Such a
need waits for the session that the site first hears of on its EVSE within `NEEDS_WAIT_S`
(`needs_wait`, the same rule at a restart), and is taken as that session's on top of what it
has taken then - nothing for one just begun (answered Accepted, it was dropped: the car's energy
and departure lost). Not an older transaction's from the station's queue (announced by an
offline event), nor the next car's once the connector reads Available.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

import numpy as np

from smartcharge import events as ev
from smartcharge import units
from smartcharge.clock import later
from smartcharge.site.limits import SOURCE_STATION, LimitSource
from smartcharge.site.state import SiteState
from smartcharge.site.topology import ConnectorRef, SiteTopology

log = logging.getLogger(__name__)

NEED_BY_PEOPLE = "operator"   # Session.need_source of a need set through the API
NEED_BY_EV = "ev"
# how long a need reported with no session on its EVSE waits for one: the power path closes
# seconds after ChargeParameterDiscovery (a DC cable check, under a minute); much longer and
# it may be another car's
NEEDS_WAIT_S = 300.0


def needs_wait(reported_at: datetime, session_known_at: datetime) -> bool:
    """Whether a need reported with no session on its EVSE at `reported_at` (our clock) is the
    need of the session first known there at `session_known_at` (ours)."""
    return 0.0 <= (session_known_at - reported_at).total_seconds() <= NEEDS_WAIT_S


def clear_external(external: dict[tuple[str, int | None, str], ev.ExternalLimitReported],
                   cleared: ev.ExternalLimitCleared) -> bool:
    """Take out of `external` the limits `cleared` lifts: its source's on its EVSE; naming no
    EVSE (ClearedChargingLimit without evseId, or 0), its source's on the whole station - the
    station-wide one and every EVSE's (K13: the station no longer applies that source's
    limits). Whether any was there. The live site and a restart's rebuild both use it."""
    lifted = [key for key in external
              if key[0] == cleared.station_id and key[2] == cleared.source
              and (cleared.connector_id is None or key[1] == cleared.connector_id)]
    for key in lifted:
        del external[key]
    return bool(lifted)


class StationReports:
    def __init__(self, topology: SiteTopology, state: SiteState,
                 request_replan: Callable[[str], None]) -> None:
        self.topology = topology
        self.state = state
        self.request_replan = request_replan
        # (station, EVSE or None, source) -> the limit in force until cleared or replaced
        self.external: dict[tuple[str, int | None, str], ev.ExternalLimitReported] = {}
        # connector -> (transaction, the most its car said it takes [W]), while it runs
        self.ev_max_w: dict[ConnectorRef, tuple[int, float]] = {}
        # connector -> (transaction, the least current its car said it takes [A per phase])
        self.ev_min_a: dict[ConnectorRef, tuple[int, float]] = {}
        # connector -> the needs its car reported before its session began (ISO 15118)
        self.waiting_needs: dict[ConnectorRef, ev.ChargingNeedsReported] = {}

    def on_event(self, event) -> None:
        if isinstance(event, ev.ChargingNeedsReported):
            self._needs(event)
        elif isinstance(event, ev.ExternalLimitReported):
            if not self.topology_has(event.station_id):
                return
            self.external[(event.station_id, event.connector_id, event.source)] = event
            self.request_replan(f"external-limit:{event.station_id}/{event.connector_id}")
        elif isinstance(event, ev.ExternalLimitCleared):
            if clear_external(self.external, event):
                self.request_replan(f"external-cleared:{event.station_id}/{event.connector_id}")

    def topology_has(self, station_id: str) -> bool:
        return self.topology.site.station(station_id) is not None

    # --- the EV's needs ---------------------------------------------------------------------
    def take_needs(self, event: ev.ChargingNeedsReported, taken_wh: float | None = None) -> None:
        """The car's needs as if they arrived now; `taken_wh`: what the session had taken when
        they did arrive (default: what it has now)."""
        self._needs(event, taken_wh)

    def _needs(self, event: ev.ChargingNeedsReported, taken_wh: float | None = None) -> None:
        ref = ConnectorRef(event.station_id, event.connector_id)
        session = (self.state.session_by_id(event.transaction_id)
                   if event.transaction_id is not None else None) or self.state.sessions.get(ref)
        if session is None:
            log.info("station %s EVSE %d: EV needs with no session running yet: kept for the "
                     "session that begins there", event.station_id, event.connector_id)
            self.waiting_needs[ref] = event
            return
        changed = False
        ev_max = self._ev_max_w(event, ref)
        if ev_max is not None:
            # what the car takes at most, whoever set the need: more is capacity stranded
            changed = self.ev_max_w.get(ref) != (session.transaction_id, ev_max)
            self.ev_max_w[ref] = (session.transaction_id, ev_max)
        tuples = event.max_schedule_periods
        if tuples is not None and tuples > 0 and session.ev_max_periods != tuples:
            session.ev_max_periods = int(tuples)   # sent fewer periods from now on
            changed = True
        if event.min_current_a is not None and event.min_current_a > 0:
            car_min = (session.transaction_id, float(event.min_current_a))
            changed = changed or self.ev_min_a.get(ref) != car_min
            self.ev_min_a[ref] = car_min
        taken = session.energy_wh if taken_wh is None else taken_wh
        requested = None if event.energy_wh is None else taken + event.energy_wh
        departure = event.departure if event.departure is not None \
            and event.departure > event.at else None
        if session.need_source == NEED_BY_PEOPLE:
            log.info("session %d: the EV asks %s Wh by %s; the need a person set stands",
                     session.transaction_id, event.energy_wh, event.departure)
        elif requested is not None or departure is not None:
            self.state.set_need(session.transaction_id, requested_wh=requested,
                                departure=departure, source=NEED_BY_EV)
            changed = True
        if changed:
            self.request_replan(f"ev-needs:{event.station_id}/{event.connector_id}")

    def session_began(self, event: ev.SessionStarted, now: datetime) -> None:
        """A session the site now runs on `event`'s connector: the needs its car reported
        before it (if any, and recent) are its own, on top of what it has taken now (nothing,
        for a session just begun; its energy so far, for one a reboot closed that its
        station's next message reopened)."""
        ref = ConnectorRef(event.station_id, event.connector_id)
        waiting = self.waiting_needs.get(ref)
        if waiting is None:
            return
        if not needs_wait(waiting.at, now):
            del self.waiting_needs[ref]     # too old: another car's
            return
        session = self.state.sessions.get(ref)
        if session is None or session.transaction_id != event.transaction_id or event.queued:
            return     # an older transaction from the station's queue: not the car that asked
        del self.waiting_needs[ref]
        self._needs(dataclasses.replace(waiting, transaction_id=event.transaction_id))

    def connector_freed(self, ref: ConnectorRef) -> None:
        """Its connector reads Available: the car whose needs wait there left before its
        session (they are not the next car's)."""
        self.waiting_needs.pop(ref, None)

    def _ev_max_w(self, event: ev.ChargingNeedsReported, ref: ConnectorRef) -> float | None:
        if event.max_power_w is not None:
            return float(event.max_power_w)
        if event.max_current_a is None or not self.topology.has(ref):
            return None
        mode = event.transfer_mode or ""
        if mode.startswith("DC"):
            # a DC car's current is at its battery's voltage, not per phase of the supply
            # (40 A at 400 V read as 27.6 kW); without its voltage nothing is known
            if event.max_voltage_v is None:
                return None
            return float(event.max_current_a) * float(event.max_voltage_v)
        phases = 1 if "single" in mode else 2 if "two" in mode else 3
        phases = min(phases, self.topology.connector(ref).phases)
        voltage = self.topology.station(ref.station_id).voltage_v
        return units.a_to_w(float(event.max_current_a), phases, voltage)

    def car_min_w(self, ref: ConnectorRef, phases: int) -> float | None:
        """The least its car said it takes [W] on `phases`, while that car's session runs."""
        car = self.ev_min_a.get(ref)
        session = self.state.sessions.get(ref)
        if car is None or session is None or session.transaction_id != car[0]:
            self.ev_min_a.pop(ref, None)    # that car is gone
            return None
        return units.a_to_w(car[1], phases, self.topology.station(ref.station_id).voltage_v)

    # --- external limits --------------------------------------------------------------------
    def cap_w(self, ref: ConnectorRef, starts: list[datetime], ends: list[datetime],
              phases: int) -> np.ndarray | None:
        """The lowest external limit on a connector within each slot [W] (inf: none then),
        and the most its car said it takes; None when neither names it. A limit on the
        station as a whole is its node's (`station_caps`): each EVSE's too, and named so."""
        found = [e for (sid, evse, _), e in self.external.items()
                 if sid == ref.station_id and evse == ref.connector_id]
        session = self.state.sessions.get(ref)
        car = self.ev_max_w.get(ref)
        if car is not None and (session is None or session.transaction_id != car[0]):
            del self.ev_max_w[ref]    # that car is gone
            car = None
        if not found and car is None:
            return None
        voltage = self.topology.station(ref.station_id).voltage_v
        out = np.full(len(starts), np.inf if car is None else car[1])
        for event in found:
            for schedule in event.schedules:
                _lower(out, _steps_w(schedule, event.at, phases, voltage), starts, ends)
        return out

    def station_caps(self, starts: list[datetime], ends: list[datetime]
                     ) -> list[tuple[str, np.ndarray, np.ndarray, LimitSource]]:
        """(station, W (T,), A per phase (T,), what to name it) of each station an external
        limit names as a whole: the lowest such limit on its total within each slot (inf:
        none then; a limit in W bounds no current)."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        sources: dict[str, set[str]] = {}
        for (station_id, evse, source), event in self.external.items():
            if evse is not None:
                continue
            station = self.topology.station(station_id)
            phases = max((c.phases for c in station.connectors), default=3)
            sources.setdefault(station_id, set()).add(source)
            caps_w, caps_a = out.setdefault(station_id, (np.full(len(starts), np.inf),
                                                         np.full(len(starts), np.inf)))
            for schedule in event.schedules:
                steps_w = _steps_w(schedule, event.at, phases, station.voltage_v)
                _lower(caps_w, steps_w, starts, ends)
                if schedule.unit == "A":
                    _lower(caps_a, _steps(schedule, event.at, lambda limit, _: limit),
                           starts, ends)
        return [(station_id, w, a, LimitSource(
                    SOURCE_STATION, station_id,
                    f"station limit set outside us ({', '.join(sorted(sources[station_id]))})"))
                for station_id, (w, a) in out.items()]


def _lower(caps: np.ndarray, steps: list[tuple[datetime, float]], starts: list[datetime],
           ends: list[datetime]) -> None:
    """`caps` (T,) lowered to the least value `steps` take within each slot."""
    for i, (begin, end) in enumerate(zip(starts, ends)):
        # the value at the slot's start and at every step inside it
        inside = [w for at, w in steps if begin < at < end]
        caps[i] = min([caps[i], _value_at(steps, begin), *inside])


def _steps_w(schedule: ev.ReportedSchedule, reported_at: datetime, phases: int,
             voltage_v: float) -> list[tuple[datetime, float]]:
    """A reported schedule as (from when, W) steps, ending in inf where it ends."""
    return _steps(schedule, reported_at, lambda limit, used: units.rate_to_w(
        limit, schedule.unit, min(used or phases, phases), voltage_v))


def _steps(schedule: ev.ReportedSchedule, reported_at: datetime,
           value: Callable[[float, int | None], float]) -> list[tuple[datetime, float]]:
    """A reported schedule as (from when, value(limit, its phases)) steps, ending in inf
    where it ends."""
    begin = schedule.start or reported_at
    # later(): a schedule may start at the end of the calendar (valid 2.0.1)
    steps = [(later(begin, offset), value(limit, used))
             for offset, limit, used in zip(schedule.offsets_s, schedule.limits,
                                            schedule.phases)]
    if schedule.duration_s is not None:
        steps.append((later(begin, schedule.duration_s), np.inf))
    return steps


def _value_at(steps: list[tuple[datetime, float]], moment: datetime) -> float:
    value = np.inf
    for at, w in steps:
        if at <= moment:
            value = w
    return value


__all__ = ["NEED_BY_EV", "NEED_BY_PEOPLE", "StationReports"]
