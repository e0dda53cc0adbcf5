"""`solve(problem)`: the optimizer's one entry point. Never raises for a valid Problem and never
returns a schedule that breaks a limit (except backend="uncontrolled", a reference).

1. Solve the LP relaxation (HiGHS LP, or the min-cost flow when it is exact, or PuLP). Where
   per-phase limits let one Wh make room for more or less than one Wh of another session, the
   weighted objective alone cannot keep energy first; HiGHS then checks (warm, ~10 ms at
   N = 1000; or proved from the objective's basis by weak duality in ~1 ms,
   `HighsModel.energy_bound_wh`, in every solve but those before min-rate rounds) that no
   schedule delivers more weighted energy, and if one does re-solves with the weighted energy
   held at its optimum (optimizer/lp.py `HighsModel`, PuLP likewise).
   With `warm` (optimizer/warm.py), HiGHS re-solves the last solve's model changed into this LP.
2. Minimum-rate rule (0 or >= min_power_w): every entry with 0 < x < min is paused (its upper
   bound set to 0) and the model re-solved (warm, from the previous basis). Pausing frees room
   that the re-solve hands to other entries, some again below their minimum; the chain is long
   (35 rounds on a 1000-car instance) but almost all of the gain comes in the first round, so
   after WARM_ROUNDS rounds (COLD_ROUNDS for backends that re-solve from scratch) the
   projection pauses what is left and a greedy top-up (`baselines.top_up`: more power wherever
   a limit still has room, in priority order, never below a minimum) hands the freed room out;
   a car left short of its request by less than one slot at its minimum then gets that slot
   where a limit has room, the excess off its own entries above its minimum
   (optimizer/remainder.py: on the demo day these remainders decided the portfolio guard).
   Measured at N = 1000 (phase and power families, 3 seeds): weighted energy within 0.4-0.7 %
   of the LP relaxation, as good as or better than 3 re-solve rounds without the top-up, for
   0.04 s instead of 0.15 s. The result is NEAR_OPTIMAL with the relaxation's objective attached.
3. Safety projection (optimizer/safety.py) lowers power by whatever rounding errors the solver
   left (and is applied again after the top-up), then `check(tol=0)` must be empty (asserted: a
   violation here is a bug; `safety.project_checked` reports the `check.feasible` test it ended
   on, the same comparisons as `check(tol=0)`, so the result is not checked twice).
   Stable plans: with a previous allocation (`Problem.previous_w`), a car the previous plan
   ran keeps its minimum in the kept slots when the three levels above urgency and the
   rounded energy (over the horizon, or in the kept slots alone) allow it
   (optimizer/running.py, `_hold_running`: HiGHS only); then, after
   the last HiGHS solve a warm pass moves along the optimal face (all four levels held exactly) to the plan closest
   to it in the slots it names (optimizer/stable.py; the flow has a cost term of its own for
   it, optimizer/flow.py `stable_level`), and a car it ran there is held at its minimum rate
   (`stable.hold_minimums`), before the projection and the top-up.
4. If the backend fails or runs out of time: the better of EDF and LLF, status FALLBACK.
5. Portfolio guard: rounding can in principle lose energy a greedy baseline keeps; if a baseline
   delivers strictly more weighted energy than the NEAR_OPTIMAL result, it is returned instead.
   So the result always delivers at least as much weighted energy as every baseline.
   With a previous allocation, before a baseline is returned whole, the kept slots are kept -
   the previous plan's window made lawful (`stable.previous_window`), else the baseline's with
   the running cars it pauses held at their minimum, else our rounded stable plan's - and our
   own solve plans the slots after them (`_plan_rest`; the baselines on sites above
   STABLE_FLOW_CONNECTORS sessions), when that delivers at least as much weighted energy as the
   baseline alone and no less in the kept slots than both (`_keep_running`) - a tie-break that
   still compares energy only: the baselines know nothing of the previous plan, and returned
   whole they paused cars it ran. The previous
   window comes first because it was rounded already: the stable LP plan leaves remainders
   below a minimum in the kept slots that rounding pauses and no one else can use
   (benchmarks/README.md, "Stable allocations, fourth round").
   Cost: skipped when rounding lost no weighted energy against the relaxation (an upper bound on
   every schedule's); otherwise edf, llf and equal_share are computed (on a second thread while
   HiGHS solves; after the flow, which holds the GIL) but only clipped to [0, upper_w], which
   bounds their lawful (projected) versions' weighted energy from above, since the rest of the
   projection only lowers power. Only a baseline whose bound beats ours is projected and
   compared; on large instances that is rare, so the projections are usually not spent at all.

Raising an entry to its minimum instead of pausing it (a lower bound of min_power_w in the
re-solve, reverted when infeasible) was tried: better on some instances, worse on others, and
slower (lower bounds make the warm re-solve work harder); the top-up gets most of that benefit
without the risk, so it is not used.

Measured (phase-aware instances from optimizer.instances, seed 1, 96 slots of 15 min, one process
on a shared 2-core machine, median of 3):

    N      LP relaxation build+solve+check   solve() end to end (1 re-solve, top-up, guard)
           (before WARM_ROUNDS = 0 and the current objective.py; benchmarks/README.md has today's)
    100    0.011 s                           0.08 s
    1000   0.14 s  (build 0.013 s)           0.27 s wall, 0.36 s CPU (baselines on the 2nd core)
    5000   1.5 s   (build 0.065 s)           2.7 s wall

At N = 1000 the LP keeps 2564 of the 23232 finite node rows (power + 3 phases x node x slot);
the rest provably cannot bind. Over 3 seeds x 2 families at N = 1000 the result's weighted energy
is 0.993-0.996 of the relaxation's (an upper bound on any schedule's), the best baseline's
0.992-0.993.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from optimizer import baselines
from optimizer.check import check, delivered_wh, feasible
from optimizer.forward import pull_forward
from optimizer.lp import HighsModel, build_lp
from optimizer.objective import (Objective, build_objective, energy_first_by_construction,
                                 evaluate, quantised_weight)
from optimizer.problem import Problem
from optimizer.remainder import complete_requests
from optimizer.running import keeps_levels, levels, running_minimums
from optimizer.safety import project, project_checked
from optimizer.stable import (ZERO_W, hold_minimums, keep_window, kept_slots, previous_window,
                             stable_targets)
from optimizer.schedule import FALLBACK, NEAR_OPTIMAL, OPTIMAL, Schedule, SolverFailed

BASELINES = {"edf": baselines.edf, "llf": baselines.llf,
             "equal_share": baselines.equal_share, "uncontrolled": baselines.uncontrolled}
SOLVERS = ("highs", "flow", "pulp")
BACKENDS = ("auto", *SOLVERS, *BASELINES)
# Min-rate re-solves before the projection pauses what is left and the top-up refills (see the
# docstring). A warm HiGHS re-solve costs about half the first solve and gains 0.0-0.03 % of the
# objective; a cold one (flow, PuLP) costs a whole solve for the same: measured on the power family
# at N = 1000 (3 seeds), the flow path took 0.21-0.24 s with one round and 0.15-0.17 s with none,
# objective within +-0.03 %.
#
# WARM_ROUNDS went from 1 to 0 after objective.py sized A for uneven phase exchanges (A 96100 ->
# 1153000 on the phase family): the relaxation alone slowed 0.24 -> 0.30 s at N = 1000 and the warm
# re-solve with it. Measured then (phase family, N = 1000, seeds 0-2, wall, shared 2-core machine):
# solve() 0.52 / 0.30 / 0.42 s with one round, 0.33 / 0.22 / 0.25 s without; weighted energy vs the
# relaxation 0.99518 / 0.99301 / 0.99519 with, 0.99512 / 0.99282 / 0.99521 without (the top-up
# recovers nearly all of it). On small problems the round is cheap and worth more (phase family,
# seeds 0-7, mean / worst weighted energy vs the relaxation, median wall): N = 10: 0.9900 / 0.979
# without, 0.9927 / 0.982 with, 0.04 s either way; N = 100: 0.9936 / 0.988 vs 0.9941 / 0.991,
# 0.05 s; N = 300: 0.99497 vs 0.99512, 0.07 vs 0.09 s. So one round up to SMALL_CONNECTORS.
WARM_ROUNDS = 0
SMALL_WARM_ROUNDS = 1
SMALL_CONNECTORS = 500
# Up to this many sessions the rounding places cars' remainders below one slot at their minimum
# (optimizer/remainder.py, `_round`). Above, not: at N = 1 000 the step places ~240 remainders
# for ~15 ms CPU plus a top-up (~5 ms), +0.3-0.4 % weighted energy; at N = 10 000 (power, the
# flow) 2 341 for 0.17 s, solve's CPU 1.06 -> 1.42 s (benchmarks/README.md, "s37-pause") - the
# speed goals' sizes. Its purpose, the closed loop's pauses, is on sites of tens of cars.
REMAINDER_CONNECTORS = 500
# Up to this many sessions a problem with a previous allocation goes to HiGHS even where the
# flow applies, for the stable pass (optimizer/stable.py; benchmarks/README.md has the cost).
STABLE_FLOW_CONNECTORS = 500
COLD_ROUNDS = 0
# Min-rate rounds after the kept slots when the running cars' minimums are held there
# (`_hold_running`): the held LP's remainders below a minimum move from slot to slot.
HOLD_ROUNDS = 4
# Rounded plans' room is pulled forward into the slots that start within this long
# (`_pulled_forward`): the controller's kept window, what the stations' profiles carry. Every
# kept slot instead cost 15-60 ms at N = 1 000 where the previous allocation sat 8 h out
# (benchmarks.optimizer --replan: kept_slots = 36); the controller re-plans long before.
PULL_WINDOW_S = 1800.0


def weighted_energy_wh(problem: Problem, power_w: np.ndarray) -> float:
    """Delivered energy (capped at each request) weighted by the objective's quantised weights."""
    delivered = np.minimum(delivered_wh(problem, power_w), problem.energy_wh)
    return float(quantised_weight(problem.weight) @ delivered)


