"""Room that rounding frees now goes to a car whose energy the plan put later (issue 9).

The LP gives a car with a large minimum a fraction of the first slot; rounding pauses it; the
top-up cannot refill that room, because every car that could take it has its whole energy
planned in later slots already. Captured on the demo day (truthful, 02:30): 14.5 kW of a
120 kW limit left unused for a slot while four cars waited with their energy planned later.
"""

import numpy as np
import pytest

from optimizer import Problem, check, solve
from optimizer.forward import pull_forward
from optimizer.instances import generate
from optimizer.objective import build_objective
from optimizer.solve import weighted_energy_wh


def waiting_car_problem(need_wh: float) -> Problem:
    # car 0 takes 11 040 W all along; car 1 (a 22 kW bay with a 12 420 W minimum) cannot run
    # beside it; car 2 (minimum 4 140 W) fits in the 4 960 W left, and its energy fits later
    return Problem(slot_s=[900.0] * 4, max_power_w=[11040.0, 22080.0, 11040.0],
                   energy_wh=[11040.0, 2000.0, need_wh], arrival_slot=[0, 0, 0],
                   departure_slot=[4, 3, 4], node_parent=[-1], connector_node=[0, 0, 0],
                   node_limit_w=16000.0, min_power_w=[4140.0, 12420.0, 4140.0],
                   phases=[3, 3, 3], phase=[0, 0, 0])


@pytest.mark.parametrize("backend", ["auto", "highs"])
@pytest.mark.parametrize("need_wh", [2070.0, 3000.0])
def test_room_rounding_frees_now_goes_to_a_car_planned_later(backend, need_wh):
    problem = waiting_car_problem(need_wh)
    s = solve(problem, backend=backend)
    assert check(problem, s.power_w, tol=0.0) == []
    # the waiting car runs now, at least at its minimum, not only in a later slot
    assert s.power_w[2, 0] >= 4140.0 - 1e-6
    assert s.power_w[:, 0].sum() == pytest.approx(16000.0, rel=1e-6)


def test_pull_forward_moves_energy_earlier_and_keeps_every_car_s_energy():
    problem = waiting_car_problem(3000.0)
    objective = build_objective(problem)
    later = np.array([[11040.0] * 4, [0.0] * 4, [0.0, 0.0, 4960.0, 4960.0]])
    pulled = pull_forward(problem, later, objective.slot_cost, slots=2)
    assert check(problem, pulled, tol=0.0) == []
    np.testing.assert_allclose(pulled @ problem.wh_per_w, later @ problem.wh_per_w)
    np.testing.assert_allclose(pulled[2], [4960.0, 4960.0, 0.0, 0.0])


def test_pull_forward_keeps_a_later_entry_at_its_minimum_or_zero():
    # 2 500 Wh planned later in two slots; 4 960 W now moves 1 240 Wh: the last slot keeps
    # its minimum (4 140 W) rather than a remainder below it
    problem = waiting_car_problem(2500.0)
    objective = build_objective(problem)
    plan = np.array([[11040.0] * 4, [0.0] * 4, [0.0, 0.0, 4960.0, 5040.0]])
    pulled = pull_forward(problem, plan, objective.slot_cost, slots=1)
    assert check(problem, pulled, tol=0.0) == []
    running = pulled[2] > 0
    assert (pulled[2][running] >= 4140.0 - 1e-6).all()
    assert pulled[2, 0] >= 4140.0 - 1e-6
    assert pulled[2] @ problem.wh_per_w <= 2500.0 + 1e-6


def test_pull_forward_never_moves_energy_into_a_dearer_slot():
    problem = Problem(slot_s=[900.0] * 4, max_power_w=[11040.0], energy_wh=[2760.0],
                      arrival_slot=[0], departure_slot=[4], node_parent=[-1], connector_node=[0],
                      node_limit_w=16000.0, min_power_w=[4140.0],
                      price_per_kwh=[0.40, 0.40, 0.10, 0.10])
    objective = build_objective(problem)
    cheap = np.array([[0.0, 0.0, 11040.0, 0.0]])
    np.testing.assert_array_equal(pull_forward(problem, cheap, objective.slot_cost, slots=1),
                                  cheap)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("family", ["power", "phase"])
def test_solve_keeps_every_limit_and_delivers_as_before_with_pull_forward(seed, family):
    problem = generate(40, family=family, seed=seed, n_feeders=3)
    s = solve(problem)
    assert check(problem, s.power_w, tol=0.0) == []
    running = s.power_w > 0
    assert (s.power_w[running] >= np.broadcast_to(problem.min_power_w[:, None],
                                                  running.shape)[running] - 1e-9).all()
    objective = build_objective(problem)
    pulled = pull_forward(problem, s.power_w, objective.slot_cost, slots=1)
    # already pulled: nothing more moves, and no energy is lost
    assert weighted_energy_wh(problem, pulled) >= weighted_energy_wh(problem, s.power_w) - 1e-6
    np.testing.assert_allclose(pulled[:, 0].sum(), s.power_w[:, 0].sum(), rtol=1e-9, atol=1e-6)
