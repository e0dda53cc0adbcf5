"""The quality benchmark's seeded days and their clairvoyant optimum.

Days (all on the demo site, `smartcharge/data/demo-site.toml`: 40 bays on three feeders, 120 kW
grid cap, per-phase breakers):

- demo: the demo's own day (`smartcharge demo`, seed 7, 24 h, mixed-phase cars, the utility's
  evening event at 60 kW 17:30-19:30, 60 % of drivers tell their need).
- workplace: a weekday at an office car park: a car at every bay around 08:30 (sd 45 min),
  stays of 7-10 h, 15-50 kWh, a second shorter visit at some bays, no event; 24 h.
- depot: a fleet's night: every bay gets a car between 17:00 and 21:00 that leaves between
  05:00 and 07:00, 25-60 kWh; 16:00 to 08:00.
- tight: the demo's day with seed 8 under a grid cap of 60 kW (with the event at half of it).
- regulars: a car park of regulars (each id tag one driver with habits: car, arrival, stay
  and need), at a random bay each day, under a grid cap of 60 kW; what history per id tag
  can win (site/estimates.py).

`past_sessions(day)` is the site's history before a day: 7 earlier days of the same kind.

The offline optimum is one LP over the whole day that knows every car in advance (arrival,
departure, need, on-board charger and its phases, bay) under the same caps, event, breakers and
phases, in 5-minute slots, without minimum rates or battery taper, each car only while the replay
has it plugged in (its first and last slots in part): an upper bound on what any controller
could deliver.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

import optimizer
from smartcharge.config import load_site
from smartcharge.demo.arguments import default_site_path
from smartcharge.demo.report import GridLimits
from smartcharge.demo.scenario import (MIN_GAP_S, DemandResponsePlan, Visit, plan_day,
                                       plan_demand_response)
from smartcharge.model import Site
from smartcharge.sim.ev import random_ev
from smartcharge.site.estimates import PastSession
from smartcharge.site.topology import ConnectorRef, SiteTopology

START = datetime.fromisoformat("2026-06-01T00:00:00+00:00")
OFFLINE_SLOT_S = 300.0
REPLAY_STEP_S = 60.0      # quality_loop.run_day's step: when a car is plugged in and leaves


@dataclass
class Day:
    name: str
    site: Site
    visits: list[Visit]
    start: datetime
    hours: float
    dr: DemandResponsePlan | None


def _with_cap(site: Site, cap_w: float) -> Site:
    root = dataclasses.replace(site.circuits[0], limit_w=cap_w)
    return dataclasses.replace(site, circuits=(root,) + tuple(site.circuits[1:]))


def _visit(site_tags, rng, station, connector, arrival, departure, need_wh, counter, phases):
    car = random_ev(rng, arrival, name=f"car-{counter:04d}")
    if phases == 3 and rng.random() < 0.8:
        car.onboard_phases = 3
    need_wh = min(need_wh, (car.target_soc - 0.05) * car.capacity_wh)
    car.soc = car.target_soc - need_wh / car.capacity_wh
    car.departure = departure
    tags = sorted(site_tags) or [None]
    return Visit(station.station_id, connector.connector_id, arrival, departure, car,
                 tags[counter % len(tags)], car.energy_need_wh, rng.random() < 0.6)


def _custom(site: Site, seed: int, arrive, stay_s, need_wh, start: datetime, hours: float,
            share: float = 1.0) -> list[Visit]:
    rng = random.Random(seed)
    visits, counter = [], 0
    end = start + timedelta(hours=hours)
    for station in site.stations:
        for connector in station.connectors:
            if rng.random() > share:
                continue
            counter += 1
            arrival = arrive(rng)
            departure = min(arrival + timedelta(seconds=stay_s(rng)), end)
            visits.append(_visit(site.id_tags, rng, station, connector, arrival, departure,
                                 need_wh(rng), counter, connector.phases))
            # a second car later in the day at some bays
            later = departure + timedelta(seconds=MIN_GAP_S + rng.uniform(0, 3600))
            if rng.random() < 0.3 and later + timedelta(hours=2) < end:
                counter += 1
                leave = min(later + timedelta(seconds=rng.uniform(2, 5) * 3600), end)
                visits.append(_visit(site.id_tags, rng, station, connector, later, leave,
                                     rng.uniform(5_000, 20_000), counter, connector.phases))
    return sorted(visits, key=lambda v: (v.arrival, v.station_id, v.connector_id))


def _regulars(site: Site, seed: int, day0: datetime) -> list[Visit]:
    """A car park of regulars: each of the site's id tags is one driver with habits (the same
    car, an arrival hour, a stay and a need of their own, drawn once from a fixed seed) who
    comes on 90 % of days with a little day-to-day noise, at whichever bay is free (a random
    one each day: a bay's history says little, the driver's says much)."""
    people = random.Random(4242)      # the same drivers every day
    rng = random.Random(seed)
    bays = [(station, connector) for station in site.stations for connector in station.connectors]
    order = list(range(len(bays)))
    rng.shuffle(order)
    visits = []
    for index, tag in enumerate(sorted(site.id_tags)[:len(bays)]):
        arrive_h, stay_h = people.gauss(8.5, 1.0), people.uniform(4.0, 10.0)
        need_wh, car_seed = people.uniform(10_000.0, 50_000.0), people.random()
        if rng.random() > 0.9:
            continue
        station, connector = bays[order[index]]
        arrival = day0 + timedelta(hours=arrive_h + rng.gauss(0.0, 0.25))
        departure = arrival + timedelta(hours=stay_h * max(0.5, 1.0 + rng.gauss(0.0, 0.08)))
        car = random_ev(random.Random(car_seed), arrival, name=tag)
        car.onboard_phases = min(car.onboard_phases, connector.phases) if connector.phases == 1 \
            else car.onboard_phases
        wanted_wh = min(need_wh * max(0.3, 1.0 + rng.gauss(0.0, 0.15)),
                        (car.target_soc - 0.05) * car.capacity_wh)
        car.soc = car.target_soc - wanted_wh / car.capacity_wh
        car.departure = departure
        visits.append(Visit(station.station_id, connector.connector_id, arrival, departure, car,
                            tag, car.energy_need_wh, rng.random() < 0.6))
    return sorted(visits, key=lambda v: (v.arrival, v.station_id, v.connector_id))


def days(names: list[str] | None = None, *, seed_offset: int = 0,
         days_before: int = 0) -> list[Day]:
    """The named days (default: all); `seed_offset` and `days_before` make other days of the
    same kind (the history the estimates learn from: `past_sessions`)."""
    site = load_site(default_site_path())
    out = []
    wanted = names or ["demo", "workplace", "depot", "tight", "regulars"]
    day0 = START - timedelta(days=days_before)
    for name in wanted:
        if name == "demo":
            dr = plan_demand_response(day0, 24, site.root.limit_w)
            out.append(Day(name, site, plan_day(site, day0, 24, seed=7 + seed_offset,
                                                mixed_phases=True), day0, 24.0, dr))
        elif name == "workplace":
            visits = _custom(
                site, 11 + seed_offset, lambda r: day0 + timedelta(hours=r.gauss(8.5, 0.75)),
                lambda r: r.uniform(7, 10) * 3600, lambda r: r.uniform(15_000, 50_000),
                day0, 24.0)
            out.append(Day(name, site, visits, day0, 24.0, None))
        elif name == "depot":
            start = day0 + timedelta(hours=16)
            visits = _custom(
                site, 12 + seed_offset, lambda r: start + timedelta(hours=r.uniform(1, 5)),
                lambda r: r.uniform(9, 13) * 3600, lambda r: r.uniform(25_000, 60_000),
                start, 16.0)
            out.append(Day(name, site, visits, start, 16.0, None))
        elif name == "tight":
            tight = _with_cap(site, 50_000.0)
            dr = plan_demand_response(day0, 24, tight.root.limit_w)
            out.append(Day(name, tight, plan_day(tight, day0, 24, seed=8 + seed_offset,
                                                 mixed_phases=True), day0, 24.0, dr))
        elif name == "regulars":
            regular = _with_cap(site, 60_000.0)
            out.append(Day(name, regular, _regulars(regular, 13 + seed_offset, day0), day0,
                           24.0, None))
        else:
            raise ValueError(f"unknown day {name!r}")
    return out


def past_sessions(day: Day, n_days: int = 7) -> list[PastSession]:
    """The site's history before `day`: `n_days` earlier days of the same kind (other seeds),
    oldest first, each visit as a stopped session that took the car's need (as if those days
    had been served in full: a site under a tight cap would have stored less)."""
    out = []
    for back in range(n_days, 0, -1):
        past = days([day.name], seed_offset=1000 + back, days_before=back)[0]
        for visit in sorted(past.visits, key=lambda v: v.departure):
            out.append(PastSession(visit.id_tag, ConnectorRef(visit.station_id,
                                                              visit.connector_id),
                                   visit.arrival, visit.departure, visit.requested_wh))
    return out


def grid_limit_w(day: Day, moments: list[datetime]) -> np.ndarray:
    limits = GridLimits(day.site.root.limit_w, 0.0)
    if day.dr is not None:
        from smartcharge.demo.report import TimedLimit
        limits.add(TimedLimit(day.dr.start, day.dr.end, day.dr.limit_w, day.dr.event_id))
    return np.array([limits.effective_w(m) or np.inf for m in moments])


def offline_problem(day: Day, slot_s: float = OFFLINE_SLOT_S) -> optimizer.Problem:
    """The clairvoyant LP's problem: one row per visit, 5-minute slots over the whole day
    (`slot_s`: other slots, e.g. the replay's 60-s steps for benchmarks/quality_milp.py)."""
    topo = SiteTopology(day.site)
    t = int(round(day.hours * 3600 / slot_s))
    starts = [day.start + timedelta(seconds=k * slot_s) for k in range(t)]
    root_w = grid_limit_w(day, starts)
    node_w, node_a = topo.node_limits(root_w)
    rows = {k: [] for k in ("node", "max", "phases", "phase", "volt", "need", "a", "d")}
    present = presence(day, slot_s)   # (N, T): the share of each slot the replay has each car in
    for visit in day.visits:
        ref = ConnectorRef(visit.station_id, visit.connector_id)
        connector = topo.connector(ref)
        phases = min(visit.ev.onboard_phases, connector.phases)
        car_max = visit.ev.max_power_w_by_phases.get(phases,
                                                     min(visit.ev.max_power_w_by_phases.values()))
        rows["node"].append(topo.station_node[ref.station_id])
        rows["max"].append(min(topo.max_power_w(ref, phases), car_max))
        rows["phases"].append(phases)
        rows["phase"].append(topo.site_phase(ref, 0) if phases == 1 else 0)
        rows["volt"].append(topo.station(ref.station_id).voltage_v)
        rows["need"].append(visit.requested_wh)
        offset = lambda m: (m - day.start).total_seconds() / slot_s  # noqa: E731
        rows["a"].append(int(np.clip(np.floor(offset(visit.arrival)), 0, t)))
        rows["d"].append(int(np.clip(np.ceil(offset(visit.departure)), rows["a"][-1], t)))
    return optimizer.Problem(
        slot_s=np.full(t, slot_s),
        max_power_w=np.array(rows["max"])[:, None] * present.reshape(-1, t),
        energy_wh=np.array(rows["need"]), arrival_slot=np.array(rows["a"]),
        departure_slot=np.array(rows["d"]), node_parent=topo.node_parent,
        connector_node=np.array(rows["node"]), node_limit_w=node_w, node_limit_a=node_a,
        phases=np.array(rows["phases"]), phase=np.array(rows["phase"]),
        voltage_v=np.array(rows["volt"]))


def presence(day: Day, slot_s: float = OFFLINE_SLOT_S) -> np.ndarray:
    """(N, T): the share of each offline slot (`slot_s` long) the replay has each visit's car
    plugged in.

    The replay (quality_loop.run_day, REPLAY_STEP_S steps) plugs a car in at the first step at
    or after its arrival and lets it charge until the first step at or after its departure:
    only that share of its first and last slots is its."""
    t = int(round(day.hours * 3600 / slot_s))
    edges_s = np.arange(t + 1) * slot_s
    out = np.zeros((len(day.visits), t))
    for i, visit in enumerate(day.visits):
        plugged_s = _first_step_s(day, visit.arrival)
        unplugged_s = _first_step_s(day, visit.departure)
        overlap = (np.minimum(edges_s[1:], unplugged_s) - np.maximum(edges_s[:-1], plugged_s))
        out[i] = np.clip(overlap / slot_s, 0.0, 1.0)
    return out


def _first_step_s(day: Day, moment: datetime) -> float:
    """Seconds from the day's start to the replay's first step at or after `moment`."""
    return float(np.ceil((moment - day.start).total_seconds() / REPLAY_STEP_S) * REPLAY_STEP_S)


def offline_optimum_wh(day: Day) -> float:
    problem = offline_problem(day)
    return float(np.minimum(optimizer.solve(problem).delivered_wh, problem.energy_wh).sum())
