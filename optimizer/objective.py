"""The objective every backend optimises, as coefficient arrays.

We maximise, in "value units" (VU):

    sum_i sum_k segment_value[i, k] * s[i, k]  -  sum_i sum_t slot_cost[t] * wh_per_w[t] * x[i, t]
      + sum_i sum_t urgency_value[i, t] * wh_per_w[t] * x[i, t]

where x[i, t] is connector i's power in slot t [W], and the energy delivered to i,
d_i = sum_t wh_per_w[t] * x[i, t] [Wh], is split into K equal segments s[i, 0..K-1] of
segment_wh[i] = energy_wh[i] / K each (so d_i <= energy_wh[i]).

The four goals, in strict priority, come from how the coefficients are separated:

1. Energy, weighted by priority: segment_value[i, k] = A * w_i + f_k.
2. Cost: slot_cost[t] = P_t, where P_t is the price quantised to 1/1000 of the largest absolute
   price in the horizon (0 when no prices are given). Every slot_cost is an integer.
3. Fairness: f_k = (K - 1 - k) / (2 K) < 1/2 VU per Wh, decreasing in k: a session's first
   quarter is worth more than its second, and so on. When energy is short, every session
   competing for the same capacity gets its first quarter before any gets its second — a
   concave, piecewise-linear value of delivered energy, which keeps the model linear (and a
   network flow).
4. Timing, a tie-break: urgency_value[i, t] rewards charging early, and the sessions with the
   least slack earliest; below 1 / (2 K) VU per Wh on any change of plan
   (optimizer/urgency.py says why it never trades energy, cost or fairness). On sites too large
   for it (urgency scale Q = 1) the level is off and plain earliness stays in the cost:
   slot_cost[t] = P_t * T + t, as before the tie-break existed.

Why the order is strict. Any change from one feasible schedule to another decomposes (flow
decomposition over the (node, slot) network) into paths that deliver more energy and cycles that
move energy between sessions or slots. Per Wh moved:
- a path that delivers one more Wh to session i in slot t gains A * w_i + f_k - slot_cost[t],
  which is > 0 because A * w_min > max(slot_cost) + 1: delivering more always wins (1 before 2, 3);
- a cycle that moves one Wh from session j to session i gains A * (w_i - w_j) plus cost and
  fairness terms, where one Wh makes room for exactly one Wh: true under power limits, and under
  a per-phase current limit whose connectors all put the same current per watt on each phase
  (such a limit is a power limit, `power_equivalent_limit_w`). Weights are quantised to 0.01 and
  A is sized so that the smallest non-zero |w_i - w_j| times A exceeds the largest cost change
  such a move can bring plus fairness, so a higher weighted energy always wins (1 before 2, 3);
- a cycle at equal weights changes cost by an integer combination of slot costs — 0 or at least
  1 VU per Wh — and fairness by at most max(f) - min(f) < 1/2 VU per Wh: cost decides first, and
  fairness only splits what cost leaves tied (2 before 3).
The same holds for the min-cost network flow, where all coefficients are integers after scaling
by 2 K (see optimizer/flow.py).

Where one Wh is not one Wh. A per-phase current limit shared by connectors that draw different
currents per watt (single- and three-phase, 230 and 240 V) lets one Wh of one session make room
for 1/3, 2/3, 3/2, 3, 240/230, ... Wh of others (one three-phase car against two single-phase
cars on two phases: 2/3), and the gain A * (r * w_i - w_j) can be as small as the rates and
weights make it: no finite A keeps the order for every instance (an 11 kW three-phase car at
weight 1 against two single-phase cars at 1.48 under 16 A lost 1/3 of a Wh for each Wh of cost it
saved). There `energy_first_by_construction(problem)` is False and the LP backends make the
order exact, lexicographically: HiGHS checks, warm from this objective's optimum (or by a
weak-duality bound read from its basis), that the
weighted energy alone (`weight`) cannot be raised, and if it can re-solves this objective with
the weighted energy held at its optimum (optimizer/lp.py `HighsModel.solve`); PuLP solves the
weighted energy alone first, then this objective with it held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.problem import Problem
from optimizer.urgency import urgency

N_SEGMENTS = 4
PRICE_LEVELS = 1000
WEIGHT_QUANTUM = 0.01


@dataclass(frozen=True, eq=False)
class Objective:
    slot_cost: np.ndarray      # (T,) VU per Wh charged in slot t (integers stored as float)
    segment_value: np.ndarray  # (N, K) VU per Wh of segment k of session i
    segment_wh: np.ndarray     # (N,) size of every segment of session i [Wh]
    energy_scale: float        # A
    fairness: np.ndarray       # (K,) f_k
    weight: np.ndarray         # (N,) quantised weights w_i: the value of a Wh when energy alone
                               # is maximised (the first stage of a lexicographic solve)
    urgency: np.ndarray        # (N, T) integer urgency rewards u in 0..U (optimizer/urgency.py)
    urgency_scale: int         # Q: u is in units of 1 / (2 K Q) VU per Wh

    @property
    def urgency_value(self) -> np.ndarray:
        """(N, T) the urgency tie-break's reward [VU per Wh], < 1 / (2 K S) each."""
        return self.urgency / (2.0 * self.n_segments * self.urgency_scale)

    @property
    def n_segments(self) -> int:
        return int(self.segment_value.shape[1])


