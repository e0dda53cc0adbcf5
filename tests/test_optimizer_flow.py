"""The min-cost-flow backend: hand-made optima, limits, when it applies, and agreement with CBC."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.flow import applicable, build_graph, flow_costs, solve_flow, units_per_wh
from optimizer.objective import build_objective, delivered_wh
from optimizer.problem import Problem
from optimizer.pulp_backend import solve_pulp
from optimizer.schedule import SolverFailed


def run_flow(problem, upper_w=None):
    objective = build_objective(problem)
    return solve_flow(problem, objective, problem.upper_w if upper_w is None else upper_w)


def node_overload_w(problem, power_w):
    """Largest excess of any node's power over its limit (<= 0 when every limit holds)."""
    load = problem.node_connector @ power_w
    return float(np.max(np.where(np.isfinite(problem.node_limit_w), load - problem.node_limit_w,
                                 -np.inf)))


def phase_overload_a(problem, power_w):
    load_a = np.einsum("mi,it,ip->mtp", problem.node_connector.toarray(), power_w,
                       problem.amps_per_w)
    excess = load_a - problem.node_limit_a[:, :, None]
    return float(np.max(np.where(np.isfinite(excess), excess, -np.inf)))


def two_under_cap(energy_wh, cap_w=10_000.0, weight=1.0, n_slots=4):
    return Problem(slot_s=np.full(n_slots, 900.0), max_power_w=11_000.0, energy_wh=energy_wh,
                   arrival_slot=[0, 0], departure_slot=[n_slots, n_slots],
                   node_parent=[-1], connector_node=[0, 0], node_limit_w=cap_w, weight=weight)


def test_one_connector_gets_its_request_as_early_as_possible():
    problem = Problem(slot_s=np.full(4, 900.0), max_power_w=8_000.0, energy_wh=[3_000.0],
                      arrival_slot=[0], departure_slot=[4], node_parent=[-1], connector_node=[0])
    power_w, info = run_flow(problem)
    # 2000 Wh in slot 0 at full power, the remaining 1000 Wh in slot 1: earlier is cheaper.
    np.testing.assert_allclose(power_w, [[8_000.0, 4_000.0, 0.0, 0.0]])
    assert info["status"] == "optimal"


def test_short_energy_is_shared_fairly_between_equal_weights():
    # 4 slots x 10 kW x 0.25 h = 10 kWh for 2 x 20 kWh requested: 5 kWh each.
    power_w, _ = run_flow(two_under_cap([20_000.0, 20_000.0]))
    np.testing.assert_allclose(delivered_wh(two_under_cap([1.0, 1.0]), power_w), [5_000.0, 5_000.0])


def test_fairness_fills_every_quarter_before_anyone_gets_the_next():
    # 10 kWh available for requests of 4 and 8 kWh: three quarters of each (3 + 6 kWh) come
    # before either gets its last quarter; the last 1 kWh goes to either (a tie).
    problem = two_under_cap([4_000.0, 8_000.0])
    power_w, _ = run_flow(problem)
    delivered = delivered_wh(problem, power_w)
    assert delivered.sum() == pytest.approx(10_000.0)
    assert np.all(delivered >= np.array([3_000.0, 6_000.0]) - 1e-6)


def test_higher_weight_is_served_first():
    problem = two_under_cap([20_000.0, 20_000.0], weight=[1.0, 2.0])
    power_w, _ = run_flow(problem)
    np.testing.assert_allclose(delivered_wh(problem, power_w), [0.0, 10_000.0])


def test_price_valley_is_used():
    problem = Problem(slot_s=np.full(4, 900.0), max_power_w=4_000.0, energy_wh=[1_000.0],
                      arrival_slot=[0], departure_slot=[4], node_parent=[-1], connector_node=[0],
                      price_per_kwh=[0.3, 0.3, 0.1, 0.3])
    power_w, _ = run_flow(problem)
    np.testing.assert_allclose(power_w, [[0.0, 0.0, 4_000.0, 0.0]])


