"""A station with a single stack level (1.6 `ChargeProfileMaxStackLevel` 0, 2.0.1
`SmartChargingCtrlr.ProfileStackLevel` 0) has no room for an idle schedule above its fail-safe
default: its idle connectors keep that default, and a car arriving there draws it at once,
before anybody tells us. The room the plan gives the other cars must leave it free.

Found by the session 25 audit: with the default left out of the plan, a car charging on the
other station got the whole 30 kW grid on its TxProfile, so the installed profiles summed over
the grid, and a car arriving at the idle connector took the site over it until the re-plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.dispatch import DispatchSettings
from tests.installed_limits import forecast_excesses
from tests.site_e2e import big_car, draws_over, server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 30_000.0


def _site() -> Site:
    return Site(name="one-level", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=(Station("CP1", "grid", (Connector(1),)),
                          Station("CP2", "grid", (Connector(1),))),
                id_tags=frozenset({"DRIVER-1"}))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_car_arriving_at_a_station_with_one_stack_level(tmp_path, version):
    site = _site()
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(site, tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"meter_interval_s": 60, "max_stack_level": 0,
                                          "ocpp_versions": {"CP1": version, "CP2": version}}
                                ) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP2", 1, big_car(), "DRIVER-1")
        await wait_until(lambda: fleet.draw_w("CP2", 1) > 5_000, 20, "CP2 charging")
        await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
        settled = clock.now() + timedelta(minutes=1)
        await wait_until(lambda: clock.now() > settled, 10, "a minute")
        # whatever is installed - CP2's plan, CP1's fail-safe default for a car that arrives
        excess = forecast_excesses(site, fleet, server.controller.limits, clock.now())
        assert excess == [], (len(excess), excess[:2], excess[-2:])
        assert await fleet.plug_in("CP1", 1, big_car(), "DRIVER-1")
        over = await draws_over(fleet, clock, GRID_W, minutes=3)
        assert over == [], (len(over), over[:3])
