"""The PuLP/CBC reference backend: hand-made optima, phase limits, time limits."""

import numpy as np
import pytest

from optimizer.objective import build_objective, delivered_wh, evaluate
from optimizer.problem import Problem
from optimizer.pulp_backend import build_model, solve_pulp
from optimizer.schedule import SolverFailed


def run_pulp(problem, upper_w=None, time_limit_s=None):
    objective = build_objective(problem)
    return solve_pulp(problem, objective, problem.upper_w if upper_w is None else upper_w,
                      time_limit_s=time_limit_s)


def test_deadline_forces_early_charging_even_when_later_is_cheaper():
    # Session 0 leaves after slot 1; session 1 stays. The 10 kW cap must serve 0 first.
    problem = Problem(slot_s=np.full(4, 900.0), max_power_w=10_000.0, energy_wh=[5_000.0, 5_000.0],
                      arrival_slot=[0, 0], departure_slot=[2, 4], node_parent=[-1],
                      connector_node=[0, 0], node_limit_w=10_000.0,
                      price_per_kwh=[0.4, 0.4, 0.1, 0.1])
    power_w, info = run_pulp(problem)
    np.testing.assert_allclose(power_w, [[10_000.0, 10_000.0, 0.0, 0.0],
                                         [0.0, 0.0, 10_000.0, 10_000.0]], atol=1e-6)
    assert info["objective"] == pytest.approx(evaluate(problem, build_objective(problem), power_w))


def test_single_phase_ev_on_l1_against_a_per_phase_limit():
    # 16 A per phase at the site. Every watt the L1 car draws takes 1/230 A of L1; every watt the
    # 3-phase car draws takes 1/690 A of each phase, so L1 is what both compete for.
    problem = Problem(slot_s=[3600.0], max_power_w=[[7_360.0], [22_000.0]],
                      energy_wh=[50_000.0, 50_000.0], arrival_slot=[0, 0], departure_slot=[1, 1],
                      node_parent=[-1], connector_node=[0, 0], node_limit_a=16.0,
                      phases=[1, 3], phase=[0, 0], weight=[4.0, 1.0])
    power_w, _ = run_pulp(problem)
    # Weight 4 on the L1 car: its 16 A of L1 are worth 4 x 3680 > 11040 Wh of the 3-phase car.
    np.testing.assert_allclose(power_w[:, 0], [16.0 * 230.0, 0.0], atol=1e-6)
    equal = Problem(slot_s=[3600.0], max_power_w=[[7_360.0], [22_000.0]],
                    energy_wh=[50_000.0, 50_000.0], arrival_slot=[0, 0], departure_slot=[1, 1],
                    node_parent=[-1], connector_node=[0, 0], node_limit_a=16.0,
                    phases=[1, 3], phase=[0, 0])
    power_w, _ = run_pulp(equal)
    # Equal weights: energy first. A watt on the 3-phase car costs a third of the L1 current a
    # watt on the L1 car does, so the 3-phase car takes all: 3 x 16 A x 230 V.
    np.testing.assert_allclose(power_w[:, 0], [0.0, 3 * 16.0 * 230.0], atol=1e-6)


def test_connector_maximum_and_requested_energy_hold():
    problem = Problem(slot_s=np.full(3, 1800.0), max_power_w=[[3_000.0, 9_000.0, 9_000.0]],
                      energy_wh=[6_000.0], arrival_slot=[0], departure_slot=[3],
                      node_parent=[-1], connector_node=[0])
    power_w, _ = run_pulp(problem)
    np.testing.assert_allclose(power_w, [[3_000.0, 9_000.0, 0.0]], atol=1e-6)
    assert delivered_wh(problem, power_w)[0] == pytest.approx(6_000.0)


def test_one_constraint_per_binding_node_slot_and_phase():
    problem = Problem(slot_s=np.full(2, 900.0), max_power_w=7_000.0, energy_wh=[1e4, 1e4, 1e4],
                      arrival_slot=[0, 0, 1], departure_slot=[2, 2, 2], node_parent=[-1, 0],
                      connector_node=[1, 1, 0], node_limit_w=[[np.inf] * 2, [9_000.0] * 2],
                      node_limit_a=[[40.0] * 2, [np.inf] * 2], phases=[1, 3, 1], phase=[0, 0, 2])
    model, x = build_model(problem, build_objective(problem), problem.upper_w)
    assert len(x) == 5
    names = {c.name for c in model.constraints()}
    assert {"power_1_0", "power_1_1"} <= names
    # Phase rows: L1 and L2 in slot 0 (no L3 load yet), all three in slot 1.
    assert {n for n in names if n.startswith("current_")} == {
        "current_0_0_0", "current_0_0_1", "current_0_0_2", "current_0_1_0", "current_0_1_1",
        "current_0_1_2"}


def test_time_limit_that_cannot_be_met_raises():
    # 100 sessions over 48 slots: no LP of ~5 000 variables is solved in a millisecond (400,
    # as before, spent ~3 s of CPU building the PuLP model for the same refusal)
    rng = np.random.default_rng(0)
    n, t = 100, 48
    problem = Problem(slot_s=np.full(t, 900.0), max_power_w=rng.uniform(3e3, 2.2e4, (n, t)),
                      energy_wh=rng.uniform(5e3, 6e4, n), arrival_slot=np.zeros(n, int),
                      departure_slot=np.full(n, t), node_parent=[-1],
                      connector_node=np.zeros(n, int),
                      node_limit_w=1e6, phases=rng.choice([1, 3], n), phase=rng.integers(0, 3, n),
                      node_limit_a=1500.0)
    with pytest.raises(SolverFailed, match="pulp"):
        run_pulp(problem, time_limit_s=1e-3)