def quantised_weight(weight: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(weight / WEIGHT_QUANTUM) * WEIGHT_QUANTUM, WEIGHT_QUANTUM)


def quantised_price_levels(price_per_kwh: np.ndarray | None, n_slots: int) -> np.ndarray:
    """(T,) integer price levels P_t; zeros without prices."""
    if price_per_kwh is None:
        return np.zeros(n_slots)
    scale = float(np.max(np.abs(price_per_kwh)))
    if scale == 0.0:
        return np.zeros(n_slots)
    return np.round(price_per_kwh / scale * PRICE_LEVELS)


def power_equivalent_limit_w(problem: Problem, upper_w: np.ndarray) -> np.ndarray | None:
    """(M, T) node power limits with every per-phase current limit folded in, or None when some
    current limit is not a power limit.

    A current limit is a power limit when every connector under the node puts the same current
    per watt on each phase (all 3-phase at one voltage, or all single-phase on one phase at one
    voltage): phase p then carries a_p * P, a limit of limit_a / a_p. It can be ignored when even
    every connector at its maximum (upper_w) stays under it. Otherwise one Wh of one connector
    can make room for more or less than one Wh of another."""
    limit_w = np.array(problem.node_limit_w, dtype=float)
    limited = np.flatnonzero(np.isfinite(problem.node_limit_a).any(axis=1))
    if limited.size == 0:
        return limit_w
    node_connector = problem.node_connector
    amps_per_w = problem.amps_per_w
    for node in limited:  # only nodes with a current limit: a handful (site, feeders)
        conns = node_connector.indices[node_connector.indptr[node]:node_connector.indptr[node + 1]]
        limit_a = problem.node_limit_a[node]
        if conns.size == 0:
            continue
        rows = amps_per_w[conns]
        if np.all(rows == rows[0]):
            per_w = rows[0][rows[0] > 0].max()
            limit_w[node] = np.minimum(limit_w[node], limit_a / per_w)
            continue
        load_a = upper_w[conns].T @ rows  # (T, 3): every connector at its maximum
        if np.any(load_a > limit_a[:, None]):
            return None
    return limit_w


def energy_first_by_construction(problem: Problem) -> bool:
    """True when one Wh makes room for exactly one Wh under every limit that can bind, so the
    weighted objective alone keeps energy first (see the module docstring); False when the LP
    must solve lexicographically."""
    return power_equivalent_limit_w(problem, problem.upper_w) is not None


