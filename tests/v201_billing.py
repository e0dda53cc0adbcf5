"""Helpers for 2.0.1 billing tests: TransactionEvents as a station sends them."""

from __future__ import annotations

from datetime import datetime

from ocpp.v201 import call

from tests.conftest import ID_TAG, ocpp_time

CONTEXT = {"Started": "Transaction.Begin", "Updated": "Sample.Periodic",
           "Ended": "Transaction.End"}
TRIGGER = {"Started": "CablePluggedIn", "Updated": "MeterValuePeriodic",
           "Ended": "EVCommunicationLost"}


def tx_event(event_type: str, ref: str, seq_no: int, at: datetime, *,
             register_wh: float | None = None, evse: int | None = 1,
             id_tag: str | None = ID_TAG, offline: bool = False, kwh: bool = False,
             trigger: str | None = None, stopped_reason: str | None = None,
             context: str | None = None) -> call.TransactionEvent:
    """One TransactionEvent; `register_wh` None: no meterValue; `kwh`: the register in kWh."""
    meter_value = None
    if register_wh is not None:
        sampled = {"value": register_wh / 1000 if kwh else register_wh,
                   "context": context or CONTEXT[event_type],
                   "measurand": "Energy.Active.Import.Register",
                   "unit_of_measure": {"unit": "kWh" if kwh else "Wh"}}
        meter_value = [{"timestamp": ocpp_time(at), "sampled_value": [sampled]}]
    info = {"transaction_id": ref}
    if event_type == "Ended":
        info["stopped_reason"] = stopped_reason or "EVDisconnected"
    return call.TransactionEvent(
        event_type=event_type, timestamp=ocpp_time(at),
        trigger_reason=trigger or TRIGGER[event_type], seq_no=seq_no, transaction_info=info,
        meter_value=meter_value, offline=offline or None,
        evse={"id": evse, "connector_id": 1} if evse is not None else None,
        id_token={"id_token": id_tag, "type": "ISO14443"} if id_tag else None)


async def sessions(harness):
    return await harness.store.run(lambda tx: tx.sessions())
