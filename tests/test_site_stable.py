"""A re-plan keeps running cars running when an equal-value plan does (optimizer/stable.py):
the controller hands the optimizer what its last plan gives each session in the slots the
stations hold (`ControllerSettings.stable_window_s`)."""

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import optimizer
from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
CAR_W = 3 * 230 * 32.0
# Sessions whose need is met: they hold no power, but on a site this large the optimizer's
# urgency tie-break is off, so three alike cars are alike on every level of the objective.
FULL = 300


def _site() -> Site:
    # the new car's station sorts first: the solver's own order favours it
    names = ["A-new", "B-run", "C-run"] + [f"F{i:03d}" for i in range(FULL)]
    return Site(name="t", circuits=(Circuit("grid", None, limit_w=2 * CAR_W),),
                stations=tuple(Station(name, "grid", (Connector(1),)) for name in names))


def _start(controller, station, tx, now, need_wh):
    controller.on_event(ev.SessionStarted(station, 1, tx, "TAG", 0.0, now))
    controller.state.set_need(tx, requested_wh=need_wh, departure=now + timedelta(hours=8))


def _running(controller, now):
    return {ref.station_id for ref, plan in controller.plan.connectors.items()
            if plan.power_at(now) > 0}


async def test_an_arrival_does_not_pause_a_running_car():
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock, ControllerSettings())
    for station in controller.site.stations:
        controller.on_event(ev.StationBooted(station.station_id, T0, True, "v", "m"))
    _start(controller, "B-run", 1, T0, 22_000.0)
    _start(controller, "C-run", 2, T0, 22_000.0)
    for i in range(FULL):
        _start(controller, f"F{i:03d}", 10 + i, T0, 0.0)
    await controller.replan({"test"})
    assert _running(controller, T0) == {"B-run", "C-run"}

    later = T0 + timedelta(minutes=5)
    clock.set(later)
    _start(controller, "A-new", 3, later, 22_000.0)
    await controller.replan({"arrival"})
    # (without the previous plan the solver paused B-run for A-new here: its own column order)
    assert _running(controller, later) == {"B-run", "C-run"}
    assert controller.plan.connectors[ConnectorRef("A-new", 1)].power_w.sum() > 0   # later
    assert controller.stats.last_status == "optimal"


async def test_keeping_the_previous_plan_costs_nothing_on_any_level():
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock, ControllerSettings())
    for station in controller.site.stations:
        controller.on_event(ev.StationBooted(station.station_id, T0, True, "v", "m"))
    for tx, station in enumerate(["B-run", "C-run"], start=1):
        _start(controller, station, tx, T0, 22_000.0)
    for i in range(FULL):
        _start(controller, f"F{i:03d}", 10 + i, T0, 0.0)
    await controller.replan({"test"})
    clock.set(T0 + timedelta(minutes=5))
    _start(controller, "A-new", 3, clock.now(), 22_000.0)
    problem = controller.build_problem(clock.now())[0]
    assert problem.previous_w is not None
    kept = optimizer.solve(problem)
    free = optimizer.solve(dataclasses.replace(problem, previous_w=None))
    assert kept.objective == pytest.approx(free.objective, rel=1e-12)
    np.testing.assert_allclose(kept.delivered_wh, free.delivered_wh, rtol=1e-9)
