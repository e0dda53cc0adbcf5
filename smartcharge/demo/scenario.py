"""The demo's day: which car arrives at which bay when, how long it stays and what it needs.

Seeded and pure (no clock, no I/O), so every run of `smartcharge demo --seed N` sees the same cars.
Arrivals follow a plausible daily shape — a morning commuter wave, a midday trickle, an evening
wave, a quiet night — drawn per connector as a thinned Poisson process; each car comes from
`sim.ev.random_ev` (battery, state of charge, target, on-board charger, dwell time).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from smartcharge.model import Site
from smartcharge.sim.ev import SimEV, random_ev

# Relative arrival intensity per hour of day (UTC is the site's local time in the demo).
HOURLY_ARRIVAL_SHAPE = (
    0.05, 0.03, 0.02, 0.02, 0.03, 0.10, 0.35, 0.90, 1.00, 0.70, 0.45, 0.40,
    0.45, 0.40, 0.35, 0.45, 0.70, 0.90, 0.80, 0.55, 0.35, 0.25, 0.15, 0.08,
)
PEAK_ARRIVALS_PER_HOUR = 0.5     # per free connector at the busiest hour
MIN_GAP_S = 5 * 60               # a bay stays empty at least this long between two cars


@dataclass
class Visit:
    """One car at one connector. `ev` is the live car the simulator charges (mutable)."""

    station_id: str
    connector_id: int
    arrival: datetime
    departure: datetime
    ev: SimEV
    id_tag: str
    requested_wh: float            # what the driver wants by departure (to the target SoC)
    tells_need: bool               # the driver entered energy and departure in an app

    @property
    def key(self) -> tuple[str, int]:
        return (self.station_id, self.connector_id)


def _car_for(rng: random.Random, arrival: datetime, bay_phases: int, name: str,
             mixed_phases: bool) -> SimEV:
    """A car from the simulator's mix, with a need typical of a car park visit (most drivers
    top up 5–40 kWh; few arrive nearly empty)."""
    ev = random_ev(rng, arrival, name=name)
    if bay_phases == 3 and not mixed_phases:
        ev.onboard_phases = 3
    need_wh = min(rng.triangular(5_000.0, 40_000.0, 14_000.0),
                  (ev.target_soc - 0.05) * ev.capacity_wh)
    ev.soc = ev.target_soc - need_wh / ev.capacity_wh
    return ev


def arrival_rate_per_s(moment: datetime) -> float:
    return HOURLY_ARRIVAL_SHAPE[moment.hour] * PEAK_ARRIVALS_PER_HOUR / 3600.0


def _next_arrival(rng: random.Random, after: datetime, end: datetime) -> datetime | None:
    """Thinning: candidates at the peak rate, each kept with probability shape(hour)/peak."""
    peak_per_s = PEAK_ARRIVALS_PER_HOUR / 3600.0
    moment = after
    while True:
        moment = moment + timedelta(seconds=rng.expovariate(peak_per_s))
        if moment >= end:
            return None
        if rng.random() < arrival_rate_per_s(moment) / peak_per_s:
            return moment


def plan_day(site: Site, start: datetime, hours: float, seed: int = 7,
             tells_need_share: float = 0.6, mixed_phases: bool = False) -> list[Visit]:
    """Every visit that arrives within [start, start + hours), sorted by arrival.

    `mixed_phases`: single-phase cars may also take three-phase bays (they then load one phase
    of a three-phase circuit); by default a car's on-board charger uses all of its bay's phases.

    Short runs (a test's two hours) would often see nobody at night, so a run starts with a
    share of bays already busy, as a real car park would be at any hour but the dead of night.
    """
    if hours <= 0:
        raise ValueError(f"hours must be positive, got {hours}")
    rng = random.Random(seed)
    end = start + timedelta(hours=hours)
    id_tags = sorted(site.id_tags) or [None]
    visits: list[Visit] = []
    counter = 0
    for station in site.stations:
        for connector in station.connectors:
            cursor = start
            first = True
            while True:
                if first and rng.random() < 0.5:
                    arrival = start + timedelta(seconds=rng.uniform(0, 600))
                else:
                    arrival = _next_arrival(rng, cursor, end)
                    if arrival is None:
                        break
                first = False
                counter += 1
                ev = _car_for(rng, arrival, connector.phases, f"car-{counter:04d}",
                              mixed_phases)
                visits.append(Visit(
                    station_id=station.station_id,
                    connector_id=connector.connector_id,
                    arrival=arrival,
                    departure=ev.departure,
                    ev=ev,
                    id_tag=id_tags[counter % len(id_tags)],
                    requested_wh=ev.energy_need_wh,
                    tells_need=rng.random() < tells_need_share,
                ))
                cursor = ev.departure + timedelta(seconds=MIN_GAP_S)
                if cursor >= end:
                    break
    visits.sort(key=lambda v: (v.arrival, v.station_id, v.connector_id))
    return visits


@dataclass(frozen=True)
class StationProtocol:
    """What a demo station speaks: its OCPP version, and whether its cars speak ISO 15118."""

    ocpp_version: str = "1.6"
    iso15118: bool = False

    @property
    def label(self) -> str:
        return self.ocpp_version + (" + ISO 15118" if self.iso15118 else "")


def plan_protocols(site: Site, mixed: bool = True) -> dict[str, StationProtocol]:
    """A mixed fleet, as a car park that grew over the years: under every circuit every other
    station (by id) speaks OCPP 2.0.1, the others 1.6, so each breaker is shared by both; every
    other 2.0.1 station has cars that speak ISO 15118 (they tell their needs themselves)."""
    plan = {s.station_id: StationProtocol() for s in site.stations}
    if not mixed:
        return plan
    by_circuit: dict[str, list[str]] = {}
    for station in site.stations:
        by_circuit.setdefault(station.circuit_id, []).append(station.station_id)
    newer = sorted(sid for ids in by_circuit.values() for sid in sorted(ids)[1::2])
    for index, station_id in enumerate(newer):
        plan[station_id] = StationProtocol("2.0.1", iso15118=index % 2 == 0)
    return plan


def apply_protocols(visits: list[Visit], protocols: dict[str, StationProtocol]) -> None:
    """Cars at an ISO 15118 station speak it: the station tells their need (NotifyEVChargingNeeds),
    so their drivers do not type it into an app."""
    for visit in visits:
        if protocols[visit.station_id].iso15118:
            visit.ev.iso15118 = True
            visit.tells_need = False


@dataclass(frozen=True)
class DemandResponsePlan:
    """The utility's evening event: announced at `announce`, in force [start, end)."""

    event_id: str
    announce: datetime
    start: datetime
    end: datetime
    limit_w: float


def plan_demand_response(start: datetime, hours: float, grid_limit_w: float,
                         notice_s: float = 1800.0, share_of_cap: float = 0.5) -> DemandResponsePlan:
    """An evening peak event (17:30–19:30) when the run covers it; otherwise the middle of the
    run, so a short run still shows the site following a lowered limit."""
    end = start + timedelta(hours=hours)
    evening = start.replace(hour=17, minute=30, second=0, microsecond=0)
    if evening < start:
        evening += timedelta(days=1)
    if evening - timedelta(seconds=notice_s) >= start and evening + timedelta(hours=2) <= end:
        event_start, event_end = evening, evening + timedelta(hours=2)
    else:
        run_s = hours * 3600.0
        event_start = start + timedelta(seconds=max(run_s * 0.4, notice_s))
        event_end = event_start + timedelta(seconds=run_s * 0.3)
    return DemandResponsePlan(
        event_id="utility-evening-peak",
        announce=event_start - timedelta(seconds=notice_s),
        start=event_start,
        end=event_end,
        limit_w=round(grid_limit_w * share_of_cap),
    )