def _below_min(problem: Problem, power_w: np.ndarray) -> np.ndarray:
    """(N, T) bool: entries that break the minimum-rate rule and must be paused."""
    return (power_w > ZERO_W) & (power_w < problem.min_power_w[:, None] - ZERO_W)


class _Deadline:
    def __init__(self, time_limit_s: float | None) -> None:
        self.end = None if time_limit_s is None else time.perf_counter() + time_limit_s

    def left_s(self) -> float | None:
        if self.end is None:
            return None
        left = self.end - time.perf_counter()
        if left <= 0:
            raise SolverFailed("time limit reached")
        return left


def _solve_highs(problem: Problem, objective: Objective, deadline: _Deadline,
                 before_solve=lambda: None, warm=None):
    """Relaxation, then pause-and-resolve on one warm HiGHS model; before_solve() is called
    once the model is built (HiGHS releases the GIL from then on)."""
    started = time.perf_counter()
    arrays = build_lp(problem, objective, problem.upper_w)
    if arrays.c.shape[0] == 0:
        zero = np.zeros((problem.n_connectors, problem.n_slots))
        return zero, {"build_s": time.perf_counter() - started, "solve_s": 0.0, "objective": 0.0,
                      "status": "empty", "rounds": 0, "paused": 0}
    energy_first = not energy_first_by_construction(problem)
    # warm (optimizer/warm.py): the last solve's model, changed into this problem's LP
    model = (HighsModel(arrays, energy_first=energy_first) if warm is None
             else warm.model(problem, arrays, energy_first))
    build_s = time.perf_counter() - started
    before_solve()
    warm_rounds = SMALL_WARM_ROUNDS if problem.n_connectors <= SMALL_CONNECTORS else WARM_ROUNDS
    targets = stable_targets(problem, model.arrays.x_connector, model.arrays.x_slot)
    # Energy first proved from the objective's basis (lp.HighsModel.energy_bound_wh) instead of
    # a HiGHS run on the weighted energy alone (0 iterations, two cost swaps: ~10 ms at N = 1 000)
    # in every solve of the model - except before min-rate rounds (small sites without a
    # previous allocation): a skipped run leaves HiGHS in another state, from which a later
    # run may stop at another optimum of the same LP (same value, another vertex) and round
    # differently (benchmarks/README.md, "s34-speed"). With a stable pass the bound is used: it
    # also spares the pass's "objective before the stable pass" run (HiGHS's duals are then
    # still the objective's), 30-40 ms of a warm re-plan at N = 1 000 ("s36-replan").
    model.certify_energy = warm_rounds == 0 or targets is not None
    power_w, info = model.solve(deadline.left_s())
    relaxation = info["objective"]
    relaxation_wh = weighted_energy_wh(problem, power_w)
    solve_s, rounds, paused, iterations = info["solve_s"], 0, 0, info["iterations"]
    stopped = None
    if targets is not None:
        # The round pauses whatever the first vertex left below a minimum - other cars than
        # the previous plan ran - and the stable pass could not bring them back; without it
        # the projection pauses what the stable plan leaves below a minimum and the top-up
        # refills running cars first (demo day: 270 -> 243 pauses, 14 -> 9 cars paused more
        # than once an hour, energy within the run-to-run spread).
        warm_rounds = 0
    while rounds < warm_rounds:
        fractional = _below_min(problem, power_w)
        if not fractional.any():
            break
        connector, slot = np.nonzero(fractional)
        paused += model.pause(connector, slot)
        rounds += 1
        try:
            power_w, info = model.solve(deadline.left_s())
        except SolverFailed as exc:
            # The relaxation stands; the projection pauses its below-minimum entries instead.
            stopped = str(exc)
            break
        solve_s += info["solve_s"]
        iterations += info["iterations"]
    stable_info, held = {}, 0
    if targets is not None and stopped is None:
        try:
            power_w, held, more = _hold_running(problem, objective, model, power_w, deadline)
            paused += more.pop("paused_by_hold", 0)
            solve_s += more.get("solve_s", 0.0)
            iterations += more.get("iterations", 0)
            info = {**info, **more} if more else info
        except SolverFailed as exc:  # out of time: the optimum found stands, not stabilised
            stopped = str(exc)
    if targets is not None and stopped is None:
        try:
            power_w, stable_info = model.stabilise(targets, deadline.left_s())
        except SolverFailed as exc:  # the optimum found stands, merely less stable
            stable_info = {"stable_failed": str(exc)}
        solve_s += stable_info.get("solve_s", 0.0)
        iterations += stable_info.get("iterations", 0)
    return power_w, {"build_s": build_s, "solve_s": solve_s, "highs_s": solve_s,
                     "objective": info["objective"],
                     "stable_s": stable_info.get("solve_s"), "held_running": held,
                     "stable_failed": stable_info.get("stable_failed"),
                     "rounds_stopped": stopped, "energy_first": info["energy_first"],
                     "relaxation_objective": relaxation, "relaxation_weighted_wh": relaxation_wh,
                     "status": info["status"],
                     "rounds": rounds, "paused": paused, "iterations": iterations,
                     "n_vars": info["n_vars"], "n_rows": info["n_rows"], "nnz": info["nnz"]}