def test_feeder_limit_and_departure_window_hold():
    problem = Problem(slot_s=np.full(3, 3600.0), max_power_w=[[7_000.0] * 3, [7_000.0] * 3],
                      energy_wh=[50_000.0, 50_000.0], arrival_slot=[0, 1], departure_slot=[2, 3],
                      node_parent=[-1, 0], connector_node=[1, 1],
                      node_limit_w=[[np.inf] * 3, [10_000.0, 9_000.0, 10_000.0]])
    power_w, _ = run_flow(problem)
    assert power_w[0, 2] == 0.0 and power_w[1, 0] == 0.0
    np.testing.assert_allclose(power_w.sum(axis=0), [7_000.0, 9_000.0, 7_000.0])


def test_capacities_round_down_never_over_a_limit():
    rng = np.random.default_rng(3)
    n, t = 30, 7
    problem = Problem(slot_s=rng.uniform(100.0, 1000.0, t),
                      max_power_w=rng.uniform(1e3, 2e4, (n, t)),
                      energy_wh=rng.uniform(100.0, 9_000.0, n), arrival_slot=np.zeros(n, int),
                      departure_slot=np.full(n, t), node_parent=[-1, 0, 0, 1],
                      connector_node=rng.integers(0, 4, n),
                      node_limit_w=rng.uniform(5e4, 2e5, (4, t)))
    power_w, _ = run_flow(problem)
    assert node_overload_w(problem, power_w) <= 1e-9
    assert np.all(power_w <= problem.upper_w + 1e-9)
    assert np.all(delivered_wh(problem, power_w) <= problem.energy_wh + 1e-9)


def test_upper_w_argument_pauses_connector_slots():
    problem = two_under_cap([20_000.0, 20_000.0], cap_w=30_000.0)
    upper_w = problem.upper_w.copy()
    upper_w[0, :2] = 0.0
    power_w, _ = run_flow(problem, upper_w)
    assert np.all(power_w[0, :2] == 0.0) and np.all(power_w[0, 2:] > 0.0)


def phase_problem(phases, phase, limit_a, voltage_v=230.0):
    n = len(phases)
    return Problem(slot_s=np.full(2, 900.0), max_power_w=22_000.0, energy_wh=np.full(n, 50_000.0),
                   arrival_slot=np.zeros(n, int), departure_slot=np.full(n, 2),
                   node_parent=[-1, 0], connector_node=np.ones(n, int),
                   node_limit_a=[[np.inf] * 2, [limit_a] * 2],
                   phases=phases, phase=phase, voltage_v=voltage_v)


def test_three_phase_current_limit_becomes_a_power_limit():
    problem = phase_problem([3, 3], [0, 0], 32.0)
    assert applicable(problem)
    power_w, _ = run_flow(problem)
    np.testing.assert_allclose(power_w.sum(axis=0), [3 * 230.0 * 32.0] * 2, rtol=1e-6)
    assert phase_overload_a(problem, power_w) <= 1e-9


def test_single_phase_loads_on_one_phase_become_a_power_limit():
    problem = phase_problem([1, 1], [1, 1], 32.0)
    assert applicable(problem)
    power_w, _ = run_flow(problem)
    np.testing.assert_allclose(power_w.sum(axis=0), [230.0 * 32.0] * 2, rtol=1e-6)


def test_mixed_phases_under_a_binding_current_limit_is_not_a_flow():
    problem = phase_problem([3, 1], [0, 0], 32.0)
    assert not applicable(problem)
    with pytest.raises(SolverFailed, match="per-phase"):
        run_flow(problem)


def test_mixed_phases_under_a_current_limit_that_cannot_bind_is_a_flow():
    # 22 kW three-phase (31.9 A) + 7.36 kW on L1 (32 A) = 63.9 A on L1 at most.
    problem = Problem(slot_s=np.full(2, 900.0), max_power_w=[[22_000.0] * 2, [7_360.0] * 2],
                      energy_wh=[50_000.0, 50_000.0], arrival_slot=[0, 0], departure_slot=[2, 2],
                      node_parent=[-1], connector_node=[0, 0], node_limit_a=64.0,
                      phases=[3, 1], phase=[0, 0])
    assert applicable(problem)
    power_w, _ = run_flow(problem)
    np.testing.assert_allclose(power_w, problem.upper_w)


