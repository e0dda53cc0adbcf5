"""The fail-safe defaults hold the site under its limits if smartcharge disappears - also while
a station is offline on the default it accepted before: that station cannot be told a lower
one, so what it holds is taken off the others' shares.

CP1 and CP2 charge at 11 kW each under a 22 kW grid (each accepted an 11 kW default). CP1's
connection drops (a network outage: its car charges on); the operator caps the site at 16 kW.
The online CP2 got its share of the 16 kW as if CP1 had taken its own new share too: 8 kW, so
with both plans ended (we gone, or CP1's TxProfile run out) the stations' own profiles let
11 + 8 = 19 kW flow under the 16 kW cap (found by s26-trust, docs/promises.md)."""

from __future__ import annotations

from datetime import timedelta

from smartcharge.clock import AcceleratedClock
from tests.site_e2e import wait_until
from tests.test_setup_decrease_settles import cp1_away_under_a_16_kw_cap
from tests.test_dispatch_trust import (REF1, REF2, T0, both_charging_at_11_kw, limit_w,
                                       one_grid, trust_site)


async def test_the_defaults_keep_room_for_an_offline_stations_accepted_default(tmp_path):
    clock = AcceleratedClock(T0, speed=20.0)
    site = one_grid(22_000)
    # one stack level: a car whose TxProfile ran out is bound by its fail-safe default alone
    async with trust_site(site, tmp_path, clock,
                          fleet_kw={"max_stack_level": 0}) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await both_charging_at_11_kw(controller, fleet, clock)
        cp1 = await cp1_away_under_a_16_kw_cap(controller, dispatcher, fleet)
        # every plan ended: what the stations' own fail-safe defaults let flow
        later = clock.now() + timedelta(hours=2)
        held_w = {ref: limit_w(fleet, ref, later) for ref in (REF1, REF2)}
        assert abs(held_w[REF1] - 11_000) < 100, held_w   # what CP1 accepted before it left
        assert held_w[REF1] + held_w[REF2] <= 16_000 + 1, held_w
        # back (set up again): CP1 takes its share of the cap, and CP2 its own again
        cp1.go_online()

        def shared() -> bool:
            at = clock.now() + timedelta(hours=2)
            return dispatcher.idle and all(abs(limit_w(fleet, ref, at) - 8_000) < 100
                                           for ref in (REF1, REF2))
        await wait_until(shared, 30, "8 / 8 kW defaults once CP1 is back")