def _hold_running(problem: Problem, objective: Objective, model: HighsModel,
                  power_w: np.ndarray, deadline: _Deadline):
    """(power_w, entries held, the re-solves' info): the running cars' minimums held in the
    kept slots when that keeps energy, price and fairness (optimizer/running.py) and, after
    rounding, loses no weighted energy over the horizon or none in the kept slots; else the
    optimum as it was (solved again without them).

    The kept slots count on their own because they are what the stations carry until the next
    re-plan, which plans every later slot again: a held plan whose kept slots round at least as
    well delivers no less before then, while its later fractions (which the held cars' energy
    now moved there) may round a little worse over a horizon the next re-plan plans again
    (measured: benchmarks/README.md, "s25-stable"). The portfolio guard still compares the
    rounded plan with every baseline over the horizon."""
    arrays = model.arrays
    column_upper = np.where(arrays.var_of >= 0, arrays.ub[np.maximum(arrays.var_of, 0)], 0.0)
    connector, slot = running_minimums(problem, power_w, column_upper)
    if connector.size == 0:
        return power_w, 0, {}
    before = levels(problem, objective, power_w)
    free = _rounded_wh(problem, power_w, 0)

    def no_worse(rounded: tuple[float, float]) -> bool:
        return any(held >= wh * (1.0 - 1e-9) - 1e-6 for held, wh in zip(rounded, free))
    paused_before = len(model.paused_cols)
    # the next re-plan of a kept model starts from this optimum, not the held LP's
    model.mark_restart()
    model.raise_lower(connector, slot, problem.min_power_w[connector])
    spent = {"solve_s": 0.0, "iterations": 0, "paused_by_hold": 0}

    def run():
        held_w, info = model.solve(deadline.left_s())
        spent["solve_s"] += info["solve_s"]
        spent["iterations"] += info["iterations"]
        return held_w, info

    try:
        held_w, info = run()
        if keeps_levels(before, levels(problem, objective, held_w)):
            if no_worse(_rounded_wh(problem, held_w, 0)):
                return held_w, int(connector.size), {**info, **spent}
            # Held, the LP leaves remainders below a minimum after the kept slots (the
            # energy the held cars take now moves others later) that round worse: min-rate
            # rounds there (the kept slots are not touched), as many as HOLD_ROUNDS
            for _ in range(HOLD_ROUNDS):
                later = _below_min(problem, held_w)
                later[:, :kept_slots(problem)] = False
                if not later.any():
                    break
                spent["paused_by_hold"] += model.pause(*np.nonzero(later))
                held_w, info = run()
                if no_worse(_rounded_wh(problem, held_w, spent["paused_by_hold"])):
                    return held_w, int(connector.size), {**info, **spent}
    except SolverFailed:
        pass
    # the bounds cost energy, price or fairness, or rounded worse: the optimum without them
    model.unpause(paused_before)
    model.reset_lower()
    power_w, info = run()
    return power_w, 0, {**info, **spent, "paused_by_hold": 0}


