"""OCPP 2.0.1 adapter: one `ocpp.v201.ChargePoint` per connected station.

The same shape as the 1.6 adapter: `CentralSystemBase` (ocpp/central.py) runs the edge checks in
2.0.1's names (v201/edge.py) and sends our calls; small `@on(Action)` handlers write to the store
(awaited: the answer leaves only after the commit) and then publish the same domain events as
1.6. An EVSE is one of the site's connectors: `evseId` is our `connector_id` (one connector per
EVSE; a station that numbers connectors inside an EVSE is addressed by its evseId).
"""

from __future__ import annotations

import logging

from ocpp.charge_point import remove_nones
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action, RegistrationStatusEnumType

from smartcharge.clock import format_ocpp_time, parse_ocpp_time
from smartcharge.events import ConnectorStatusChanged
from smartcharge.ocpp.central import CentralSystemBase
from smartcharge.ocpp.v201.edge import DIALECT

log = logging.getLogger(__name__)

# 2.0.1 StatusNotification has no error code: what we store and publish in its place
NO_ERROR_CODE = "NoError"


class CentralSystemV201(CentralSystemBase, ChargePoint):
    dialect = DIALECT

    # -- provisioning (block B) -------------------------------------------------------------
    @on(Action.boot_notification)
    async def on_boot_notification(self, charging_station: dict, reason: str,
                                   custom_data: dict | None = None
                                   ) -> call_result.BootNotification:
        serial, firmware = (charging_station.get("serial_number"),
                            charging_station.get("firmware_version"))
        payload = {"chargingStation": remove_nones({
            "vendorName": charging_station["vendor_name"], "model": charging_station["model"],
            "serialNumber": serial, "firmwareVersion": firmware}), "reason": reason}
        accepted = await self.record_boot(payload, vendor=charging_station["vendor_name"],
                                          model=charging_station["model"],
                                          serial_number=serial, firmware_version=firmware)
        return call_result.BootNotification(
            current_time=format_ocpp_time(self._ctx.clock.now()),
            interval=self._ctx.site.server.heartbeat_interval_s,
            status=RegistrationStatusEnumType.accepted if accepted
            else RegistrationStatusEnumType.pending)

    @on(Action.heartbeat)
    async def on_heartbeat(self, custom_data: dict | None = None) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=format_ocpp_time(self._ctx.clock.now()))

    # -- availability (block G) -------------------------------------------------------------
    @on(Action.status_notification)
    async def on_status_notification(self, timestamp: str, connector_status: str,
                                     evse_id: int, connector_id: int,
                                     custom_data: dict | None = None
                                     ) -> call_result.StatusNotification:
        now = self._ctx.clock.now()
        at = parse_ocpp_time(timestamp)
        # one connector per EVSE: the EVSE is the site's connector (connectorId is inside it)
        await self._ctx.store.run(lambda tx: tx.set_connector_status(
            self.id, evse_id, connector_status, NO_ERROR_CODE, None, None, at, now))
        self._ctx.events.publish(ConnectorStatusChanged(self.id, evse_id, connector_status,
                                                        NO_ERROR_CODE, at))
        return call_result.StatusNotification()
