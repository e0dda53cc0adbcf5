"""OCPP 2.0.1 reports beside billing: an EV's charging needs (ISO 15118), external limits, the
profiles a station holds, its device model, security / firmware / log notifications.

Each is stored (table `station_reports`, or the station's notification history) before it is
answered, then published as a version-neutral domain event where something may act on it
(`ChargingNeedsReported`, `ExternalLimitReported`, `ExternalLimitCleared`,
`ChargingProfilesReported`). Nothing here decides what the site does with them.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import (
    Action,
    DataTransferStatusEnumType,
    GenericStatusEnumType,
    NotifyEVChargingNeedsStatusEnumType,
)

from smartcharge import events_json
from smartcharge.clock import parse_ocpp_time
from smartcharge.events import (
    ChargingNeedsReported,
    ChargingProfilesReported,
    ExternalLimitCleared,
    ExternalLimitReported,
    ReportedSchedule,
)
from smartcharge.store_ops import StoreOp
from smartcharge.store_reports import insert_report

log = logging.getLogger(__name__)


class NotificationHandlers:
    """Mixin of the 2.0.1 adapter (needs `self._ctx`, `self.id`)."""

    async def _report(self, kind: str, payload: dict, connector_id: int | None = None,
                      with_session: bool = False, event_for=None) -> tuple[datetime, Any]:
        """Store one report as sent; returns when, and our session open on the EVSE (when
        `with_session` and there is exactly one) - or, given `event_for(now, session)`, the
        version-neutral event it makes, stored beside it in the same commit (the site rebuilds
        needs and external limits from those after a restart: site/restore.py)."""
        now = self._ctx.clock.now()

        def write(tx):
            transaction_id = None
            if with_session and connector_id:
                running = tx.open_sessions(self.id, connector_id)
                transaction_id = running[0].transaction_id if len(running) == 1 else None
            event = None if event_for is None else event_for(now, transaction_id)
            insert_report(tx, self.id, kind, snake_to_camel_case(payload), now,
                          connector_id=connector_id, transaction_id=transaction_id,
                          event=None if event is None else events_json.to_json(event))
            return transaction_id if event_for is None else event

        return now, await self._ctx.store.run(write)

    @on(Action.notify_ev_charging_needs)
    async def on_notify_ev_charging_needs(self, charging_needs: dict, evse_id: int,
                                          **optional: Any
                                          ) -> call_result.NotifyEVChargingNeeds:
        _, event = await self._report(
            "NotifyEVChargingNeeds", {"chargingNeeds": charging_needs, "evseId": evse_id,
                                      **optional}, evse_id, with_session=True,
            event_for=lambda now, transaction_id: charging_needs_event(
                self.id, evse_id, transaction_id, now, charging_needs,
                optional.get("max_schedule_tuples")))
        log.info("station %s: EV charging needs on EVSE %d: %s Wh by %s", self.id, evse_id,
                 event.energy_wh, event.departure)
        self._ctx.events.publish(event)
        return call_result.NotifyEVChargingNeeds(
            status=NotifyEVChargingNeedsStatusEnumType.accepted)

    @on(Action.notify_charging_limit)
    async def on_notify_charging_limit(self, charging_limit: dict, **optional: Any
                                       ) -> call_result.NotifyChargingLimit:
        evse_id = _limited_evse(optional.get("evse_id"))
        schedules = tuple(reported_schedule(s) for s in optional.get("charging_schedule") or ())
        source = charging_limit["charging_limit_source"]
        _, event = await self._report(
            "NotifyChargingLimit", {"chargingLimit": charging_limit, **optional}, evse_id,
            event_for=lambda now, _: ExternalLimitReported(
                self.id, evse_id, now, source, charging_limit.get("is_grid_critical"),
                schedules))
        log.info("station %s: external limit from %s on EVSE %s (%d schedules)", self.id,
                 source, evse_id, len(schedules))
        self._ctx.events.publish(event)
        return call_result.NotifyChargingLimit()

    @on(Action.cleared_charging_limit)
    async def on_cleared_charging_limit(self, charging_limit_source: str, **optional: Any
                                        ) -> call_result.ClearedChargingLimit:
        evse_id = _limited_evse(optional.get("evse_id"))
        _, event = await self._report(
            "ClearedChargingLimit", {"chargingLimitSource": charging_limit_source, **optional},
            evse_id, event_for=lambda now, _: ExternalLimitCleared(self.id, evse_id, now,
                                                                 charging_limit_source))
        log.info("station %s: external limit from %s cleared on EVSE %s", self.id,
                 charging_limit_source, evse_id)
        self._ctx.events.publish(event)
        return call_result.ClearedChargingLimit()

    @on(Action.report_charging_profiles)
    async def on_report_charging_profiles(self, request_id: int, charging_limit_source: str,
                                          charging_profile: list, evse_id: int,
                                          **optional: Any
                                          ) -> call_result.ReportChargingProfiles:
        payload = {"requestId": request_id, "chargingLimitSource": charging_limit_source,
                   "chargingProfile": charging_profile, "evseId": evse_id, **optional}
        now, _ = await self._report("ReportChargingProfiles", payload, evse_id)
        self._ctx.events.publish(ChargingProfilesReported(
            self.id, evse_id, now, request_id, charging_limit_source,
            tuple(snake_to_camel_case(p) for p in charging_profile),
            bool(optional.get("tbc", False))))
        return call_result.ReportChargingProfiles()

    @on(Action.notify_report)
    async def on_notify_report(self, request_id: int, generated_at: str, seq_no: int,
                               **optional: Any) -> call_result.NotifyReport:
        await self._report("NotifyReport", {"requestId": request_id,
                                            "generatedAt": generated_at, "seqNo": seq_no,
                                            **optional})
        return call_result.NotifyReport()

    # -- kept as sent, nothing more: answered so the station does not retry -------------------
    @on(Action.notify_event)
    async def on_notify_event(self, **payload: Any) -> call_result.NotifyEvent:
        await self._report("NotifyEvent", payload)   # 2.0.1 reports faults this way
        return call_result.NotifyEvent()

    @on(Action.notify_monitoring_report)
    async def on_notify_monitoring_report(self, **payload: Any
                                          ) -> call_result.NotifyMonitoringReport:
        await self._report("NotifyMonitoringReport", payload)
        return call_result.NotifyMonitoringReport()

    @on(Action.notify_customer_information)
    async def on_notify_customer_information(self, **payload: Any
                                             ) -> call_result.NotifyCustomerInformation:
        await self._report("NotifyCustomerInformation", payload)
        return call_result.NotifyCustomerInformation()

    @on(Action.notify_display_messages)
    async def on_notify_display_messages(self, **payload: Any
                                         ) -> call_result.NotifyDisplayMessages:
        await self._report("NotifyDisplayMessages", payload)
        return call_result.NotifyDisplayMessages()

    @on(Action.reservation_status_update)
    async def on_reservation_status_update(self, **payload: Any
                                           ) -> call_result.ReservationStatusUpdate:
        await self._report("ReservationStatusUpdate", payload)
        return call_result.ReservationStatusUpdate()

    @on(Action.notify_ev_charging_schedule)
    async def on_notify_ev_charging_schedule(self, evse_id: int, **payload: Any
                                             ) -> call_result.NotifyEVChargingSchedule:
        # the schedule an ISO 15118 car chose from what we offered: kept for review
        await self._report("NotifyEVChargingSchedule", {"evse_id": evse_id, **payload},
                           evse_id, with_session=True)
        return call_result.NotifyEVChargingSchedule(status=GenericStatusEnumType.accepted)

    @on(Action.publish_firmware_status_notification)
    async def on_publish_firmware_status(self, **payload: Any
                                         ) -> call_result.PublishFirmwareStatusNotification:
        await self._report("PublishFirmwareStatusNotification", payload)
        return call_result.PublishFirmwareStatusNotification()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, message_id: str | None = None,
                               data: Any = None, custom_data: dict | None = None
                               ) -> call_result.DataTransfer:
        now = self._ctx.clock.now()
        text = data if data is None or isinstance(data, str) else json.dumps(data)
        await self._ctx.store.run(StoreOp("insert_data_transfer", self.id, vendor_id,
                                          message_id, text, now))
        # we implement no vendor extension: the spec's answer for that is UnknownVendorId
        return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_vendor_id)

    @on(Action.security_event_notification)
    async def on_security_event(self, type: str, timestamp: str, **optional: Any
                                ) -> call_result.SecurityEventNotification:
        await self._report("SecurityEventNotification",
                           {"type": type, "timestamp": timestamp, **optional})
        await self.record_notification("security", type)
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, status: str, **optional: Any
                                 ) -> call_result.FirmwareStatusNotification:
        await self.record_notification("firmware", status)
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status(self, status: str, **optional: Any
                            ) -> call_result.LogStatusNotification:
        await self.record_notification("log", status)
        return call_result.LogStatusNotification()


def _limited_evse(evse_id: int | None) -> int | None:
    """The EVSE an external limit names; None: the whole station - also for evseId 0, how
    many stations write it (2.0.1's evseId 0 of an external constraint is "an overall limit for
    the whole Charging Station"; the event's None: it was stored and applied to no EVSE)."""
    return evse_id or None


def charging_needs_event(station_id: str, evse_id: int, transaction_id: int | None,
                         at: datetime, needs: dict,
                         max_periods: int | None) -> ChargingNeedsReported:
    """2.0.1 ChargingNeedsType (snake_case) -> the version-neutral event (W, Wh, A, V, %)."""
    ac = needs.get("ac_charging_parameters") or {}
    dc = needs.get("dc_charging_parameters") or {}
    departure = needs.get("departure_time")
    return ChargingNeedsReported(
        station_id, evse_id, transaction_id, at, needs["requested_energy_transfer"],
        departure=parse_ocpp_time(departure) if departure else None,
        energy_wh=_number(ac.get("energy_amount", dc.get("energy_amount"))),
        max_current_a=_number(ac.get("ev_max_current", dc.get("ev_max_current"))),
        min_current_a=_number(ac.get("ev_min_current")),
        max_power_w=_number(dc.get("ev_max_power")),
        max_voltage_v=_number(ac.get("ev_max_voltage", dc.get("ev_max_voltage"))),
        soc_percent=_number(dc.get("state_of_charge")),
        max_schedule_periods=max_periods)


def reported_schedule(schedule: dict) -> ReportedSchedule:
    """2.0.1 ChargingScheduleType (snake_case) -> the version-neutral schedule."""
    periods = schedule.get("charging_schedule_period") or []
    start = schedule.get("start_schedule")
    return ReportedSchedule(
        start=parse_ocpp_time(start) if start else None, duration_s=schedule.get("duration"),
        unit=schedule["charging_rate_unit"],
        offsets_s=tuple(int(p["start_period"]) for p in periods),
        limits=tuple(float(p["limit"]) for p in periods),
        phases=tuple(p.get("number_phases") for p in periods))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
