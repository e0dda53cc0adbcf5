"""Feasibility check of any allocation against a Problem: every violated limit, with its amount.

Kinds (the `index` field names a connector or a node, as the kind says):

    negative_power       connector power below 0                         limit 0 W
    outside_window       connector power > 0 outside arrival..departure  limit 0 W
    above_max            connector power above max_power_w               limit max_power_w [W]
    below_min            0 < power < min_power_w (the minimum-rate rule)  limit min_power_w [W]
    energy_over_request  delivered energy above energy_wh (slot None)     limit energy_wh [Wh]
    node_power           node load above node_limit_w                     limit node_limit_w [W]
    node_current         node phase current above node_limit_a            limit node_limit_a [A]

`tol` is absolute, in the unit of the limit (W, Wh, A). With tol=0 the check is exact for the
floating-point sums computed here: `node_loads` is the one place loads are summed, and the
safety projection in optimizer/safety.py scales against the very same sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.problem import N_PHASES, Problem

KINDS = ("negative_power", "outside_window", "above_max", "below_min", "energy_over_request",
         "node_power", "node_current")


@dataclass(frozen=True)
class Violation:
    kind: str            # one of KINDS
    index: int           # connector index, or node index for node_power / node_current
    slot: int | None     # None for energy_over_request
    phase: int | None    # 0=L1, 1=L2, 2=L3 for node_current, else None
    limit: float         # the limit that was crossed [W, Wh or A]
    value: float         # the allocation's value [same unit]
    excess: float        # how far past the limit (always > tol) [same unit]


def node_loads(problem: Problem, power_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, T) power load and (M, 3, T) per-phase current of every node for power_w (N, T)."""
    # one sparse product for the four loads (Problem.load_matrix: the same sums to the bit as
    # node_connector @ power_w and node_connector @ (amps[:, ph, None] * power_w), without
    # their three (N, T) temporaries)
    m = problem.n_nodes
    loads = np.asarray(problem.load_matrix @ power_w)
    # (M, 3, T), laid out as before (np.stack): a reduction over it sums in the same order
    load_a = np.ascontiguousarray(loads[m:].reshape(N_PHASES, m, -1).transpose(1, 0, 2))
    return loads[:m], load_a


def feasible(problem: Problem, power_w: np.ndarray) -> bool:
    """True exactly when check(problem, power_w, tol=0) is empty, without listing violations.

    The same comparisons on the same sums as `check` (node_loads' sums, row by row), cheapest
    first, stopping at the first one that fails; phase currents are summed only when some finite
    current limit exists (an infinite limit is never exceeded)."""
    power_w = _as_power(problem, power_w)
    if (power_w < 0).any():
        return False
    upper = problem.upper_w  # max_power_w inside the window, 0 outside
    if (power_w > upper).any():
        return False
    if ((power_w > 0) & (power_w < problem.min_power_w[:, None])).any():
        return False
    if (delivered_wh(problem, power_w) > problem.energy_wh).any():
        return False
    if not problem.has_phase_limits:
        return not (np.asarray(problem.node_connector @ power_w) > problem.node_limit_w).any()
    load_w, load_a = node_loads(problem, power_w)
    return not ((load_w > problem.node_limit_w).any()
                or (load_a > problem.node_limit_a[:, None, :]).any())


def delivered_wh(problem: Problem, power_w: np.ndarray) -> np.ndarray:
    # einsum, not `@`: OpenBLAS's threaded matrix-vector product took 7.6 ms for (10000, 96) on
    # the 2-core benchmark machine, einsum 0.5 ms. Every check and projection sums through here.
    return np.einsum("it,t->i", power_w, problem.wh_per_w)


def _as_power(problem: Problem, power_w) -> np.ndarray:
    power_w = np.asarray(power_w, dtype=float)
    shape = (problem.n_connectors, problem.n_slots)
    if power_w.shape != shape:
        raise ValueError(f"power_w: shape {power_w.shape} does not fit {shape}")
    if not np.isfinite(power_w).all():
        bad = np.argwhere(~np.isfinite(power_w))[0]
        raise ValueError(f"power_w[{bad[0]}, {bad[1]}]: is not finite")
    return power_w


def _collect(out: list, kind: str, mask: np.ndarray, limit: np.ndarray, value: np.ndarray,
             phase: int | None = None) -> None:
    """Append one Violation per True in mask; mask/limit/value share the shape (index, slot)."""
    if not mask.any():  # the usual case; argwhere on a large all-False mask is the slow part
        return
    for idx in np.argwhere(mask):
        where = tuple(idx)
        lim, val = float(limit[where]), float(value[where])
        excess = lim - val if kind in ("below_min", "negative_power") else val - lim
        slot = int(idx[1]) if idx.shape[0] > 1 else None
        out.append(Violation(kind, int(idx[0]), slot, phase, lim, val, excess))


def check(problem: Problem, power_w, tol: float = 1e-6) -> list[Violation]:
    """Every limit power_w (N, T) violates by more than tol; [] when it respects them all."""
    power_w = _as_power(problem, power_w)
    out: list[Violation] = []
    zero = np.zeros_like(power_w)
    _collect(out, "negative_power", power_w < -tol, zero, power_w)
    outside = ~problem.available
    _collect(out, "outside_window", outside & (power_w > tol), zero, power_w)
    _collect(out, "above_max", problem.available & (power_w > problem.max_power_w + tol),
             problem.max_power_w, power_w)
    min_w = np.broadcast_to(problem.min_power_w[:, None], power_w.shape)
    _collect(out, "below_min", (power_w > tol) & (power_w < min_w - tol), min_w, power_w)
    energy = delivered_wh(problem, power_w)
    _collect(out, "energy_over_request", energy > problem.energy_wh + tol,
             problem.energy_wh, energy)
    load_w = np.asarray(problem.node_connector @ power_w)  # = node_loads(...)[0]
    _collect(out, "node_power", load_w > problem.node_limit_w + tol, problem.node_limit_w, load_w)
    if problem.has_phase_limits:  # an infinite current limit is never exceeded
        load_a = node_loads(problem, power_w)[1]
        for ph in range(N_PHASES):
            _collect(out, "node_current", load_a[:, ph] > problem.node_limit_a + tol,
                     problem.node_limit_a, load_a[:, ph], phase=ph)
    return out