def _rounded_wh(problem: Problem, power_w: np.ndarray, paused: int) -> tuple[float, float]:
    """(over the horizon, in the kept slots): weighted energy of power_w after what `solve`
    does to an LP plan with `paused` entries paused by min-rate rounds (the hold of running
    minimums, the projection, the top-up only when something was paused, as `solve` rounds):
    an LP optimum with the running cars held can round worse than one without (a 1-phase car
    held at its minimum beside a 3-phase car on one phase left the 3-phase car fractional
    later: 659 Wh less over the horizon)."""
    held_w, _ = hold_minimums(problem, power_w)
    rounded = _round(problem, held_w, paused, complete=False)[0]
    return weighted_energy_wh(problem, rounded), _window_wh(problem, rounded, kept_slots(problem))


def _solve_generic(solver, problem: Problem, objective: Objective, deadline: _Deadline):
    """Relaxation, then pause-and-resolve from scratch (backends without a warm model)."""
    upper_w = np.array(problem.upper_w)
    power_w, info = solver(problem, objective, upper_w, deadline.left_s())
    relaxation = info["objective"]
    relaxation_wh = weighted_energy_wh(problem, power_w)
    build_s, solve_s, rounds, paused = info["build_s"], info["solve_s"], 0, 0
    while rounds < COLD_ROUNDS:
        fractional = _below_min(problem, power_w) & (upper_w > 0)
        if not fractional.any():
            break
        upper_w[fractional] = 0.0
        paused += int(fractional.sum())
        rounds += 1
        try:
            power_w, info = solver(problem, objective, upper_w, deadline.left_s())
        except SolverFailed:  # keep the relaxation; the projection pauses what it must
            break
        build_s += info["build_s"]
        solve_s += info["solve_s"]
    return power_w, {**info, "build_s": build_s, "solve_s": solve_s,
                     "relaxation_objective": relaxation, "relaxation_weighted_wh": relaxation_wh,
                     "rounds": rounds, "paused": paused}


