"""An operator's ClearChargingProfile through the REST API (`clear-charging-profile`) removes
what smartcharge installed on the station - its fail-safe defaults and its plans. The site's
model of the station still listed them: nothing was sent again (only changes are), and the car
drew the station's maximum over the grid limit for as long as it charged. Once the station has
answered (or may have cleared: no answer), what it runs is taken as unknown and set up again.
Both OCPP versions, real server, simulated stations over real WebSockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import a_big_car_charging, draws_over, server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 11_000.0
TOKEN = "operator-token"


def _site() -> Site:
    return Site(name="clear", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}), operator_tokens=frozenset({TOKEN}))


# 1.6: no criteria clears every profile; 2.0.1 needs one (ours: an EVSE's profiles)
CLEAR_ALL = {"1.6": {}, "2.0.1": {"connector_id": 1}}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_profiles_cleared_by_an_operator_are_installed_again(tmp_path, version):
    site = _site()
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(site, tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"ocpp_versions": {"CP1": version}}) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        await a_big_car_charging(server, fleet, "CP1", GRID_W)
        async with aiohttp.ClientSession() as http:
            async with http.post(
                    f"{server.http_url}/api/stations/CP1/clear-charging-profile",
                    json=CLEAR_ALL[version],
                    headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["answer"]["status"] == "Accepted"
        # the station's set-up and the plan again (no meter value tells the guard: hourly),
        # and the car's settle time
        cleared = clock.now()
        await wait_until(lambda: clock.now() > cleared + timedelta(minutes=1), 10,
                         "a minute")
        # (one station on the grid: the site's draw is CP1's)
        over = await draws_over(fleet, clock, GRID_W, minutes=5, every_s=10.0)
        assert over == [], over[:3]
