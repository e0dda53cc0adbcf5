"""What a 2.0.1 station does when the central system calls it (handlers.py answers with these):
remote start/stop, availability, reset, unlock, trigger, device model, and smart charging with
the strict K01 checks of `profiles`."""

from __future__ import annotations

import logging

from ocpp.v201 import call

from smartcharge.clock import format_ocpp_time
from smartcharge.sim.profiles import TX, ProfileRejected
from smartcharge.sim.v201 import device_model as dm
from smartcharge.sim.v201 import profiles as v201_profiles

log = logging.getLogger("smartcharge.sim.station")

TRIGGERABLE = ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
               "TransactionEvent", "FirmwareStatusNotification", "LogStatusNotification")


class Remote201:
    """Mixin of SimStation201."""

    # ---- transactions -----------------------------------------------------------------------

    def request_start(self, id_tag: str, remote_start_id: int, evse_id: int | None,
                      profile: dict | None) -> tuple[str, str | None]:
        """RequestStartTransaction: (status, the transaction id when one already runs)."""
        if evse_id is None:
            free = [cid for cid, s in self.connectors.items()
                    if s.operative and (s.transaction is None or s.transaction.id_tag is None)]
            plugged = [cid for cid in free if self.connectors[cid].ev is not None]
            if not free:
                return "Rejected", None
            evse_id = (plugged or free)[0]
        state = self.connectors.get(evse_id)
        if state is None or not state.operative or (
                state.transaction is not None and state.transaction.id_tag is not None):
            return "Rejected", None
        if profile is not None and profile.get("charging_profile_purpose") != TX:
            return "Rejected", None
        self._deferred.append(lambda: self._spawn(
            self._remote_start(evse_id, id_tag, remote_start_id, profile)))
        return "Accepted", state.transaction.transaction_id if state.transaction else None

    async def _remote_start(self, evse_id: int, id_tag: str, remote_start_id: int,
                            profile: dict | None) -> None:
        state = self.connectors[evse_id]
        if state.ev is None and state.transaction is None:
            state.pending_remote_id_tag = id_tag      # starts when the cable goes in
            self._pending_remote_start[evse_id] = remote_start_id
            return
        if dm.as_bool(self.variables, "AuthCtrlr", "AuthorizeRemoteStart"):
            if not await self.authorize_and_start(evse_id, id_tag):
                return
        else:
            self.start_transaction(evse_id, id_tag, remote_start_id=remote_start_id)
        tx = state.transaction
        if profile is not None and tx is not None:
            # the central system could not know the id yet: the profile is for this one
            self.set_charging_profile(evse_id, {**profile, "transaction_id": tx.transaction_id})
            self.run_deferred()        # nothing to answer first here

    def _start_remote_pending(self, evse_id: int, id_tag: str) -> None:
        self.start_transaction(evse_id, id_tag,
                               remote_start_id=self._pending_remote_start.pop(evse_id, None))

    def request_stop(self, transaction_id: str) -> str:
        for cid, state in self.connectors.items():
            if state.transaction is not None and state.transaction.transaction_id == transaction_id:
                self._deferred.append(lambda cid=cid: self.stop_transaction(cid, "Remote"))
                return "Accepted"
        return "Rejected"

    def transaction_status(self, transaction_id: str | None) -> tuple[bool | None, bool]:
        """GetTransactionStatus: (ongoing, messages of it still queued)."""
        queued = [item for item in self.outbox.queued() if item.action == "TransactionEvent"]
        if transaction_id is None:
            return None, bool(queued)
        ongoing = any(s.transaction is not None and s.transaction.transaction_id == transaction_id
                      for s in self.connectors.values())
        mine = [i for i in queued
                if i.build().transaction_info["transaction_id"] == transaction_id]
        return ongoing, bool(mine)

    # ---- the station ------------------------------------------------------------------------

    def change_availability(self, operative: bool, evse_id: int | None) -> str:
        if evse_id not in (None, 0) and evse_id not in self.connectors:
            return "Rejected"
        return "Scheduled" if self.set_operative(evse_id or 0, operative) else "Accepted"

    def reset_status(self, kind: str, evse_id: int | None) -> str:
        if evse_id is not None:
            return "Rejected"          # this station resets as a whole only
        busy = any(s.transaction is not None for s in self.connectors.values())
        return "Scheduled" if kind == "OnIdle" and busy else "Accepted"

    def reset(self, kind: str) -> None:
        """After answering Reset: Immediate stops every transaction and reboots; OnIdle waits
        for the last transaction to end."""
        if kind == "OnIdle" and any(s.transaction is not None for s in self.connectors.values()):
            self._reset_when_idle = True
            return
        self.boot_reason = "RemoteReset"
        self.reboot(kind == "OnIdle", "ImmediateReset")

    def unlock(self, evse_id: int, connector_id: int) -> str:
        state = self.connectors.get(evse_id)
        if state is None or connector_id != 1:
            return "UnknownConnector"
        if state.transaction is not None and state.transaction.id_tag is not None:
            return "OngoingAuthorizedTransaction"     # F05.FR.02: stop it first
        if state.transaction is not None:
            self._deferred.append(lambda: self.stop_transaction(evse_id, "UnlockCommand"))
        return "Unlocked"

    def trigger_status(self, requested: str, evse_id: int | None) -> str:
        if evse_id not in (None, 0) and evse_id not in self.connectors:
            return "Rejected"
        if self.quirks.refuse_triggers is not None:
            return self.quirks.refuse_triggers
        return "Accepted" if requested in TRIGGERABLE else "NotImplemented"

    def trigger(self, requested: str, evse_id: int | None) -> None:
        """Send what TriggerMessage asked for (after answering it)."""
        targets = [evse_id] if evse_id else list(self.connectors)
        now = self.clock.now()
        if requested == "StatusNotification":
            for cid in targets:
                self._sent_status.pop(cid, None)
                self._notify_status(cid)
        elif requested in ("MeterValues", "TransactionEvent"):
            self.advance_to(now)
            for cid in targets:
                tx = self.connectors[cid].transaction
                if requested == "MeterValues" or tx is not None:
                    self._enqueue_meter_values(
                        cid, tx if requested == "TransactionEvent" else None, now, "Trigger")
        elif requested == "Heartbeat":
            self._spawn(self._live_call(call.Heartbeat()))
        elif requested == "BootNotification":
            self._spawn(self._live_call(call.BootNotification(
                charging_station={"model": self.spec.model, "vendor_name": self.spec.vendor},
                reason="Triggered")))
        elif requested == "FirmwareStatusNotification":
            self._spawn(self._live_call(call.FirmwareStatusNotification(status="Idle")))
        elif requested == "LogStatusNotification":
            self._spawn(self._live_call(call.LogStatusNotification(status="Idle")))

    def variables_changed(self, keys: list) -> None:
        if ("SampledDataCtrlr", "TxUpdatedInterval", None) in keys:
            self._next_sample = None
            self._wake_physics.set()

    # ---- smart charging ---------------------------------------------------------------------

    def set_charging_profile(self, evse_id: int, data: dict) -> tuple[str, dict | None]:
        """(status, statusInfo) for SetChargingProfile, after every K01 check."""
        quirks = self.quirks
        if quirks.reject_all_profiles:
            return "Rejected", None
        if quirks.keep_old_profiles:
            return "Accepted", None   # and goes on drawing what the old profiles allow
        try:
            profile = v201_profiles.parse(evse_id, data, self.clock.now())
            v201_profiles.check(profile, self.profiles.profiles, self.tx_context(evse_id))
            if quirks.reject_tx_profiles and profile.purpose == TX:
                raise ProfileRejected("this station takes no TxProfile")
            state = self.connectors.get(evse_id)
            if (profile.purpose == TX and state is not None and state.ev is not None
                    and state.ev.iso15118 and evse_id not in self.needs_sent):
                raise ProfileRejected("the car's NotifyEVChargingNeeds was not sent yet "
                                      "(K15.FR.17)", "NoChargingNeeds")
            self.install_profile(profile, replace_same_level=False)
            if profile.purpose == TX and state is not None and state.ev is not None \
                    and state.ev.iso15118:
                # the car takes the schedule and says which it will follow (K15/K17)
                self._deferred.append(lambda: self._send_ev_schedule(evse_id))
        except ProfileRejected as error:
            return self._rejected(error.reason_code, str(error))
        except (ValueError, KeyError, TypeError) as error:
            return self._rejected("InvalidValue", repr(error))
        return "Accepted", None

    def _rejected(self, reason_code: str, why: str) -> tuple[str, dict]:
        log.info("%s: profile rejected (%s): %s", self.spec.station_id, reason_code, why)
        self.rejections.append((reason_code, why))
        return "Rejected", {"reason_code": reason_code, "additional_info": why[:512]}

    def clear_profiles(self, profile_id: int | None, criteria: dict | None) -> int:
        criteria = criteria or {}
        purpose = criteria.get("charging_profile_purpose")
        if purpose == v201_profiles.STATION_MAX:
            purpose = "ChargePointMaxProfile"
        if profile_id is None and not criteria:
            return self.clear_charging_profile()
        return self.clear_charging_profile(
            profile_id=profile_id, connector_id=criteria.get("evse_id"), purpose=purpose,
            stack_level=criteria.get("stack_level"))

    def matching_profiles(self, evse_id: int | None, criterion: dict) -> dict[int, list]:
        """GetChargingProfiles: the matching profiles by EVSE."""
        purpose = criterion.get("charging_profile_purpose")
        ids = criterion.get("charging_profile_id")
        sources = criterion.get("charging_limit_source")
        found: dict[int, list] = {}
        if sources and "CSO" not in sources:
            return found      # every profile here came from the CSO
        for profile in self.profiles.profiles:
            if ((evse_id is None or profile.connector_id == evse_id)
                    and (purpose is None or v201_profiles.wire_purpose(profile) == purpose)
                    and (criterion.get("stack_level") is None
                         or profile.stack_level == criterion["stack_level"])
                    and (not ids or profile.profile_id in ids)):
                found.setdefault(profile.connector_id, []).append(profile)
        return found

    async def report_profiles(self, request_id: int, found: dict[int, list]) -> None:
        """ReportChargingProfiles, one per EVSE, `tbc` on all but the last (K09)."""
        evses = sorted(found)
        for index, evse_id in enumerate(evses):
            await self._live_call(call.ReportChargingProfiles(
                request_id=request_id, charging_limit_source="CSO", evse_id=evse_id,
                charging_profile=[v201_profiles.report(p) for p in found[evse_id]],
                tbc=True if index < len(evses) - 1 else None))

    def composite_schedule_201(self, evse_id: int, duration_s: int,
                               unit: str | None) -> dict | None:
        answer = self.composite(evse_id, duration_s, unit)
        if answer is None:
            return None
        start, schedule = answer
        return {"evse_id": evse_id, "duration": duration_s,
                "schedule_start": format_ocpp_time(start),
                "charging_rate_unit": schedule.rate_unit,
                "charging_schedule_period": [
                    {"start_period": p.start_s, "limit": p.limit,
                     **({"number_phases": p.number_phases} if p.number_phases else {})}
                    for p in schedule.periods]}