def _solver(backend: str):
    try:
        if backend == "flow":
            from optimizer.flow import solve_flow
            return solve_flow
        from optimizer.pulp_backend import solve_pulp
        return solve_pulp
    except ImportError as exc:  # an optional backend missing is a failure to fall back from
        raise SolverFailed(f"backend {backend} is not available: {exc}") from exc


def _pick_auto(problem: Problem) -> str:
    try:
        from optimizer import flow
    except ImportError:
        return "highs"
    if problem.previous_w is not None and problem.n_connectors <= STABLE_FLOW_CONNECTORS:
        # the LP's stable pass (its duals give the optimal face); above this the flow's stable
        # step (flow.stable_level): on small sites HiGHS costs ~20 ms more than the flow
        return "highs"
    return "flow" if flow.applicable(problem) else "highs"


def _schedule(problem: Problem, objective: Objective, power_w: np.ndarray, **fields) -> Schedule:
    delivered = delivered_wh(problem, power_w)
    return Schedule(power_w=power_w, objective=evaluate(problem, objective, power_w),
                    delivered_wh=delivered,
                    unmet_wh=np.maximum(problem.energy_wh - delivered, 0.0), **fields)


def _assert_feasible(problem: Problem, power_w: np.ndarray, backend: str,
                     checked: bool = False) -> None:
    """Raise unless check(tol=0) is empty; checked=True: project_checked just confirmed it."""
    if checked or feasible(problem, power_w):
        return
    violations = check(problem, power_w, tol=0.0)
    if violations:  # a bug in the projection: never hand such a schedule to a station
        raise AssertionError(f"{backend}: schedule violates limits after projection: "
                             f"{violations[:3]} ({len(violations)} in all)")


class _Baselines:
    """The baselines, computed at most once per solve; each projected only when it is needed.

    When rounding is likely (some minimum rate) and the backend is HiGHS, they are computed on a
    worker thread while HiGHS solves: HiGHS releases the GIL, so on 2 cores the guard's baselines
    cost almost no wall time (measured at N = 1000: 0.14 s for both instead of 0.20 s). OR-Tools'
    min-cost flow holds the GIL, so for it they are computed only when needed.
    """

    NAMES = ("edf", "llf", "equal_share")

    def __init__(self, problem: Problem, background: bool) -> None:
        self.problem = problem
        self._power: dict | None = None
        self._lawful: dict = {}
        self._future = None
        self._background = background

    def start(self) -> None:
        """Start the worker (when background): call it when HiGHS is about to run. Started any
        earlier, it takes the GIL from the model build in Python (at N = 100 the build took
        twice as long)."""
        if self._background and self._future is None and self._power is None:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baselines")
            self._future = executor.submit(self._compute)
            executor.shutdown(wait=False)  # the submitted work still runs; no thread lingers

    def _compute(self) -> dict:
        # Clipped to [0, upper_w] (where the projection starts); the rest of the projection only
        # lowers power, so a clipped baseline's weighted energy bounds its lawful version's.
        return {name: np.clip(BASELINES[name](self.problem), 0.0, self.problem.upper_w)
                for name in self.NAMES}

    def clipped(self) -> dict:
        """{name: (N, T) power_w} of every baseline, clipped but not yet projected."""
        if self._power is None:
            self._power = self._future.result() if self._future is not None else self._compute()
        return self._power

    def lawful(self, name: str) -> np.ndarray:
        """(N, T) the projected (lawful) baseline `name`."""
        power = self.clipped()
        if name not in self._lawful:
            self._lawful[name] = project(self.problem, power[name])
        return self._lawful[name]


def _best_baseline(problem: Problem, objective: Objective, found: _Baselines,
                   names=("edf", "llf")):
    """(name, power_w) of the baseline with the highest objective value."""
    name = max(names, key=lambda n: evaluate(problem, objective, found.lawful(n)))
    return name, found.lawful(name)


