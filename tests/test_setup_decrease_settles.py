"""A fail-safe default a station's set-up lowers is a decrease like any other: a raise that
relies on it waits the settle time after it, never in force at once.

CP1 and CP2 (one stack level: no idle layer under a car) charge at 11 kW each under a 22 kW
grid. CP1's connection drops (no reboot); meanwhile the operator caps the site at 16 kW, and
CP1's TxProfile runs out while it is away: CP1 is planned at what it may draw (its 11 kW
default), CP2 is lowered to the 5 kW left. CP1 comes back: its set-up lowers its default to
8 kW, and the plan gives CP2 the 3 kW that frees. The set-up's decrease was not
recorded as one (`Dispatcher.decreased_at`, site/settling.py), so CP2's raise went out in force
at once - while CP1's car may still draw its 11 kW for the settle time it takes to follow:
19 kW under the 16 kW cap (found by s26-trust). Counted from the stations' own profile stores,
a car following a decrease a settle time late (`tests/settle_watch.py`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.sim.station import Quirks
from smartcharge.site.dispatch import DispatchSettings
from tests.settle_watch import SettleWatch
from tests.site_e2e import wait_until
from tests.test_dispatch_trust import (REF1, REF2, T0, both_charging_at_11_kw, limit_w,
                                       one_grid, trust_site)


@pytest.mark.parametrize("capability_read_held", [False, True],
                         ids=["set-up at once", "a round while its capabilities are read"])
async def test_a_raise_waits_for_the_default_a_reconnected_station_lowered(
        tmp_path, capability_read_held):
    """`capability_read_held`: CP1 answers its set-up's GetConfiguration only after a round
    has run - the set-up's decrease was recorded only once the capabilities were read, so a
    round in between sent CP2's raise in force at once beside CP1's car on its old 11 kW
    (18.9 kW under the 16 kW cap; 1 in ~85 copies of the plain test under load)."""
    clock = AcceleratedClock(T0, speed=20.0)
    site = one_grid(22_000)
    # plans that end two minutes ahead (refreshed a minute before): a car whose station is
    # away longer falls back to its fail-safe default, as after half an hour by default
    dispatch = DispatchSettings(profile_lifetime_s=120.0, refresh_before_s=60.0)
    # one stack level (ChargeProfileMaxStackLevel 0): no 0 W idle layer under a car, so a
    # car whose TxProfile ran out is bound by its fail-safe default alone
    async with trust_site(site, tmp_path, clock, dispatch=dispatch,
                          fleet_kw={"max_stack_level": 0}) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await both_charging_at_11_kw(controller, fleet, clock)
        cp1 = await cp1_away_under_a_16_kw_cap(controller, dispatcher, fleet)
        # CP1's plan ran out while it was away: its car on its 11 kW default; the cap's
        # decreases long settled: nothing the raise below could wait for but CP1's
        expired = max(p.installed_at for p in cp1.profiles.profiles) + timedelta(seconds=125)
        settled = clock.now() + timedelta(seconds=dispatcher.raise_delay_s() + 2)

        def waited() -> bool:
            if dispatcher.idle:   # CP2's plan goes on, refreshed before its end
                controller.request_replan("test")
            return clock.now() > max(expired, settled)
        await wait_until(waited, 10, "CP1's plan run out, the cap's decreases settled")
        watch = SettleWatch(site, fleet, controller.limits, clock, dispatcher.settings.settle_s)
        # CP1's car takes 8 kW now (its closed-loop cap): once back it is planned at its new
        # default, and CP2 at the rest
        controller.ev_cap_w[REF1] = 8_000.0
        back = clock.now()
        if capability_read_held:
            cp1.quirks = Quirks(no_boot_on_reconnect=True, silent_configuration=True)
        cp1.go_online()
        if capability_read_held:
            await wait_until(lambda: controller.state.online.get("CP1", False), 10, "CP1 back")
            controller.request_replan("test")   # a round while CP1's set-up reads
            # CP2's raise sent (in force at once or held): a minute on it allows 8 kW
            in_a_minute = fleet.station("CP2").clock.now() + timedelta(minutes=1)
            await wait_until(lambda: dispatcher.idle
                             and limit_w(fleet, REF2, in_a_minute) > 7_500, 30,
                             "the round with CP2's raise done")
            cp1.profile_answers.set()
        await wait_until(lambda: controller.state.online.get("CP1", False)
                         and limit_w(fleet, REF1) < 8_500 and limit_w(fleet, REF2) > 7_500
                         and dispatcher.idle, 30, "CP1 set up at 8 kW, CP2 raised to 8 kW")
        done = clock.now() + timedelta(seconds=dispatcher.raise_delay_s() + 1)
        await wait_until(lambda: clock.now() > done, 10, "the raise in force")
        assert watch.excesses(back, clock.now()) == []


async def cp1_away_under_a_16_kw_cap(controller, dispatcher, fleet):
    """CP1 (charging at 11 kW beside CP2) loses its connection - a network outage, not a
    reboot: its car charges on (no BootNotification closes it) - and the operator caps the site
    at 16 kW: CP2 lowered to what CP1's 11 kW leaves. Returns CP1's simulated station."""
    cp1 = fleet.station("CP1")
    cp1.quirks = Quirks(no_boot_on_reconnect=True)
    await cp1.go_offline()
    await wait_until(lambda: not controller.state.online.get("CP1", True), 10, "CP1 offline")
    controller.limits.set_operator_cap(16_000)
    controller.request_replan("cap")
    await wait_until(lambda: dispatcher.idle and limit_w(fleet, REF2) < 5_500, 20,
                     "CP2 lowered to what CP1's 11 kW leaves")
    return cp1
