"""A kept model's next re-plan starts from the optimum of the LP it re-plans, not from the held
LP's: `solve._hold_running` gives running cars their minimum as a lower bound and, when that
is kept, the stable pass ran from the held LP's optimal basis. Put back for the next re-plan
(optimizer/warm.py), that basis had every held column nonbasic at a lower bound the next LP
resets to 0: the point dropped, and the next re-plan's first HiGHS run took 400-650 primal
iterations after one car arrived at 1 000 connectors where it takes 40-170 from the unheld
optimum's basis (benchmarks/README.md, "s36-replan")."""

import dataclasses

import numpy as np
import pytest

from optimizer import baselines, solve
from optimizer import lp as lp_mod
from optimizer.instances import generate
from optimizer.warm import WarmStart
from tests.test_optimizer_warm import assert_same_optimum


def with_previous(problem, slots=(34, 35)):
    """problem with EDF's plan (every car it runs at its minimum or more) as the previous
    allocation in `slots`: the LP's optimum pauses some of those cars there, so
    `_hold_running` holds them."""
    plan = baselines.edf(problem)
    previous = np.full(problem.upper_w.shape, np.nan)
    previous[:, list(slots)] = plan[:, list(slots)]
    return dataclasses.replace(problem, previous_w=previous)


# (seeds whose held LP is kept: phase seed 0 keeps none)
@pytest.mark.parametrize("family, seed", [("power", 0), ("power", 1), ("power", 2),
                                          ("phase", 1), ("phase", 2), ("phase", 4)])
def test_a_replan_of_the_same_lp_starts_at_its_optimum(monkeypatch, family, seed):
    problem = with_previous(generate(200, family=family, seed=seed))
    runs = []
    run = lp_mod.HighsModel._run

    def logged(self, end, what):
        out = run(self, end, what)
        runs.append((what, out[2]))
        return out
    monkeypatch.setattr(lp_mod.HighsModel, "_run", logged)
    warm = WarmStart()
    first = solve(problem, backend="highs", warm=warm)
    # the held LP was kept (else the pass started from the unheld optimum's basis anyway)
    assert first.extra["held_running"] > 0, first.extra
    runs.clear()
    again = solve(problem, backend="highs", warm=warm)
    assert warm.last == "warm"
    assert runs[0] == ("the objective", 0), runs
    assert_same_optimum(solve(problem, backend="highs"), again)