def build_objective(problem: Problem, n_segments: int = N_SEGMENTS) -> Objective:
    t = problem.n_slots
    reward, scale = urgency(problem)
    # Earliness is the urgency level's job (level 4, weighted by urgency); only where that level
    # is off (scale 1: sites too large for it) does the plain earliness stay in the cost.
    if scale == 1:
        slot_cost = quantised_price_levels(problem.price_per_kwh, t) * t + np.arange(t)
    else:
        slot_cost = quantised_price_levels(problem.price_per_kwh, t)
    weight = quantised_weight(problem.weight)
    cost_range = float(slot_cost.max() - slot_cost.min())
    positive_cost = max(float(slot_cost.max()), 0.0)
    largest_cost = float(np.abs(slot_cost).max())
    need = positive_cost + 1.0
    if weight.size:
        need /= float(weight.min())
        distinct = np.unique(weight)
        if distinct.size > 1:
            # Moving one Wh between sessions of different weights gains at least the smallest
            # weight step times A; that must outweigh its cost change (at most 2 * the largest
            # cost per Wh: one slot less, one more) plus fairness (< 1).
            gain = float(np.diff(distinct).min())
            spread = max(cost_range, 2.0 * largest_cost)
            need = max(need, (spread + 1.0) / gain)
    # A is a whole multiple of 100 so A * w (w in steps of 0.01) is an integer.
    energy_scale = 100.0 * np.floor(need / 100.0 + 1.0)
    k = np.arange(n_segments)
    fairness = (n_segments - 1 - k) / (2.0 * n_segments)
    segment_value = energy_scale * weight[:, None] + fairness[None, :]
    segment_wh = problem.energy_wh / n_segments
    return Objective(slot_cost=slot_cost, segment_value=segment_value, segment_wh=segment_wh,
                     energy_scale=energy_scale, fairness=fairness, weight=weight,
                     urgency=reward, urgency_scale=scale)


def delivered_wh(problem: Problem, power_w: np.ndarray) -> np.ndarray:
    """(N,) energy each connector receives from power_w over the horizon [Wh]."""
    # einsum: OpenBLAS's gemv was ~15x slower on (10000, 96) here (benchmarks/README.md)
    return np.einsum("it,t->i", np.asarray(power_w, dtype=float), problem.wh_per_w)


def _filled_wh(problem: Problem, objective: Objective, power_w: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """((N,) delivered [Wh], capped at the request; (N, K) of it in each segment: segment k holds
    what is delivered beyond k segments, up to one segment)."""
    delivered = np.minimum(delivered_wh(problem, power_w), problem.energy_wh)
    k = np.arange(objective.n_segments)
    seg = objective.segment_wh[:, None]
    return delivered, np.clip(delivered[:, None] - k[None, :] * seg, 0.0, seg)


def _cost(problem: Problem, objective: Objective, power_w: np.ndarray) -> float:
    return float(np.einsum("it,t->", power_w, problem.wh_per_w * objective.slot_cost))


def evaluate(problem: Problem, objective: Objective, power_w: np.ndarray) -> float:
    """The objective value of any allocation (segments filled best-first, capped at the request)."""
    power_w = np.asarray(power_w, dtype=float)
    _, filled = _filled_wh(problem, objective, power_w)
    value = float(np.sum(objective.segment_value * filled))
    reward = float(np.einsum("it,it,t->", power_w, objective.urgency_value, problem.wh_per_w))
    return value - _cost(problem, objective, power_w) + reward


def levels(problem: Problem, objective: Objective, power_w: np.ndarray
           ) -> tuple[float, float, float]:
    """(weighted energy [Wh], cost, fairness value) of power_w: the objective's three levels
    above urgency, each alone (`evaluate` sums them with their scales)."""
    power_w = np.asarray(power_w, dtype=float)
    delivered, filled = _filled_wh(problem, objective, power_w)
    return (float(objective.weight @ delivered), _cost(problem, objective, power_w),
            float(np.sum(objective.fairness[None, :] * filled)))