def test_graph_skips_layers_whose_limit_cannot_bind():
    problem = Problem(slot_s=np.full(2, 900.0), max_power_w=5_000.0, energy_wh=[9e9, 9e9],
                      arrival_slot=[0, 0], departure_slot=[2, 2], node_parent=[-1, 0, 0],
                      connector_node=[1, 2], node_limit_w=[[8_000.0] * 2, [5_000.0] * 2,
                                                           [4_000.0] * 2])
    tails, heads, *_ = build_graph(problem, build_objective(problem), problem.upper_w)
    n_layer_nodes = len(set(tails) | set(heads)) - 2 - problem.n_connectors
    assert n_layer_nodes == 2 * 2  # root and node 2 in each slot; node 1's 5 kW never binds


def test_flow_unit_is_as_fine_as_int64_costs_allow():
    assert units_per_wh(1.0, 8.0) == 10**9  # small problems: nWh, capped
    assert units_per_wh(3.2e8, 1.6e6) == 1000  # 10000 sessions with prices: mWh
    with pytest.raises(SolverFailed, match="overflow"):
        units_per_wh(1e12, 1e8)


@st.composite
def power_problems(draw):
    """Small tree problems with power limits whose energies are exact in mWh (no rounding)."""
    n = draw(st.integers(1, 6))
    t = draw(st.integers(1, 5))
    m = draw(st.integers(1, 4))
    parents = [-1] + [draw(st.integers(0, j - 1)) for j in range(1, m)]
    whole_w = st.integers(0, 22).map(lambda k: k * 1000.0)
    arrival = np.array(draw(st.lists(st.integers(0, t), min_size=n, max_size=n)))
    stay = np.array(draw(st.lists(st.integers(0, t), min_size=n, max_size=n)))
    limits = draw(st.lists(st.one_of(st.just(np.inf), st.integers(0, 40).map(lambda k: k * 1e3)),
                           min_size=m * t, max_size=m * t))
    prices = draw(st.one_of(st.none(), st.lists(st.sampled_from([0.1, 0.2, 0.25, 0.4]),
                                                min_size=t, max_size=t)))
    return Problem(
        slot_s=np.full(t, 900.0),
        max_power_w=np.array(draw(st.lists(whole_w, min_size=n * t, max_size=n * t))).reshape(n, t),
        energy_wh=np.array(draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n))) * 4.0,
        arrival_slot=arrival, departure_slot=np.minimum(arrival + stay, t),
        node_parent=parents, connector_node=draw(st.lists(st.integers(0, m - 1), min_size=n,
                                                          max_size=n)),
        node_limit_w=np.array(limits).reshape(m, t),
        weight=draw(st.lists(st.sampled_from([1.0, 1.0, 2.0, 0.5]), min_size=n, max_size=n)),
        price_per_kwh=prices)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(power_problems())
def test_flow_matches_cbc_on_random_power_problems(problem):
    objective = build_objective(problem)
    flow_w, flow_info = solve_flow(problem, objective, problem.upper_w)
    _, cbc_info = solve_pulp(problem, objective, problem.upper_w)
    assert flow_info["objective"] == pytest.approx(cbc_info["objective"], rel=1e-6, abs=1e-6)
    assert node_overload_w(problem, flow_w) <= 1e-9


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(power_problems(), st.lists(st.integers(1, 300), min_size=6, max_size=6),
       st.lists(st.integers(-50, 400), min_size=5, max_size=5))
