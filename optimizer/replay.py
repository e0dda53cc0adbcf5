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

import dataclasses
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
    # What the planner is told, when it differs from the truth (a driver's estimates): the
    # energy asked for and the departure expected. None: the truth.
    told_energy_wh: np.ndarray | None = None
    told_departure: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("arrival", "departure"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        for name in ("energy_wh", "max_power_w"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=float))
        told_e = self.energy_wh if self.told_energy_wh is None else self.told_energy_wh
        told_d = self.departure if self.told_departure is None else self.told_departure
        object.__setattr__(self, "told_energy_wh", np.asarray(told_e, dtype=float))
        object.__setattr__(self, "told_departure", np.asarray(told_d, dtype=np.int64))

    def truthful(self) -> "Sessions":
        return dataclasses.replace(self, told_energy_wh=None, told_departure=None)


def _plan(method: str, problem: Problem) -> np.ndarray:
    if method == "solve":
        return solve(problem).power_w
    return getattr(baselines, method)(problem)


def _limits(limit_w, n_periods: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(limit_w, dtype=float), (n_periods,)).copy()


def online(sessions: Sessions, limit_w, method: str = "solve", replan_every: int | None = None,
           min_power_w: float = 0.0, power_w_out: np.ndarray | None = None,
           replan_on_change: bool = False, min_stay_periods: int = 1) -> np.ndarray:
    """(S,) energy delivered to each session [Wh] when `method` ("solve" or a baseline name)
    re-plans at every arrival (and every `replan_every` periods, and with replan_on_change at
    the period after a car left or stopped taking power, as a closed loop would) with what it
    is told then: each present car's told departure (once that has passed while the car is
    still there, `min_stay_periods` more: the site controller plans such a car over at least
    four 15-min slots, rather than cramming it into the next period)
    and its told need less what it got. A car takes at most its true remaining need.
    power_w_out, an (S, P) array when given, receives the power each session drew [W]."""
    s = sessions
    limit = _limits(limit_w, s.n_periods)
    remaining = s.energy_wh.copy()
    delivered = np.zeros_like(remaining)
    arrivals = set(int(a) for a in s.arrival if 0 <= a < s.n_periods)
    if replan_every:
        arrivals |= set(range(0, s.n_periods, replan_every))
    wh_per_w = s.period_s / 3600.0
    plan, plan_start, plan_of = None, 0, None
    changed = False   # a car left or stopped taking power in the period before
    for p in range(s.n_periods):
        here = np.flatnonzero((s.arrival <= p) & (s.departure > p) & (remaining > 1e-9))
        if p in arrivals or plan is None or (replan_on_change and changed):
            plan, plan_start, plan_of = _replan(s, method, limit, delivered, here, p,
                                                min_power_w, min_stay_periods)
        changed = False
        if here.size == 0 or plan is None:
            continue
        column = p - plan_start
        power = np.zeros(here.size)
        rows = np.searchsorted(plan_of, here)
        known = (rows < plan_of.size) & (plan_of[np.minimum(rows, plan_of.size - 1)] == here)
        if column < plan.shape[1]:
            power[known] = plan[rows[known], column]
        got = np.minimum(power * wh_per_w, remaining[here])
        remaining[here] -= got
        delivered[here] += got
        if power_w_out is not None:
            power_w_out[here, p] = got / wh_per_w
        changed = bool((remaining[here] <= 1e-9).any() or (s.departure[here] == p + 1).any())
    return delivered


def _replan(s: Sessions, method: str, limit: np.ndarray, delivered: np.ndarray,
            here: np.ndarray, p0: int, min_power_w: float, min_stay_periods: int = 1):
    """(plan (len(here), T), its first period, the sessions it covers) or (None, p0, None)."""
    if here.size == 0:
        return None, p0, None
    told_left = np.maximum(s.told_energy_wh[here] - delivered[here], 0.0)
    leave = np.where(s.told_departure[here] > p0, s.told_departure[here],
                     p0 + max(min_stay_periods, 1))
    horizon = int(leave.max()) - p0
    limit_row = np.concatenate([limit, np.full(max(0, p0 + horizon - limit.size), limit[-1])])
    problem = Problem(
        slot_s=[s.period_s] * horizon, max_power_w=s.max_power_w[here],
        energy_wh=told_left, arrival_slot=np.zeros(here.size, dtype=np.int64),
        departure_slot=leave - p0, node_parent=[-1],
        connector_node=np.zeros(here.size, dtype=np.int64),
        node_limit_w=limit_row[p0:p0 + horizon][None, :], min_power_w=min_power_w)
    return _plan(method, problem), p0, here


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
