"""OCPP 2.0.1 adapter: one `ocpp.v201.ChargePoint` per connected station.

The same shape as the 1.6 adapter: `CentralSystemBase` (ocpp/central.py) runs the edge checks in
2.0.1's names (v201/edge.py) and sends our calls; small `@on(Action)` handlers write to the store
(awaited: the answer leaves only after the commit) and then publish the same domain events as
1.6. An EVSE is one of the site's connectors: `evseId` is our `connector_id` (a station that
numbers connectors inside an EVSE is addressed by its evseId; the EVSE's status is that of its
connectors together, `evse_status`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ocpp.charge_point import remove_nones, snake_to_camel_case
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action, RegistrationStatusEnumType

from smartcharge import ledger
from smartcharge.store_ops import StoreOp
from smartcharge.clock import format_ocpp_time, parse_ocpp_time
from smartcharge.ocpp.central import CentralSystemBase
from smartcharge.ocpp.clock_offset import supersedes
from smartcharge.ocpp.sampled import samples_to_events
from smartcharge.ocpp.v201.edge import DIALECT
from smartcharge.ocpp.v201.meter import parse_meter_values
from smartcharge.ocpp.v201.notifications import NotificationHandlers
from smartcharge.ocpp.v201.transactions import TransactionHandlers

log = logging.getLogger(__name__)

# 2.0.1 StatusNotification has no error code: what we store and publish in its place
NO_ERROR_CODE = "NoError"
UNKNOWN_TOKEN = "Unknown"
NO_AUTHORIZATION = "NoAuthorization"   # IdTokenEnumType: no authorization possible
ACCEPTED = "Accepted"
# An EVSE with more than one connector (CCS and CHAdeMO on one DC EVSE) takes one car at a
# time: it is as busy as its busiest connector - Occupied while any is, Available while one
# can take a car; the last status whatever its connector made an EVSE with a car on
# connector 2 read Available (taken for a car gone) when connector 1 reported after it
_EVSE_STATUS_ORDER = ("Occupied", "Reserved", "Available", "Unavailable", "Faulted")


def evse_status(connector_statuses: dict[int, str]) -> str:
    """An EVSE's status from its connectors' (the first of `_EVSE_STATUS_ORDER` one has)."""
    return min(connector_statuses.values(), key=lambda status: (
        _EVSE_STATUS_ORDER.index(status) if status in _EVSE_STATUS_ORDER
        else len(_EVSE_STATUS_ORDER)))


class CentralSystemV201(TransactionHandlers, NotificationHandlers, CentralSystemBase,
                        ChargePoint):
    dialect = DIALECT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # evseId -> connectorId -> (stamp, its reading against our clock, status) of its newest
        # status, this connection's (a station reports every connector again after a reboot)
        self._connector_statuses: dict[int, dict[int, tuple[datetime, str, str]]] = {}

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
        # Triggered: the answer to our TriggerMessage, not a restart (transactions go on)
        accepted = await self.record_boot(payload, vendor=charging_station["vendor_name"],
                                          model=charging_station["model"],
                                          serial_number=serial, firmware_version=firmware,
                                          rebooted=reason != "Triggered")
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
        # the EVSE is the site's connector (connectorId is inside it)
        connectors = self._connector_statuses.setdefault(evse_id, {})
        at = parse_ocpp_time(timestamp)
        reading = self.stamp_reading(at, self._ctx.clock.now())
        held = connectors.get(connector_id)
        if held is None or supersedes(at, reading, held[0], held[1]):
            # one stamped before the connector's held status is from its queue: history
            # (unless the station's clock was set to ours since, `supersedes`)
            connectors[connector_id] = (at, reading, connector_status)
        # the EVSE's status as of its connectors' newest stamp, read as that stamp was (not as
        # this message's: another connector's stamp from before a clock set, held as in step,
        # made every later status history)
        newest_at, newest_reading, _ = max(connectors.values())
        await self.record_status(
            evse_id, evse_status({c: status for c, (_, _, status) in connectors.items()}),
            NO_ERROR_CODE, newest_at, reading=newest_reading)
        return call_result.StatusNotification()

    # -- authorization (block C) ------------------------------------------------------------
    @on(Action.authorize)
    async def on_authorize(self, id_token: dict, **optional: Any) -> call_result.Authorize:
        status = await self.token_status(id_token)
        log.info("station %s: Authorize %s (%s) -> %s", self.id, id_token["id_token"],
                 id_token["type"], status)
        return call_result.Authorize(id_token_info={"status": status})

    async def token_status(self, id_token: dict, transaction: str | None = None,
                           started: datetime | None = None) -> str:
        """The same id-tag rules as 1.6 (the site file's tags, then the store's); a token we do
        not know is `Unknown` (2.0.1's word; 1.6 said Invalid). `NoAuthorization` (a start
        button, a free-vend station: its token is empty) is Accepted - nothing can authorize
        it, and any other answer only makes a strict station stop the car (StopTxOnInvalidId)."""
        if id_token.get("type") == NO_AUTHORIZATION:
            return ACCEPTED
        return await self.id_tag_status(id_token["id_token"], transaction, started) \
            or UNKNOWN_TOKEN

    # -- meter values outside transactions (block J) -------------------------------------------
    @on(Action.meter_values)
    async def on_meter_values(self, evse_id: int, meter_value: list,
                              custom_data: dict | None = None) -> call_result.MeterValues:
        now = self._ctx.clock.now()
        readings = parse_meter_values(meter_value)
        payload = {"evseId": evse_id, "meterValue": snake_to_camel_case(meter_value)}
        # the parsed readings, not the frame: 2.0.1's values are parsed by its own rules (unit
        # of measure, multiplier), which ledger.meter_values_sent (1.6's) does not know
        outcome = await self._ctx.store.run(StoreOp(
            ledger.meter_values, station_id=self.id, connector_id=evse_id,
            station_tx_id=None, readings=readings, payload=payload, at=now,
            max_power_w=self._max_power_w))
        if not outcome.duplicate:
            for event in samples_to_events(self.id, evse_id, None, readings, now):
                self._ctx.events.publish(event)
        return call_result.MeterValues()
