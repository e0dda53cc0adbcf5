"""A station accepted before connects again: rebooted (its BootNotification comes first) or
merely reconnected (no BootNotification: OCPP 1.6 4.2 and 2.0.1 B01-B03 allow that once it has
been accepted). A strict station refuses every call (SecurityError) until it has read its boot's
Accepted answer on this connection; the set-up must reach it after that, and a quiet reconnect
must not wait for a boot that never comes (`server.boot_wait_s`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiohttp
import pytest

from smartcharge.appkeys import REGISTRY
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, ServerSettings, Site, Station
from smartcharge.ocpp.v201 import profiles as P
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.station import Quirks
from smartcharge.site.dispatch import DispatchSettings
from tests.ocpp201_station import StationSetup, station201
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "sim-password-0123"
DISPATCH = DispatchSettings(call_timeout_s=5.0)


def _site(station_id: str, boot_wait_s: float = 5.0) -> Site:
    return Site(name="reboot", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station(station_id, "grid", (Connector(1), Connector(2)),
                                  password=PASSWORD),),
                server=ServerSettings(boot_wait_s=boot_wait_s))


@pytest.fixture
def clock():
    return AcceleratedClock(T0, speed=1.0)


def _tx_defaults(station) -> list[dict]:
    return [p for _, p in station.table.profiles.values()
            if p["chargingProfilePurpose"] == P.TX_DEFAULT_PROFILE
            and p["stackLevel"] == P.FAILSAFE_LEVEL]


async def _registered_201(server, clock) -> None:
    """A first connection that boots: the store holds CP201 as Accepted."""
    setup = StationSetup(rate_units="W", periods_per_schedule=4, refuse_before_boot=True)
    async with station201(server.ws_url, "CP201", PASSWORD, setup=setup, clock=clock) as first:
        await wait_until(lambda: len(_tx_defaults(first)) == 2, 10, "the first set-up")
    await wait_until(lambda: server.app[REGISTRY].get("CP201") is None, 5, "CP201 gone")


async def test_a_registered_2_0_1_station_that_rebooted_is_set_up_after_its_boot(tmp_path,
                                                                                 clock):
    """It was Accepted before; after a reboot it connects and boots: the set-up (GetVariables,
    its defaults) went out at the connection, before the boot's answer, and a strict station
    refused it all - the capability defaults stayed for good."""
    async with control_server(_site("CP201"), tmp_path / "sc.sqlite", clock,
                              dispatch=DISPATCH) as server:
        await _registered_201(server, clock)
        setup = StationSetup(rate_units="W", periods_per_schedule=4, refuse_before_boot=True)
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup,
                              clock=clock) as station:
            await wait_until(lambda: len(_tx_defaults(station)) == 2
                             or station.refused_before_boot, 10, "the set-up after the reboot")
            assert station.refused_before_boot == []
            caps = server.dispatcher.stations["CP201"].caps
            assert caps.rate_units == ("W",) and caps.max_periods == 4


async def test_a_registered_2_0_1_station_reconnecting_without_a_boot_is_set_up(tmp_path, clock):
    """No BootNotification comes (a reconnect without a reboot, still registered): the set-up
    goes out after `boot_wait_s`, not never."""
    async with control_server(_site("CP201", boot_wait_s=0.3), tmp_path / "sc.sqlite", clock,
                              dispatch=DISPATCH) as server:
        await _registered_201(server, clock)
        setup = StationSetup(rate_units="W", periods_per_schedule=4, refuse_before_boot=True,
                             registered_from_before=True)
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup, clock=clock,
                              boot=False) as station:
            await wait_until(lambda: len(_tx_defaults(station)) == 2, 10,
                             "the set-up without a boot")
            assert station.refused_before_boot == []


async def test_a_2_0_1_station_booting_after_the_wait_is_set_up_again(tmp_path, clock):
    """A slow station: its BootNotification comes after `boot_wait_s`, when the set-up has
    gone out and been refused. Once its boot is answered it is set up again, capabilities
    read anew (they were the defaults the refusal left)."""
    async with control_server(_site("CP201", boot_wait_s=0.3), tmp_path / "sc.sqlite", clock,
                              dispatch=DISPATCH) as server:
        await _registered_201(server, clock)
        setup = StationSetup(rate_units="W", periods_per_schedule=4, refuse_before_boot=True)
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup, clock=clock,
                              boot=False) as station:
            await wait_until(lambda: station.refused_before_boot, 10, "the set-up refused")
            await station.boot()
            control = server.dispatcher.stations["CP201"]
            # The refused set-up may still be sending when the boot lands (its later defaults
            # then install), so the second set-up is known done by its capabilities, not by
            # the count of defaults alone.
            await wait_until(lambda: len(_tx_defaults(station)) == 2
                             and control.caps is not None and control.caps.rate_units == ("W",),
                             10, "the set-up after the late boot")
            assert control.caps.max_periods == 4


async def test_a_registered_1_6_station_that_rebooted_is_set_up_after_its_boot(tmp_path,
                                                                               clock):
    """The same for 1.6 (the simulator, strict): a reboot's new connection gets the set-up
    (GetConfiguration, the defaults) once its BootNotification is answered."""
    site = _site("CP1")
    async with control_server(site, tmp_path / "sc.sqlite", clock, dispatch=DISPATCH) as server:
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=3600, call_timeout_s=5.0,
                      quirks={"CP1": Quirks(max_periods=5, refuse_before_boot=True)})
        try:
            await fleet.start(wait_booted_s=10)
            station, control = fleet.stations["CP1"], server.dispatcher.stations
            await wait_until(lambda: "CP1" in control and control["CP1"].caps is not None
                             and len(control["CP1"].default_layer) == 2, 10, "first set-up")
            first = server.app[REGISTRY].get("CP1")
            station.reboot(graceful=False, stop_reason="HardReset")
            def set_up_again() -> bool:
                link = server.app[REGISTRY].get("CP1")
                return link not in (None, first) and control["CP1"].port_link is link \
                    and control["CP1"].caps is not None \
                    and len(control["CP1"].default_layer) == 2

            await wait_until(lambda: station.refused_before_boot or set_up_again(), 10,
                             "the set-up after the reboot")
            assert station.refused_before_boot == []
            assert control["CP1"].caps.max_periods == 5
        finally:
            await fleet.stop()



async def _first_life(http, server, auth) -> dict:
    """A raw 1.6 CP1 boots (our calls meanwhile answered NotSupported) and leaves; the boot's
    answer."""
    async with http.ws_connect(f"{server.ws_url}/CP1", protocols=("ocpp1.6",),
                               headers=auth) as ws:
        await ws.send_str(json.dumps([2, "b", "BootNotification", {
            "chargePointVendor": "V", "chargePointModel": "M"}]))
        while (frame := json.loads((await ws.receive(timeout=5)).data))[1] != "b":
            await ws.send_str(json.dumps([4, frame[1], "NotSupported", "", {}]))
    await wait_until(lambda: server.app[REGISTRY].get("CP1") is None, 5, "CP1 gone")
    return frame[2]

async def test_a_registered_1_6_station_reconnecting_without_a_boot_is_asked(tmp_path, clock):
    """1.6, a raw station: booted once, then back without a BootNotification. Our first call
    (the set-up's GetConfiguration) comes within `boot_wait_s` and the call timeout."""
    site = _site("CP1", boot_wait_s=0.3)
    auth = {"Authorization": aiohttp.encode_basic_auth("CP1", PASSWORD)}
    async with control_server(site, tmp_path / "sc.sqlite", clock, dispatch=DISPATCH) as server, \
            aiohttp.ClientSession() as http:
        assert (await _first_life(http, server, auth))["status"] == "Accepted"
        async with http.ws_connect(f"{server.ws_url}/CP1", protocols=("ocpp1.6",),
                                   headers=auth) as ws:
            frame = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
            assert frame[0] == 2 and frame[2] == "GetConfiguration"


async def test_a_refused_boot_does_not_shut_the_gate(tmp_path, clock):
    """1.6, accepted before: its first frame is a BootNotification we refuse (a field
    missing, a CALLERROR), then it goes on with a Heartbeat. The gate opens with the boot's
    answer, whatever it was: our calls do not wait for a boot that may never come right."""
    site = _site("CP1", boot_wait_s=0.3)
    auth = {"Authorization": aiohttp.encode_basic_auth("CP1", PASSWORD)}
    async with control_server(site, tmp_path / "sc.sqlite", clock, dispatch=DISPATCH) as server, \
            aiohttp.ClientSession() as http:
        await _first_life(http, server, auth)
        async with http.ws_connect(f"{server.ws_url}/CP1", protocols=("ocpp1.6",),
                                   headers=auth) as ws:
            await ws.send_str(json.dumps([2, "b2", "BootNotification", {
                "chargePointVendor": "V"}]))
            assert json.loads((await ws.receive(timeout=5)).data)[:2] == [4, "b2"]
            await ws.send_str(json.dumps([2, "h", "Heartbeat", {}]))
            frames = [json.loads((await ws.receive(timeout=5)).data) for _ in range(2)]
            assert [f[0] for f in frames if f[1] == "h"] == [3], frames
            asked = [f[2] for f in frames if f[0] == 2]
            assert asked == ["GetConfiguration"], frames
