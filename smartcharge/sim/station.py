"""A simulated OCPP 1.6J charge point with N connectors, speaking real OCPP over a real WebSocket.

What every station does (connect, boot, outbox, physics, reset) is in `core.StationCore`; this
class adds the 1.6 messages: BootNotification, StatusNotification per connector, Authorize,
StartTransaction / MeterValues / StopTransaction (the central system assigns the transaction
id), and the 1.6 configuration keys. It obeys its charging profiles: each car draws at most the
composite limit in force (unless the `ignore_profiles` quirk says this station misbehaves).
"""

from __future__ import annotations

import logging
from datetime import datetime

from ocpp.v16 import call

from smartcharge.clock import Clock, format_ocpp_time
from smartcharge.sim import configuration
from smartcharge.sim.connection import OCPP16_SUBPROTOCOL, Outgoing, WsConnection
from smartcharge.sim.core import StationCore
from smartcharge.sim.handlers import StationProtocol
from smartcharge.sim.profiles import Capabilities, ProfileStore
from smartcharge.sim.remote import RemoteControl
from smartcharge.sim.spec import (ConnectorSpec, ConnectorState, Quirks, StationSpec,
                                  Transaction)

__all__ = ["ConnectorSpec", "ConnectorState", "Quirks", "SimStation", "StationSpec",
           "Transaction"]

log = logging.getLogger("smartcharge.sim.station")


