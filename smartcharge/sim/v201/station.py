"""A simulated OCPP 2.0.1 charging station: one connector per EVSE (evseId = the sim's connector
id), speaking 2.0.1 over a real WebSocket that offers only `ocpp2.0.1`.

It boots (BootNotification, reason PowerUp, then RemoteReset after a reset), heartbeats at the
interval the central system gave, reports each EVSE's connectorStatus, authorizes, and reports
each transaction as TransactionEvents (see `transactions`). A car that speaks ISO 15118 makes the
station send NotifyEVChargingNeeds once its transaction has started; until that went out the
station refuses a TxProfile for that EVSE (K15.FR.17). Everything else (outbox, physics,
composite limit) is the version-neutral `StationCore`.
"""

from __future__ import annotations

from datetime import datetime

from ocpp.v201 import call

from smartcharge.clock import Clock, format_ocpp_time
from smartcharge.sim.connection import OCPP201_SUBPROTOCOL, Outgoing, WsConnection
from smartcharge.sim.core import StationCore
from smartcharge.sim.profiles import Capabilities, ProfileStore
from smartcharge.sim.spec import StationSpec
from smartcharge.sim.v201 import device_model as dm
from smartcharge.sim.v201.handlers import StationProtocol201
from smartcharge.sim.v201.remote import Remote201
from smartcharge.sim.v201.transactions import (STATES, STOP_REASONS, Tx201, event, id_token,
                                               meter_value, new_transaction_id)


