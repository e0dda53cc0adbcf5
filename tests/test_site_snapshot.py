"""The dashboard's view model lives outside the controller (issue 8): `site/snapshot.py` is a
pure function of the controller's state; `controller.snapshot()` records the history, then
returns it."""

from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock, ManualClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.snapshot import view_model

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_the_view_model_is_a_pure_function_of_controller_state():
    site = Site(name="snap", circuits=(Circuit("grid", None, limit_w=40_000.0),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                id_tags=frozenset(), session_defaults=SessionDefaults(energy_wh=10_000,
                                                                       dwell_s=3600))
    controller = SiteController(site, AcceleratedClock(T0, speed=1.0), ControllerSettings())
    shown = controller.snapshot()
    assert len(controller.history) == 1   # the controller recorded the moment
    limit_w, source = controller.effective_limit_now()
    now = controller.clock.now()
    reading = controller.site_reading()
    again = view_model(controller, now, limit_w, source, reading, limit_w)
    assert view_model(controller, now, limit_w, source, reading, limit_w) == again
    assert len(controller.history) == 1   # the view model changed nothing
    moments = ("time", "site_load_at")
    assert {k: v for k, v in again.items() if k not in moments} == {
        k: v for k, v in shown.items() if k not in moments}
    assert [(c["station_id"], c["connector_id"], c["controllable"])
            for c in again["connectors"]] == [("CP1", 1, True), ("CP1", 2, True)]
    assert again["effective_limit_w"] == 40_000.0 and again["site_load_w"] == 0.0


async def test_the_snapshot_in_steps_is_the_snapshot(monkeypatch):
    """At 5 000 connectors the view model, the reading and the JSON are made a few hundred
    items per turn of the event loop (issue 10): the same document as in one go."""
    import json

    from smartcharge import events as ev
    from smartcharge.api import snapshot as api_snapshot
    from smartcharge.site import reading, snapshot

    monkeypatch.setattr(snapshot, "ITEMS_PER_STEP", 3)
    monkeypatch.setattr(reading, "REFS_PER_STEP", 2)
    monkeypatch.setattr(api_snapshot, "ITEMS_PER_STEP", 4)
    site = Site(name="snap", circuits=(Circuit("grid", None, limit_w=40_000.0),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1), Connector(2)))
                               for i in range(5)),
                id_tags=frozenset(), session_defaults=SessionDefaults(energy_wh=10_000,
                                                                       dwell_s=3600))
    controller = SiteController(site, ManualClock(T0), ControllerSettings())
    for i in range(5):
        controller.on_event(ev.StationBooted(f"CP{i}", T0, True, "v", "m"))
        controller.on_event(ev.SessionStarted(f"CP{i}", 1 + i % 2, 100 + i, "TAG", 0.0, T0))
        controller.on_event(ev.MeterSampled(f"CP{i}", 1 + i % 2, 100 + i, T0,
                                            "Sample.Periodic", energy_register_wh=10.0,
                                            power_w=1000.0 * i))
    await controller.replan()
    in_steps = await controller.snapshot_async()
    at_once = controller.snapshot()
    assert in_steps == at_once and len(in_steps["connectors"]) == 10
    assert in_steps["site_load_w"] == 10_000.0 and len(in_steps["sessions"]) == 5
    assert json.loads(await api_snapshot.encode(at_once)) == at_once


def test_a_site_reading_gives_the_loop_back_every_hundred_connectors():
    """The reading is made in steps (in_steps.py) of at most 100 connectors each: at 4-12 us a
    connector, steps of 500 were ~8 ms alone and, with the share's 4 ms, 12 ms steps of the
    site's sampling task in the 5 000-station benchmark's window (s38-stall)."""
    from smartcharge import events as ev
    from smartcharge.site.reading import read_site_steps

    site = Site(name="steps", circuits=(Circuit("grid", None, limit_w=10 ** 7),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),)) for i in range(1000)),
                id_tags=frozenset(), session_defaults=SessionDefaults(energy_wh=10_000,
                                                                       dwell_s=3600))
    controller = SiteController(site, ManualClock(T0), ControllerSettings())
    for i in range(1000):
        controller.on_event(ev.StationBooted(f"CP{i}", T0, True, "v", "m"))
        controller.on_event(ev.SessionStarted(f"CP{i}", 1, 100 + i, "TAG", 0.0, T0))
        controller.on_event(ev.MeterSampled(f"CP{i}", 1, 100 + i, T0, "Sample.Periodic",
                                            energy_register_wh=10.0, power_w=1000.0))
    steps = read_site_steps(controller.state, controller.topology.refs, T0, 60.0,
                            lambda ref: 0.0)
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            reading = done.value
            break
        pauses += 1
    assert reading.load_w == 1_000_000.0
    # three passes over 1 000 connectors (the instant, its sessions, the draws): >= 29 pauses
    assert pauses >= 29
