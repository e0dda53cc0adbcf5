"""What a station does when the central system calls it (handlers.py answers with these)."""

from __future__ import annotations

import logging

from ocpp.v16 import call

from smartcharge.clock import format_ocpp_time
from smartcharge.sim import configuration
from smartcharge.sim.profiles import ProfileRejected, parse_profile

log = logging.getLogger("smartcharge.sim.station")


class RemoteControl:
    """Mixin of the 1.6 SimStation: remote start/stop, availability, unlock, reset, trigger,
    configuration and smart charging."""

    def remote_start(self, id_tag: str, connector_id: int | None, profile: dict | None) -> str:
        if connector_id is None:
            free = [cid for cid, s in self.connectors.items()
                    if s.transaction is None and s.operative]
            plugged = [cid for cid in free if self.connectors[cid].ev is not None]
            if not free:
                return "Rejected"
            connector_id = (plugged or free)[0]
        state = self.connectors.get(connector_id)
        if state is None or state.transaction is not None or not state.operative:
            return "Rejected"
        if profile is not None and profile.get("charging_profile_purpose") != "TxProfile":
            return "Rejected"
        self._deferred.append(
            lambda: self._spawn(self._remote_start(connector_id, id_tag, profile)))
        return "Accepted"

    async def _remote_start(self, connector_id: int, id_tag: str, profile: dict | None) -> None:
        state = self.connectors[connector_id]
        if state.ev is None:
            state.pending_remote_id_tag = id_tag     # starts when the cable goes in
            return
        if configuration.as_bool(self.config, "AuthorizeRemoteTxRequests"):
            if not await self.authorize_and_start(connector_id, id_tag):
                return
        else:
            self.start_transaction(connector_id, id_tag)
        if profile is not None:
            self.set_charging_profile(connector_id, profile)

    def remote_stop(self, transaction_id: int) -> str:
        for cid, state in self.connectors.items():
            if state.transaction is not None and state.transaction.transaction_id == transaction_id:
                self._deferred.append(lambda cid=cid: self.stop_transaction(cid, "Remote"))
                return "Accepted"
        return "Rejected"

    def change_availability(self, connector_id: int, kind: str) -> str:
        if connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        scheduled = self.set_operative(connector_id, kind == "Operative")
        if connector_id == 0:
            self._notify_status(0)
        return "Scheduled" if scheduled else "Accepted"

    def unlock(self, connector_id: int) -> str:
        if connector_id not in self.connectors:
            return "NotSupported"
        self._deferred.append(lambda: self.stop_transaction(connector_id, "UnlockCommand"))
        return "Unlocked"

    def request_reset(self, kind: str) -> None:
        """After answering Reset: a soft one lets the stops go out first, a hard one not."""
        self.reboot(kind == "Soft", "SoftReset" if kind == "Soft" else "HardReset")

    _TRIGGERABLE = ("StatusNotification", "MeterValues", "Heartbeat", "BootNotification",
                    "DiagnosticsStatusNotification", "FirmwareStatusNotification")

    def trigger_status(self, requested: str, connector_id: int | None) -> str:
        if connector_id is not None and connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        if self.quirks.refuse_triggers is not None:
            return self.quirks.refuse_triggers
        return "Accepted" if requested in self._TRIGGERABLE else "NotImplemented"

    def trigger(self, requested: str, connector_id: int | None) -> None:
        """Send what TriggerMessage asked for (after answering it)."""
        targets = list(self.connectors) if not connector_id else [connector_id]
        if requested == "StatusNotification":
            for cid in ([0] if connector_id is None else []) + targets:
                self._notify_status(cid)
        elif requested == "MeterValues":
            now = self.clock.now()
            self.advance_to(now)
            for cid in targets:
                tx = self.connectors[cid].transaction
                self._enqueue_meter_values(cid, tx, now, "Trigger")
        elif requested == "Heartbeat":
            self._spawn(self._live_call(call.Heartbeat()))
        elif requested == "BootNotification":
            self._spawn(self._live_call(call.BootNotification(
                charge_point_model=self.spec.model, charge_point_vendor=self.spec.vendor)))
        elif requested == "DiagnosticsStatusNotification":
            self._spawn(self._live_call(call.DiagnosticsStatusNotification(status="Idle")))
        elif requested == "FirmwareStatusNotification":
            self._spawn(self._live_call(call.FirmwareStatusNotification(status="Idle")))

    def configuration_changed(self, key: str) -> None:
        if key == "MeterValueSampleInterval":
            self._next_sample = None
            self._wake_physics.set()

    def set_charging_profile(self, connector_id: int, data: dict) -> str:
        quirks = self.quirks
        if quirks.reject_all_profiles:
            return "Rejected"
        if quirks.keep_old_profiles:
            return "Accepted"      # and goes on drawing what the old profiles allow
        try:
            profile = parse_profile(connector_id, data, self.clock.now())
            if quirks.reject_tx_profiles and profile.purpose == "TxProfile":
                raise ProfileRejected("this station takes no TxProfile")
            self.install_profile(profile)
        except (ProfileRejected, ValueError, KeyError, TypeError) as error:
            log.info("%s: profile rejected: %s", self.spec.station_id, error)
            return "Rejected"
        return "Accepted"

    def composite_schedule(self, connector_id: int, duration_s: int,
                           unit: str | None) -> tuple[str, dict] | None:
        answer = self.composite(connector_id, duration_s, unit)
        if answer is None:
            return None
        start, schedule = answer
        return format_ocpp_time(start), {
            "duration": duration_s,
            "start_schedule": format_ocpp_time(start),
            "charging_rate_unit": schedule.rate_unit,
            "charging_schedule_period": [
                {"start_period": p.start_s, "limit": p.limit, "number_phases": p.number_phases}
                for p in schedule.periods],
        }