class SimStation201(Remote201, StationCore):
    """One simulated OCPP 2.0.1 station (see `StationCore` for scripting and waiting).

    Also: `variables` (the device model), `rejections` ((reasonCode, why) of every profile it
    refused), `needs_sent` (EVSEs whose car's NotifyEVChargingNeeds went out).
    """

    SUBPROTOCOL = OCPP201_SUBPROTOCOL

    def __init__(self, spec: StationSpec, url: str, clock: Clock, *, seed: int = 0,
                 http=None) -> None:
        super().__init__(spec, url, clock, seed=seed, http=http)
        quirks = spec.quirks
        units = (quirks.only_rate_unit,) if quirks.only_rate_unit else ("A", "W")
        max_periods = quirks.max_periods or spec.max_periods
        self.variables = dm.default_variables(
            heartbeat_interval_s=spec.heartbeat_interval_s, meter_interval_s=spec.meter_interval_s,
            max_stack_level=spec.max_stack_level, max_periods=max_periods, rate_units=units,
            max_installed=spec.max_installed,
            tx_start_point="EVConnected" if quirks.late_id_token else "PowerPathClosed")
        self.profiles = ProfileStore(
            tuple(c.connector_id for c in spec.connectors),
            Capabilities(spec.max_stack_level, max_periods,
                         tuple({"A": "Current", "W": "Power"}[u] for u in units),
                         spec.max_installed),
            honours_number_phases=not spec.quirks.ignore_number_phases)
        self.rejections: list[tuple[str, str]] = []
        self.needs_sent: set[int] = set()
        self.boot_reason = "PowerUp"
        self._sent_status: dict[int, str] = {}
        self._reset_when_idle = False
        self._pending_remote_start: dict[int, int] = {}

    # ---- the hooks of StationCore -----------------------------------------------------------

    def _make_protocol(self, connection: WsConnection) -> StationProtocol201:
        return StationProtocol201(self, connection, self.spec.call_timeout_s)

    async def _boot(self, protocol: StationProtocol201) -> None:
        while True:
            answer = await protocol.call(call.BootNotification(
                charging_station={"model": self.spec.model, "vendor_name": self.spec.vendor,
                                  "serial_number": self.spec.station_id,
                                  "firmware_version": "sim-2.0.1"},
                reason=self.boot_reason), suppress=False)
            if answer.status == "Accepted":
                if answer.interval > 0:
                    self.variables[("OCPPCommCtrlr", "HeartbeatInterval", None)].value = str(
                        answer.interval)
                self.boot_reason = "PowerUp"
                self._booted_now()
                return
            await self.clock.sleep(answer.interval if answer.interval > 0 else 30)

    def _obeys_profiles(self) -> bool:
        # smart charging turned off: every profile is ignored (it still answers Accepted - the
        # worst a central system can meet)
        return super()._obeys_profiles() and dm.as_bool(self.variables, "SmartChargingCtrlr",
                                                        "Enabled")

    def _heartbeat_interval_s(self) -> int:
        return dm.as_int(self.variables, "OCPPCommCtrlr", "HeartbeatInterval")

    def _heartbeat_request(self):
        return call.Heartbeat()

    def _message_attempts(self) -> tuple[int, float]:
        return (dm.as_int(self.variables, "OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"),
                dm.as_int(self.variables, "OCPPCommCtrlr", "MessageAttemptInterval",
                          "TransactionEvent"))

    def _sample_interval_s(self) -> int:
        return dm.as_int(self.variables, "SampledDataCtrlr", "TxUpdatedInterval")

    async def _authorize(self, protocol: StationProtocol201, id_tag: str) -> bool:
        answer = await protocol.call(call.Authorize(id_token=id_token(id_tag)), suppress=False)
        return answer.id_token_info.get("status") == "Accepted"

    def _report_all_statuses(self) -> None:
        self._sent_status.clear()
        for evse_id in self.connectors:
            self._notify_status(evse_id)

    def _notify_status(self, evse_id: int, at: datetime | None = None) -> None:
        if evse_id == 0:
            for other in self.connectors:
                self._notify_status(other, at)
            return
        at = self.clock.now() if at is None else at
        state = self.connectors[evse_id]
        connector_status, charging_state = STATES[state.status]
        if self._sent_status.get(evse_id) != connector_status and self.booted.is_set():
            self._sent_status[evse_id] = connector_status
            request = call.StatusNotification(
                timestamp=format_ocpp_time(at), connector_status=connector_status,
                evse_id=evse_id, connector_id=1)
            self._enqueue(Outgoing("StatusNotification", lambda: request, at, durable=False))
        tx = state.transaction
        if tx is not None and charging_state is not None and charging_state != tx.charging_state:
            tx.charging_state = charging_state
            self._event(tx, "Updated", "ChargingStateChanged", at)

    def _cable_plugged(self, evse_id: int) -> None:
        state = self.connectors[evse_id]
        if self.quirks.late_id_token and state.operative and state.transaction is None:
            # TxStartPoint EVConnected: the transaction starts now, the token comes later
            self._begin(evse_id, None, "CablePluggedIn")

    def _authorization_refused(self, evse_id: int) -> None:
        state = self.connectors[evse_id]
        if state.transaction is not None and state.transaction.id_tag is None:
            self.stop_transaction(evse_id, "DeAuthorized")

    # ---- transactions -----------------------------------------------------------------------

    def start_transaction(self, evse_id: int, id_tag: str, *,
                          remote_start_id: int | None = None) -> Tx201:
        state = self._connector(evse_id)
        tx = state.transaction
        if tx is not None and tx.id_tag is None:
            # the transaction began at plug-in; now the driver is known
            tx.id_tag = id_tag
            self._event(tx, "Updated", "RemoteStart" if remote_start_id is not None
                        else "Authorized", self.clock.now(), with_token=True)
            return tx
        if tx is not None:
            raise ValueError(f"{self.spec.station_id} EVSE {evse_id} is already in a "
                             f"transaction")
        return self._begin(evse_id, id_tag,
                           "RemoteStart" if remote_start_id is not None else "Authorized",
                           remote_start_id=remote_start_id)

    def _begin(self, evse_id: int, id_tag: str | None, trigger_reason: str, *,
               remote_start_id: int | None = None) -> Tx201:
        state = self.connectors[evse_id]
        now = self.clock.now()
        self.advance_to(now)
        tx = Tx201(evse_id, id_tag, int(state.register_wh), now,
                   transaction_id=new_transaction_id(self.rng), remote_start_id=remote_start_id,
                   charging_state="EVConnected" if state.ev is not None else None)
        state.transaction = tx
        begin = self._meter(evse_id, now, "Transaction.Begin", "TxStartedMeasurands")
        self._event(tx, "Started", trigger_reason, now, meter_values=[begin],
                    with_token=id_tag is not None)
        if state.ev is not None and state.ev.iso15118:
            self._send_needs(evse_id, now)
        self._update_draws(now)
        self._wake_physics.set()
        return tx

    def stop_transaction(self, evse_id: int, reason: str = "Local") -> Tx201 | None:
        state = self._connector(evse_id)
        tx = state.transaction
        if tx is None:
            return None
        now = self.clock.now()
        self.advance_to(now)
        trigger_reason, stopped_reason = STOP_REASONS.get(reason, ("AbnormalCondition", "Other"))
        end = self._meter(evse_id, now, "Transaction.End", "TxEndedMeasurands")
        tx.charging_state = "EVConnected" if state.ev is not None and reason != "EVDisconnected" \
            else "Idle"
        self._event(tx, "Ended", trigger_reason, now, meter_values=[end],
                    stopped_reason=stopped_reason)
        self.needs_sent.discard(evse_id)
        self._transaction_ended(evse_id, tx, now)
        if self._reset_when_idle and all(s.transaction is None for s in self.connectors.values()):
            self._reset_when_idle = False
            self.boot_reason = "ScheduledReset"
            self.reboot(True, "Reboot")
        return tx

    def _event(self, tx: Tx201, event_type: str, trigger_reason: str, at: datetime,
               **details) -> None:
        request = event(tx, event_type, trigger_reason, at, offline=not self.booted.is_set(),
                        **details)
        self._enqueue(Outgoing("TransactionEvent", lambda: request, at, durable=True,
                               on_result=lambda answer: self._event_answered(tx, answer)))

    def _event_answered(self, tx: Tx201, answer) -> None:
        info = answer.id_token_info or {}
        tx.id_tag_status = info.get("status", tx.id_tag_status)
        state = self.connectors[tx.connector_id]
        if (info.get("status") not in (None, "Accepted") and state.transaction is tx
                and dm.as_bool(self.variables, "TxCtrlr", "StopTxOnInvalidId")):
            self.stop_transaction(tx.connector_id, "DeAuthorized")

    def _meter(self, evse_id: int, at: datetime, context: str, measurands_of: str) -> dict:
        measurands = self.variables[("SampledDataCtrlr", measurands_of, None)].value.split(",")
        return meter_value(self.meter_value(evse_id, at, context), measurands)

    def _enqueue_meter_values(self, evse_id: int, tx: Tx201 | None, at: datetime,
                              context: str) -> None:
        value = self._meter(evse_id, at, context, "TxUpdatedMeasurands")
        if tx is not None:
            trigger = "MeterValuePeriodic" if context == "Sample.Periodic" else "Trigger"
            self._event(tx, "Updated", trigger, at, meter_values=[value])
            return
        request = call.MeterValues(evse_id=evse_id, meter_value=[value])
        self._enqueue(Outgoing("MeterValues", lambda: request, at, durable=False))

    # ---- ISO 15118 --------------------------------------------------------------------------

    def _send_ev_schedule(self, evse_id: int) -> None:
        """NotifyEVChargingSchedule: the schedule the car will follow, the composite limit
        from now to its departure (at most a day)."""
        state = self.connectors[evse_id]
        if state.ev is None or state.transaction is None:
            return
        now = self.clock.now()
        departure = state.ev.departure
        duration_s = 86_400 if departure is None else int(
            min(max((departure - now).total_seconds(), 60), 86_400))
        schedule = self.composite_schedule_201(evse_id, duration_s, "A")
        request = call.NotifyEVChargingSchedule(
            time_base=schedule["schedule_start"], evse_id=evse_id,
            charging_schedule={"id": 1, "charging_rate_unit": schedule["charging_rate_unit"],
                               "duration": duration_s,
                               "charging_schedule_period": schedule["charging_schedule_period"]})
        self._enqueue(Outgoing("NotifyEVChargingSchedule", lambda: request, now, durable=False))

    def _send_needs(self, evse_id: int, at: datetime) -> None:
        """NotifyEVChargingNeeds as the car told them over ISO 15118 (queued behind the
        transaction's Started event, so the central system knows the transaction first)."""
        state = self.connectors[evse_id]
        ev = state.ev
        phases = self._phases_in_use(state)
        max_current_a = min(ev.max_power_w() / (self.spec.voltage_v * phases),
                            state.spec.max_current_a)
        needs = {
            "requested_energy_transfer": "AC_three_phase" if phases == 3 else "AC_single_phase",
            "ac_charging_parameters": {
                "energy_amount": int(ev.energy_need_wh),
                "ev_min_current": int(ev.min_current_a),
                "ev_max_current": int(max_current_a),
                "ev_max_voltage": int(self.spec.voltage_v)},
        }
        if ev.departure is not None:
            needs["departure_time"] = format_ocpp_time(ev.departure)
        request = call.NotifyEVChargingNeeds(charging_needs=needs, evse_id=evse_id)

        def build():
            self.needs_sent.add(evse_id)   # from now on a TxProfile is welcome (K15.FR.17)
            return request
        self._enqueue(Outgoing("NotifyEVChargingNeeds", build, at, durable=False))

