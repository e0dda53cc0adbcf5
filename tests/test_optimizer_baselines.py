"""Baselines: each respects every limit (except uncontrolled), and behaves as its name says."""

import numpy as np
import pytest

from optimizer import Problem, baselines, check
from optimizer.instances import generate

FEASIBLE = ("equal_share", "edf", "llf")


def one_slot_problem(max_w, energy_wh, root_limit_w, **fields) -> Problem:
    n = len(max_w)
    fields.setdefault("node_parent", [-1])
    fields.setdefault("connector_node", [0] * n)
    m = len(fields["node_parent"])
    limit = fields.pop("node_limit_w", None)
    if limit is None:
        limit = np.full((m, 1), np.inf)
        limit[0] = root_limit_w
    return Problem(slot_s=[3600.0], max_power_w=np.asarray(max_w, float)[:, None],
                   energy_wh=energy_wh, arrival_slot=[0] * n, departure_slot=[1] * n,
                   node_limit_w=limit, **fields)


@pytest.mark.parametrize("family", ["power", "phase"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", FEASIBLE)
def test_baseline_respects_every_limit(name, family, seed):
    problem = generate(80, family=family, seed=seed, n_feeders=5)
    power = getattr(baselines, name)(problem)
    assert check(problem, power, tol=0.0) == []
    assert power.shape == (problem.n_connectors, problem.n_slots)
    assert (power @ problem.wh_per_w).sum() > 0


@pytest.mark.parametrize("name", FEASIBLE)
def test_cap_below_every_minimum_pauses_everyone(name):
    problem = one_slot_problem([11040.0] * 3, [50000.0] * 3, 3000.0, min_power_w=4140.0)
    power = getattr(baselines, name)(problem)
    np.testing.assert_array_equal(power, np.zeros((3, 1)))


@pytest.mark.parametrize("name", FEASIBLE)
def test_minimum_rate_is_kept_under_a_tight_cap(name):
    # Three cars at 4140 W minimum under 9 kW: at most two can run, none between 0 and 4140 W.
    problem = one_slot_problem([11040.0] * 3, [50000.0] * 3, 9000.0, min_power_w=4140.0)
    power = getattr(baselines, name)(problem)
    assert check(problem, power, tol=0.0) == []
    assert power.sum() > 4140.0


def test_uncontrolled_runs_at_max_until_the_request_is_met_and_ignores_the_tree():
    problem = Problem(slot_s=[3600.0] * 3, max_power_w=[[10000.0] * 3], energy_wh=[15000.0],
                      arrival_slot=[0], departure_slot=[3], node_parent=[-1], connector_node=[0],
                      node_limit_w=5000.0)
    power = baselines.uncontrolled(problem)
    np.testing.assert_allclose(power, [[10000.0, 5000.0, 0.0]])
    assert {v.kind for v in check(problem, power)} == {"node_power"}


def test_edf_serves_the_earliest_departure_first():
    problem = Problem(slot_s=[3600.0] * 2, max_power_w=[[10000.0] * 2] * 2,
                      energy_wh=[10000.0, 10000.0], arrival_slot=[0, 0], departure_slot=[2, 1],
                      node_parent=[-1], connector_node=[0, 0], node_limit_w=10000.0)
    power = baselines.edf(problem)
    np.testing.assert_allclose(power, [[0.0, 10000.0], [10000.0, 0.0]], rtol=1e-6)


def test_llf_serves_the_least_laxity_first():
    # Same departure; car 1 needs 20 kWh in 2 slots at 10 kW (laxity 0), car 0 needs 5 kWh.
    problem = Problem(slot_s=[3600.0] * 2, max_power_w=[[10000.0] * 2] * 2,
                      energy_wh=[5000.0, 20000.0], arrival_slot=[0, 0], departure_slot=[2, 2],
                      node_parent=[-1], connector_node=[0, 0], node_limit_w=10000.0)
    power = baselines.llf(problem)
    np.testing.assert_allclose(power[1], [10000.0, 10000.0], rtol=1e-6)
    np.testing.assert_allclose(power[0], [0.0, 0.0], atol=1e-6)


def test_higher_weight_is_served_first_by_the_greedy_baselines():
    problem = one_slot_problem([10000.0] * 2, [50000.0] * 2, 10000.0, weight=[1.0, 2.0])
    for name in ("edf", "llf"):
        power = getattr(baselines, name)(problem)
        assert power[1, 0] == pytest.approx(10000.0, rel=1e-6)
        assert power[0, 0] == pytest.approx(0.0, abs=1e-3)


def test_equal_share_splits_a_cap_equally():
    problem = one_slot_problem([10000.0] * 2, [50000.0] * 2, 10000.0)
    power = baselines.equal_share(problem)
    np.testing.assert_allclose(power[:, 0], [5000.0, 5000.0], rtol=1e-6)


def test_fit_under_limits_scales_each_overloaded_subtree():
    # Cars 0, 1 under node 1 (12 kW); car 2 under the root (30 kW in all).
    problem = one_slot_problem([10000.0] * 3, [50000.0] * 3, None, node_parent=[-1, 0],
                               connector_node=[1, 1, 0], node_limit_w=[[30000.0], [12000.0]])
    fitted = baselines.fit_under_limits(problem, 0, np.array([10000.0, 10000.0, 10000.0]))
    np.testing.assert_allclose(fitted, [6000.0, 6000.0, 10000.0], rtol=1e-6)
    assert check(problem, fitted[:, None], tol=0.0) == []


def test_fit_under_limits_respects_phase_current():
    # Single-phase car on L1 and a 3-phase car, 16 A per phase at the root.
    problem = one_slot_problem([7360.0, 11040.0], [50000.0] * 2, np.inf, phases=[1, 3],
                               phase=[0, 0], node_limit_a=16.0)
    fitted = baselines.fit_under_limits(problem, 0, np.array([7360.0, 11040.0]))
    assert check(problem, fitted[:, None], tol=0.0) == []
    # L1 would carry 7360/230 + 11040/690 = 48 A: both scale by 16/48.
    np.testing.assert_allclose(fitted / np.array([7360.0, 11040.0]), 1.0 / 3.0, rtol=1e-6)


def test_top_up_only_adds_and_keeps_every_limit_and_minimum():
    # 10 kW cap; car 0 runs at 6 kW, car 1 (4140 W minimum) is paused. The 4 kW left is below
    # car 1's minimum, so it goes to car 0, which is already running.
    problem = one_slot_problem([11040.0] * 2, [50000.0] * 2, 10000.0, min_power_w=4140.0)
    topped = baselines.top_up(problem, np.array([[6000.0], [0.0]]))
    assert check(problem, topped, tol=1e-6) == []
    assert topped[0, 0] == pytest.approx(10000.0, rel=1e-6)
    assert topped[1, 0] == 0.0
    # With room for a minimum, the paused car starts at no less than it.
    problem = one_slot_problem([7000.0, 11040.0], [50000.0] * 2, 12000.0, min_power_w=4140.0)
    topped = baselines.top_up(problem, np.array([[6000.0], [0.0]]))
    assert check(problem, topped, tol=1e-6) == []
    np.testing.assert_allclose(topped[:, 0], [7000.0, 5000.0], rtol=1e-6)


def test_per_problem_caches_do_not_keep_problems_alive():
    # baselines and path_min cache per-problem arrays in weak-keyed dictionaries: a controller
    # that re-plans every few seconds must not accumulate every problem it ever solved.
    import gc
    import weakref

    from optimizer import lp, solve
    from optimizer.instances import generate
    problem = generate(40, seed=0, n_feeders=4)
    solve(problem, backend="highs")  # the LP bounds read path_min's cache
    assert problem in baselines._TREES and problem in lp._DEPTH_LEVELS
    alive = weakref.ref(problem)
    del problem
    gc.collect()
    assert alive() is None


# --- issue 9, defect 1: a car paused below its minimum holds no headroom --------------------

def paused_first_problem() -> Problem:
    """A 3-phase car (minimum 4140 W) first in line under a 3 kW cap, a 1-phase car after it."""
    return Problem(slot_s=[900.0] * 4, max_power_w=[11000.0, 7360.0], energy_wh=[20000.0, 3000.0],
                   arrival_slot=[0, 0], departure_slot=[3, 4], node_parent=[-1],
                   connector_node=[0, 0], node_limit_w=3000.0, min_power_w=[4140.0, 1380.0],
                   phases=[3, 1], phase=[0, 0])


def test_serve_in_order_a_paused_car_leaves_its_headroom_to_the_next():
    problem = paused_first_problem()
    got = baselines.serve_in_order(problem, 0, np.array([11000.0, 7360.0]), np.array([0, 1]))
    # Car 0 cannot run under 3 kW (minimum 4140 W): paused, and car 1 takes the 3 kW.
    assert got[0] == 0.0
    assert got[1] == pytest.approx(3000.0, rel=1e-6)


def test_serve_in_order_matches_serving_one_car_at_a_time():
    # Minimums alternating above and below what is left: the sequential rule, car by car.
    rng = np.random.default_rng(3)
    n = 12
    problem = one_slot_problem(rng.uniform(1000.0, 11000.0, n), [50000.0] * n, 9000.0,
                               min_power_w=rng.choice([1380.0, 4140.0], n))
    want = problem.max_power_w[:, 0]
    order = rng.permutation(n)
    got = baselines.serve_in_order(problem, 0, want, order)
    left = 9000.0 * (1.0 - 1e-9)
    expected = np.zeros(n)
    for i in order:
        give = min(want[i], left)
        expected[i] = give if give >= problem.min_power_w[i] else 0.0
        left -= expected[i]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("name", ["edf", "llf", "equal_share"])
def test_baselines_give_a_paused_cars_headroom_to_the_next(name):
    power = getattr(baselines, name)(paused_first_problem())
    np.testing.assert_allclose(power[1], [3000.0] * 4, rtol=1e-6)


def test_solve_gives_a_paused_cars_headroom_to_the_next():
    from optimizer import solve
    schedule = solve(paused_first_problem())
    assert check(paused_first_problem(), schedule.power_w, tol=0.0) == []
    # 3000 W in all four slots (3000 Wh) is lawful; before the fix car 1 got 750 Wh.
    assert schedule.delivered_wh[1] == pytest.approx(3000.0, rel=1e-6)


# --- issue 9, defect 4: equal_share leaves no capacity unused under a tree --------------------

def room_left_w(problem, power_w, t, i):
    """What connector i could still draw in slot t before some node above it is full [W]."""
    from optimizer.check import node_loads
    load_w, load_a = node_loads(problem, power_w)
    above = problem.node_connector[:, i].toarray().ravel() > 0
    room = np.min(problem.node_limit_w[above, t] - load_w[above, t])
    amps = problem.amps_per_w[i]
    for ph in np.flatnonzero(amps > 0):
        room = min(room, np.min((problem.node_limit_a[above, t] - load_a[above, ph, t]) / amps[ph]))
    return float(room)


def assert_no_car_could_take_more(problem, power_w, tol_w=1e-3):
    """Every car below what it could take (its maximum, its request) is held back by a full node:
    less room above it than it needs (any more when running, its minimum when paused)."""
    remaining = problem.energy_wh.copy()
    for t in range(problem.n_slots):
        want = np.minimum(problem.upper_w[:, t], remaining / problem.wh_per_w[t])
        for i in np.flatnonzero(power_w[:, t] < want - tol_w):
            room = min(room_left_w(problem, power_w, t, i), want[i] - power_w[i, t])
            need = tol_w if power_w[i, t] > 0 else problem.min_power_w[i]
            assert room < need, (f"slot {t}: car {i} gets {power_w[i, t]:.1f} W of "
                                 f"{want[i]:.1f} W while every node above it has {room:.1f} W room")
        remaining = remaining - power_w[:, t] * problem.wh_per_w[t]


def three_pods(min_power_w=0.0, n_slots=1) -> Problem:
    """A root (40 kW) over three pods (20 kW each): 4, 2 and 1 cars of 11 kW / 7 kW."""
    max_w = np.array([11000.0] * 6 + [7000.0])
    limit = np.array([[40000.0], [20000.0], [20000.0], [20000.0]]).repeat(n_slots, axis=1)
    return Problem(slot_s=[900.0] * n_slots, max_power_w=max_w[:, None].repeat(n_slots, 1),
                   energy_wh=[50000.0] * 7, arrival_slot=[0] * 7, departure_slot=[n_slots] * 7,
                   node_parent=[-1, 0, 0, 0], connector_node=[1, 1, 1, 1, 2, 2, 3],
                   node_limit_w=limit, min_power_w=min_power_w)


def test_fit_under_limits_cuts_a_pods_cars_once():
    problem = three_pods()
    fitted = baselines.fit_under_limits(problem, 0, problem.max_power_w[:, 0])
    assert check(problem, fitted[:, None], tol=0.0) == []
    # Pods A and B are cut to 20 kW each; with pod C's 7 kW the root (40 kW) is over by 7 kW:
    # it scales what the pods pass up (47 kW), not what the cars asked for (73 kW).
    assert fitted.sum() == pytest.approx(40000.0, rel=1e-6)
    assert_no_car_could_take_more(problem, fitted[:, None])


@pytest.mark.parametrize("min_power_w", [0.0, 4140.0, 6000.0])
def test_equal_share_uses_every_watt_three_pods_allow(min_power_w):
    problem = three_pods(min_power_w, n_slots=4)
    power = baselines.equal_share(problem)
    assert check(problem, power, tol=0.0) == []
    assert_no_car_could_take_more(problem, power)


@pytest.mark.parametrize("family", ["power", "phase"])
def test_equal_share_leaves_no_usable_room_on_generated_sites(family):
    problem = generate(60, family=family, seed=4, n_feeders=3)
    power = baselines.equal_share(problem)
    assert check(problem, power, tol=0.0) == []
    assert_no_car_could_take_more(problem, power)
