"""The runtime guard: measured draw per node against its limit; a station that accepts its
profile and keeps drawing is caught by its meter values, logged with the node and the margin,
and planned around at once."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock, ManualClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.station import Quirks
from smartcharge import events as ev
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LIMIT_W = 22_000.0


def _site(cp1_max_a: float = 32.0) -> Site:
    return Site(name="guard", circuits=(Circuit("grid", None, limit_w=LIMIT_W),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(
                    1, max_current_a=cp1_max_a if i == 1 else 32.0),)) for i in (1, 2, 3)),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=40_000, dwell_s=8 * 3600))


async def test_a_station_that_keeps_drawing_is_caught_and_planned_around(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="smartcharge.site.guard")
    clock = AcceleratedClock(T0, speed=120.0)
    # the site file says CP1 takes at most 10 A (6.9 kW): it is planned at most that; the
    # station ignores its profiles and lets its car draw 11 kW
    site, real = _site(cp1_max_a=10.0), _site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=120.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        controller = server.controller
        fleet = Fleet(real, server.ws_url, clock, meter_interval_s=20, reconnect_min_s=0.05,
                      reconnect_max_s=0.3, call_timeout_s=5.0,
                      quirks={"CP1": Quirks(ignore_profiles=True)})
        try:
            await fleet.start(wait_booted_s=10)
            for sid in fleet.stations:
                assert await fleet.plug_in(sid, 1, SimEV(capacity_wh=80_000, soc=0.2),
                                           "DRIVER-1")
            ref1 = ConnectorRef("CP1", 1)
            await wait_until(lambda: ref1 in controller.uncontrollable, 10,
                             "CP1 caught drawing over its profile")
            assert controller.plan is not None
            caught = clock.now()
            # the others come down by the margin; measured again after the settle time
            await wait_until(lambda: clock.now() > caught + timedelta(seconds=120), 10, "2 min")
            assert fleet.site_draw_w() <= LIMIT_W + 1, (
                fleet.draws_w(), controller.plan.fixed_w,
                {r: p.power_w[:2] for r, p in controller.plan.connectors.items()},
                controller.uncontrollable, [(p.purpose, p.stack_level, p.schedule.periods)
                                            for p in fleet.station("CP3").profiles.profiles])
            assert fleet.draw_w("CP1", 1) > 10_000          # it really keeps drawing
            messages = [r.getMessage() for r in caplog.records if "guard:" in r.getMessage()]
            # named in the log: when it takes the grid over its limit (with the margin), or
            # before, when the optimizer's split leaves room for what it draws
            assert any("CP1/1 draws" in m for m in messages), messages
        finally:
            await fleet.stop()



def test_a_stale_meter_counts_at_the_connectors_maximum(caplog):
    caplog.set_level(logging.WARNING, logger="smartcharge.site.guard")
    site = _site()
    clock = ManualClock(T0)
    controller = SiteController(site, clock, ControllerSettings(stale_after_s=60.0))
    ref = ConnectorRef("CP1", 1)
    controller.on_event(ev.StationBooted("CP1", T0, True, "v", "m"))
    controller.on_event(ev.SessionStarted("CP1", 1, 7, "DRIVER-1", 0, T0))
    controller.on_event(ev.MeterSampled("CP1", 1, 7, T0, "Sample.Periodic", power_w=2_000.0))
    controller.on_event(ev.StationBooted("CP2", T0, True, "v", "m"))
    controller.on_event(ev.SessionStarted("CP2", 1, 8, "DRIVER-1", 0, T0))
    controller.on_event(ev.MeterSampled("CP2", 1, 8, T0 + timedelta(minutes=5),
                                        "Sample.Periodic", power_w=2_000.0))
    assert controller.guard.draw_w(ref, clock.now()) == (2_000.0, "fresh")
    assert not controller.guard.check(clock.now())
    clock.moment = T0 + timedelta(minutes=5)     # no meter value since: stale
    draw, how = controller.guard.draw_w(ref, clock.now())
    assert how == "stale" and draw == controller.topology.max_power_w(ref)
    found = controller.guard.check(clock.now())
    # 22 080 W (its maximum) + 2 000 W > 22 000 W: logged with the node and the margin, once
    assert [(o.node, o.unit, round(o.margin)) for o in found] == [("grid", "W", 2080)]
    controller.guard.check(clock.now())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "grid over its limit by 2080 W" in messages[0], messages
    assert "stale meters counted at their maximum: CP1/1" in messages[0]


def _big_site(stations: int) -> Site:
    return Site(name="guard-big", circuits=(Circuit("grid", None, limit_w=LIMIT_W),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),))
                               for i in range(stations)),
                id_tags=frozenset({"DRIVER-1"}))


def every_connector_drawing_1_kw(site: Site) -> SiteController:
    """A controller of `site` (at T0, a manual clock) with a session on every connector, each
    sampled drawing 1 kW."""
    controller = SiteController(site, ManualClock(T0), ControllerSettings(stale_after_s=60.0))
    for i, station in enumerate(site.stations):
        sid = station.station_id
        controller.on_event(ev.StationBooted(sid, T0, True, "v", "m"))
        controller.on_event(ev.SessionStarted(sid, 1, i + 1, "DRIVER-1", 0, T0))
        controller.on_event(ev.MeterSampled(sid, 1, i + 1, T0, "Sample.Periodic",
                                            power_w=1_000.0))
    return controller


async def test_a_pass_over_a_large_site_gives_the_event_loop_back_and_finds_the_same():
    """check_async finds what check finds, and other tasks run while it goes (issue 10: a
    whole pass over thousands of connectors held every station's answer up)."""
    from smartcharge.site import guard as guard_module
    site = _big_site(750)   # several chunks
    assert 750 >= 3 * guard_module.CHUNK
    controller = every_connector_drawing_1_kw(site)
    clock = controller.clock
    ran_between = 0

    async def other_work() -> None:
        nonlocal ran_between
        while True:
            ran_between += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = ran_between
    found_async = await controller.guard.check_async(clock.now())
    stepped = ran_between - started
    other.cancel()
    controller.guard._over = {}
    found = controller.guard.check(clock.now())
    # 750 connectors at 1 kW against 22 kW: the grid is over, found both ways alike
    assert [(o.node, o.unit, round(o.margin)) for o in found_async] == \
        [(o.node, o.unit, round(o.margin)) for o in found] == [("grid", "W", 728_000)]
    assert stepped >= 2, stepped
