"""OCPP 2.0.1 transactions as a station reports them: one TransactionEvent per thing that
happens (Started, Updated, Ended), numbered by `seqNo` from 0, the transaction id made by the
station, meter values inside the events with their reading contexts, and `offline = true` on
events that happened while the station was not connected (they keep their own timestamps).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from random import Random

from ocpp.v201 import call

from smartcharge.clock import format_ocpp_time
from smartcharge.sim.spec import Transaction

# 1.6 stop reasons (the version-neutral station's words) -> (triggerReason, stoppedReason)
STOP_REASONS = {
    "EVDisconnected": ("EVDeparted", "EVDisconnected"),
    "Local": ("StopAuthorized", "Local"),
    "Remote": ("RemoteStop", "Remote"),
    "DeAuthorized": ("Deauthorized", "DeAuthorized"),
    "ImmediateReset": ("ResetCommand", "ImmediateReset"),
    "Reboot": ("ResetCommand", "Reboot"),
    "UnlockCommand": ("UnlockCommand", "Other"),
}
# the connector's state in 1.6 words -> (connectorStatus, chargingState of a transaction)
STATES = {
    "Available": ("Available", None),
    "Unavailable": ("Unavailable", None),
    "Preparing": ("Occupied", "EVConnected"),
    "Finishing": ("Occupied", "EVConnected"),
    "Charging": ("Occupied", "Charging"),
    "SuspendedEV": ("Occupied", "SuspendedEV"),
    "SuspendedEVSE": ("Occupied", "SuspendedEVSE"),
}


@dataclass
class Tx201(Transaction):
    """A 2.0.1 transaction: `id_tag` is None until the driver's token is known."""

    seq_no: int = 0                        # the next event's seqNo
    charging_state: str | None = None
    remote_start_id: int | None = None

    def next_seq_no(self) -> int:
        number, self.seq_no = self.seq_no, self.seq_no + 1
        return number


def new_transaction_id(rng: Random) -> str:
    """A station-made id (string, at most 36 characters): a UUID from the station's seeded
    generator, so a run is the same every time."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def id_token(tag: str, kind: str = "ISO14443") -> dict:
    return {"id_token": tag, "type": kind}


def meter_value(reading: dict, measurands: list[str]) -> dict:
    """A 2.0.1 MeterValue from the shared meter reading (1.6 shape: string values, `unit`):
    numbers, `unitOfMeasure`, only the measurands configured for this kind of event."""
    sampled = []
    for value in reading["sampledValue"]:
        if value["measurand"] not in measurands:
            continue
        out = {"value": float(value["value"]), "context": value["context"],
               "measurand": value["measurand"], "location": value["location"],
               "unit_of_measure": {"unit": value["unit"]}}
        if "phase" in value:
            out["phase"] = value["phase"]
        sampled.append(out)
    return {"timestamp": reading["timestamp"], "sampled_value": sampled}


def event(tx: Tx201, event_type: str, trigger_reason: str, at: datetime, *, offline: bool,
          meter_values: list[dict] | None = None, with_token: bool = False,
          stopped_reason: str | None = None) -> call.TransactionEvent:
    """One TransactionEvent of `tx`, taking the next seqNo."""
    info = {"transaction_id": tx.transaction_id}
    if tx.charging_state is not None:
        info["charging_state"] = tx.charging_state
    if stopped_reason is not None:
        info["stopped_reason"] = stopped_reason
    if tx.remote_start_id is not None and event_type == "Started":
        info["remote_start_id"] = tx.remote_start_id
    return call.TransactionEvent(
        event_type=event_type, timestamp=format_ocpp_time(at), trigger_reason=trigger_reason,
        seq_no=tx.next_seq_no(), transaction_info=info, meter_value=meter_values or None,
        offline=True if offline else None,
        evse={"id": tx.connector_id, "connector_id": 1} if event_type == "Started" else None,
        id_token=id_token(tx.id_tag) if with_token and tx.id_tag is not None else None)
