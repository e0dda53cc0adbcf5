"""An operator's SetVariables SmartChargingCtrlr.Enabled through the REST API
(`change-configuration`) on a 2.0.1 station. Turned off, the station ignores every profile the
site installed - its fail-safe defaults too - and draws its maximum outside the site's limits,
which the site could only meet by taking that maximum from everyone else (and not at all when
the maximum is above the limit). A site operator who promised the grid its cap expects it
refused: a 409 that says why and what to do instead; nothing goes to the station. Turned back
on (by us, after someone turned it off at the station), the station may hold none of what the
site installed: it is set up again at once, as after an operator's clear. Real server,
simulated 2.0.1 station over real WebSockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.fleet import Fleet
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import (a_big_car_charging, big_car, composite_w, control_server,
                             draws_over, wait_until)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 11_000.0
TOKEN = "operator-token"
ENABLED = ("SmartChargingCtrlr", "Enabled", None)


def _site() -> Site:
    return Site(name="disabled", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}), operator_tokens=frozenset({TOKEN}))


async def _set(server, key: str, value: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.http_url}/api/stations/CP1/change-configuration",
                             json={"key": key, "value": value},
                             headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def charging(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        fleet = Fleet(_site(), server.ws_url, clock, meter_interval_s=3600,
                      call_timeout_s=5.0, ocpp_versions={"CP1": "2.0.1"})
        try:
            await fleet.start(wait_booted_s=10)
            await a_big_car_charging(server, fleet, "CP1", GRID_W)
            yield server, fleet, clock
        finally:
            await fleet.stop()


@pytest.mark.parametrize("value", ["false", "False", "0", " false"])
@pytest.mark.parametrize("key", ["SmartChargingCtrlr.Enabled", "smartchargingctrlr.enabled"])
async def test_turning_smart_charging_off_is_refused(charging, key, value):
    server, fleet, clock = charging
    station = fleet.station("CP1")
    status, body = await _set(server, key, value)
    assert status == 409, body
    assert body["error"] == "conflict"
    assert "SmartChargingCtrlr.Enabled" in body["detail"] and "limit" in body["detail"]
    assert station.variables[ENABLED].value == "true"     # nothing was sent


async def test_turned_on_again_the_station_is_set_up_again(charging):
    """Someone turned it off at the station (its own menu), which dropped what we installed;
    the operator turns it on through us: the site sets it up again - nothing else tells it."""
    server, fleet, clock = charging
    station = fleet.station("CP1")
    station.variables[ENABLED].value = "false"
    station.clear_profiles(None, None)       # off: nothing of ours is in force any more
    await wait_until(lambda: fleet.draw_w("CP1", 1) > GRID_W + 1, 10,
                     "the car at its maximum, nothing limiting it")
    status, body = await _set(server, "SmartChargingCtrlr.Enabled", "true")
    assert status == 200, body
    assert body["answer"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
    turned_on = clock.now()
    await wait_until(lambda: clock.now() > turned_on + timedelta(minutes=1), 10, "a minute")
    await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
    assert fleet.draw_w("CP1", 1) <= GRID_W + 1
    assert station.profiles.profiles, "the site's profiles are installed again"


async def test_a_station_that_says_smart_charging_is_off_counts_at_its_maximum(tmp_path):
    """Turned off at the station before it connects (GetVariables SmartChargingCtrlr.Enabled
    = false). It answers Accepted to every SetChargingProfile and ignores it (the simulator
    does: the worst case). Taken at its word: its connectors count as refusing everything -
    an idle one's maximum kept free above it, a car on it planned at its maximum - so the
    other station's car never gets room it could take. Before, the guard found it from its
    meter: for ~20 s after both cars arrived the site was over its limit."""
    grid_w = 30_000.0
    site = Site(name="off", circuits=(Circuit("grid", None, limit_w=grid_w),),
                stations=(Station("CP1", "grid", (Connector(1),), max_power_w=22_000.0),
                          Station("CP2", "grid", (Connector(1),), max_power_w=22_000.0)),
                id_tags=frozenset({"DRIVER-1"}), operator_tokens=frozenset({TOKEN}))
    clock = AcceleratedClock(T0, speed=60.0)
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=600, call_timeout_s=5.0,
                      ocpp_versions={"CP1": "2.0.1", "CP2": "2.0.1"})
        fleet.station("CP1").variables[ENABLED].value = "false"
        try:
            await fleet.start(wait_booted_s=10)
            # both set up: CP1 read as off, CP2 holding a default that leaves CP1's maximum
            # free. Every plan having had its round is not that: the set-ups are no plan's round
            # (under load the cars came while CP2 held nothing yet: 22 + 22 kW, CI's stop 26).
            cp1 = server.dispatcher.stations["CP1"]
            await wait_until(lambda: cp1.caps is not None
                             and composite_w(fleet, "CP2", clock.now()) <= grid_w - 22_000.0,
                             10, "CP1 read as off, CP2's default left CP1's maximum free")
            await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
            for station_id in ("CP1", "CP2"):
                assert await fleet.plug_in(station_id, 1, big_car(), "DRIVER-1")
            # a meter value each 10 minutes: the guard sees CP1 over what it was sent late;
            # the site must not need it. From the cars' arrival on, never over:
            over = await draws_over(fleet, clock, grid_w, minutes=5)
            assert over == [], over[:3]
            assert fleet.draw_w("CP2", 1) > 0, "CP2's car charges on what is left"
        finally:
            await fleet.stop()
