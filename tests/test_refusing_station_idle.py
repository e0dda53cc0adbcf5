"""A station that refuses every profile (a 1.6 station without Smart Charging, or one that
says Rejected to all): what its idle connector will draw when a car arrives is only bounded by
the connector's maximum, and nobody tells us before the car draws. The room the site gives the
other cars must leave it free, as it leaves a connector the site file does not list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.spec import Quirks
from smartcharge.site.dispatch import DispatchSettings
from tests.installed_limits import forecast_excesses
from tests.site_e2e import big_car, draws_over, server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 30_000.0
CONNECTOR_MAX_W = 32 * 230.0 * 3      # a connector's default: 32 A on three phases


def _site() -> Site:
    return Site(name="refusing", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=(Station("CP1", "grid", (Connector(1),)),
                          Station("CP2", "grid", (Connector(1),))),
                id_tags=frozenset({"DRIVER-1"}))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_car_arriving_at_a_station_that_refuses_everything(tmp_path, version):
    site = _site()
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(site, tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"meter_interval_s": 60,
                                          "ocpp_versions": {"CP1": version, "CP2": version},
                                          "quirks": {"CP1": Quirks(reject_all_profiles=True)}}
                                ) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP2", 1, big_car(), "DRIVER-1")
        await wait_until(lambda: fleet.draw_w("CP2", 1) > 5_000, 20, "CP2 charging")
        await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
        settled = clock.now() + timedelta(minutes=1)
        await wait_until(lambda: clock.now() > settled, 10, "a minute")
        # the plan leaves CP1's maximum free, and so does CP2's fail-safe default (what
        # runs once we are gone): whatever is installed, under the grid for hours
        assert fleet.draw_w("CP2", 1) <= GRID_W - CONNECTOR_MAX_W + 1, fleet.draw_w("CP2", 1)
        excess = forecast_excesses(site, fleet, server.controller.limits, clock.now())
        assert excess == [], (len(excess), excess[:2], excess[-2:])
        assert await fleet.plug_in("CP1", 1, big_car(), "DRIVER-1")
        over = await draws_over(fleet, clock, GRID_W, minutes=3)
        assert over == [], (len(over), over[:3])
