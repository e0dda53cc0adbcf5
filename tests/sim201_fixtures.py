"""A tiny independent OCPP 2.0.1 central system (the `ocpp` library's v201 server side on
aiohttp) to test the simulated 2.0.1 station against, as `sim_fixtures.MiniCentralSystem` does
for 1.6. It records every inbound message (snake_case payloads) and answers as a lenient CSMS."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action

from sim_fixtures import ACCEPTED_TAGS, Received
from smartcharge.sim.connection import WsConnection


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Link201(ChargePoint):
    def __init__(self, station_id, connection, csms: MiniCsms201):
        super().__init__(station_id, connection, response_timeout=5)
        self.csms = csms

    def _record(self, action, **payload):
        self.csms.received.append(Received(action, payload))
        self.csms.changed.set()

    @on(Action.boot_notification)
    def on_boot(self, **payload):
        self._record("BootNotification", **payload)
        return call_result.BootNotification(current_time=_now(),
                                            interval=self.csms.heartbeat_interval_s,
                                            status="Accepted")

    @on(Action.heartbeat)
    def on_heartbeat(self, **payload):
        self._record("Heartbeat")
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status(self, **payload):
        self._record("StatusNotification", **payload)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_token, **payload):
        self._record("Authorize", id_token=id_token)
        ok = id_token["id_token"] in ACCEPTED_TAGS
        return call_result.Authorize(id_token_info={"status": "Accepted" if ok else "Invalid"})

    @on(Action.transaction_event)
    def on_transaction_event(self, **payload):
        self._record("TransactionEvent", **payload)
        token = payload.get("id_token")
        if token is None:
            return call_result.TransactionEvent()
        ok = token["id_token"] in ACCEPTED_TAGS
        return call_result.TransactionEvent(
            id_token_info={"status": "Accepted" if ok else "Invalid"})

    @on(Action.meter_values)
    def on_meter_values(self, **payload):
        self._record("MeterValues", **payload)
        return call_result.MeterValues()

    @on(Action.notify_ev_charging_needs)
    def on_needs(self, **payload):
        self._record("NotifyEVChargingNeeds", **payload)
        return call_result.NotifyEVChargingNeeds(status="Accepted")

    @on(Action.report_charging_profiles)
    def on_report(self, **payload):
        self._record("ReportChargingProfiles", **payload)
        return call_result.ReportChargingProfiles()

    @on(Action.firmware_status_notification)
    def on_firmware(self, **payload):
        self._record("FirmwareStatusNotification", **payload)
        return call_result.FirmwareStatusNotification()


@dataclass
class MiniCsms201:
    heartbeat_interval_s: int = 300
    accepting: bool = True
    offered: list[str] = field(default_factory=list)    # Sec-WebSocket-Protocol of each connect
    received: list[Received] = field(default_factory=list)
    links: dict[str, Link201] = field(default_factory=dict)
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        if not self.accepting:
            raise web.HTTPServiceUnavailable()
        self.offered.append(request.headers.get("Sec-WebSocket-Protocol", ""))
        station_id = request.match_info["station_id"]
        ws = web.WebSocketResponse(protocols=("ocpp2.0.1",))
        await ws.prepare(request)
        link = Link201(station_id, WsConnection(ws), self)
        self.links[station_id] = link
        self.sockets[station_id] = ws
        with contextlib.suppress(ConnectionError):
            await link.start()
        return ws

    async def drop(self, station_id: str) -> None:
        """Close a station's socket from our side (the network failed)."""
        await self.sockets[station_id].close()

    def of(self, action: str) -> list[dict]:
        return [r.payload for r in self.received if r.action == action]

    async def wait_until(self, predicate, timeout_s: float = 10.0) -> None:
        async def poll():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(poll(), timeout_s)


@contextlib.asynccontextmanager
async def mini_csms_201(**kwargs):
    csms = MiniCsms201(**kwargs)
    app = web.Application()
    app.router.add_get("/ocpp/{station_id}", csms.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    csms.url = f"ws://127.0.0.1:{runner.addresses[0][1]}/ocpp"
    try:
        yield csms
    finally:
        await runner.cleanup()
