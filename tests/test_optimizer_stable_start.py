"""The stable pass's HiGHS run starts from a basis that is dual feasible on its boxed columns
(optimizer/stable.py `start_dual_feasible`): the face basis, optimal for the objective, can have
boxed power columns whose reduced cost under the pass's costs (the EARLY term) points away from
the bound they sit on. HiGHS then ran a dual phase 1 that re-derived every nonbasic position and
took ~7 000 iterations instead of ~650 (benchmarks/README.md, "s35-warm"). The run must start
with those columns at their other bound, and stop at the same optimum of the pass's LP."""

import asyncio

import highspy
import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks import replan_controller as rc
from optimizer import lp as lp_mod
from optimizer import stable
from smartcharge import events as ev

PASS = "the plan closest to the previous one"


def wrong_sign_boxed(highs: highspy.Highs) -> int:
    """Nonbasic boxed columns whose reduced cost (from HiGHS's basis and the model's costs,
    computed here independently of optimizer/stable.py) points away from their bound."""
    lp = highs.getLp()
    cost = np.asarray(lp.col_cost_)
    _, basic = highs.getBasicVariables()
    rhs = np.where(basic >= 0, cost[np.maximum(basic, 0)], 0.0)
    _, y = highs.getBasisTransposeSolve(rhs)
    m = lp.a_matrix_
    a = sp.csc_matrix((np.asarray(m.value_), np.asarray(m.index_), np.asarray(m.start_)),
                      shape=(lp.num_row_, lp.num_col_))
    reduced = cost - a.T @ np.asarray(y)
    lower, upper = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
    status = [int(s) for s in highs.getBasis().col_status]
    at_lower = np.array([s == int(highspy.HighsBasisStatus.kLower) for s in status])
    at_upper = np.array([s == int(highspy.HighsBasisStatus.kUpper) for s in status])
    boxed = np.isfinite(lower) & np.isfinite(upper) & (lower < upper)
    return int((boxed & ((at_lower & (reduced < -1e-7)) | (at_upper & (reduced > 1e-7)))).sum())


def optimum_from(lp, basis) -> float:
    """The pass's LP solved from `basis` in a fresh HiGHS object with the optimizer's options."""
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    for name, value in lp_mod.HIGHS_OPTIONS.items():
        highs.setOptionValue(name, value)
    highs.passModel(lp)
    highs.setBasis(basis)
    highs.run()
    assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(highs.getInfo().objective_function_value)


@pytest.mark.parametrize("seed, rounds", [(0, 0), (1, 3)])
def test_the_stable_pass_starts_dual_feasible_on_boxed_columns(monkeypatch, seed, rounds):
    # A 100-connector phase site, re-planned as the controller does (a stable pass every time),
    # then a car arrives, then `rounds` times a car leaves and another arrives (the steady-state
    # harness, benchmarks/results/s35-warm/runs.py): seed 0's first arrival met a face basis
    # with one column at its upper bound wanting its lower one; seed 1's third arrival 28
    # columns wanting up and 24 wanting down.
    seen = []   # per pass: [wrong-signed after add_deviation, at the run, lp, basis, optimum]
    add_deviation = stable.add_deviation

    def spy_add(highs, *args, **kwargs):
        add_deviation(highs, *args, **kwargs)
        seen.append([wrong_sign_boxed(highs), None, highs.getLp(), highs.getBasis()])

    run = lp_mod.HighsModel._run

    def spy_run(self, end, what):
        if what != PASS:
            return run(self, end, what)
        seen[-1][1] = wrong_sign_boxed(self.highs)
        z, value, iterations = run(self, end, what)
        seen[-1].append(value)
        return z, value, iterations

    monkeypatch.setattr(stable, "add_deviation", spy_add)
    monkeypatch.setattr(lp_mod.HighsModel, "_run", spy_run)

    async def replans():
        controller, clock = rc.controller_at(100, "phase", seed, True, True)
        await controller.replan({"start"})
        await controller.replan({"slot"})
        refs = rc.refs(100)
        rc.start(controller, refs[-1], 999_999, np.random.default_rng(1), clock.now())
        await controller.replan({"session:SessionStarted"})
        rng = np.random.default_rng(5)
        for k in range(rounds):
            session = controller.state.sessions.get(refs[k])
            controller.on_event(ev.SessionStopped(refs[k].station_id, refs[k].connector_id,
                                                  session.transaction_id, clock.now(),
                                                  session.energy_wh, "Local"))
            await controller.replan({"session:SessionStopped"})
            rc.start(controller, refs[k], 2_000_000 + k, rng, clock.now())
            await controller.replan({"session:SessionStarted"})

    asyncio.run(replans())
    assert len(seen) >= 2 and all(len(pass_) == 5 for pass_ in seen)
    assert any(pass_[0] > 0 for pass_ in seen), "the premise: a wrong-signed start"
    assert [pass_[1] for pass_ in seen] == [0] * len(seen)
    for before, _, lp, basis, value in seen:
        if before:
            # the same LP from the face basis as it was (wrong signs and all): the same optimum
            assert value == pytest.approx(optimum_from(lp, basis), rel=1e-9)
