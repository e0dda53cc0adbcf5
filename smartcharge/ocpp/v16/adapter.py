"""OCPP 1.6J adapter: one `ocpp.v16.ChargePoint` per connected station.

Small `@on(Action)` handlers turn inbound calls into ledger writes (awaited: the answer leaves only
after the commit) and then into domain events. `CentralSystemBase` (ocpp/central.py) runs our edge
checks in 1.6's names (v16/edge.py) before the library sees a frame, and sends our calls.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    DataTransferStatus,
    RegistrationStatus,
)

from smartcharge import ledger
from smartcharge.store_ops import StoreOp
from smartcharge.clock import format_ocpp_time, parse_ocpp_time
from smartcharge.events import (
    SessionStarted,
    SessionStopped,
)
from smartcharge.metering import (
    parse_meter_values,
)
from smartcharge.ocpp.central import CentralSystemBase
from smartcharge.ocpp.registry import StationCallError
from smartcharge.ocpp.sampled import samples_to_events
from smartcharge.ocpp.v16.edge import DIALECT

log = logging.getLogger(__name__)


class CentralSystemV16(CentralSystemBase, ChargePoint):
    dialect = DIALECT
    # a TriggerMessage(BootNotification) of ours was sent on this connection and not refused:
    # the next BootNotification on it answers it - the station did not restart (1.6 has no
    # boot reason; 2.0.1 says Triggered). A restart drops the connection, and this adapter.
    _boot_triggered = False

    async def send_call(self, request: Any, *, wire: dict | None = None,
                        progress: Any = None) -> Any:
        if type(request).__name__ != "TriggerMessage" \
                or getattr(request, "requested_message", None) != "BootNotification":
            return await super().send_call(request, wire=wire, progress=progress)
        # set before it is sent: the station answers, then sends the BootNotification at
        # once (5.17), which may be handled before this call resumes
        self._boot_triggered = True
        try:
            answer = await super().send_call(request, wire=wire, progress=progress)
        except StationCallError:
            self._boot_triggered = False
            raise
        # (no answer: it may still come - nothing but it comes on this connection)
        if getattr(answer, "status", None) != "Accepted":
            self._boot_triggered = False
        return answer

    # -- inbound calls ----------------------------------------------------------------------
    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str,
                                   **optional: Any) -> call_result.BootNotification:
        payload = {"chargePointVendor": charge_point_vendor,
                   "chargePointModel": charge_point_model,
                   **{_camel(k): v for k, v in optional.items()}}
        triggered, self._boot_triggered = self._boot_triggered, False
        accepted = await self.record_boot(
            payload, vendor=charge_point_vendor, model=charge_point_model,
            serial_number=optional.get("charge_point_serial_number"),
            firmware_version=optional.get("firmware_version"), rebooted=not triggered)
        return call_result.BootNotification(
            current_time=format_ocpp_time(self._ctx.clock.now()),
            interval=self._ctx.site.server.heartbeat_interval_s,
            status=RegistrationStatus.accepted if accepted else RegistrationStatus.pending)

    @on(Action.heartbeat)
    async def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=format_ocpp_time(self._ctx.clock.now()))

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str,
                                     timestamp: str | None = None, info: str | None = None,
                                     vendor_id: str | None = None,
                                     vendor_error_code: str | None = None
                                     ) -> call_result.StatusNotification:
        await self.record_status(connector_id, status, error_code,
                                 parse_ocpp_time(timestamp) if timestamp else None, info,
                                 vendor_error_code)
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        status = await self._id_tag_status(id_tag)
        log.info("station %s: Authorize %s -> %s", self.id, id_tag, status.value)
        return call_result.Authorize(id_tag_info=IdTagInfo(status=status))

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int,
                                   timestamp: str, reservation_id: int | None = None
                                   ) -> call_result.StartTransaction:
        now = self._ctx.clock.now()
        started = parse_ocpp_time(timestamp)
        status = await self._id_tag_status(id_tag, started)   # queued: when it started
        payload = {"connectorId": connector_id, "idTag": id_tag, "meterStart": meter_start,
                   "timestamp": timestamp, "reservationId": reservation_id}
        outcome = await self._ctx.store.run(StoreOp(
            ledger.start_transaction, station_id=self.id, connector_id=connector_id, id_tag=id_tag,
            meter_start_wh=float(meter_start), timestamp=started, reservation_id=reservation_id,
            payload=payload, answer_status=status.value, at=now, max_power_w=self._max_power_w))
        log.info("station %s: StartTransaction connector %d tag %s -> transaction %d%s",
                 self.id, connector_id, id_tag, outcome.transaction_id,
                 " (duplicate)" if outcome.duplicate else "")
        if status is AuthorizationStatus.accepted and not self._ctx.site.accepts_id_tag(id_tag):
            # begun in a remote start's grace (or a stored Accepted): the grant kept on the
            # transaction, as 2.0.1's is, before the station hears of it - its StopTransaction
            # an hour on said Invalid, into the station's authorization cache
            # (tests/test_remote_start_authorized.py)
            await self.id_tag_status(id_tag, transaction=str(outcome.transaction_id),
                                     started=started)
        if not outcome.duplicate:
            self.publish_closed(outcome.closed, now)
            self._ctx.events.publish(SessionStarted(
                self.id, connector_id, outcome.transaction_id, id_tag, float(meter_start),
                started, outcome.closed[0].transaction_id if outcome.closed else None))
        return call_result.StartTransaction(transaction_id=outcome.transaction_id,
                                            id_tag_info=IdTagInfo(status=status))

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list,
                              transaction_id: int | None = None) -> call_result.MeterValues:
        now = self._ctx.clock.now()
        readings = parse_meter_values(meter_value)
        payload = {"connectorId": connector_id, "transactionId": transaction_id,
                   "meterValue": meter_value}
        outcome = await self._ctx.store.run(StoreOp(   # parsed again there: cheaper to send
            ledger.meter_values_sent, station_id=self.id, connector_id=connector_id,
            station_tx_id=transaction_id, meter_value=meter_value, payload=payload, at=now,
            max_power_w=self._max_power_w, clock_offset_s=self.offset_at_boot_s))
        if outcome.duplicate:
            log.info("station %s: duplicate MeterValues acknowledged, nothing changed", self.id)
        else:
            if outcome.reopened is not None:
                self.publish_reopened(outcome.reopened)
            for event in samples_to_events(self.id, connector_id, outcome.transaction_id,
                                            readings, now):
                self._ctx.events.publish(event)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int,
                                  reason: str | None = None, id_tag: str | None = None,
                                  transaction_data: list | None = None
                                  ) -> call_result.StopTransaction:
        now = self._ctx.clock.now()
        stopped = parse_ocpp_time(timestamp)
        readings = parse_meter_values(transaction_data or [])
        payload = {"meterStop": meter_stop, "timestamp": timestamp,
                   "transactionId": transaction_id, "reason": reason, "idTag": id_tag,
                   "transactionData": transaction_data}
        outcome = await self._ctx.store.run(StoreOp(
            ledger.stop_transaction, station_id=self.id, station_tx_id=transaction_id,
            meter_stop_wh=float(meter_stop),
            timestamp=stopped, reason=reason, id_tag=id_tag, readings=readings,
            payload=payload, at=now, max_power_w=self._max_power_w))
        log.info("station %s: StopTransaction %d (%s) -> session %s, %s Wh", self.id,
                 transaction_id, outcome.matched, outcome.transaction_id, outcome.energy_wh)
        if not outcome.duplicate:
            self._ctx.events.publish(SessionStopped(
                self.id, outcome.connector_id, outcome.transaction_id, stopped,
                outcome.energy_wh, reason or "Local"))
        # idTagInfo only answers an idTag the station sent; the stop is acknowledged regardless
        # (the transaction it stopped: a tag granted by our remote start keeps it there)
        info = IdTagInfo(status=await self._id_tag_status(
            id_tag, transaction=None if outcome.transaction_id is None
            else str(outcome.transaction_id))) if id_tag else None
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, message_id: str | None = None,
                               data: str | None = None) -> call_result.DataTransfer:
        now = self._ctx.clock.now()
        await self._ctx.store.run(StoreOp("insert_data_transfer", self.id, vendor_id,
                                          message_id, data, now))
        log.info("station %s: DataTransfer from vendor %s (%s) recorded", self.id, vendor_id,
                 message_id)
        # we implement no vendor extension: the spec's answer for that is UnknownVendorId
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, status: str) -> call_result.FirmwareStatusNotification:
        await self.record_notification("firmware", status)
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status(self, status: str
                                    ) -> call_result.DiagnosticsStatusNotification:
        await self.record_notification("diagnostics", status)
        return call_result.DiagnosticsStatusNotification()

    # -- the security whitepaper's messages (security profiles 1-3 for 1.6) ----------------
    @on(Action.security_event_notification)
    async def on_security_event(self, type: str, timestamp: str, **optional: Any
                                ) -> call_result.SecurityEventNotification:
        # the whitepaper: a station under a security profile must report these; kept in its
        # notification history like 2.0.1's (kind "security", status = the event's type)
        await self.record_notification("security", type)
        log.info("station %s: security event %s at %s", self.id, type, timestamp)
        return call_result.SecurityEventNotification()

    @on(Action.log_status_notification)
    async def on_log_status(self, status: str, **optional: Any
                            ) -> call_result.LogStatusNotification:
        await self.record_notification("log", status)
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    async def on_signed_firmware_status(self, status: str, **optional: Any
                                        ) -> call_result.SignedFirmwareStatusNotification:
        await self.record_notification("firmware", status)
        return call_result.SignedFirmwareStatusNotification()

    # -- helpers ----------------------------------------------------------------------------
    async def _id_tag_status(self, id_tag: str, started: datetime | None = None,
                             transaction: str | None = None) -> AuthorizationStatus:
        stored = await self.id_tag_status(id_tag, transaction, started)
        return AuthorizationStatus.invalid if stored is None else AuthorizationStatus(stored)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)
