"""A station that holds a single charging profile (1.6 `MaxChargingProfilesInstalled` 1,
2.0.1 `SmartChargingCtrlr.Entries` 1): that one slot is all the site can limit it by, so it goes
to the connector's fail-safe default, not to a station maximum that only repeats what the
station can draw anyway.

Found by the session 25 audit: the station maximum took the slot, every default and plan after
it was refused (`TooManyProfiles`), and two such stations' cars drew 22 kW each on a 30 kW grid
for as long as they charged (the profiles installed: 44.2 kW for hours)."""


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
    return Site(name="one-slot", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=(Station("CP1", "grid", (Connector(1),)),
                          Station("CP2", "grid", (Connector(1),))),
                id_tags=frozenset({"DRIVER-1"}))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_stations_holding_one_profile(tmp_path, version):
    site = _site()
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(site, tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"meter_interval_s": 60, "max_installed": 1,
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


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_an_idle_schedule_refused_for_want_of_slots(tmp_path, version):
    """Two connectors and four slots: the maximum, two defaults and the charging car's
    TxProfile fill them, so the idle connector's idle schedule is refused (`TooManyProfiles`)
    and it keeps its fail-safe default under a car that arrives: kept free in the plan, as for
    a station with one stack level (found by the session 25 audit: 37 kW installed and drawn
    on the 30 kW grid)."""
    site = Site(name="few-slots", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),
                          Station("CP2", "grid", (Connector(1), Connector(2)))),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(site, tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"meter_interval_s": 60, "max_installed": 4,
                                          "ocpp_versions": {"CP1": version, "CP2": version}}
                                ) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP2", 1, big_car(), "DRIVER-1")
        await wait_until(lambda: fleet.draw_w("CP2", 1) > 5_000, 20, "CP2 charging")
        await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
        settled = clock.now() + timedelta(minutes=1)
        await wait_until(lambda: clock.now() > settled, 10, "a minute")
        excess = forecast_excesses(site, fleet, server.controller.limits, clock.now())
        assert excess == [], (len(excess), excess[:2], excess[-2:])
        assert await fleet.plug_in("CP2", 2, big_car(), "DRIVER-1")
        over = await draws_over(fleet, clock, GRID_W, minutes=3)
        assert over == [], (len(over), over[:3])