def solve(problem: Problem, backend: str = "auto", time_limit_s: float | None = None,
          warm=None) -> Schedule:
    """The best schedule `backend` finds for `problem`; see the module docstring.

    warm: an optimizer.warm.WarmStart carried from one re-plan to the next; HiGHS then re-solves
    the last model changed into this problem's LP. Backend "auto" picks as it would without it
    (the flow where it is exact and faster, also than a warm HiGHS re-plan with the stable pass:
    benchmarks/README.md, "Speed (s17-speed)"); the other backends do not use it."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {BACKENDS}, got {backend!r}")
    if problem.n_connectors == 0:  # nobody to charge (build_objective needs a weight)
        empty = np.zeros((0, problem.n_slots))
        return Schedule(power_w=empty, status=OPTIMAL, backend=backend, objective=0.0,
                        delivered_wh=np.zeros(0), unmet_wh=np.zeros(0))
    objective = build_objective(problem)
    if backend in BASELINES:
        return _solve_baseline(problem, objective, backend)
    if backend == "auto":
        backend = _pick_auto(problem)
    deadline = _Deadline(time_limit_s)
    rounding_likely = bool((problem.min_power_w > 0).any())
    found = _Baselines(problem, background=backend == "highs" and rounding_likely)
    try:
        if backend == "highs":
            power_w, info = _solve_highs(problem, objective, deadline, found.start, warm)
        else:
            power_w, info = _solve_generic(_solver(backend), problem, objective, deadline)
    except SolverFailed as exc:
        return _fallback(problem, objective, backend, str(exc), found)
    if problem.previous_w is not None:  # stable plans: a running car held at its minimum
        power_w, info["held_at_minimum"] = hold_minimums(problem, power_w)
    started = time.perf_counter()
    power_w, checked, paused_by_projection = _round(problem, power_w, info.get("paused", 0),
                                                    quantised=backend == "flow")
    rounded = info.get("paused", 0) + paused_by_projection > 0
    info["paused_by_projection"] = paused_by_projection
    _assert_feasible(problem, power_w, backend, checked)
    check_s = time.perf_counter() - started
    extra = {k: v for k, v in info.items() if k not in ("build_s", "solve_s", "objective")}
    extra["check_s"] = check_s
    schedule = _schedule(
        problem, objective, power_w, status=NEAR_OPTIMAL if rounded else OPTIMAL, backend=backend,
        build_s=info["build_s"], solve_s=info["solve_s"] + check_s,
        message=(f"minimum rates: paused {info['paused']} (connector, slot) pairs in "
                 f"{info['rounds']} re-solves and {paused_by_projection} more after them, then "
                 f"topped up greedily" if rounded else ""),
        relaxation_objective=info.get("relaxation_objective") if rounded else None, extra=extra)
    if rounded:
        started = time.perf_counter()
        guarded = _pulled_forward(problem, objective,
                                  _portfolio_guard(problem, objective, schedule, found, deadline))
        # The guard's baselines are part of the solve: count them, so benchmarks see the total.
        guard_s = time.perf_counter() - started
        return dataclasses.replace(guarded, solve_s=guarded.solve_s + guard_s,
                                   extra={**guarded.extra, "guard_s": guard_s})
    return schedule


def _pulled_forward(problem: Problem, objective: Objective, schedule: Schedule) -> Schedule:
    """The rounded (or guarded) schedule with the room rounding left in the slots that start
    within PULL_WINDOW_S given to cars whose energy is planned later (optimizer/forward.py):
    each car's energy, price and fairness unchanged, energy earlier."""
    starts_s = np.cumsum(problem.slot_s) - problem.slot_s
    slots = max(1, int(np.searchsorted(starts_s, PULL_WINDOW_S, side="left")))
    pulled = pull_forward(problem, schedule.power_w, objective.slot_cost, slots)
    before = weighted_energy_wh(problem, schedule.power_w)
    # (a later entry the move empties to within the limits' relative margin is taken whole:
    # a few billionths of the energy moved may go)
    if weighted_energy_wh(problem, pulled) < before * (1.0 - 1e-8) - 1e-6 or \
            not feasible(problem, pulled):
        return schedule
    moved_w = float(pulled[:, 0].sum() - schedule.power_w[:, 0].sum())
    return dataclasses.replace(
        schedule, power_w=pulled, objective=evaluate(problem, objective, pulled),
        delivered_wh=delivered_wh(problem, pulled),
        unmet_wh=np.maximum(problem.energy_wh - delivered_wh(problem, pulled), 0.0),
        extra={**schedule.extra, "pulled_forward_w": moved_w})


