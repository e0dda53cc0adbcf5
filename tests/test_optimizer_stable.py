"""Stable plans: among equal-value optima, solve keeps the allocation installed before
(`Problem.previous_w`, optimizer/stable.py), without giving up anything on a higher level."""

import dataclasses

import numpy as np
import pytest

from optimizer import Problem, solve
from optimizer.objective import build_objective, evaluate
from optimizer.urgency import urgency

IDLE = 298   # connectors without a session: the site is large enough that urgency is off


def two_alike_cars(previous_w=None, idle=IDLE, **fields) -> Problem:
    """Cars 0 and 1 alike (11 kW, 2750 Wh each, both leave after slot 1) under an 11 kW cap:
    car 0 then car 1, car 1 then car 0 or both at 5.5 kW are equal on every level."""
    n = 2 + idle
    energy = np.zeros(n)
    energy[:2] = 2750.0
    previous = None
    if previous_w is not None:
        previous = np.full((n, 2), np.nan)
        previous[:2] = previous_w
    return Problem(slot_s=[900.0, 900.0], max_power_w=11000.0, energy_wh=energy,
                   arrival_slot=np.zeros(n, dtype=int), departure_slot=np.full(n, 2),
                   node_parent=[-1] + [0] * n, connector_node=np.arange(1, n + 1),
                   node_limit_w=[11000.0] + [11000.0] * n, min_power_w=4140.0,
                   previous_w=previous, **fields)


def test_the_tie_is_real():
    # the premise: urgency is off on this site, and the three plans are worth the same
    problem = two_alike_cars()
    assert urgency(problem)[1] == 1
    objective = build_objective(problem)
    plans = [[[11000.0, 0.0], [0.0, 11000.0]], [[0.0, 11000.0], [11000.0, 0.0]],
             [[5500.0, 5500.0], [5500.0, 5500.0]]]
    values = []
    for cars in plans:
        power = np.zeros((problem.n_connectors, 2))
        power[:2] = cars
        values.append(evaluate(problem, objective, power))
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    assert values[0] == pytest.approx(values[2], rel=1e-12)


