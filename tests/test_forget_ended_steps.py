"""A re-plan's picture forgets the closed loop's facts of ended sessions in steps
(`closed_loop.forget_ended_steps`, s33-stall): at 5 000 stations the look-ups of every
connector in three dicts were one piece of 10-23 ms on the event loop. Each piece of the
picture now drops at most FORGET_PER_STEP connectors' facts per dict; the facts left at its end
are the same as forgetting in one go, and a fact taken away meanwhile (or a session ended
meanwhile) breaks nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site import closed_loop, plan_inputs
from smartcharge.site.controller import SiteController
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
STATIONS = 60


def _controller() -> tuple[SiteController, ManualClock]:
    clock = ManualClock(T0)
    site = Site(name="forget", circuits=(Circuit("grid", None, limit_w=2_000_000.0),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),))
                               for i in range(STATIONS)))
    controller = SiteController(site, clock)
    for i in range(STATIONS):
        controller.on_event(ev.StationBooted(f"CP{i}", T0, True, "v", "m"))
        controller.on_event(ev.SessionStarted(f"CP{i}", 1, 100 + i, "TAG", 0.0, T0))
    clock.advance(60)
    for i in range(STATIONS):   # every car sampled: the closed loop keeps facts of each
        controller.on_event(ev.MeterSampled(f"CP{i}", 1, 100 + i, clock.now(),
                                            "Sample.Periodic", energy_register_wh=100.0,
                                            power_w=5_000.0, received_at=clock.now()))
    return controller, clock


def _stop(controller: SiteController, clock: ManualClock, stations: range) -> None:
    for i in stations:
        controller.on_event(ev.SessionStopped(f"CP{i}", 1, 100 + i, clock.now(), 200.0,
                                              "Local"))


def _facts(controller: SiteController) -> set[ConnectorRef]:
    return set(controller.closed_loop._sampled)


def test_a_piece_of_the_picture_forgets_at_most_so_many(monkeypatch):
    monkeypatch.setattr(closed_loop, "FORGET_PER_STEP", 10, raising=False)
    controller, clock = _controller()
    assert len(_facts(controller)) == STATIONS
    _stop(controller, clock, range(0, 40))   # 40 ended: their facts go, 20 stay
    running = {ConnectorRef(f"CP{i}", 1) for i in range(40, STATIONS)}
    steps = plan_inputs.read_steps(controller, clock.now())
    dropped_per_piece = []
    while True:
        before = len(_facts(controller))
        try:
            next(steps)
        except StopIteration:
            dropped_per_piece.append(before - len(_facts(controller)))
            break
        dropped_per_piece.append(before - len(_facts(controller)))
    # on one piece before: all 40 in the picture's first piece
    assert max(dropped_per_piece) <= 10, dropped_per_piece
    assert _facts(controller) == running   # what forgetting in one go leaves
    assert not set(controller.closed_loop.taper.last) - running


def test_facts_taken_or_sessions_ended_between_the_steps_break_nothing(monkeypatch):
    monkeypatch.setattr(closed_loop, "FORGET_PER_STEP", 10, raising=False)
    controller, clock = _controller()
    _stop(controller, clock, range(0, 30))
    steps = controller.closed_loop.forget_ended_steps(clock.now())
    next(steps)    # before the first ten
    next(steps)    # the first ten done
    # meanwhile: a fact of an ended session taken away by another path, another session ends
    controller.closed_loop._sampled.pop(ConnectorRef("CP25", 1))
    _stop(controller, clock, range(59, 60))
    for _ in steps:
        pass
    left = _facts(controller)
    assert left == {ConnectorRef(f"CP{i}", 1) for i in range(30, 60)} \
        or left == {ConnectorRef(f"CP{i}", 1) for i in range(30, 59)}
    # the next time, every ended session's facts go
    controller.closed_loop.forget_ended(clock.now() + timedelta(seconds=1))
    assert _facts(controller) == {ConnectorRef(f"CP{i}", 1) for i in range(30, 59)}