def _round(problem: Problem, power_w: np.ndarray, paused: int, quantised: bool = False,
           complete: bool = True):
    """(lawful power, checked, entries the projection paused): the safety projection, and a
    greedy top-up when anything was paused (by the rounds or by the projection: that may have
    left room nobody uses) or the plan is `quantised`: the flow floors every capacity to a unit
    sized on the whole problem, so a connector far smaller than the largest can lose a few
    millionths of its maximum that a baseline would deliver (the top-up costs ~3 % of the flow's
    time at N = 10 000). Then each car left short of its request by less than one slot at its
    minimum gets that slot where there is room, the excess off its own entries above the
    minimum (optimizer/remainder.py), and the top-up hands what that frees to others."""
    projected, checked = project_checked(problem, power_w)
    paused_by_projection = int(((power_w > ZERO_W) & (projected == 0.0)).sum())
    if paused + paused_by_projection > 0 or quantised:
        projected, checked = project_checked(problem, baselines.top_up(problem, projected))
        completed, placed = (complete_requests(problem, projected)
                             if complete and problem.n_connectors <= REMAINDER_CONNECTORS
                             else (None, 0))
        if placed:
            projected, checked = project_checked(problem, baselines.top_up(problem, completed))
    return projected, checked, paused_by_projection


def _solve_baseline(problem: Problem, objective: Objective, name: str) -> Schedule:
    started = time.perf_counter()
    power_w = BASELINES[name](problem)
    if name != "uncontrolled":
        power_w = project(problem, power_w)
        _assert_feasible(problem, power_w, name)
        message = f"baseline {name} requested: a heuristic, not an optimum"
    else:
        message = "uncontrolled reference: ignores the circuit tree and may violate limits"
    return _schedule(problem, objective, power_w, status=FALLBACK, backend=name,
                     solve_s=time.perf_counter() - started, message=message)


def _fallback(problem: Problem, objective: Objective, backend: str, why: str,
              found: _Baselines) -> Schedule:
    started = time.perf_counter()
    name, power_w = _best_baseline(problem, objective, found)
    _assert_feasible(problem, power_w, name)
    return _schedule(problem, objective, power_w, status=FALLBACK, backend=name,
                     solve_s=time.perf_counter() - started,
                     message=f"{backend} failed ({why}); returned the better of edf/llf: {name}",
                     extra={"failed_backend": backend, "reason": why})


def _portfolio_guard(problem: Problem, objective: Objective, schedule: Schedule,
                     found: _Baselines,
                     deadline: _Deadline | None = None) -> Schedule:
    """Return a baseline instead when it delivers strictly more weighted energy."""
    ours = weighted_energy_wh(problem, schedule.power_w)
    # Cheap exit: rounding lost no weighted energy against the relaxation (an upper bound on any
    # schedule's), so no baseline can beat it.
    bound = schedule.extra.get("relaxation_weighted_wh")
    if bound is not None and ours >= bound * (1.0 - 1e-9) - 1e-6:
        return schedule
    threshold = ours * (1.0 + 1e-9) + 1e-6
    # A clipped baseline's weighted energy bounds its lawful one's (the projection only lowers
    # power): only a baseline whose bound passes ours is projected and compared.
    bounds = sorted(((weighted_energy_wh(problem, power_w), name)
                     for name, power_w in found.clipped().items()), reverse=True)
    best = None
    for bound_wh, name in bounds:
        if bound_wh <= threshold or (best is not None and bound_wh <= best[0]):
            break
        power_w = found.lawful(name)
        theirs = weighted_energy_wh(problem, power_w)
        if theirs > threshold and (best is None or theirs > best[0]):
            best = (theirs, name, power_w)
    if best is None:
        return schedule
    theirs, name, power_w = best
    kept = _keep_running(problem, schedule.power_w, name, power_w, theirs, deadline)
    if kept is not None:
        power_w, name = kept
        theirs = weighted_energy_wh(problem, power_w)
    else:
        # returned whole: the running cars it pauses in the kept slots held at their minimum
        # where a car of equal weight above its own gives the room (energy-neutral exchanges:
        # the same weighted energy, every car within its request)
        held_w, held = hold_minimums(problem, power_w, paused_too=True,
                                     until=None if deadline is None else deadline.end)
        if held and weighted_energy_wh(problem, held_w) >= theirs * (1.0 - 1e-12) and \
                feasible(problem, held_w):
            power_w, name = held_w, f"{name}+held"
        _assert_feasible(problem, power_w, name)
    return _schedule(
        problem, objective, power_w, status=NEAR_OPTIMAL, backend=name,
        build_s=schedule.build_s, solve_s=schedule.solve_s,
        message=(f"{schedule.message}; baseline {name} delivers more weighted energy "
                 f"({theirs:.1f} vs {ours:.1f} Wh) after minimum-rate rounding, returned instead"),
        relaxation_objective=schedule.relaxation_objective,
        extra={**schedule.extra, "portfolio": name, "optimizer_weighted_wh": ours})


