"""The guard acts on one overloaded node per step of its pass (s33-stall): at 5 000 connectors
with the grid and 125 feeders over, acting on all in one step held the event loop 80 ms (each
overload scanned the whole site twice). Every overload is still acted on in the same pass, in
node order, each naming the connectors under it and asking for a re-plan; the next pass does
not act again on the same margins."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import ControllerSettings, SiteController

T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
FEEDERS, PER_FEEDER = 5, 4


def _overloaded() -> tuple[SiteController, ManualClock]:
    """Every car draws 11 kW: each feeder (20 kW) and the grid (60 kW) is over its limit."""
    clock = ManualClock(T0)
    feeders = tuple(Circuit(f"F{f}", "grid", limit_w=20_000.0) for f in range(FEEDERS))
    stations = tuple(Station(f"CP{f}-{s}", f"F{f}", (Connector(1),))
                     for f in range(FEEDERS) for s in range(PER_FEEDER))
    site = Site(name="guard-steps", circuits=(Circuit("grid", None, limit_w=60_000.0),
                                              *feeders), stations=stations)
    # no pass started by the samples themselves (a plain test runs each at once): the pass
    # below is the first
    controller = SiteController(site, clock, ControllerSettings(guard_min_real_s=1e12))
    for tx, station in enumerate(stations):
        controller.on_event(ev.StationBooted(station.station_id, T0, True, "v", "m"))
        controller.on_event(ev.SessionStarted(station.station_id, 1, 100 + tx, "TAG", 0.0, T0))
    clock.advance(60)
    for tx, station in enumerate(stations):
        controller.on_event(ev.MeterSampled(station.station_id, 1, 100 + tx, clock.now(),
                                            "Sample.Periodic", energy_register_wh=100.0,
                                            power_w=11_000.0, received_at=clock.now()))
    return controller, clock


def test_one_overload_is_acted_on_per_step(caplog):
    caplog.set_level(logging.WARNING, logger="smartcharge.site.guard")
    controller, clock = _overloaded()
    guard = controller.guard
    controller._reasons.clear()
    steps = guard._check(clock.now())
    acted_per_step = []
    while True:
        seen = guard.overloads_seen
        try:
            next(steps)
        except StopIteration as done:
            found = done.value
            acted_per_step.append(guard.overloads_seen - seen)
            break
        acted_per_step.append(guard.overloads_seen - seen)
    nodes = [o.node for o in found]
    assert nodes == ["grid", *(f"F{f}" for f in range(FEEDERS))]
    # before: all six in the pass's last step
    assert max(acted_per_step) == 1, acted_per_step
    assert guard.overloads_seen == len(found)
    assert {f"guard:{node}" for node in nodes} <= controller._reasons
    lines = [r.getMessage() for r in caplog.records if "over its limit" in r.getMessage()]
    assert [line.split()[1] for line in lines] == nodes
    # each names the connectors under its node drawing, and only those
    for node, refs in [("grid", {f"CP{f}-{s}/1" for f in range(FEEDERS)
                                 for s in range(PER_FEEDER)}),
                       *((f"F{f}", {f"CP{f}-{s}/1" for s in range(PER_FEEDER)})
                         for f in range(FEEDERS))]:
        line = next(line for line in lines if line.startswith(f"guard: {node} "))
        named = {part.split()[0] for part in line.split("; ")[1].split(", ")}
        assert named == refs, line
    # acted on already: the next pass does not act again for the same margins
    before = guard.overloads_seen
    guard.check(clock.now())
    assert guard.overloads_seen == before


def test_an_overloads_line_is_built_a_bounded_number_of_connectors_per_step(caplog,
                                                                             monkeypatch):
    """The line of an overload names every connector drawing under its node: at 5 000
    stations the grid's took one step of 18 ms of the loop's CPU (s34-stall). It is built
    ACT_PER_STEP connectors a step, and stays the same line."""
    from smartcharge.site import guard as guard_module
    monkeypatch.setattr(guard_module, "ACT_PER_STEP", 4, raising=False)
    caplog.set_level(logging.WARNING, logger="smartcharge.site.guard")
    controller, clock = _overloaded()
    guard = controller.guard
    named_per_step, named = [], [0]
    phases_text = guard._phases_text

    def counted(ref):
        named[0] += 1
        return phases_text(ref)
    guard._phases_text = counted
    steps = guard._check(clock.now())
    while True:
        named[0] = 0
        try:
            next(steps)
        except StopIteration:
            named_per_step.append(named[0])
            break
        named_per_step.append(named[0])
    # before: the grid's 20 in one step
    assert sum(named_per_step) == 2 * FEEDERS * PER_FEEDER   # the grid's line, the feeders'
    assert max(named_per_step) <= 4, named_per_step
    line = next(r.getMessage() for r in caplog.records
                if r.getMessage().startswith("guard: grid over its limit"))
    named_refs = [part.split()[0] for part in line.split("; ")[1].split(", ")]
    assert named_refs == [f"CP{f}-{s}/1" for f in range(FEEDERS) for s in range(PER_FEEDER)]
