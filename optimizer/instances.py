"""Seeded benchmark and test instances resembling workplace and public charging.

`generate(n_connectors, ...)` returns an `optimizer.Problem` for one day planned at once: the
horizon starts at 00:00 and has `n_slots` slots of `slot_s` seconds (default 96 x 15 min = 24 h).
Every draw comes from one `numpy.random.Generator(seed)`, so the same arguments always give the
same problem.

The distribution (all times in hours after 00:00):

- Circuit tree, three levels below the site: node 0 is the site (grid connection); nodes
  1..n_feeders are feeders; then stations, `connectors_per_station` connectors each, assigned to
  feeders round-robin. Connector i hangs under its station's node.
- Station type (all connectors of a station share it): 60 % 11 kW three-phase (16 A), 25 % 22 kW
  three-phase (32 A), 15 % 7.4 kW single-phase (32 A). 230 V phase-to-neutral.
- Vehicle: 15 % of vehicles charge on one phase only (a 7.4 kW on-board charger); on a three-phase
  connector such a vehicle loads one phase. The vehicle limits the connector: at most 11 kW for
  70 % of three-phase vehicles, 22 kW for the rest. `max_power_w[i]` is the smaller of the station
  and vehicle limits, constant over the window.
- Phases: single-phase loads are spread unevenly: L1 45 %, L2 35 %, L3 20 % (installers rotate
  phases, but never evenly in practice).
- Minimum rate (when `min_power=True`): 6 A per phase used (IEC 61851), 1380 W single-phase,
  4140 W three-phase.
- Arrival: a mixture — 70 % commuters around 08:00 (normal, sd 1 h), 30 % spread uniformly over
  06:00-20:00. Dwell: uniform 2-10 h. Departure is clipped to the horizon end.
- Requested energy: uniform 5-60 kWh (not capped by what the dwell allows: some requests cannot
  be met, as in real life).
- Priority weight: 1 for 90 % of sessions, 2 for the rest (fleet vehicles).
- Limits. Site: `site_cap_fraction` x the sum of connector maxima, the fraction drawn uniformly
  from 35-50 % unless given, and lowered to 70 % of that from 17:00 to 19:00 (a demand-response
  event). Feeders: 50-90 % of the sum of their connectors' maxima (so they bind sometimes).
  Stations: 30 % of stations share one supply between their connectors (limit = one
  connector's rating); the rest have no own limit.
- Family "power": power limits only (node_limit_w). Family "phase": additionally per-phase
  current limits on the site and on every feeder, equal to their power limit / (3 x 230 V), so a
  balanced load reaches both together and an unbalanced one hits the phase limit first.
- Prices (when `prices=True`): 0.20/kWh 00:00-07:00 and 22:00-24:00, 0.30 in the day, 0.40
  17:00-20:00.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from optimizer.problem import Problem

FAMILIES = ("power", "phase")
VOLTAGE_V = 230.0
MIN_CURRENT_A = 6.0

# (probability, power [W], phases) per station type.
STATION_TYPES = ((0.60, 11_000.0, 3), (0.25, 22_000.0, 3), (0.15, 7_360.0, 1))
SINGLE_PHASE_SHARE = (0.45, 0.35, 0.20)


def _hours_to_slot(hours: np.ndarray, slot_s: float, n_slots: int) -> np.ndarray:
    return np.clip(np.floor(hours * 3600.0 / slot_s), 0, n_slots).astype(np.int64)


def _price_per_kwh(n_slots: int, slot_s: float) -> np.ndarray:
    hour = (np.arange(n_slots) * slot_s / 3600.0) % 24.0
    price = np.full(n_slots, 0.30)
    price[(hour < 7.0) | (hour >= 22.0)] = 0.20
    price[(hour >= 17.0) & (hour < 20.0)] = 0.40
    return price


def generate(n_connectors: int, n_slots: int = 96, slot_s: float = 900.0, family: str = "power",
             seed: int = 0, n_feeders: int = 20, connectors_per_station: int = 2,
             site_cap_fraction: float | None = None, min_power: bool = True,
             prices: bool = True) -> Problem:
    """A seeded problem with n_connectors sessions; the module docstring gives the distribution."""
    if family not in FAMILIES:
        raise ValueError(f"family: must be one of {FAMILIES}, got {family!r}")
    if n_connectors < 1:
        raise ValueError("n_connectors: must be at least 1")
    if connectors_per_station < 1 or n_feeders < 1:
        raise ValueError("connectors_per_station and n_feeders: must be at least 1")
    rng = np.random.default_rng(seed)
    n = n_connectors

    # --- tree -------------------------------------------------------------------------------
    n_stations = -(-n // connectors_per_station)
    n_feeders = min(n_feeders, n_stations)
    station_feeder = 1 + np.arange(n_stations) % n_feeders
    first_station = 1 + n_feeders
    node_parent = np.concatenate([[-1], np.zeros(n_feeders, dtype=np.int64), station_feeder])
    connector_station = np.arange(n) // connectors_per_station
    connector_node = first_station + connector_station

    # --- connectors and vehicles ------------------------------------------------------------
    probs = [p for p, _, _ in STATION_TYPES]
    station_type = rng.choice(len(STATION_TYPES), size=n_stations, p=probs)
    rating_w = np.array([w for _, w, _ in STATION_TYPES])[station_type][connector_station]
    station_phases = np.array([ph for _, _, ph in STATION_TYPES])[station_type][connector_station]
    vehicle_single = rng.random(n) < 0.15
    phases = np.where(vehicle_single | (station_phases == 1), 1, 3)
    vehicle_max_w = np.where(rng.random(n) < 0.70, 11_000.0, 22_000.0)
    vehicle_max_w = np.where(vehicle_single, 7_360.0, vehicle_max_w)
    max_w = np.minimum(np.minimum(rating_w, vehicle_max_w),
                       np.where(phases == 1, 32.0 * VOLTAGE_V, np.inf))
    phase = rng.choice(3, size=n, p=SINGLE_PHASE_SHARE)
    min_w = np.where(phases == 1, 1.0, 3.0) * MIN_CURRENT_A * VOLTAGE_V if min_power else 0.0

    # --- sessions ---------------------------------------------------------------------------
    commuter = rng.random(n) < 0.70
    arrival_h = np.where(commuter, rng.normal(8.0, 1.0, n), rng.uniform(6.0, 20.0, n))
    dwell_h = rng.uniform(2.0, 10.0, n)
    arrival_slot = _hours_to_slot(np.maximum(arrival_h, 0.0), slot_s, n_slots)
    departure_slot = np.maximum(_hours_to_slot(arrival_h + dwell_h, slot_s, n_slots), arrival_slot)
    energy_wh = rng.uniform(5_000.0, 60_000.0, n)
    weight = np.where(rng.random(n) < 0.10, 2.0, 1.0)

    # --- limits -----------------------------------------------------------------------------
    m = node_parent.shape[0]
    hour = np.arange(n_slots) * slot_s / 3600.0
    fraction = rng.uniform(0.35, 0.50) if site_cap_fraction is None else site_cap_fraction
    site_w = fraction * max_w.sum() * np.where((hour >= 17.0) & (hour < 19.0), 0.70, 1.0)
    feeder_sum_w = np.bincount(station_feeder[connector_station] - 1, weights=max_w,
                               minlength=n_feeders)
    feeder_w = feeder_sum_w * rng.uniform(0.5, 0.9, n_feeders)
    station_shared = rng.random(n_stations) < 0.30
    station_rating_w = np.array([w for _, w, _ in STATION_TYPES])[station_type]
    station_w = np.where(station_shared, station_rating_w, np.inf)

    node_limit_w = np.full((m, n_slots), np.inf)
    node_limit_w[0] = site_w
    node_limit_w[1:first_station] = feeder_w[:, None]
    node_limit_w[first_station:] = station_w[:, None]
    node_limit_a = np.full((m, n_slots), np.inf)
    if family == "phase":
        node_limit_a[:first_station] = node_limit_w[:first_station] / (3.0 * VOLTAGE_V)

    return Problem(
        slot_s=np.full(n_slots, float(slot_s)),
        max_power_w=np.broadcast_to(max_w[:, None], (n, n_slots)),
        energy_wh=energy_wh, arrival_slot=arrival_slot, departure_slot=departure_slot,
        node_parent=node_parent, connector_node=connector_node,
        node_limit_w=node_limit_w, node_limit_a=node_limit_a,
        min_power_w=min_w, phases=phases, phase=phase, voltage_v=VOLTAGE_V, weight=weight,
        price_per_kwh=_price_per_kwh(n_slots, slot_s) if prices else None,
    )


def subset(problem: Problem, connectors) -> Problem:
    """The same site with only `connectors` (indices, in that order): the problem before a car
    arrived, or after one left (benchmarks of warm re-plans, tests/test_optimizer_warm.py)."""
    idx = np.asarray(connectors, dtype=np.int64)
    per_connector = ("max_power_w", "energy_wh", "arrival_slot", "departure_slot",
                     "connector_node", "min_power_w", "phases", "phase", "voltage_v", "weight")
    fields = {name: getattr(problem, name)[idx] for name in per_connector}
    if problem.previous_w is not None:
        fields["previous_w"] = problem.previous_w[idx]
    return dataclasses.replace(problem, **fields)
