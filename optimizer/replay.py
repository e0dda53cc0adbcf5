"""Online replay of charging sessions at the optimizer level (the ACN-Sim style of evaluation).

Sessions are arrays over one horizon of P periods of `period_s` seconds:

    arrival      (S,)  first period the car is present (inclusive)
    departure    (S,)  first period the car is gone (exclusive)
    energy_wh    (S,)  energy the car asks for [Wh]
    max_power_w  (S,)  the car's (and bay's) maximum power [W]

`online(...)` re-plans whenever a car arrives (optionally every `replan_every` periods too), knowing
only the cars present then (their departures and remaining needs), and applies the plan until
the next re-plan; `offline(...)` is the clairvoyant optimum, one LP over the whole horizon knowing
every car in advance. Both run under one site power limit per period (scalar or (P,)).

Pure numerics: arrays in, arrays out; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer import baselines
from optimizer.problem import Problem
from optimizer.solve import solve


@dataclass(frozen=True)
class Sessions:
    arrival: np.ndarray
    departure: np.ndarray
    energy_wh: np.ndarray
    max_power_w: np.ndarray
    period_s: float
    n_periods: int

    def __post_init__(self) -> None:
        for name in ("arrival", "departure"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        for name in ("energy_wh", "max_power_w"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=float))


def _plan(method: str, problem: Problem) -> np.ndarray:
    if method == "solve":
        return solve(problem).power_w
    return getattr(baselines, method)(problem)


def _limits(limit_w, n_periods: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(limit_w, dtype=float), (n_periods,)).copy()


def online(sessions: Sessions, limit_w, method: str = "solve", replan_every: int | None = None,
           min_power_w: float = 0.0, power_w_out: np.ndarray | None = None) -> np.ndarray:
    """(S,) energy delivered to each session [Wh] when `method` ("solve" or a baseline name)
    re-plans at every arrival (and every `replan_every` periods) with what is known then.
    power_w_out, an (S, P) array when given, receives the power each session drew [W]."""
    s = sessions
    limit = _limits(limit_w, s.n_periods)
    remaining = s.energy_wh.copy()
    delivered = np.zeros_like(remaining)
    starts = set(int(a) for a in s.arrival if 0 <= a < s.n_periods)
    if replan_every:
        starts |= set(range(0, s.n_periods, replan_every))
    starts = sorted(starts)
    wh_per_w = s.period_s / 3600.0
    for k, p0 in enumerate(starts):
        p1 = starts[k + 1] if k + 1 < len(starts) else s.n_periods
        here = np.flatnonzero((s.arrival <= p0) & (s.departure > p0) & (remaining > 1e-9))
        if here.size == 0:
            continue
        horizon = int(s.departure[here].max()) - p0
        problem = Problem(
            slot_s=[s.period_s] * horizon, max_power_w=s.max_power_w[here],
            energy_wh=remaining[here], arrival_slot=np.zeros(here.size, dtype=np.int64),
            departure_slot=s.departure[here] - p0, node_parent=[-1],
            connector_node=np.zeros(here.size, dtype=np.int64),
            node_limit_w=limit[p0:p0 + horizon][None, :], min_power_w=min_power_w)
        power = _plan(method, problem)[:, :p1 - p0]
        got = np.minimum(power.sum(axis=1) * wh_per_w, remaining[here])
        if power_w_out is not None:
            power_w_out[here, p0:p1] = power
        remaining[here] -= got
        delivered[here] += got
    return delivered


def offline(sessions: Sessions, limit_w) -> np.ndarray:
    """(S,) energy delivered to each session [Wh] by the clairvoyant optimum: one LP over the
    whole horizon knowing every car (arrival, departure, need, maximum) in advance."""
    s = sessions
    problem = Problem(
        slot_s=[s.period_s] * s.n_periods, max_power_w=s.max_power_w, energy_wh=s.energy_wh,
        arrival_slot=s.arrival, departure_slot=s.departure, node_parent=[-1],
        connector_node=np.zeros(s.arrival.size, dtype=np.int64),
        node_limit_w=_limits(limit_w, s.n_periods)[None, :])
    return solve(problem).delivered_wh


def synthetic(seed: int, n_sessions: int = 40, n_periods: int = 144, period_s: float = 300.0
              ) -> Sessions:
    """Seeded sessions resembling a workplace garage: arrivals bunched in the morning and spread
    over the day, dwell 1-8 h, 5-40 kWh, 7.4 or 11 kW on-board chargers."""
    rng = np.random.default_rng(seed)
    per_h = 3600.0 / period_s
    morning = rng.normal(2.0, 1.0, n_sessions)
    spread = rng.uniform(0.0, n_periods / per_h - 2.0, n_sessions)
    arrival_h = np.where(rng.random(n_sessions) < 0.6, morning, spread)
    arrival = np.clip(np.round(arrival_h * per_h), 0, n_periods - 2).astype(np.int64)
    dwell = np.round(rng.uniform(1.0, 8.0, n_sessions) * per_h).astype(np.int64)
    departure = np.minimum(arrival + np.maximum(dwell, 1), n_periods)
    energy_wh = rng.uniform(5000.0, 40000.0, n_sessions)
    max_power_w = np.where(rng.random(n_sessions) < 0.5, 7400.0, 11000.0)
    return Sessions(arrival, departure, energy_wh, max_power_w, period_s, n_periods)
