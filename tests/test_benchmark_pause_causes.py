"""benchmarks/pause_causes.py replaces stages of `optimizer.solve` with recording wrappers. Its
wrapper of `stable.hold_minimums` took no `until` (the solve's deadline, passed by the portfolio
guard since s30-dr): inside a re-plan that reached the guard's repair the wrapper raised
TypeError, `planner.solve` caught it and planned the clipped safe baseline - so the tool took
apart plans the controller never makes (found by s35-quality on the tight day)."""

from __future__ import annotations

import sys
import time

import numpy as np

import optimizer
from smartcharge.site import planner
from tests.test_optimizer_running import station_of_two


def test_the_recording_hold_passes_the_solves_deadline_on(monkeypatch):
    from benchmarks.pause_causes import Capture
    solve_mod = sys.modules["optimizer.solve"]
    # Capture.install patches these for good: restored after the test
    for owner, name in ((planner, "make_plan"), (solve_mod, "solve"), (optimizer, "solve"),
                        (solve_mod, "hold_minimums"), (solve_mod, "_round")):
        monkeypatch.setattr(owner, name, getattr(owner, name))
    Capture().install()
    baseline = np.zeros((2, 12))
    baseline[1, :3] = 11040.0
    baseline[:, 3:8] = [[6900.0], [4140.0]]
    problem = station_of_two(baseline @ np.full(12, 0.25), [12, 8])
    # as the guard calls it (optimizer/solve.py `_portfolio_guard`): the three holds
    held_w, held = solve_mod.hold_minimums(problem, baseline, paused_too=True,
                                           until=time.perf_counter() + 3600.0)
    assert held == 3