@pytest.mark.parametrize("running", [0, 1])
def test_the_running_car_keeps_running(running):
    previous = np.zeros((2, 2))
    previous[running, 0] = 11000.0
    schedule = solve(two_alike_cars(previous), backend="highs")
    np.testing.assert_allclose(schedule.power_w[running], [11000.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(schedule.power_w[1 - running], [0.0, 11000.0], atol=1e-6)
    assert schedule.objective == pytest.approx(solve(two_alike_cars(), backend="highs").objective,
                                               rel=1e-12)


def test_a_shared_allocation_stays_shared():
    schedule = solve(two_alike_cars([[5500.0, 5500.0], [5500.0, 5500.0]]), backend="highs")
    np.testing.assert_allclose(schedule.power_w[:2], 5500.0, atol=1e-6)


def test_nan_means_no_preference_and_only_the_first_slot_is_kept():
    schedule = solve(two_alike_cars([[0.0, np.nan], [11000.0, np.nan]]), backend="highs")
    np.testing.assert_allclose(schedule.power_w[:2, 0], [0.0, 11000.0], atol=1e-6)
    assert schedule.delivered_wh[:2] == pytest.approx([2750.0, 2750.0], rel=1e-9)


def test_previous_never_costs_energy():
    # the previous plan gave car 0 everything; now car 1 is more urgent (leaves after slot 0):
    # it must get slot 0 although car 0 ran there
    problem = two_alike_cars([[11000.0, 11000.0], [0.0, 0.0]])
    departure = np.array(problem.departure_slot)
    departure[1] = 1
    problem = Problem(**{**{f: getattr(problem, f) for f in (
        "slot_s", "max_power_w", "energy_wh", "arrival_slot", "node_parent", "connector_node",
        "node_limit_w", "min_power_w", "previous_w")}, "departure_slot": departure})
    schedule = solve(problem, backend="highs")
    np.testing.assert_allclose(schedule.power_w[1], [11000.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(schedule.power_w[0], [0.0, 11000.0], atol=1e-6)


def test_shape_and_sign_are_checked():
    with pytest.raises(ValueError, match="previous_w"):
        two_alike_cars([[-1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="previous_w"):
        Problem(slot_s=[900.0], max_power_w=1.0, energy_wh=[1.0], arrival_slot=[0],
                departure_slot=[1], node_parent=[-1], connector_node=[0],
                previous_w=[[1.0, 2.0]])


@pytest.mark.parametrize("family", ["power", "phase"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_previous_plans_change_no_level_of_the_objective(family, seed):
    # On the relaxation (no minimum rates, so no rounding after the LP), any previous
    # allocation - even a random one - moves the plan only along the optimal face: the
    # objective and the weighted energy (held lexicographically under phase limits) are equal.
    from optimizer import instances
    from optimizer.solve import weighted_energy_wh

    problem = instances.generate(30, family=family, seed=seed, min_power=False)
    rng = np.random.default_rng(seed)
    previous = np.full(problem.upper_w.shape, np.nan)
    window = slice(32, 35)
    previous[:, window] = rng.uniform(0.0, 1.0, (problem.n_connectors, 3)) * \
        problem.upper_w[:, window]
    free = solve(problem, backend="highs")
    kept = solve(dataclasses.replace(problem, previous_w=previous), backend="highs")
    assert kept.extra.get("stable_s") is not None
    assert kept.objective == pytest.approx(free.objective, rel=1e-9)
    assert weighted_energy_wh(problem, kept.power_w) == pytest.approx(
        weighted_energy_wh(problem, free.power_w), rel=1e-9)
    assert kept.status == free.status


@pytest.mark.parametrize("n, seed", [(40, 1), (40, 3)])
def test_the_guard_keeps_the_kept_window_when_a_baseline_wins(n, seed):
    # A re-plan at slot 34 (benchmarks/stable.py's case) where rounding the stable plan loses
    # weighted energy over the day to a baseline: the guard used to return the baseline whole,
    # which paused a car the previous plan ran in the kept window. Keeping a kept window and
    # letting our solve plan the rest delivers as much, so the guard returns that. (The cases
    # were N = 20 and 40 with seed 0; since the rounding places a car's last piece below one
    # slot at its minimum (optimizer/remainder.py) no baseline beats our plan on those.)
    from optimizer import instances
    from optimizer.solve import weighted_energy_wh

    problem = instances.generate(n, family="power", seed=seed)
    energy = np.array(problem.energy_wh)
    energy[0] *= 0.5
    before = solve(dataclasses.replace(problem, energy_wh=energy), backend="highs").power_w
    previous = np.full(problem.upper_w.shape, np.nan)
    previous[:, 34:36] = before[:, 34:36]
    kept = solve(dataclasses.replace(problem, previous_w=previous), backend="highs")
    running = before[:, 34] > 0
    assert kept.backend.split("+")[0] in ("kept", "previous", "mixed")
    assert not ((kept.power_w[:, 34] == 0) & running).any()
    for name in ("edf", "llf", "equal_share"):
        assert weighted_energy_wh(problem, kept.power_w) >= \
            weighted_energy_wh(problem, solve(problem, backend=name).power_w) * (1 - 1e-9)


@pytest.mark.parametrize("running", [0, 1])
def test_the_top_up_serves_the_running_car_first_on_a_tie(running):
    # Two alike cars (same weight, same departure), room for one: the top-up's EDF order ties,
    # and the car the previous plan ran gets the room (it was index order: car 0).
    from optimizer.baselines import edf, top_up

    previous = np.zeros((2, 2))
    previous[running] = 11000.0
    problem = two_alike_cars(previous)
    topped = top_up(problem, np.zeros(problem.upper_w.shape))
    assert topped[running, 0] == pytest.approx(11000.0)
    assert topped[1 - running, 0] == 0.0
    assert edf(problem)[running, 0] == pytest.approx(11000.0)


# The flow's stable step (optimizer/flow.py): above STABLE_FLOW_CONNECTORS sessions `solve`
# takes the min-cost flow, which keeps the previous allocation by a cost term below every level.

FLOW_IDLE = 598  # > STABLE_FLOW_CONNECTORS sessions: auto takes the flow


@pytest.mark.parametrize("running", [0, 1])
def test_the_flow_keeps_the_running_car_running(running):
    from optimizer.solve import STABLE_FLOW_CONNECTORS

    previous = np.zeros((2, 2))
    previous[running, 0] = 11000.0
    problem = two_alike_cars(previous, idle=FLOW_IDLE)
    free = solve(two_alike_cars(idle=FLOW_IDLE), backend="flow")
    assert problem.n_connectors > STABLE_FLOW_CONNECTORS
    schedule = solve(problem)
    assert schedule.backend == "flow"
    np.testing.assert_allclose(schedule.power_w[running], [11000.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(schedule.power_w[1 - running], [0.0, 11000.0], atol=1e-6)
    assert schedule.objective == pytest.approx(free.objective, rel=1e-12)


def _replan(n: int, backend: str):
    """benchmarks/stable.py's case: a re-plan at slot 34 after one car's need changed, the
    previous plan (slots 34-35 kept) made by the same backend."""
    from optimizer import instances

    problem = instances.generate(n, family="power", seed=0)
    energy = np.array(problem.energy_wh)
    energy[0] *= 0.5
    before = solve(dataclasses.replace(problem, energy_wh=energy), backend=backend).power_w
    previous = np.full(problem.upper_w.shape, np.nan)
    previous[:, 34:36] = before[:, 34:36]
    return problem, previous, before


def test_a_large_site_replan_on_the_flow_changes_a_handful_of_connectors():
    # 600 sessions: the flow. Without the stable step the re-plan reshuffled the window
    # (~230 entries changed, ~40 running cars paused); with it, a handful, and the relaxation's
    # weighted energy is the same to the last unit of flow.
    problem, previous, before = _replan(600, "auto")
    free = solve(problem)
    kept = solve(dataclasses.replace(problem, previous_w=previous))
    assert kept.backend == free.backend == "flow"
    assert kept.extra["relaxation_weighted_wh"] == pytest.approx(
        free.extra["relaxation_weighted_wh"], rel=1e-9)
    assert kept.relaxation_objective == pytest.approx(free.relaxation_objective, rel=1e-9)
    changed = (np.abs(kept.power_w[:, 34:36] - before[:, 34:36]) > 1.0).sum()
    paused = ((before[:, 34] > 1.0) & (kept.power_w[:, 34] <= 1e-6)).sum()
    assert changed <= 10 and paused <= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_previous_plans_leave_the_flow_optimum_unchanged(seed, monkeypatch):
    # The stable step sits below every level: with any previous allocation the flow's optimum
    # (no minimum rates, so no rounding) has the same objective - energy, price, fairness and
    # urgency (on at 30 sessions) - as the flow without one counted in the same unit (the step's
    # larger costs make the unit coarser: capacities are floored to 1/units Wh).
    from optimizer import flow, instances
    from optimizer.objective import build_objective

    problem = instances.generate(30, family="power", seed=seed, min_power=False)
    assert urgency(problem)[1] > 1
    rng = np.random.default_rng(seed)
    previous = np.full(problem.upper_w.shape, np.nan)
    previous[:, 32:35] = rng.uniform(0.0, 1.0, (problem.n_connectors, 3)) * \
        problem.upper_w[:, 32:35]
    objective = build_objective(problem)
    kept_w, kept = flow.solve_flow(dataclasses.replace(problem, previous_w=previous), objective,
                                   problem.upper_w)
    monkeypatch.setattr(flow, "units_per_wh", lambda *_: kept["units_per_wh"])
    free_w, free = flow.solve_flow(problem, objective, problem.upper_w)
    assert kept["objective"] == pytest.approx(free["objective"], rel=1e-14)
    # and it does keep: at least as much of the previous allocation as the free optimum
    known = np.isfinite(previous)
    def held(power):
        return np.minimum(power[known], previous[known]).sum()
    assert held(kept_w) > held(free_w)


@pytest.mark.parametrize("backend", ["highs", "flow"])
@pytest.mark.parametrize("at_minimum", [0, 1])
def test_a_car_running_at_its_minimum_is_held_there_when_the_cap_drops(backend, at_minimum):
    # The previous plan ran cars 0 and 1 under a 15 kW cap, one at its minimum (4140 W); car 2
    # (single-phase, minimum 1380 W) waited. The cap drops to 14 kW: the stable plan takes the
    # 1 kW from one of the two; landed on the car at its minimum it left it at 3140 W, the
    # projection paused it and the top-up gave car 2 its room (no energy lost, so the guard
    # kept the plan). Held at its minimum with the difference taken from the other car, it
    # keeps running and the weighted energy is the same.
    from optimizer.solve import weighted_energy_wh

    n = 3 + IDLE
    energy = np.zeros(n)
    energy[:3] = 20000.0
    previous = np.full((n, 1), np.nan)
    previous[:3, 0] = [15000.0 - 4140.0, 15000.0 - 4140.0, 0.0]
    previous[at_minimum, 0] = 4140.0
    minimum = np.full(n, 4140.0)
    minimum[2] = 1380.0
    problem = Problem(slot_s=[900.0], max_power_w=11000.0, energy_wh=energy,
                      arrival_slot=np.zeros(n, dtype=int), departure_slot=np.full(n, 1),
                      node_parent=[-1] + [0] * n, connector_node=np.arange(1, n + 1),
                      node_limit_w=[14000.0] + [11000.0] * n, min_power_w=minimum,
                      previous_w=previous)
    kept = solve(problem, backend=backend)
    free = solve(dataclasses.replace(problem, previous_w=None), backend=backend)
    assert (kept.power_w[:2, 0] >= 4140.0).all(), kept.power_w[:3, 0]
    assert kept.power_w[:3, 0].sum() == pytest.approx(14000.0)
    assert weighted_energy_wh(problem, kept.power_w) >= \
        weighted_energy_wh(problem, free.power_w) * (1 - 1e-12)


def test_a_car_whose_whole_request_is_planned_is_held_by_moving_its_later_energy():
    # Car 0 got the cap's remainder now (3140 W, under its 4140 W minimum) and the rest of its
    # request later: raising it now alone would deliver more than it asked. Its later energy
    # moves into this slot and the donor (car 1) takes that room later: both cars' energy and
    # every limit stay as they were.
    from optimizer.check import check, delivered_wh
    from optimizer.stable import hold_minimums

    raw = np.array([[3140.0, 9000.0], [10860.0, 5000.0]])
    previous = np.array([[4140.0, np.nan], [10860.0, np.nan]])
    problem = Problem(slot_s=[900.0, 900.0], max_power_w=11000.0,
                      energy_wh=delivered_wh_of(raw), arrival_slot=[0, 0], departure_slot=[2, 2],
                      node_parent=[-1], connector_node=[0, 0], node_limit_w=14000.0,
                      min_power_w=4140.0, previous_w=previous)
    held, count = hold_minimums(problem, raw)
    assert count == 1
    np.testing.assert_allclose(held, [[4140.0, 8000.0], [9860.0, 6000.0]])
    np.testing.assert_allclose(delivered_wh(problem, held), problem.energy_wh)
    assert check(problem, held, tol=1e-9) == []


def delivered_wh_of(power_w):
    return np.asarray(power_w).sum(axis=1) * 0.25


def captured_demo_replan() -> Problem:
    """A re-plan of the demo day (truthful drivers; 20 of its sessions, 12 slots), where the
    stable LP plan left remainders below a minimum in the kept slots (a 22 kW car's 12.4 kW
    minimum against the room left): rounded, it delivered less weighted energy than LLF
    (251 372 vs 257 327 Wh), and the guard returned LLF whole, which paused cars the previous
    plan ran."""
    inf = np.inf
    previous = np.full((20, 12), np.nan)
    previous[:, :2] = [
        [6254, 6254], [3680, 3680], [0, 0], [11040, 11040], [3680, 3680], [11040, 11040],
        [0, 0], [7360, 7360], [4611, 7360], [6104, 5298], [6136, 6819], [6429, 3680],
        [0, 1380], [7360, 7360], [1380, 0], [0, 0], [10127, 11929], [0, 0], [0, 0],
        [11150, 11150]]
    return Problem(
        slot_s=[900.0] * 12,
        max_power_w=[6254, 3680, 11040, 11040, 3680, 11040, 7360, 7360, 7360, 6104, 7360, 7360,
                     7360, 7360, 7360, 22080, 22080, 0, 22080, 11150],
        min_power_w=[4140, 1380, 4140, 4140, 1380, 4140, 1380, 1380, 1380, 1380, 1380, 1380,
                     1380, 1380, 1380, 12420, 4140, 0, 12420, 4140],
        energy_wh=[5761, 16010, 6111, 28638, 16295, 19962, 16678, 18703, 7137, 4257, 27099, 7127,
                   7994, 17712, 14910, 14943, 10028, 0, 27383, 18490],
        arrival_slot=[0] * 20,
        departure_slot=[12, 5, 7, 12, 12, 12, 12, 12, 10, 3, 12, 9, 12, 9, 12, 12, 12, 12, 12, 12],
        phases=[3, 1, 3, 3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3],
        phase=[0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0],
        node_parent=[-1, 0, 0, 0, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 4, 4, 4, 5, 5, 5],
        connector_node=[7, 8, 8, 10, 11, 13, 14, 14, 16, 16, 17, 17, 18, 18, 21, 22, 23, 23, 25,
                        25],
        node_limit_w=[120000, inf, inf, 66000] + [inf] * 22,
        node_limit_a=[200, 100, 80, inf, 63, 63] + [16] * 8 + [inf] * 6 + [32] * 6,
        previous_w=previous)


def _assert_keeps_the_running_cars(problem) -> None:
    """Not a whole baseline; no car the previous plan ran in the first slot paused by the
    re-plan; at least every baseline's weighted energy."""
    from optimizer.solve import weighted_energy_wh

    schedule = solve(problem)
    running = problem.previous_w[:, 0] > 0
    assert schedule.backend not in ("edf", "llf", "equal_share"), schedule.message
    assert not (running & (schedule.power_w[:, 0] == 0)).any()
    for name in ("edf", "llf", "equal_share"):
        assert weighted_energy_wh(problem, schedule.power_w) >= \
            weighted_energy_wh(problem, solve(problem, backend=name).power_w) * (1 - 1e-12)


def test_the_guard_keeps_the_running_cars_of_a_captured_replan():
    # The previous plan's window (already rounded: every car it ran at its minimum or more) with
    # our own plan after it delivers at least LLF's weighted energy: the guard returns that, and
    # no car the previous plan ran in the first slot is paused by this re-plan.
    problem = captured_demo_replan()
    _assert_keeps_the_running_cars(problem)


def test_the_guard_keeps_running_cars_while_a_baseline_starts_an_urgent_one():
    # Another demo-day re-plan (5 of its sessions, 24 slots): LLF beats our rounded plan; it
    # starts car 3 (22 kW, 27 kWh to go) at once and pauses car 4 (1 kWh to go), which shares
    # its 32 A circuit. The previous plan's window (car 3 one slot later) with our plan after it
    # delivers less than LLF. The previous plan's window for the cars it ran and LLF's for the
    # others, made lawful (both cars above their minimum), with our plan after it, delivers as
    # much as LLF and pauses nobody.
    inf = np.inf
    previous = np.full((5, 24), np.nan)
    previous[:, :4] = [[3680] * 4, [7360] * 4, [7360] * 4, [0, 22080, 22080, 22080],
                       [11150, 0, 0, 0]]
    problem = Problem(
        slot_s=[337.0, 503.0] + [900.0] * 22,
        max_power_w=[7360, 7360, 7360, 22080, 11150],
        min_power_w=[1380, 1380, 1380, 12420, 4140],
        energy_wh=[14428, 16954, 6059, 27383, 1073],
        arrival_slot=[0] * 5, departure_slot=[24, 15, 4, 20, 12],
        phases=[1, 1, 1, 3, 3], phase=0,
        node_parent=[-1, 0, 0, 0, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 4, 4, 4, 5, 5, 5],
        connector_node=[14, 17, 18, 25, 25],
        node_limit_w=[120000, inf, inf, 66000] + [inf] * 22,
        node_limit_a=[200, 100, 80, inf, 63, 63] + [16] * 8 + [inf] * 6 + [32] * 6,
        previous_w=previous)
    _assert_keeps_the_running_cars(problem)


def test_the_kept_window_does_not_leave_new_cars_waiting():
    # A demo-day re-plan (9 of its sessions, 6 slots) just after five cars arrived (no previous
    # allocation: NaN). The previous plan's window, which runs only the four cars it knew, with
    # our plan after it delivers more weighted energy over the horizon than equal share (the
    # winner) - by cramming the new cars into the later slots: 47 kWh in the kept slots against
    # equal share's 69 kWh. The guard must not defer energy that way (in the closed loop the site
    # used less of its limit while cars waited).
    from optimizer.objective import quantised_weight
    from optimizer.solve import weighted_energy_wh

    inf = np.inf
    previous = np.full((9, 6), np.nan)
    previous[1:5, :3] = [[11040] * 3, [11040] * 3, [11040] * 3, [7360] * 3]
    problem = Problem(
        slot_s=[780.0] + [900.0] * 5,
        max_power_w=[11040, 11040, 11040, 11040, 7360, 7360, 7360, 22080, 22080],
        min_power_w=[4140, 4140, 4140, 4140, 1380, 1380, 1380, 12420, 12420],
        energy_wh=[8437, 14098, 17572, 22367, 30000, 19281, 14088, 26586, 9288],
        arrival_slot=[0] * 9, departure_slot=[6] * 9,
        phases=[3, 3, 3, 3, 1, 1, 1, 3, 3], phase=[0, 0, 0, 0, 1, 1, 1, 0, 0],
        node_parent=[-1, 0, 0, 0, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 4, 4, 4, 5, 5, 5],
        connector_node=[6, 7, 8, 11, 14, 16, 17, 21, 23],
        node_limit_w=[120000, inf, inf, 66000] + [inf] * 22,
        node_limit_a=[200, 100, 80, inf, 63, 63] + [16] * 8 + [inf] * 6 + [32] * 6,
        previous_w=previous)
    weight = quantised_weight(problem.weight)

    def now_wh(power_w):
        return float(weight @ (power_w[:, :3] @ problem.wh_per_w[:3]))

    schedule = solve(problem)
    baselines = {name: solve(problem, backend=name).power_w
                 for name in ("edf", "llf", "equal_share")}
    best = max(baselines.values(), key=lambda power_w: weighted_energy_wh(problem, power_w))
    assert now_wh(schedule.power_w) >= 0.95 * now_wh(best), schedule.backend
    for power_w in baselines.values():
        assert weighted_energy_wh(problem, schedule.power_w) >= \
            weighted_energy_wh(problem, power_w) * (1 - 1e-12)
