"""A scripted OCPP 1.6 station for tests that need exact control of its stamps and answers:
it takes every profile and configuration change, and records each profile with our time."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import aiohttp
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.connection import WsConnection
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import control_server


class AnswersSetUp:
    """A 1.6 station's answers to our set-up's calls besides its profiles: it clears what it
    is asked to, has no configuration keys, and answers a change with
    `configuration_change_status`."""

    configuration_change_status = "Accepted"

    @on(Action.clear_charging_profile)
    def clear_profile(self, **_):
        return call_result.ClearChargingProfile(status="Accepted")

    @on(Action.get_configuration)
    def get_configuration(self, key=None, **_):
        return call_result.GetConfiguration(configuration_key=[], unknown_key=key or None)

    @on(Action.change_configuration)
    def change_configuration(self, **_):
        return call_result.ChangeConfiguration(status=self.configuration_change_status)


class TakesProfiles(AnswersSetUp, ChargePoint):
    """CP1; `accepted`: (the site clock's time it took it, the profile) per SetChargingProfile.
    `before_taking` (awaited first) lets a subclass answer late."""

    def __init__(self, connection, clock) -> None:
        super().__init__("CP1", connection, response_timeout=10)
        self.clock = clock
        self.accepted: list[tuple[datetime, dict]] = []

    async def before_taking(self, connector_id: int, profile: dict) -> None:
        return None

    @on(Action.set_charging_profile)
    async def set_profile(self, connector_id, cs_charging_profiles, **_):
        await self.before_taking(connector_id, cs_charging_profiles)
        self.accepted.append((self.clock.now(), {"connector_id": connector_id,
                                                 **cs_charging_profiles}))
        return call_result.SetChargingProfile(status="Accepted")


@contextlib.asynccontextmanager
async def one_station_site(tmp_path, station_class, name: str, dispatch_kw=None):
    """The real server on a 22 kW site of CP1 (one connector) at 10x, and `station_class` as
    CP1 over a real WebSocket, booted: (site, clock, server, station). `dispatch_kw`: the
    server's DispatchSettings fields that differ (call timeouts, retries)."""
    site = Site(name=name, circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC), speed=10.0)
    server_kw = {} if dispatch_kw is None else {"dispatch": DispatchSettings(
        settle_s=site.server.settle_s, edge_margin_s=site.server.edge_margin_s, **dispatch_kw)}
    async with control_server(site, tmp_path / "sc.sqlite", clock, **server_kw) as server, \
            aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server.ws_url}/CP1", protocols=["ocpp1.6"])
        station = station_class(WsConnection(ws), clock)
        serving = asyncio.create_task(station.start())
        try:
            await station.call(call.BootNotification(charge_point_vendor="Test",
                                                     charge_point_model=name), suppress=False)
            yield site, clock, server, station
        finally:
            serving.cancel()
            await ws.close()
