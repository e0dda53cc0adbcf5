"""running.running_minimums on Python floats (s33-warm) holds the very entries the numpy loop it
replaced held: per slot the cars, earliest deadline first, whose minimums fit under every node
limit (power and phase currents) together."""

import dataclasses

import numpy as np
import pytest

from optimizer import baselines, instances
from optimizer.running import running_minimums
from optimizer.stable import ZERO_W, kept_slots
from optimizer.check import delivered_wh


def numpy_running_minimums(problem, power_w, column_upper_w):
    """The replaced implementation, verbatim: the reference."""
    previous = problem.previous_w
    empty = np.zeros(0, dtype=np.int64)
    if previous is None:
        return empty, empty
    k = kept_slots(problem)
    if k == 0:
        return empty, empty
    minimum = problem.min_power_w
    prev = np.nan_to_num(previous[:, :k], nan=0.0)
    x = np.asarray(power_w, dtype=float)[:, :k]
    floor = minimum[:, None]
    want = (floor > 0) & (prev > ZERO_W) & (prev >= floor - ZERO_W) & \
        (np.asarray(column_upper_w)[:, :k] >= floor) & (problem.upper_w[:, :k] >= floor)
    if not (want & (x < floor - ZERO_W)).any():
        return empty, empty
    budget = delivered_wh(problem, power_w)
    for i in np.flatnonzero(want.any(axis=1)):
        left = budget[i]
        for t in range(k):
            if not want[i, t]:
                continue
            cost = minimum[i] * problem.wh_per_w[t]
            if cost > left * (1.0 - 1e-9):
                want[i, t:] = False
                break
            left -= cost
    node_conn = problem.node_connector.tocsc()
    paths = [node_conn.indices[node_conn.indptr[i]:node_conn.indptr[i + 1]]
             for i in range(problem.n_connectors)]
    amps = problem.amps_per_w
    order = np.argsort(problem.departure_slot, kind="stable")
    for t in range(k):
        load_w = np.zeros(problem.n_nodes)
        load_a = np.zeros((problem.n_nodes, 3))
        for i in order:
            if not want[i, t]:
                continue
            nodes = paths[i]
            w = load_w[nodes] + minimum[i]
            a = load_a[nodes] + (amps[i] * minimum[i])[None, :]
            if (w > problem.node_limit_w[nodes, t] + ZERO_W).any() or \
                    (a > problem.node_limit_a[nodes, t, None] + 1e-9).any():
                want[i, t] = False
                continue
            load_w[nodes], load_a[nodes] = w, a
    connector, slot = np.nonzero(want)
    return connector.astype(np.int64), slot.astype(np.int64)


@pytest.mark.parametrize("family", ["power", "phase"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tighten", [1.0, 0.3, 0.05])
def test_running_minimums_hold_what_the_numpy_loop_held(family, seed, tighten):
    problem = instances.generate(300, family=family, seed=seed)
    # limits tightened so that some minimums no longer fit together (the loop's other branch)
    # every car there from the start (the kept slots are the first ones)
    problem = dataclasses.replace(problem, node_limit_w=problem.node_limit_w * tighten,
                                  node_limit_a=problem.node_limit_a * tighten,
                                  arrival_slot=np.zeros(problem.n_connectors, dtype=np.int64))
    ran = baselines.uncontrolled(problem)          # every car the last plan ran, at full power
    previous = np.full(problem.upper_w.shape, np.nan)
    previous[:, :3] = ran[:, :3]
    problem = dataclasses.replace(problem, previous_w=previous)
    rng = np.random.default_rng(seed)
    power_w = problem.upper_w * rng.choice([0.0, 0.1, 0.5, 1.0], size=problem.upper_w.shape)
    got = running_minimums(problem, power_w, problem.upper_w)
    expected = numpy_running_minimums(problem, power_w, problem.upper_w)
    assert got[0].tolist() == expected[0].tolist() and got[1].tolist() == expected[1].tolist()
    assert got[0].size > 0
