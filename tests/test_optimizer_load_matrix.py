"""check.node_loads and check.feasible through Problem.load_matrix (one sparse product for the
power and the three phase currents, s35-replan) give the very bits the four products they
replaced gave, and the same verdicts. The replaced code is kept here verbatim as the reference."""

import dataclasses

import numpy as np
import pytest

from optimizer.instances import generate
from optimizer.check import feasible, node_loads
from optimizer.problem import N_PHASES, Problem


def reference_node_loads(problem: Problem, power_w: np.ndarray):
    """The replaced implementation, verbatim."""
    node_conn = problem.node_connector
    load_w = node_conn @ power_w
    amps = problem.amps_per_w
    load_a = np.stack([node_conn @ (amps[:, ph, None] * power_w) for ph in range(N_PHASES)],
                      axis=1)
    return np.asarray(load_w), np.asarray(load_a)


def reference_feasible_loads(problem: Problem, power_w: np.ndarray) -> bool:
    """The node part of the replaced `feasible`, verbatim (the rest is unchanged)."""
    node_conn = problem.node_connector
    if (np.asarray(node_conn @ power_w) > problem.node_limit_w).any():
        return False
    if problem.has_phase_limits:
        amps = problem.amps_per_w
        for ph in range(N_PHASES):
            load_a = np.asarray(node_conn @ (amps[:, ph, None] * power_w))
            if (load_a > problem.node_limit_a).any():
                return False
    return True


def problems():
    """Phase and power families (one-phase and three-phase cars, a tree several levels deep,
    rows of node_connector not sorted), and one with per-row currents (phase_a_per_w)."""
    out = [generate(n, family=family, seed=seed)
           for n, family, seed in ((30, "phase", 0), (200, "phase", 1), (200, "power", 2),
                                   (1000, "phase", 3))]
    base = out[1]
    rng = np.random.default_rng(9)
    per_row = rng.choice([0.0, 1.0 / 230.0, 1.0 / 690.0, 1.0 / 240.0],
                         size=(base.n_connectors, N_PHASES))
    per_row[:, 0] = np.where(per_row.sum(axis=1) > 0, per_row[:, 0], 1.0 / 230.0)
    out.append(dataclasses.replace(base, phase_a_per_w=per_row))
    return out


def random_power(rng, problem: Problem) -> np.ndarray:
    """Random power with exact zeros, ties and values of every magnitude."""
    shape = (problem.n_connectors, problem.n_slots)
    power = rng.uniform(0.0, 22_000.0, shape) * (rng.random(shape) < 0.6)
    power[rng.random(shape) < 0.1] = 4140.0
    power[rng.random(shape) < 0.05] = rng.uniform(0.0, 1e-3)
    return power


@pytest.mark.parametrize("index", range(5))
def test_node_loads_gives_the_four_products_bits(index):
    problem = problems()[index]
    assert not problem.node_connector.has_sorted_indices or index == 0
    rng = np.random.default_rng(index)
    for _ in range(5):
        power = random_power(rng, problem)
        load_w, load_a = node_loads(problem, power)
        ref_w, ref_a = reference_node_loads(problem, power)
        assert load_w.shape == ref_w.shape and load_a.shape == ref_a.shape
        assert load_w.tobytes() == ref_w.tobytes()
        assert load_a.tobytes() == ref_a.tobytes()
        assert load_a.flags.c_contiguous   # laid out as np.stack laid it out: sums over it alike


@pytest.mark.parametrize("index", range(5))
def test_feasible_gives_the_same_verdict_on_the_loads(index):
    """Power within every connector's own bounds (requests large enough not to count), scaled
    around where node limits start to bind: both verdicts, the replaced check's each time."""
    problem = _any_request(problems()[index])
    rng = np.random.default_rng(100 + index)
    verdicts = set()
    for scale in np.linspace(0.0, 1.0, 41):
        draws = rng.uniform(0.5, 1.0, problem.upper_w.shape) * (rng.random(problem.upper_w.shape) < 0.9)
        power = _lawful_alone(problem, problem.upper_w * draws * scale)
        expected = reference_feasible_loads(problem, power)
        assert feasible(problem, power) == expected
        verdicts.add(expected)
    assert verdicts == {True, False}


def test_a_limit_exactly_at_the_load_is_kept_as_before():
    """A node limit equal to the summed load to the bit is not exceeded (> compares the same
    sums), one ulp below it is: the edge the safety projection aims at."""
    problem = _any_request(problems()[1])
    power = _lawful_alone(problem, random_power(np.random.default_rng(5), problem))
    ref_w, ref_a = reference_node_loads(problem, power)
    at_limit = dataclasses.replace(problem, node_limit_w=ref_w,
                                   node_limit_a=ref_a.max(axis=1))
    assert reference_feasible_loads(at_limit, power) and feasible(at_limit, power)
    below = dataclasses.replace(problem, node_limit_w=np.inf,
                                node_limit_a=np.nextafter(ref_a.max(axis=1), 0.0))
    assert not reference_feasible_loads(below, power) and not feasible(below, power)


def _any_request(problem: Problem) -> Problem:
    return dataclasses.replace(problem, energy_wh=np.full(problem.n_connectors, 1e9))


def _lawful_alone(problem: Problem, power: np.ndarray) -> np.ndarray:
    power = np.minimum(power, problem.upper_w)
    return np.where(power < problem.min_power_w[:, None], 0.0, power)


@pytest.mark.parametrize("index", range(5))
def test_build_lp_writes_the_rows_the_per_phase_products_keep(index):
    """build_lp sizes its node rows (which can bind) from node_loads of the capped power: the
    rows it writes are exactly those the replaced per-resource products kept."""
    from optimizer.lp import build_lp, tight_upper_w
    from optimizer.objective import build_objective

    problem = problems()[index]
    arrays = build_lp(problem, build_objective(problem), problem.upper_w)
    cap_w = tight_upper_w(problem, problem.upper_w)
    cap_w = np.where((cap_w > 0) & (problem.energy_wh[:, None] > 0), cap_w, 0.0)
    ref_w, ref_a = reference_node_loads(problem, cap_w)
    expected = [np.argwhere(np.isfinite(problem.node_limit_w) & (ref_w > problem.node_limit_w))]
    amps = problem.amps_per_w
    singles = problem.node_connector @ (amps > amps.min(axis=1, keepdims=True) * (1 + 1e-12))
    for ph in range(N_PHASES):
        needed = (singles[:, ph] > 0) | ((singles.sum(axis=1) == 0) if ph == 0 else False)
        expected.append(np.argwhere(np.isfinite(problem.node_limit_a) & needed[:, None]
                                    & (ref_a[:, ph] > problem.node_limit_a)))
    got = np.column_stack([arrays.row_node, arrays.row_slot, arrays.row_phase])
    want = np.concatenate([np.column_stack([rows, np.full(len(rows), ph - 1)])
                           for ph, rows in enumerate(expected)])
    assert len(want) > 0 and ((want[:, 2] >= 0).any() or not problem.has_phase_limits)
    assert np.array_equal(got, want)
