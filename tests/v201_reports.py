"""What a 2.0.1 test station reports beside its transaction: register readings in Updated
events, an EV's needs, external limits (NotifyChargingLimit / ClearedChargingLimit), sent
through the `ocpp` library's own v201 calls."""

from __future__ import annotations

from datetime import datetime

from ocpp.v201 import call

from smartcharge.clock import format_ocpp_time


async def send_register(station, evse_id: int, tx: str, seq_no: int, register_wh: float,
                        at: datetime, event_type: str = "Updated"):
    """A TransactionEvent carrying the energy register (Sample.Periodic)."""
    return await station.call(call.TransactionEvent(
        event_type=event_type, timestamp=format_ocpp_time(at),
        trigger_reason="MeterValuePeriodic", seq_no=seq_no,
        transaction_info={"transaction_id": tx, "charging_state": "Charging"},
        evse={"id": evse_id, "connector_id": 1},
        meter_value=[{"timestamp": format_ocpp_time(at), "sampled_value": [
            {"value": float(register_wh), "context": "Sample.Periodic",
             "measurand": "Energy.Active.Import.Register"}]}]))


async def notify_limit(station, evse_id: int, source: str, limit_a: float, start: datetime,
                       duration_s: int):
    """An external limit on an EVSE: `limit_a` per phase from `start` for `duration_s`."""
    return await station.call(call.NotifyChargingLimit(
        charging_limit={"charging_limit_source": source, "is_grid_critical": True},
        evse_id=evse_id, charging_schedule=[{
            "id": 1, "charging_rate_unit": "A", "start_schedule": format_ocpp_time(start),
            "duration": duration_s,
            "charging_schedule_period": [{"start_period": 0, "limit": limit_a}]}]))


async def clear_limit(station, evse_id: int, source: str):
    return await station.call(call.ClearedChargingLimit(charging_limit_source=source,
                                                        evse_id=evse_id))
