"""Why the plan's first slot leaves the limit unused while the site is short (truthful runs).

    python -m benchmarks.quality_firstslot --days demo [--set near_slot_s=None] [--at 02:46]

Each day runs with every driver truthful through the controller (benchmarks/quality_loop.py),
every re-plan captured (`pause_causes.Capture`). For each minute the site is short (the plugged
cars' batteries would take more than the grid limit), the limit less what the cars drew is split
along the re-plan standing then, with independent LPs (scipy's HiGHS, built here from the
`Problem`'s arrays, not the optimizer's model):

- breakers: the limit less what the plugged cars could draw this minute under every breaker and
  phase (the loop's `reachable_w`);
- one slot at what batteries take: that less one slot of the planner's problem (its limits, the
  phases it plans the cars on) with each row raised to what its battery takes;
- row caps: less the same with each row at its upper bound (taper learned, small needs held at
  their minimum, unknown phases, closed-loop caps);
- needs over slot 0: less it with each car's need over the first slot's length too (a car
  2 kWh from full in a 15-min slot: 8 kW);
- energy-optimal: less the most the first slot can carry among the plans that deliver the
  planner's optimal weighted energy over the horizon (the LP gives scarce phase current to the
  cars whose deadlines need it: not a choice, the energy objective);
- tie-break: less the LP's own first slot (among equal-energy plans, the lower levels of the
  objective - cost, fairness, urgency - chose less now);
- rounding (minimum rates), the guard and kept windows, offered and not drawn.

`--at HH:MM`: the re-plan at that minute, its binding limits (node power and phase currents
within 50 W / 0.3 A of their limits in the LP's first slot) and each car's row.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from benchmarks.pause_causes import Capture
from benchmarks.quality import settings_from
from benchmarks.quality_days import days
from benchmarks.quality_loop import run_day
from optimizer.check import node_loads

KWH_PER_W_MIN = 60.0 / 3600.0 / 1000.0


def _rows(problem, slots: range):
    """(A, b): every finite node W and phase-current limit over `slots`, on x (N, len(slots))
    flattened row-major."""
    n, k = problem.n_connectors, len(slots)
    nc = sp.csr_matrix(problem.node_connector)
    blocks, rhs = [], []
    for j, t in enumerate(slots):
        pick = sp.csr_matrix((np.ones(n), (np.arange(n), np.arange(n) * k + j)), shape=(n, n * k))
        finite_w = np.isfinite(problem.node_limit_w[:, t])
        blocks.append((nc[finite_w] @ pick))
        rhs.append(problem.node_limit_w[finite_w, t])
        finite_a = np.isfinite(problem.node_limit_a[:, t])
        for ph in range(3):
            blocks.append(nc[finite_a] @ sp.diags(problem.amps_per_w[:, ph]) @ pick)
            rhs.append(problem.node_limit_a[finite_a, t])
    return sp.vstack(blocks).tocsr(), np.concatenate(rhs)


def one_slot_w(problem, upper_w: np.ndarray, needs: bool) -> float:
    """The most the first slot can carry with each row at most upper_w (and its need over the
    slot's length when `needs`)."""
    a, b = _rows(problem, range(1))
    ub = np.minimum(upper_w, problem.energy_wh / problem.wh_per_w[0]) if needs else upper_w
    res = linprog(-np.ones(problem.n_connectors), A_ub=a, b_ub=b,
                  bounds=np.column_stack([np.zeros_like(ub), ub]), method="highs")
    return -res.fun


def first_slot_at_optimal_energy_w(problem) -> float:
    """The most the first slot can carry among the plans of optimal weighted energy (no minimum
    rates: the LP relaxation's face)."""
    n, t = problem.n_connectors, problem.n_slots
    a, b = _rows(problem, range(t))
    energy = sp.kron(sp.identity(n), sp.csr_matrix(problem.wh_per_w[None, :]))
    a, b = sp.vstack([a, energy]).tocsr(), np.concatenate([b, problem.energy_wh])
    bounds = np.column_stack([np.zeros(n * t), problem.upper_w.ravel()])
    value = np.kron(np.asarray(problem.weight, float), problem.wh_per_w)
    best = -linprog(-value, A_ub=a, b_ub=b, bounds=bounds, method="highs").fun
    first = np.zeros(n * t)
    first[np.arange(n) * t] = -1.0
    a2 = sp.vstack([a, sp.csr_matrix(-value[None, :])]).tocsr()
    b2 = np.append(b, -(best - max(1e-6 * best, 0.5)))
    return -linprog(first, A_ub=a2, b_ub=b2, bounds=bounds, method="highs").fun


def _run(day, settings: dict):
    capture = Capture()
    capture.install()
    trace: list = []
    result = asyncio.run(run_day(day.site, day.visits, day.start, day.hours, day.dr,
                                 truthful=True, trace=trace, settings=settings))
    acceptance = defaultdict(dict)
    for step in trace:
        visit = result.visits[step.visit]
        acceptance[step.at][(visit.station_id, visit.connector_id)] = step.acceptance_w
    return result, capture.by_time, acceptance


def _levels(found: dict, accept: dict) -> tuple | None:
    built, stages = found["built"], found["stages"]
    problem = built.problem
    if problem.n_connectors == 0 or "lp" not in stages:
        return None
    upper = problem.upper_w[:, 0]
    raised = upper.copy()
    for k, ref in enumerate(built.controlled):
        a = accept.get((ref.station_id, ref.connector_id))
        if a is not None and upper[k] > 0:
            raised[k] = max(upper[k], a * built.scale[k])
    return (one_slot_w(problem, raised, False), one_slot_w(problem, upper, False),
            one_slot_w(problem, upper, True), first_slot_at_optimal_energy_w(problem),
            stages["lp"][:, 0].sum(), stages.get("rounded", stages["lp"])[:, 0].sum(),
            stages["final"][:, 0].sum())


PARTS = ("breakers", "one slot at what batteries take", "row caps", "needs over slot 0",
         "energy-optimal", "tie-break", "rounding", "guard and kept", "offered, not drawn")


def breakdown(day, settings: dict) -> dict:
    result, replans, acceptance = _run(day, settings)
    load, limit = np.array(result.load_w), np.array(result.limit_w)
    short = np.array(result.wanted_w) > limit + 1.0
    reach = np.minimum(np.array(result.reachable_w), limit)
    moments = sorted(t for t, f in replans.items() if "built" in f)
    out, cache, j = defaultdict(float), {}, -1
    for i, now in enumerate(result.times):
        while j + 1 < len(moments) and moments[j + 1] <= now:
            j += 1
        if not short[i] or j < 0:
            continue
        at = moments[j]
        if at not in cache:
            cache[at] = _levels(replans[at], acceptance.get(at, {}))
        if cache[at] is None:
            continue
        steps = [limit[i], reach[i], *(min(x, reach[i]) for x in cache[at]), load[i]]
        for name, hi, lo in zip(PARTS, steps, steps[1:]):
            out[name] += (hi - lo) * KWH_PER_W_MIN
    out["short_min"] = int(short.sum())
    out["unused"] = float((limit - load)[short].sum() * KWH_PER_W_MIN)
    out["used"] = float(load[short].sum() / limit[short].sum())
    out["delivered"] = sum(result.charged_wh) / 1000.0
    return out


def show(day, settings: dict, at: str) -> None:
    result, replans, acceptance = _run(day, settings)
    hh, mm = (int(x) for x in at.split(":"))
    moment = next(t for t in sorted(replans) if t.hour == hh and t.minute == mm
                  and "built" in replans[t])
    found = replans[moment]
    built, stages = found["built"], found["stages"]
    problem, lp = built.problem, stages["lp"]
    print(f"re-plan at {moment:%H:%M:%S}, {problem.n_connectors} cars, first slot "
          f"{problem.slot_s[0]:.0f} s; first slot kW: LP {lp[:, 0].sum() / 1e3:.1f}, at optimal "
          f"energy at most {first_slot_at_optimal_energy_w(problem) / 1e3:.1f}, one slot "
          f"{one_slot_w(problem, problem.upper_w[:, 0], False) / 1e3:.1f}")
    load_w, load_a = node_loads(problem, lp)
    for m in range(problem.node_limit_w.shape[0]):
        if load_w[m, 0] > problem.node_limit_w[m, 0] - 50.0 or \
                load_a[m, :, 0].max() > problem.node_limit_a[m, 0] - 0.3:
            print(f"  binds: node {m} {load_w[m, 0] / 1e3:.1f} / {problem.node_limit_w[m, 0] / 1e3:.1f}"
                  f" kW, A per phase {np.round(load_a[m, :, 0], 1)} / {problem.node_limit_a[m, 0]}")
    accept = acceptance.get(moment, {})
    print("  car | phases, phase | min W | upper W | need Wh | departure slot | LP W slots 0, 1 "
          "| battery takes W")
    for k, ref in enumerate(built.controlled):
        a = accept.get((ref.station_id, ref.connector_id), float("nan"))
        print(f"  {ref.station_id}/{ref.connector_id} | {problem.phases[k]}, {problem.phase[k]} | "
              f"{problem.min_power_w[k]:.0f} | {problem.upper_w[k, 0]:.0f} | "
              f"{problem.energy_wh[k]:.0f} | {problem.departure_slot[k]} | {lp[k, 0]:.0f}, "
              f"{lp[k, 1]:.0f} | {a:.0f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["demo"])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="ControllerSettings to change, e.g. near_slot_s=None")
    parser.add_argument("--at", help="HH:MM: one re-plan of the first day taken apart")
    args = parser.parse_args(argv)
    settings = settings_from(args.set)
    if args.at:
        show(days(args.days)[0], settings, args.at)
        return
    print("| day | delivered kWh | short min | limit used | unused kWh | "
          + " | ".join(PARTS) + " |")
    print("|---|" + "---:|" * (4 + len(PARTS)))
    for day in days(args.days):
        b = breakdown(day, settings)
        print(f"| {day.name} | {b['delivered']:.1f} | {b['short_min']} | {b['used']:.1%} | "
              f"{b['unused']:.1f} | " + " | ".join(f"{b[p]:.1f}" for p in PARTS) + " |",
              flush=True)


if __name__ == "__main__":
    main()