def test_small_flow_costs_keep_the_optimum_with_close_weights_and_many_prices(problem, weights,
                                                                              prices):
    # flow_costs replaces the slot costs by their ranks and A by a small A': the optimum must
    # stay the model's, also with weights 0.01 apart and negative or many distinct prices.
    problem = dataclasses.replace(problem, weight=np.array(weights[:problem.n_connectors]) / 100,
                                  price_per_kwh=np.array(prices[:problem.n_slots]) / 1000)
    objective = build_objective(problem)
    flow_w, flow_info = solve_flow(problem, objective, problem.upper_w)
    _, cbc_info = solve_pulp(problem, objective, problem.upper_w)
    assert flow_info["objective"] == pytest.approx(cbc_info["objective"], rel=1e-6, abs=1e-6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(power_problems(), st.data())
def test_the_stable_step_keeps_the_optimum_on_random_power_problems(problem, data):
    # A previous allocation (whole kW, so exact in flow units) in the first slots: the stable
    # step (flow.stable_level) multiplies every cost and rewards the part up to it by one unit,
    # below every level: the optimum's value is the same to rounding error, and no optimum
    # keeps more of the previous allocation than the one returned.
    n, t = problem.n_connectors, problem.n_slots
    whole_w = st.integers(0, 22).map(lambda k: k * 1000.0)
    previous = np.full((n, t), np.nan)
    kept = data.draw(st.integers(1, t))
    previous[:, :kept] = np.array(data.draw(st.lists(whole_w, min_size=n * kept,
                                                     max_size=n * kept))).reshape(n, kept)
    stable = dataclasses.replace(problem, previous_w=previous)
    objective = build_objective(problem)
    free_w, free_info = solve_flow(problem, objective, problem.upper_w)
    kept_w, kept_info = solve_flow(stable, objective, problem.upper_w)
    assert kept_info["objective"] == pytest.approx(free_info["objective"], rel=1e-12, abs=1e-9)
    assert node_overload_w(problem, kept_w) <= 1e-9
    known = np.isfinite(previous)
    held = np.minimum(kept_w[known], previous[known]).sum()
    assert held >= np.minimum(free_w[known], previous[known]).sum() - 1e-9


def test_flow_costs_stay_small_with_prices():
    from optimizer.instances import generate
    problem = generate(200, family="power", seed=0)  # prices 0.2 / 0.3 / 0.4, weights 1 and 2
    objective = build_objective(problem)
    seg_cost, root_cost = flow_costs(problem, objective)
    # The model's A, sized for the real price spread (1000 levels; the timing tie-break holds
    # earliness, so the cost is the price level alone).
    assert objective.energy_scale > 1e3
    # Above the urgency tie-break (a factor Q, optimizer/urgency.py) the costs stay small.
    q = objective.urgency_scale
    assert (seg_cost % q == 0).all() and (root_cost % q == 0).all()
    assert np.abs(seg_cost).max() // q < 5_000 and root_cost.max() // q < 1_000
    assert seg_cost.dtype == root_cost.dtype == np.int64


def test_flow_without_sessions_is_empty():
    problem = Problem(slot_s=[900.0] * 3, max_power_w=np.zeros((0, 3)), energy_wh=np.zeros(0),
                      arrival_slot=np.zeros(0, int), departure_slot=np.zeros(0, int),
                      node_parent=[-1], connector_node=np.zeros(0, int), node_limit_w=1000.0)
    power_w, info = solve_flow(problem, build_objective(problem), problem.upper_w)
    assert power_w.shape == (0, 3) and info["objective"] == 0.0


# --- issue 9, defect 3: large finite values must not overflow the flow's int64 capacities -----

def two_cars(max_w=(11_000.0, 7_000.0), cap_w=10_000.0):
    return Problem(slot_s=np.full(2, 900.0), max_power_w=np.array(max_w)[:, None].repeat(2, 1),
                   energy_wh=[20_000.0, 3_000.0], arrival_slot=[0, 0], departure_slot=[2, 2],
                   node_parent=[-1, 0], connector_node=[1, 1],
                   node_limit_w=[[cap_w] * 2, [1e12] * 2])


@pytest.mark.parametrize("problem", [
    two_cars(max_w=(1e11, 7_000.0)),        # a connector maximum of 100 GW
    two_cars(cap_w=4e10),                   # a root limit of 40 GW
    two_cars(max_w=(1e11, 7_000.0), cap_w=1e300),
], ids=["max_power_1e11", "root_limit_4e10", "both_huge"])
def test_huge_finite_values_give_the_exact_optimum(problem):
    from optimizer.solve import solve
    by_flow = solve(problem, backend="flow")
    highs = solve(problem, backend="highs")
    assert by_flow.backend == "flow" and by_flow.status == "optimal", by_flow.message
    assert by_flow.objective == pytest.approx(highs.objective, rel=1e-9)
    # Both cars' first quarters (5 and 0.75 kWh) tie on every level, so only the total is unique.
    assert by_flow.delivered_wh.sum() == pytest.approx(highs.delivered_wh.sum(), rel=1e-9)
    graph = build_graph(problem, build_objective(problem), problem.upper_w)
    assert (graph[2] >= 0).all()  # no capacity wrapped around to a negative number


def test_energy_too_large_for_int64_is_declined_explicitly():
    problem = dataclasses.replace(two_cars(max_w=(1e20, 1e20), cap_w=1e30),
                                  energy_wh=[1e18, 1e18])
    with pytest.raises(SolverFailed, match="overflow"):
        run_flow(problem)


@pytest.mark.parametrize("previous_w, energy_wh", [
    (1e300, (20_000.0, 3_000.0)),  # a huge finite previous allocation
    (1e10, (1e11, 1e11)),          # requests whose costs fit int64 only without the stable step
], ids=["previous_1e300", "no_room_for_the_step"])
def test_the_stable_step_never_makes_the_flow_fail(previous_w, energy_wh):
    # The stable step multiplies the costs and adds capacities from previous_w: a value that
    # does not fit int64 must cap (like any capacity) or drop the step, never fall back.
    from optimizer.solve import solve
    problem = dataclasses.replace(two_cars(max_w=(1e13, 1e13), cap_w=1e14),
                                  energy_wh=list(energy_wh))
    free = solve(problem, backend="flow")
    assert free.backend == "flow"
    previous = np.array([[previous_w, np.nan], [0.0, np.nan]])
    kept = solve(dataclasses.replace(problem, previous_w=previous), backend="flow")
    assert kept.backend == "flow" and kept.status == free.status, kept.message
    assert kept.objective == pytest.approx(free.objective, rel=1e-9)


def test_a_connector_smaller_than_the_flow_unit_allows_gets_its_exact_maximum():
    # The flow unit is sized on the whole problem (1 uWh here, for a 17.6 kWh request): a 1.25 W
    # car's 300 s slot (0.1041666... Wh) floors to 0.104166 Wh, 1.249992 W, a whisker less than
    # the equal share gives it. `solve` tops the flow's quantisation residue up (found by
    # Hypothesis in test_optimizer_delivers_at_least_every_lawful_baseline).
    from optimizer.solve import solve
    node_limit_w = np.full((4, 5), np.inf)
    node_limit_w[3, 4] = 0.0
    max_power_w = np.zeros((4, 5))
    max_power_w[0, 4], max_power_w[2, 1] = 17_573.0, 1.25
    problem = Problem(slot_s=[300.0] * 4 + [3600.0], max_power_w=max_power_w,
                      energy_wh=[17_573.0, 0.0, 1.0, 0.0], arrival_slot=[0] * 4,
                      departure_slot=[5, 0, 2, 0], node_parent=[-1, 0, 0, 0],
                      connector_node=[3, 0, 0, 0], node_limit_w=node_limit_w,
                      weight=[0.5, 0.5, 2.0, 0.5])
    schedule = solve(problem)
    assert schedule.backend == "flow"
    assert schedule.power_w[2, 1] == 1.25
    assert schedule.delivered_wh[2] == pytest.approx(1.25 * 300 / 3600, rel=1e-12)
