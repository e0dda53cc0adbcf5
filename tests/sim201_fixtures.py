"""A tiny independent OCPP 2.0.1 central system (the `ocpp` library's v201 server side on
aiohttp) to test the simulated 2.0.1 station against, as `sim_fixtures.MiniCentralSystem` does
for 1.6. It records every inbound message (snake_case payloads) and answers as a lenient CSMS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action

from sim_fixtures import ACCEPTED_TAGS, MiniCsmsBase, Recording, serving


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Link201(Recording, ChargePoint):

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

    @on(Action.notify_ev_charging_schedule)
    def on_ev_schedule(self, **payload):
        self._record("NotifyEVChargingSchedule", **payload)
        return call_result.NotifyEVChargingSchedule(status="Accepted")

    @on(Action.report_charging_profiles)
    def on_report(self, **payload):
        self._record("ReportChargingProfiles", **payload)
        return call_result.ReportChargingProfiles()

    @on(Action.firmware_status_notification)
    def on_firmware(self, **payload):
        self._record("FirmwareStatusNotification", **payload)
        return call_result.FirmwareStatusNotification()


@dataclass
class MiniCsms201(MiniCsmsBase):
    PROTOCOL = "ocpp2.0.1"
    LINK = Link201


def mini_csms_201(**kwargs):
    return serving(MiniCsms201(**kwargs))
