"""safety._reduce_nodes computes only the slots where a node is over (s35-replan: after a solve a
few of 97) and gives the very bits the whole-plan version it replaced gave, whatever the slots
over: none, a few (power rows, phase rows, both), all. The replaced code is kept here verbatim
as the reference; the projection and the rounding are compared end to end too."""

import dataclasses

import numpy as np
import pytest

from optimizer import safety
from optimizer.check import node_loads
from optimizer.instances import generate
from optimizer.lp import path_min
from optimizer.problem import N_PHASES, Problem
from optimizer.safety import MARGIN_A, MARGIN_W, OVERSHOOT


def reference_reduce_nodes(problem: Problem, power_w: np.ndarray) -> np.ndarray:
    """The replaced implementation, verbatim."""
    load_w, load_a = node_loads(problem, power_w)
    over_w = load_w > problem.node_limit_w
    over_a = load_a > problem.node_limit_a[:, None, :]
    if not over_w.any() and not over_a.any():
        return power_w
    slack = np.maximum(power_w - problem.min_power_w[:, None], 0.0)
    slack_w, slack_a = node_loads(problem, slack)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        need = np.where(over_w, ((load_w - problem.node_limit_w) * OVERSHOOT + MARGIN_W) / slack_w,
                        0.0)
        for ph in range(N_PHASES):
            need_a = np.where(over_a[:, ph],
                              ((load_a[:, ph] - problem.node_limit_a) * OVERSHOOT + MARGIN_A)
                              / slack_a[:, ph],
                              0.0)
            need = np.maximum(need, need_a)
    need = np.nan_to_num(np.minimum(need, 1.0), nan=1.0, posinf=1.0)
    share = -path_min(problem, -need)[problem.connector_node]
    power_w = power_w - share * slack
    load_w, load_a = node_loads(problem, power_w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        factor = np.where(load_w > problem.node_limit_w, problem.node_limit_w / load_w, 1.0)
        for ph in range(N_PHASES):
            factor = np.minimum(factor, np.where(load_a[:, ph] > problem.node_limit_a,
                                                 problem.node_limit_a / load_a[:, ph], 1.0))
    if (factor < 1.0).any():
        factor = np.where(factor < 1.0, factor * (1.0 - 1e-12), 1.0)
        power_w = power_w * path_min(problem, factor)[problem.connector_node]
    return power_w


def lawful_alone(problem: Problem, power: np.ndarray) -> np.ndarray:
    power = np.minimum(power, problem.upper_w)
    return np.where(power < problem.min_power_w[:, None], 0.0, power)


def over_slots(problem: Problem, power: np.ndarray) -> tuple[int, int]:
    """(slots with a power row over, slots with a phase row over)."""
    load_w, load_a = node_loads(problem, power)
    return (int((load_w > problem.node_limit_w).any(axis=0).sum()),
            int((load_a > problem.node_limit_a[:, None, :]).any(axis=(0, 1)).sum()))


def within_limits_but(problem: Problem, rng, n_over: int, by: float) -> np.ndarray:
    """A plan within every limit (the reference's own reduction of a random plan), then pushed
    over by a factor `by` in n_over random slots."""
    draws = rng.uniform(0.3, 1.0, problem.upper_w.shape) * (rng.random(problem.upper_w.shape) < 0.8)
    power = lawful_alone(problem, problem.upper_w * draws)
    for _ in range(3):
        power = reference_reduce_nodes(problem, power)
    power = np.array(power)
    # the slots where a node is near its limit first, so the push puts one over
    load_w, load_a = node_loads(problem, power)
    near = ((load_w >= 0.99 * problem.node_limit_w).any(axis=0)
            | (load_a >= 0.99 * problem.node_limit_a[:, None, :]).any(axis=(0, 1)))
    ranked = np.concatenate([rng.permutation(np.flatnonzero(near)),
                             rng.permutation(np.flatnonzero(~near))])
    power[:, ranked[:n_over]] *= by
    return power


FAMILIES = [("phase", 0), ("phase", 1), ("power", 2)]


@pytest.mark.parametrize("family,seed", FAMILIES)
@pytest.mark.parametrize("n_over", [0, 1, 7, 40, 96])
@pytest.mark.parametrize("by", [1.0 + 1e-12, 1.05, 2.0])
def test_reduce_nodes_gives_the_whole_plans_bits(family, seed, n_over, by):
    problem = generate(300, family=family, seed=seed)
    power = within_limits_but(problem, np.random.default_rng(seed * 100 + n_over), n_over, by)
    got = safety._reduce_nodes(problem, power)
    expected = reference_reduce_nodes(problem, power)
    assert got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()
    if n_over and by >= 1.05:
        assert sum(over_slots(problem, power)) > 0 and not np.array_equal(got, power)


def test_reduce_nodes_with_only_phase_rows_over():
    """Slots over on a phase current only (no power row over): they are computed too."""
    problem = generate(300, family="phase", seed=4)
    problem = dataclasses.replace(problem, node_limit_w=np.inf)
    power = within_limits_but(problem, np.random.default_rng(4), 5, 1.3)
    over_w, over_a = over_slots(problem, power)
    assert over_w == 0 and over_a > 0
    got = safety._reduce_nodes(problem, power)
    assert got.tobytes() == reference_reduce_nodes(problem, power).tobytes()
    assert not np.array_equal(got, power)


def test_reduce_nodes_with_only_power_rows_over():
    problem = generate(300, family="phase", seed=5)
    problem = dataclasses.replace(problem, node_limit_a=np.inf)
    power = within_limits_but(problem, np.random.default_rng(5), 5, 1.3)
    over_w, over_a = over_slots(problem, power)
    assert over_w > 0 and over_a == 0
    got = safety._reduce_nodes(problem, power)
    assert got.tobytes() == reference_reduce_nodes(problem, power).tobytes()
    assert not np.array_equal(got, power)


@pytest.mark.parametrize("seed", range(4))
def test_projection_and_rounding_of_an_lp_plan_give_the_same_bits(seed, monkeypatch):
    """End to end: the safety projection and solve's rounding (projection, top-up, projection)
    of an LP optimum, with the new _reduce_nodes and with the reference in its place."""
    import importlib

    from optimizer.lp import solve_lp
    from optimizer.objective import build_objective

    solve_mod = importlib.import_module("optimizer.solve")
    problem = generate(400, family="phase", seed=seed)
    lp_w, _ = solve_lp(problem, build_objective(problem), problem.upper_w)
    got_projection = safety.project(problem, lp_w)
    got_round = solve_mod._round(problem, lp_w, 0)[0]
    monkeypatch.setattr(safety, "_reduce_nodes", reference_reduce_nodes)
    assert got_projection.tobytes() == safety.project(problem, lp_w).tobytes()
    assert got_round.tobytes() == solve_mod._round(problem, lp_w, 0)[0].tobytes()


@pytest.mark.parametrize("family,seed", FAMILIES)
def test_reduce_nodes_scales_a_subtree_without_slack_as_before(family, seed):
    """Every car at its minimum (no slack above it) under limits cut below the load in a few
    slots: the subtree is scaled down (the factor step), in those slots only."""
    problem = generate(300, family=family, seed=seed)
    power = np.where(problem.upper_w >= problem.min_power_w[:, None],
                     problem.min_power_w[:, None], 0.0)
    load_w, load_a = node_loads(problem, power)
    rng = np.random.default_rng(seed)
    cut = np.zeros(problem.n_slots, dtype=bool)
    cut[rng.choice(np.flatnonzero(load_w[0] > 0), size=3, replace=False)] = True
    limit_w = np.where(cut, np.minimum(problem.node_limit_w, 0.8 * load_w), problem.node_limit_w)
    limit_a = np.where(cut, np.minimum(problem.node_limit_a, 0.8 * load_a.max(axis=1)),
                       problem.node_limit_a)
    problem = dataclasses.replace(problem, node_limit_w=limit_w, node_limit_a=limit_a)
    got = safety._reduce_nodes(problem, power)
    assert got.tobytes() == reference_reduce_nodes(problem, power).tobytes()
    changed = (got != power).any(axis=0)
    assert changed.any() and not changed[~cut].any()
