"""stable._Loads (hold_minimums' node loads) on Python floats (s35-replan) answers every move as
the array version it replaced did and leaves the very same loads, to the bit, after any
sequence of tried and applied moves; hold_minimums with either gives the same plan. The
replaced class is kept here verbatim as the reference."""

import dataclasses

import numpy as np
import pytest

from optimizer import stable
from optimizer.instances import generate


class ReferenceLoads:
    """The replaced implementation, verbatim (but for its name)."""

    def __init__(self, problem, power_w: np.ndarray) -> None:
        self.problem = problem
        self.amps = problem.amps_per_w  # (N, 3)
        node_conn = problem.node_connector
        self.w = np.asarray(node_conn @ power_w)  # (M, T)
        self.a = np.stack([np.asarray(node_conn @ (self.amps[:, ph, None] * power_w))
                           for ph in range(3)], axis=1)  # (M, 3, T)
        self.limit_w = np.maximum(problem.node_limit_w, self.w)
        self.limit_a = np.maximum(problem.node_limit_a[:, None, :], self.a)
        self.paths = problem.node_paths

    def move(self, src: int, dst: int, t: int, d: float, apply: bool) -> bool:
        p_src = self.paths[self.problem.connector_node[src]]
        p_dst = self.paths[self.problem.connector_node[dst]]
        touched = np.union1d(p_src, p_dst)
        w = self.w[:, t].copy()
        a = self.a[:, :, t].copy()
        w[p_dst] += d
        w[p_src] -= d
        a[p_dst] += d * self.amps[dst]
        a[p_src] -= d * self.amps[src]
        if (w[touched] > self.limit_w[touched, t]).any() or \
                (a[touched] > self.limit_a[touched, :, t]).any():
            return False
        if apply:
            self.w[:, t], self.a[:, :, t] = w, a
        return True

    def lower(self, src: int, t: int, d: float) -> None:
        # (added with stable._Loads.lower, s37-pause: the array version of the same sums)
        p_src = self.paths[self.problem.connector_node[src]]
        self.w[p_src, t] -= d
        self.a[p_src, :, t] -= d * self.amps[src]


def near_limits(problem, rng) -> np.ndarray:
    """A plan with many nodes at or near their limits (where moves are refused)."""
    from optimizer.safety import project
    draws = rng.uniform(0.5, 1.0, problem.upper_w.shape) * (rng.random(problem.upper_w.shape) < 0.9)
    return project(problem, problem.upper_w * draws)


@pytest.mark.parametrize("family,seed", [("phase", 0), ("phase", 1), ("power", 2), ("phase", 3)])
def test_moves_answer_and_leave_the_same_bits(family, seed):
    problem = generate(200, family=family, seed=seed)
    rng = np.random.default_rng(seed)
    power = near_limits(problem, rng)
    ours, ref = stable._Loads(problem, power), ReferenceLoads(problem, power)
    assert ours.w.tobytes() == ref.w.tobytes() and ours.a.tobytes() == ref.a.tobytes()
    answers = set()
    for _ in range(3000):
        src, dst = (int(x) for x in rng.integers(0, problem.n_connectors, 2))
        t = int(rng.integers(0, problem.n_slots))
        d = float(rng.choice([rng.uniform(0.0, 3000.0), 1380.0, 4140.0, 1e-9]))
        apply = bool(rng.random() < 0.7)
        got = ours.move(src, dst, t, d, apply)
        assert got == ref.move(src, dst, t, d, apply)
        answers.add((got, apply))
    assert ours.w.tobytes() == ref.w.tobytes()
    assert ours.a.tobytes() == ref.a.tobytes()
    assert {(True, True), (False, True), (True, False)} <= answers


def test_a_move_within_one_station_and_one_onto_itself():
    """src and dst on the same path (every node in both: + d then - d, which need not give
    back the same float) and src == dst."""
    problem = generate(200, family="phase", seed=5)
    rng = np.random.default_rng(5)
    power = near_limits(problem, rng)
    ours, ref = stable._Loads(problem, power), ReferenceLoads(problem, power)
    node = problem.connector_node
    pairs = [(i, j) for i in range(60) for j in range(60) if node[i] == node[j]]
    assert any(i != j for i, j in pairs)
    for i, j in pairs:
        for t in range(0, problem.n_slots, 7):
            d = float(rng.uniform(0.0, 0.3))   # a fraction of a W: rounding shows
            assert ours.move(i, j, t, d, True) == ref.move(i, j, t, d, True)
    assert ours.w.tobytes() == ref.w.tobytes() and ours.a.tobytes() == ref.a.tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_hold_minimums_gives_the_same_plan(seed, monkeypatch):
    """End to end: hold_minimums of an LP optimum with a previous plan that ran the cars, with
    our loads and with the reference in their place."""
    from optimizer.lp import solve_lp
    from optimizer.objective import build_objective

    problem = generate(300, family="phase", seed=seed)
    lp_w, _ = solve_lp(problem, build_objective(problem), problem.upper_w)
    rng = np.random.default_rng(seed)
    previous = np.where(rng.random(lp_w.shape) < 0.5, problem.min_power_w[:, None],
                        problem.upper_w)
    busy = np.argsort(-(lp_w > 0).sum(axis=0))[:6]   # the previous plan's window: busy slots
    previous[:, np.setdiff1d(np.arange(problem.n_slots), busy)] = np.nan
    problem = dataclasses.replace(problem, previous_w=previous)
    # below a minimum but running: what the hold raises
    lp_w = np.where((lp_w > 0) & (rng.random(lp_w.shape) < 0.2), lp_w * 0.5, lp_w)
    got, held = stable.hold_minimums(problem, lp_w)
    monkeypatch.setattr(stable, "_Loads", ReferenceLoads)
    expected, held_ref = stable.hold_minimums(problem, lp_w)
    assert held == held_ref
    assert got.tobytes() == expected.tobytes()
    assert held > 0
