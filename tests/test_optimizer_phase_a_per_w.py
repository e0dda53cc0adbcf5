"""optimizer.Problem.phase_a_per_w: a row's current per W on each phase given where the
balanced / single-phase model does not hold (the planner's car of unknown phases on a 3-phase
connector: 1/V A on its connector's L1, 1/(3V) on the others). Every backend keeps the limits
with it, HiGHS agrees with PuLP (which writes every phase's row), and the LP's row dropping
does not drop the phase such a row loads most."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

from optimizer import flow
from optimizer.check import check
from optimizer.problem import Problem
from optimizer.solve import solve
from tests.test_optimizer_properties import (SETTINGS, assert_keeps_every_limit, problems,
                                             solver_tolerance, weighted_energy)

V = 230.0


def worst_case(phase: int) -> np.ndarray:
    row = np.full(3, 1.0 / (3.0 * V))
    row[phase] = 1.0 / V
    return row


def heavy_on_l2() -> Problem:
    """One node, 16 A per phase, no single-phase row: a 3-phase car (at most 6 900 W) and a car
    of unknown phases whose connector's L1 is site L2 (at most 7 360 W)."""
    return Problem(slot_s=[900.0], max_power_w=[6_900.0, 7_360.0], energy_wh=[50_000.0] * 2,
                   arrival_slot=[0, 0], departure_slot=[1, 1], node_parent=[-1],
                   connector_node=[0, 0], node_limit_a=16.0, phases=[3, 3], voltage_v=V,
                   phase_a_per_w=[[1.0 / (3 * V)] * 3, worst_case(1)])


def test_a_row_loading_l2_most_keeps_l2_under_its_limit_and_the_optimum_is_exact():
    problem = heavy_on_l2()
    amps = problem.amps_per_w
    # independently: max x0 + x1 with every phase's current under 16 A
    ref = linprog(-np.ones(2), A_ub=amps.T, b_ub=np.full(3, 16.0),
                  bounds=[(0, 6_900.0), (0, 7_360.0)], method="highs")
    assert ref.status == 0 and -ref.fun == pytest.approx(8_280.0)   # x1 = 1 380 W: L2 full
    for backend in ("auto", "highs", "pulp"):
        schedule = solve(problem, backend=backend)
        assert check(problem, schedule.power_w) == [], backend
        assert schedule.power_w[:, 0].sum() == pytest.approx(8_280.0, abs=1e-3), backend
    for name in ("equal_share", "edf", "llf"):
        assert check(problem, solve(problem, backend=name).power_w) == [], name
    assert not flow.applicable(problem)


def test_without_it_the_model_is_the_balanced_one():
    plain = dataclasses.replace(heavy_on_l2(), phase_a_per_w=None)
    assert np.allclose(plain.amps_per_w, 1.0 / (3 * V))
    assert solve(plain).power_w[:, 0].sum() == pytest.approx(11_040.0, abs=1e-3)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 3)), "some phase"),
    (-np.ones((2, 3)), "negative"),
    (np.ones((2, 2)), "shape"),
    (np.full((2, 3), np.nan), "NaN"),
])
def test_a_bad_phase_a_per_w_is_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=f"phase_a_per_w.*{message}"):
        dataclasses.replace(heavy_on_l2(), phase_a_per_w=bad)


@st.composite
def with_worst_cases(draw, **kwargs):
    """A random problem with per-phase limits where some 3-phase rows are a car of unknown
    phases: 1/V A on a random phase, 1/(3V) on the others."""
    problem = draw(problems(phase_limits=True, **kwargs))
    amps = np.array(problem.amps_per_w)
    for i in range(problem.n_connectors):
        if problem.phases[i] == 3 and draw(st.booleans()):
            amps[i] = np.full(3, 1.0 / (3.0 * problem.voltage_v[i]))
            amps[i, draw(st.integers(0, 2))] = 1.0 / problem.voltage_v[i]
    return dataclasses.replace(problem, phase_a_per_w=amps)


@SETTINGS
@given(with_worst_cases())
def test_every_backend_keeps_every_limit_with_worst_cases(problem):
    backends = ["auto", "highs", "pulp"] + (["flow"] if flow.applicable(problem) else [])
    for backend in backends:
        assert_keeps_every_limit(problem, solve(problem, backend=backend))


@SETTINGS
@given(with_worst_cases(min_rates=False))
def test_highs_and_pulp_agree_with_worst_cases(problem):
    highs = solve(problem, backend="highs")
    pulp = solve(problem, backend="pulp")
    assert highs.objective == pytest.approx(pulp.objective, rel=1e-6,
                                            abs=solver_tolerance(problem))
    assert weighted_energy(problem, highs.power_w) == pytest.approx(
        weighted_energy(problem, pulp.power_w), rel=1e-6, abs=1e-3)
