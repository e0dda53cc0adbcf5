"""A default's settle time counts from when the station took it, not from its schedule's start.

The guard judges a sample as evidence of disobedience once it was taken the settle time after
the limit in force came into force (`installed.followed_since`). For a fail-safe default or an
idle share that was its schedule's start - the moment we built it - while a station busy or
far away takes it later: a sample taken in between, under the old default, read as drawing
over the new one ("guard: CP6/1 draws 6279 W, more than the 0 W its profiles allow", its idle
share lowered to 0 A as its car began, in test_disobedient_stations under the suite's load;
the car then planned as a fixed load). A plan's TxProfile counted from its answer already.

A scripted 1.6 station over a real WebSocket that answers its defaults late."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.connection import WsConnection
from smartcharge.site.topology import ConnectorRef
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF = ConnectorRef("CP1", 1)
LATE_S = 20.0     # site seconds the station takes to answer a default


class LateStation(ChargePoint):
    """Answers each TxDefaultProfile only once the site's clock is `LATE_S` past its start."""

    def __init__(self, connection, clock) -> None:
        super().__init__("CP1", connection, response_timeout=10)
        self.clock = clock
        self.accepted: list[tuple[datetime, dict]] = []   # (our time, the profile)

    @on(Action.set_charging_profile)
    async def set_profile(self, connector_id, cs_charging_profiles, **_):
        schedule = cs_charging_profiles["charging_schedule"]
        if cs_charging_profiles["charging_profile_purpose"] == "TxDefaultProfile" \
                and connector_id == 1 and "start_schedule" in schedule:
            start = datetime.fromisoformat(schedule["start_schedule"].replace("Z", "+00:00"))
            while self.clock.now() < start + timedelta(seconds=LATE_S):
                await asyncio.sleep(0.01)
        self.accepted.append((self.clock.now(), {"connector_id": connector_id,
                                                 **cs_charging_profiles}))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.get_configuration)
    def get_configuration(self, key=None, **_):
        return call_result.GetConfiguration(configuration_key=[], unknown_key=key or None)

    @on(Action.change_configuration)
    def change_configuration(self, **_):
        return call_result.ChangeConfiguration(status="Accepted")


async def test_a_defaults_settle_time_counts_from_its_answer(tmp_path):
    site = Site(name="late", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(T0, speed=10.0)
    async with control_server(site, tmp_path / "sc.sqlite", clock) as server, \
            aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server.ws_url}/CP1", protocols=["ocpp1.6"])
        station = LateStation(WsConnection(ws), clock)
        serving = asyncio.create_task(station.start())
        try:
            await station.call(call.BootNotification(charge_point_vendor="Test",
                                                     charge_point_model="Late"),
                               suppress=False)
            await station.call(call.StatusNotification(
                connector_id=1, error_code="NoError", status="Available",
                timestamp=format_ocpp_time(clock.now())), suppress=False)
            installed = server.dispatcher.installed

            def default_taken():
                return [at for at, p in station.accepted if p["connector_id"] == 1
                        and p["charging_profile_purpose"] == "TxDefaultProfile"]
            await wait_until(lambda: default_taken() and installed.step_of(REF), 10,
                             "connector 1's default taken")
            taken = default_taken()[0]
            since = installed.followed_since(REF)
            assert since is not None
            # not before the station had it, plus the settle time
            assert since >= taken + timedelta(seconds=site.server.settle_s), (since, taken)
        finally:
            serving.cancel()
            await ws.close()
