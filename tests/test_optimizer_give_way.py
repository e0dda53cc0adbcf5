"""A car offered its minimum while it takes less gives way to cars that would take more
(optimizer/give_way.py): only where they would not get their need otherwise, always lawful."""

import numpy as np
import pytest

from optimizer import Problem, check, solve
from optimizer.give_way import drawn_wh, give_way
from optimizer.instances import generate


def two_cars(hungry_need_wh: float) -> Problem:
    # car 0 is planned at its 4 140 W minimum (it leaves first); car 1 takes the rest of 20 kW
    return Problem(slot_s=[900.0] * 4, max_power_w=[4140.0, 22080.0],
                   energy_wh=[4140.0, hungry_need_wh], arrival_slot=[0, 0],
                   departure_slot=[4, 4], node_parent=[-1], connector_node=[0, 0],
                   node_limit_w=20000.0, min_power_w=[4140.0, 4140.0],
                   phases=[3, 3], phase=[0, 0])


def takes(problem: Problem, car0_w: float) -> np.ndarray:
    out = np.full(problem.max_power_w.shape, np.inf)
    out[0] = car0_w          # its battery takes this much only
    return out


def test_a_car_under_its_minimum_gives_way_where_the_other_would_go_short():
    problem = two_cars(80_000.0)           # 20 kW for an hour is 20 kWh: short all along
    plan = solve(problem).power_w
    assert plan[0, 0] == pytest.approx(4140.0)
    t = takes(problem, 3000.0)
    out = give_way(problem, plan, t, slots=2)
    assert out[0, :2].tolist() == [0.0, 0.0]
    assert out[1, :2] == pytest.approx([20000.0, 20000.0])
    assert check(problem, out, tol=0.0) == []
    # the hungry car draws the 4 140 W car 0 held where car 0 drew 3 000 W, for a slot
    gain_wh = drawn_wh(problem, out, t) - drawn_wh(problem, plan, t)
    assert gain_wh == pytest.approx((4140.0 - 3000.0) * 0.25, abs=0.01)


def test_a_car_under_its_minimum_keeps_it_where_the_other_gets_its_need_anyway():
    problem = two_cars(10_000.0)
    plan = solve(problem).power_w
    t = takes(problem, 3000.0)
    assert np.array_equal(give_way(problem, plan, t, slots=2), plan)


@pytest.mark.parametrize("family", ["power", "phase"])
@pytest.mark.parametrize("seed", range(6))
def test_give_way_is_lawful_and_never_draws_less(family, seed):
    problem = generate(40, n_slots=16, family=family, seed=seed, site_cap_fraction=0.3)
    plan = solve(problem).power_w
    rng = np.random.default_rng(seed)
    t = np.full(plan.shape, np.inf)
    tapering = rng.random(problem.n_connectors) < 0.3
    t[tapering] = problem.min_power_w[tapering, None] * rng.uniform(0.2, 1.2, (tapering.sum(), 1))
    out = give_way(problem, plan, t, slots=3)
    assert check(problem, out) == []
    assert drawn_wh(problem, out, t) >= drawn_wh(problem, plan, t) - 1e-6