class SimStation(RemoteControl, StationCore):
    """One simulated OCPP 1.6J charge point (see `StationCore` for scripting and waiting).

    Also: `config` (the 1.6 configuration keys).
    """

    SUBPROTOCOL = OCPP16_SUBPROTOCOL

    def __init__(self, spec: StationSpec, url: str, clock: Clock, *, seed: int = 0,
                 http=None) -> None:
        super().__init__(spec, url, clock, seed=seed, http=http)
        quirks = spec.quirks
        units = {"A": ("Current",), "W": ("Power",)}.get(quirks.only_rate_unit or "",
                                                         ("Current", "Power"))
        max_periods = quirks.max_periods or spec.max_periods
        self.config = configuration.default_keys(
            connectors=len(spec.connectors), heartbeat_interval_s=spec.heartbeat_interval_s,
            meter_interval_s=spec.meter_interval_s, max_stack_level=spec.max_stack_level,
            max_periods=max_periods, rate_units=units, max_installed=spec.max_installed)
        if quirks.max_config_keys is not None:
            self.config["GetConfigurationMaxKeys"] = configuration.Key(
                str(quirks.max_config_keys), True)
        self.profiles = ProfileStore(
            tuple(c.connector_id for c in spec.connectors),
            Capabilities(spec.max_stack_level, max_periods, units, spec.max_installed),
            honours_number_phases=not quirks.ignore_number_phases)

    # ---- the hooks of StationCore -----------------------------------------------------------

    def _make_protocol(self, connection: WsConnection) -> StationProtocol:
        return StationProtocol(self, connection, self.spec.call_timeout_s)

    async def _boot(self, protocol: StationProtocol) -> None:
        while True:
            answer = await protocol.call(
                call.BootNotification(charge_point_model=self.spec.model,
                                      charge_point_vendor=self.spec.vendor,
                                      charge_point_serial_number=self.spec.station_id,
                                      firmware_version="sim-1"),
                suppress=False)
            if answer.status == "Accepted":
                if answer.interval > 0:
                    self.config["HeartbeatInterval"].value = str(answer.interval)
                self._booted_now()
                return
            # Pending or Rejected: ask again after the interval the central system gave
            await self.clock.sleep(answer.interval if answer.interval > 0 else 30)

    def _heartbeat_interval_s(self) -> int:
        return configuration.as_int(self.config, "HeartbeatInterval")

    def _heartbeat_request(self):
        return call.Heartbeat()

    def _message_attempts(self) -> tuple[int, float]:
        return (configuration.as_int(self.config, "TransactionMessageAttempts"),
                configuration.as_int(self.config, "TransactionMessageRetryInterval"))

    def _sample_interval_s(self) -> int:
        return configuration.as_int(self.config, "MeterValueSampleInterval")

    async def _authorize(self, protocol: StationProtocol, id_tag: str) -> bool:
        answer = await protocol.call(call.Authorize(id_tag=id_tag), suppress=False)
        return answer.id_tag_info.get("status") == "Accepted"

    def _report_all_statuses(self) -> None:
        for connector_id in (0, *self.connectors):
            self._notify_status(connector_id)

    def _notify_status(self, connector_id: int, at: datetime | None = None) -> None:
        if connector_id == 0:     # the charge point as a whole
            status = ("Available" if any(c.operative for c in self.connectors.values())
                      else "Unavailable")
        else:
            status = self.connectors[connector_id].status
        at = self.clock.now() if at is None else at
        timestamp = format_ocpp_time(at)
        self._enqueue(Outgoing(
            "StatusNotification",
            lambda: call.StatusNotification(connector_id=connector_id, error_code="NoError",
                                            status=status, timestamp=timestamp),
            at, durable=False))

    def start_transaction(self, connector_id: int, id_tag: str) -> Transaction:
        state = self._connector(connector_id)
        if state.transaction is not None:
            raise ValueError(f"{self.spec.station_id} connector {connector_id} is already "
                             f"in a transaction")
        now = self.clock.now()
        self.advance_to(now)
        tx = Transaction(connector_id, id_tag, int(state.register_wh), now)
        state.transaction = tx
        timestamp = format_ocpp_time(now)

        def on_result(answer) -> None:
            tx.transaction_id = answer.transaction_id
            tx.id_tag_status = answer.id_tag_info.get("status")
            if (tx.id_tag_status != "Accepted" and state.transaction is tx
                    and configuration.as_bool(self.config, "StopTransactionOnInvalidId")):
                self.stop_transaction(connector_id, "DeAuthorized")

        self._enqueue(Outgoing(
            "StartTransaction",
            lambda: call.StartTransaction(connector_id=connector_id, id_tag=id_tag,
                                          meter_start=tx.meter_start_wh, timestamp=timestamp),
            now, durable=True, on_result=on_result))
        self._update_draws(now)
        self._wake_physics.set()
        return tx

    def stop_transaction(self, connector_id: int, reason: str = "Local") -> Transaction | None:
        state = self._connector(connector_id)
        tx = state.transaction
        if tx is None:
            return None
        now = self.clock.now()
        self.advance_to(now)
        begin = self.meter_value(connector_id, tx.started_at, "Transaction.Begin")
        begin["sampledValue"] = [v for v in begin["sampledValue"]
                                 if v["measurand"] == "Energy.Active.Import.Register"]
        begin["sampledValue"][0]["value"] = str(tx.meter_start_wh)
        end = self.meter_value(connector_id, now, "Transaction.End")
        end["sampledValue"] = [v for v in end["sampledValue"]
                               if v["measurand"] == "Energy.Active.Import.Register"]
        meter_stop_wh = int(state.register_wh)
        timestamp = format_ocpp_time(now)
        self._enqueue(Outgoing(
            "StopTransaction",
            lambda: call.StopTransaction(
                meter_stop=meter_stop_wh, timestamp=timestamp,
                transaction_id=tx.transaction_id if tx.transaction_id is not None else -1,
                reason=reason, id_tag=tx.id_tag, transaction_data=[begin, end]),
            now, durable=True))
        self._transaction_ended(connector_id, tx, now)
        return tx

    def _enqueue_meter_values(self, connector_id: int, tx: Transaction | None, at: datetime,
                              context: str) -> None:
        value = self.meter_value(connector_id, at, context)

        def build():
            tx_id = None if tx is None else (tx.transaction_id
                                             if tx.transaction_id is not None else -1)
            return call.MeterValues(connector_id=connector_id, meter_value=[value],
                                    transaction_id=tx_id)
        self._enqueue(Outgoing("MeterValues", build, at, durable=tx is not None))
