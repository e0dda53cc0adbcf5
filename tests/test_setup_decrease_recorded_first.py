"""A set-up's lowered default is a decrease from the moment it may be taken, not only once the
whole set-up is done.

A set-up recorded its decrease (`Dispatcher.decreased_at`, settling.py) after all its defaults
went out; a dispatch round works out once, when its first raise asks, which nodes a decrease may
still be settling under. Feeder A (22 kW): CP1 (a car on 1, connector 2 idle) and CP2 (a car
held at 4.5 kW); feeder B: CP3 (a car held at 5 kW). An operator clears CP1 connector 1's
profiles: its car may draw its 22 kW maximum until CP1's set-up gives it its default again.
That default is taken (7.3 kW) while the set-up still sends connector 2's; a plan made from it
lifts CP2 and CP3. CP3's raise (on the other feeder) asks first, before CP1's set-up recorded
its decrease, so CP2's raise beside it went out in force at once - while CP1's car may still
draw 22 kW for the settle time it takes to follow. The stations' own profiles, as the cars see
them (`tests/settle_watch.py`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.sim.station import Quirks
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from tests.settle_watch import SettleWatch
from tests.site_e2e import wait_until
from tests.test_dispatch_trust import T0, big_ev, limit_w, trust_site

TOKEN = "operator-token"
A1, B1, C1 = ConnectorRef("CP1", 1), ConnectorRef("CP2", 1), ConnectorRef("CP3", 1)
SETTLE_S = 60.0


def _site() -> Site:
    return Site(name="setup-settle",
                circuits=(Circuit("grid", None), Circuit("feeder-a", "grid", limit_w=22_000),
                          Circuit("feeder-b", "grid", limit_w=11_000),
                          Circuit("feeder-c", "grid", limit_w=11_000)),
                stations=(Station("CP1", "feeder-a", (Connector(1), Connector(2))),
                          Station("CP2", "feeder-a", (Connector(1),)),
                          Station("CP3", "feeder-b", (Connector(1),)),
                          Station("CP4", "feeder-c", (Connector(1),))),
                id_tags=frozenset({"DRIVER-1"}), operator_tokens=frozenset({TOKEN}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


def _answer_the_held_request(station) -> None:
    """The request the station hangs on is answered; the next one hangs again."""
    held, station.profile_answers = station.profile_answers, asyncio.Event()
    held.set()


async def _site_time_passes(clock, moment, what: str) -> None:
    """Until the site's clock passes `moment`, hurried meanwhile (60x, not the test's 10x:
    nothing happens in between but site time passing - CP1's request held, or the raise
    already sent and read at `moment` from what the stations took - and the two waits
    were 13 of the test's 14 s)."""
    clock.set_speed(60.0)
    try:
        await wait_until(lambda: clock.now() > moment, 20, what)
    finally:
        clock.set_speed(10.0)


async def test_a_raise_is_not_in_force_at_once_beside_a_default_a_set_up_lowered(tmp_path):
    clock = AcceleratedClock(T0, speed=10.0)
    site = _site()
    dispatch = DispatchSettings(settle_s=SETTLE_S, edge_margin_s=5.0)
    # one stack level (ChargeProfileMaxStackLevel 0): no idle share, so CP1's idle connector
    # 2 gets nothing a round lowers - its default is kept free in the plan
    async with trust_site(site, tmp_path, clock, dispatch=dispatch,
                          fleet_kw={"max_stack_level": 0}) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await fleet.start(wait_booted_s=10)
        for ref in (A1, B1, C1):
            assert await fleet.plug_in(ref.station_id, ref.connector_id, big_ev(), "DRIVER-1")
        await wait_until(lambda: controller.plan is not None
                         and len(controller.plan.connectors) == 3 and dispatcher.idle, 20,
                         "three cars planned")
        # CP1's car takes a little over its fail-safe default (7.3 kW), CP2's and CP3's less
        # than they could, until lifted (hourly meter values: no sample moves these)
        controller.ev_cap_w.update({A1: 7_400.0, B1: 4_500.0, C1: 5_000.0})
        controller.request_replan("test")
        await wait_until(lambda: limit_w(fleet, B1) < 5_000 and limit_w(fleet, C1) < 5_500
                         and dispatcher.idle, 20, "CP2 and CP3 held low")
        cp1, cp4 = fleet.station("CP1"), fleet.station("CP4")
        watch = SettleWatch(site, fleet, controller.limits, clock, SETTLE_S)
        # another station's set-up under way all along (on a feeder of its own): a set-up
        # that ends beside it starts no round of its own (the round after a boot storm's
        # set-ups waits for the last of them)
        for station in (cp4, cp1):
            station.quirks = Quirks(silent_profiles=True)
            async with aiohttp.ClientSession() as http, http.post(
                    f"{server.http_url}/api/stations/{station.spec.station_id}"
                    "/clear-charging-profile", json={"connector_id": 1},
                    headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200, await resp.text()
            await wait_until(lambda s=station: s.profiles_held == 1, 20, "its set-up under way")
        cleared = clock.now()
        # its set-up's first request (its maximum) hangs past the settle time of anything
        # the clear made dispatch lower
        hold_s = dispatcher.raise_delay_s() + 5
        await _site_time_passes(clock, cleared + timedelta(seconds=hold_s),
                                "the clear's decreases settled")
        installs = watch.records["CP1"]

        async def answered(what: str) -> None:
            """The request CP1 hangs on is taken and answered; the next one hangs again."""
            count = len(installs)
            _answer_the_held_request(cp1)
            await wait_until(lambda: len(installs) > count and cp1.profiles_held == 1, 20,
                             what)
        await answered("its maximum taken, connector 1's default sent")
        await answered("connector 1's default taken, connector 2's sent")
        taken = max(p.installed_at for p in cp1.profiles.profiles if p.connector_id == 1)
        assert taken > cleared, [(p.connector_id, p.purpose, p.installed_at)
                                 for p in cp1.profiles.profiles]
        b1_before_w = limit_w(fleet, B1)
        c3_installs = len(watch.records["CP3"])
        # a plan from the default taken: CP2 and CP3 lifted
        controller.ev_cap_w.pop(B1, None)
        controller.ev_cap_w.pop(C1, None)
        controller.request_replan("test")
        await wait_until(lambda: len(watch.records["CP3"]) > c3_installs, 20, "CP3's raise sent")
        _answer_the_held_request(cp1)                # connector 2's default: the set-up ends
        cp1.profile_answers.set()
        later = clock.now() + timedelta(minutes=10)
        await wait_until(lambda: limit_w(fleet, B1, later) > b1_before_w + 1_000, 20,
                         "CP2's raise sent")
        cp4.profile_answers.set()                    # CP4's set-up ends
        # CP1's car follows its lowered default a settle time after it took it: until then
        # nothing may rely on it
        following = taken + timedelta(seconds=SETTLE_S - 1)
        await _site_time_passes(clock, following, "the settle time")
        assert watch.limit_w(B1, following) <= b1_before_w + 1, \
            (watch.limit_w(B1, following), b1_before_w)