def _plan_rest(residual: Problem, time_limit_s: float | None = None) -> np.ndarray:
    """Our own plan for what is left after the kept slots: `solve` on the residual problem (no
    previous allocation, so one min-rate round where it is small, and its own guard: at least
    every baseline's weighted energy on the residual)."""
    return solve(residual, time_limit_s=time_limit_s).power_w


def _keep_running(problem: Problem, ours_w: np.ndarray, winner: str, winner_w: np.ndarray,
                  theirs_wh: float, deadline: _Deadline | None = None):
    """(power_w, backend) keeping a kept window with a plan for the rest after it, the first that
    delivers at least the winning baseline's weighted energy `theirs_wh`; None when none does.

    Windows, in this order: the previous plan's (made lawful); the winning baseline's
    (`winner_w`: it may start a car whose deadline needs it now) with each car the previous
    plan ran and it pauses held at its minimum (made lawful); our rounded stable plan's. Each
    must also deliver in the kept slots at least the less of what ours and the winner's
    deliver there (no energy deferred by this tie-break). The previous plan's first:
    it was rounded already (each car it ran at its minimum or more), where the stable LP plan
    can leave a remainder below a minimum that the rounding pauses and nobody else can use.
    After the window our own solve plans the rest on sites up to STABLE_FLOW_CONNECTORS
    sessions (its result is at least every baseline's on the rest), the baselines above (the
    winner first; up to three more solves of a large site would cost too much)."""
    small = problem.n_connectors <= STABLE_FLOW_CONNECTORS
    end = None if deadline is None else deadline.end

    def ours_after(residual: Problem) -> np.ndarray:
        # within the caller's time limit: out of time, solve returns the better of EDF/LLF
        left = None if end is None else max(end - time.perf_counter(), 1e-3)
        return _plan_rest(residual, left)

    planners = ([("highs", ours_after)] if small else
                [(n, BASELINES[n]) for n in (winner, *(m for m in _Baselines.NAMES
                                                       if m != winner))])
    previous = previous_window(problem)
    if previous is None:
        return None
    k = kept_slots(problem)
    # the winner's window, with each car the previous plan ran and the winner pauses held at
    # its minimum (the projection then takes the excess from power above minimums first)
    mixed = np.where((previous > 0) & (winner_w <= 0),
                     np.minimum(problem.min_power_w[:, None], previous), winner_w)
    mixed[:, k:] = 0.0
    # lawful first (a limit may have dropped since): the rest is planned for what it leaves
    windows = (("previous", lambda: project(problem, previous)),
               ("mixed", lambda: project(problem, mixed)), ("kept", lambda: ours_w))
    # never less energy now than both plans the guard would otherwise choose between (ours and
    # the winner's): a window that keeps the running cars but leaves new ones waiting while
    # the rest catches up later passed the horizon's comparison, and the closed loop used less
    # of the limit while short (benchmarks/README.md, fourth round)
    # (rounding makes that energy granular: a window may fall short by less than one car at
    # the smallest minimum rate over the kept slots - who runs differs, nobody is left waiting)
    positive = problem.min_power_w[problem.min_power_w > 0]
    grain_wh = float(positive.min() * problem.wh_per_w[:k].sum()) if positive.size else 0.0
    now_wh = min(_window_wh(problem, winner_w, k), _window_wh(problem, ours_w, k)) - grain_wh
    for label, window in windows:
        window_w = window()
        for name, planner in planners:
            kept = _kept_window(problem, window_w, planner, theirs_wh, k, now_wh)
            if kept is not None:
                return kept, f"{label}+{name}"
    return None


def _window_wh(problem: Problem, power_w: np.ndarray, k: int) -> float:
    """Weighted energy power_w delivers in the first k slots."""
    return float(quantised_weight(problem.weight) @ (power_w[:, :k] @ problem.wh_per_w[:k]))


def _kept_window(problem: Problem, window_w: np.ndarray, planner, theirs_wh: float, k: int,
                 now_wh: float):
    """Lawful power of `window_w` in the kept slots with `planner` after them, when it delivers
    at least the baseline's weighted energy `theirs_wh` over the horizon and `now_wh` in the
    kept slots; else None (optimizer/stable.py `keep_window`: the guard still compares on
    energy alone, this is only a tie-break)."""
    combined = keep_window(problem, window_w, planner)
    if combined is None:
        return None
    # the seam may leave room in the kept slots (the planner saw more energy left than the
    # window used): the top-up only adds power, so energy only grows
    combined, checked = project_checked(problem, baselines.top_up(
        problem, project(problem, combined)))
    if weighted_energy_wh(problem, combined) < theirs_wh * (1.0 - 1e-12) or \
            _window_wh(problem, combined, k) < now_wh * (1.0 - 1e-9) - 1e-6:
        return None
    _assert_feasible(problem, combined, "kept window", checked)
    return combined
