"""An OCPP 2.0.1 test station: the `ocpp` library's own `ocpp.v201.ChargePoint` over a real
aiohttp WebSocket, against the harness's real app (tests/conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from ocpp.v201 import ChargePoint, call
from ocpp.v201.datatypes import ChargingStationType

from tests.conftest import PASSWORD, WsConnection, ocpp_time

OCPP201 = "ocpp2.0.1"


class Station201(ChargePoint):
    """A scriptable 2.0.1 station; tests add `@on` handlers in subclasses when they need them."""

    __test__ = False

    def __init__(self, station_id: str, connection: WsConnection) -> None:
        super().__init__(station_id, connection, response_timeout=10)

    async def boot(self, reason: str = "PowerUp"):
        return await self.call(call.BootNotification(
            charging_station=ChargingStationType(vendor_name="Test", model="T201",
                                                 serial_number="SN-1", firmware_version="2.0"),
            reason=reason), suppress=False)

    async def status(self, evse_id: int, status: str, at: datetime, connector_id: int = 1):
        return await self.call(call.StatusNotification(
            timestamp=ocpp_time(at), connector_status=status, evse_id=evse_id,
            connector_id=connector_id), suppress=False)

    async def send(self, request):
        return await self.call(request, suppress=False)


async def station201(harness, station_id: str = "CP1", *, boot: bool = True,
                     password: str | None = PASSWORD, protocols=(OCPP201,),
                     station_class: type[Station201] = Station201) -> Station201:
    """Connect a 2.0.1 station to the harness's server (and boot it, unless told not to)."""
    ws = await harness.open_ws(station_id, password, protocols=protocols)
    station = station_class(station_id, WsConnection(ws))
    station.ws = ws
    task = asyncio.create_task(_serve(station))
    harness._tasks.append(task)
    if boot:
        answer = await station.boot()
        assert answer.status == "Accepted"
    return station


async def _serve(station: Station201) -> None:
    try:
        await station.start()
    except ConnectionError:
        pass
