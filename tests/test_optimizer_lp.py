"""The LP arrays: the same model through scipy's linprog gives the same optimum as HiGHS direct."""

import numpy as np
import pytest
from scipy.optimize import linprog

from optimizer.instances import generate
from optimizer.lp import build_lp, solve_lp
from optimizer.objective import build_objective, evaluate


@pytest.mark.parametrize("family", ["power", "phase"])
def test_linprog_on_the_same_arrays_agrees_with_highs(family):
    problem = generate(25, family=family, seed=7, n_feeders=3, n_slots=24, slot_s=3600.0)
    objective = build_objective(problem)
    arrays = build_lp(problem, objective, problem.upper_w)
    result = linprog(arrays.c, A_ub=arrays.A_ub, b_ub=arrays.b_ub, A_eq=arrays.A_eq,
                     b_eq=arrays.b_eq, bounds=arrays.bounds, method="highs")
    assert result.status == 0
    power_w, info = solve_lp(problem, objective, problem.upper_w)
    assert -result.fun == pytest.approx(info["objective"], rel=1e-7)
    # The solver's value is the objective of the allocation it returns.
    assert evaluate(problem, objective, power_w) == pytest.approx(info["objective"], rel=1e-7)
    assert arrays.to_power(result.x).shape == power_w.shape


def test_paused_entries_have_no_variable_and_get_no_power():
    problem = generate(20, family="phase", seed=8, n_feeders=3)
    objective = build_objective(problem)
    upper_w = np.array(problem.upper_w)
    upper_w[:, ::2] = 0.0
    arrays = build_lp(problem, objective, upper_w)
    assert (arrays.var_of[:, ::2] == -1).all()
    power_w, _ = solve_lp(problem, objective, upper_w)
    assert (power_w[:, ::2] == 0.0).all()


def test_rows_that_cannot_bind_are_not_written():
    # Generous limits everywhere: no node row can bind, so only the energy rows remain.
    problem = generate(20, family="phase", seed=9, n_feeders=3, site_cap_fraction=5.0)
    loose = problem.__class__(**{**{f: getattr(problem, f) for f in (
        "slot_s", "max_power_w", "energy_wh", "arrival_slot", "departure_slot", "node_parent",
        "connector_node", "min_power_w", "phases", "phase", "voltage_v", "weight",
        "price_per_kwh")}, "node_limit_w": 1e9, "node_limit_a": 1e9})
    arrays = build_lp(loose, build_objective(loose), loose.upper_w)
    assert arrays.n_ub == 0
    assert arrays.A_eq.shape[0] == arrays.seg_connector.shape[0]
