"""check() finds every kind of violation, with the right place and amount."""

import numpy as np
import pytest

from optimizer import Problem, Violation, check
from optimizer.check import KINDS


@pytest.fixture
def problem() -> Problem:
    # Root (limit 20 kW, 40 A per phase) -> node 1 (limit 12 kW); car 0 and car 1 (single-phase
    # on L2) under node 1, car 2 directly under the root. Two one-hour slots.
    return Problem(slot_s=[3600.0, 3600.0],
                   max_power_w=[[11000.0, 11000.0], [7000.0, 7000.0], [11000.0, 11000.0]],
                   energy_wh=[15000.0, 10000.0, 30000.0], arrival_slot=[0, 0, 1],
                   departure_slot=[2, 2, 2], node_parent=[-1, 0], connector_node=[1, 1, 0],
                   node_limit_w=[[20000.0, 20000.0], [12000.0, 12000.0]],
                   node_limit_a=[[40.0, 40.0], [np.inf, np.inf]],
                   min_power_w=[4140.0, 1380.0, 4140.0], phases=[3, 1, 3], phase=[0, 1, 0])


def kinds(violations):
    return sorted({v.kind for v in violations})


def test_feasible_allocation_has_no_violation(problem):
    power = np.array([[6000.0, 6000.0], [5000.0, 0.0], [0.0, 9000.0]])
    assert check(problem, power, tol=0.0) == []


def test_negative_power(problem):
    power = np.array([[-1.0, 6000.0], [0.0, 0.0], [0.0, 0.0]])
    (v,) = check(problem, power)
    assert v == Violation("negative_power", 0, 0, None, 0.0, -1.0, 1.0)


def test_outside_window(problem):
    power = np.array([[0.0, 0.0], [0.0, 0.0], [5000.0, 0.0]])  # car 2 arrives in slot 1
    (v,) = check(problem, power)
    assert (v.kind, v.index, v.slot, v.excess) == ("outside_window", 2, 0, 5000.0)


def test_above_max(problem):
    power = np.array([[0.0, 0.0], [7500.0, 0.0], [0.0, 0.0]])
    vs = check(problem, power)
    (above,) = vs
    assert (above.kind, above.index, above.slot, above.limit, above.value, above.excess) == (
        "above_max", 1, 0, 7000.0, 7500.0, 500.0)


def test_below_min(problem):
    power = np.array([[2000.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    (v,) = check(problem, power)
    assert (v.kind, v.index, v.slot, v.limit, v.value, v.excess) == ("below_min", 0, 0, 4140.0, 2000.0, 2140.0)


def test_energy_over_request(problem):
    power = np.array([[10000.0, 6000.0], [0.0, 0.0], [0.0, 0.0]])
    (v,) = check(problem, power)
    assert (v.kind, v.index, v.slot, v.limit, v.value, v.excess) == (
        "energy_over_request", 0, None, 15000.0, 16000.0, 1000.0)


def test_node_power(problem):
    power = np.array([[0.0, 8000.0], [0.0, 5000.0], [0.0, 0.0]])
    (v,) = check(problem, power)
    assert (v.kind, v.index, v.slot, v.limit, v.value, v.excess) == ("node_power", 1, 1, 12000.0, 13000.0, 1000.0)


def test_node_current_on_one_phase(problem):
    # L2: car 1 at 7000 W / 230 V = 30.4 A plus car 2 at 11000 W / 690 V = 15.9 A > 40 A;
    # L1 and L3 carry only car 2's 15.9 A.
    power = np.array([[0.0, 0.0], [0.0, 7000.0], [0.0, 11000.0]])
    vs = check(problem, power)
    assert kinds(vs) == ["node_current"]
    (v,) = vs
    assert (v.index, v.slot, v.phase, v.limit) == (0, 1, 1, 40.0)
    assert v.value == pytest.approx(7000.0 / 230.0 + 11000.0 / 690.0)
    assert v.excess == pytest.approx(v.value - 40.0)


def test_tolerance_hides_rounding_but_tol_zero_does_not(problem):
    power = np.array([[0.0, 7000.0 + 1e-9], [0.0, 5000.0], [0.0, 0.0]])
    assert check(problem, power) == []
    assert kinds(check(problem, power, tol=0.0)) == ["node_power"]


def test_every_kind_is_covered():
    assert set(KINDS) == {"negative_power", "outside_window", "above_max", "below_min",
                          "energy_over_request", "node_power", "node_current"}


def test_wrong_shape_and_nan_are_rejected(problem):
    with pytest.raises(ValueError, match=r"power_w: shape \(2, 2\) does not fit \(3, 2\)"):
        check(problem, np.zeros((2, 2)))
    bad = np.zeros((3, 2))
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"power_w\[1, 1\]: is not finite"):
        check(problem, bad)


@pytest.mark.parametrize("family", ["power", "phase"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feasible_says_exactly_whether_check_at_zero_tolerance_is_empty(family, seed):
    from optimizer.check import feasible
    from optimizer.instances import generate
    from optimizer.safety import project
    problem = generate(80, family=family, seed=seed, n_feeders=4)
    rng = np.random.default_rng(seed)
    lawful = project(problem, problem.upper_w * rng.random(problem.upper_w.shape))
    assert feasible(problem, lawful) and check(problem, lawful, tol=0.0) == []
    cases = [problem.upper_w, problem.upper_w * 0.3, lawful * 1.001, lawful * (1 - 1e-12)]
    one = lawful.copy()
    one[np.unravel_index(np.argmax(one), one.shape)] += 1e-9  # over by a hair somewhere
    cases.append(one)
    below = lawful.copy()
    below[below > 0] = np.minimum(below[below > 0], 1.0)  # runs under its minimum
    cases.append(below)
    for power_w in cases:
        assert feasible(problem, power_w) == (check(problem, power_w, tol=0.0) == [])
