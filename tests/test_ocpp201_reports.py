"""OCPP 2.0.1 inbound beside billing: Authorize, MeterValues, an EV's charging needs, external
limits, reported profiles, NotifyReport and the notifications: stored before the answer, and
published as version-neutral events."""

from __future__ import annotations

from datetime import timedelta

from ocpp.v201 import call

from smartcharge.events import (
    ChargingNeedsReported,
    ChargingProfilesReported,
    ExternalLimitCleared,
    ExternalLimitReported,
    MeterSampled,
)
from smartcharge.store_reports import reports
from tests.conftest import ID_TAG, ocpp_time
from tests.v201_fixtures import station201


def of(harness, kind):
    return [e for e in harness.events if isinstance(e, kind)]


async def test_authorize_uses_the_same_tags_as_1_6(harness):
    station = await station201(harness)
    known = await station.send(call.Authorize(id_token={"id_token": ID_TAG,
                                                         "type": "ISO14443"}))
    assert known.id_token_info["status"] == "Accepted"
    await harness.store.run(lambda tx: tx.put_id_tag("BLOCKED-1", "Blocked"))
    blocked = await station.send(call.Authorize(id_token={"id_token": "BLOCKED-1",
                                                           "type": "ISO14443"}))
    assert blocked.id_token_info["status"] == "Blocked"
    unknown = await station.send(call.Authorize(id_token={"id_token": "NOBODY",
                                                           "type": "ISO14443"}))
    assert unknown.id_token_info["status"] == "Unknown"


async def test_meter_values_in_kwh_with_a_multiplier(harness, t0):
    station = await station201(harness)
    await station.send(call.MeterValues(evse_id=2, meter_value=[{
        "timestamp": ocpp_time(t0), "sampled_value": [
            {"value": 12.5, "unit_of_measure": {"unit": "kWh"}},
            {"value": 7.2, "measurand": "Power.Active.Import",
             "unit_of_measure": {"unit": "W", "multiplier": 3}}]}]))
    sampled = of(harness, MeterSampled)
    assert (sampled[0].connector_id, sampled[0].transaction_id) == (2, None)
    assert sampled[0].energy_register_wh == 12_500 and sampled[0].power_w == 7_200
    # a re-sent copy is acknowledged and changes nothing
    await station.send(call.MeterValues(evse_id=2, meter_value=[{
        "timestamp": ocpp_time(t0), "sampled_value": [
            {"value": 7200, "measurand": "Power.Active.Import",
             "unit_of_measure": {"unit": "W"}},
            {"value": 12500, "unit_of_measure": {"unit": "Wh"}}]}]))
    assert len(of(harness, MeterSampled)) == 1


async def test_ev_charging_needs_are_stored_and_published(harness, t0):
    station = await station201(harness)
    departure = t0 + timedelta(hours=5)
    answer = await station.send(call.NotifyEVChargingNeeds(evse_id=1, charging_needs={
        "requested_energy_transfer": "AC_three_phase", "departure_time": ocpp_time(departure),
        "ac_charging_parameters": {"energy_amount": 20_000, "ev_min_current": 6,
                                   "ev_max_current": 16, "ev_max_voltage": 400}},
        max_schedule_tuples=12))
    assert answer.status == "Accepted"
    needs = of(harness, ChargingNeedsReported)[0]
    assert (needs.connector_id, needs.energy_wh, needs.departure) == (1, 20_000, departure)
    assert (needs.min_current_a, needs.max_current_a, needs.max_voltage_v) == (6, 16, 400)
    assert needs.transfer_mode == "AC_three_phase" and needs.max_schedule_periods == 12
    assert needs.transaction_id is None           # no session runs on EVSE 1
    stored = await harness.store.run(lambda tx: reports(tx, "CP1", "NotifyEVChargingNeeds"))
    assert stored[0]["payload"]["chargingNeeds"]["acChargingParameters"]["energyAmount"] \
        == 20_000


async def test_dc_needs(harness):
    station = await station201(harness)
    await station.send(call.NotifyEVChargingNeeds(evse_id=2, charging_needs={
        "requested_energy_transfer": "DC", "dc_charging_parameters": {
            "ev_max_current": 200, "ev_max_voltage": 800, "ev_max_power": 150_000,
            "energy_amount": 40_000, "state_of_charge": 30}}))
    needs = of(harness, ChargingNeedsReported)[0]
    assert (needs.max_power_w, needs.energy_wh, needs.soc_percent) == (150_000, 40_000, 30)
    assert needs.departure is None


async def test_external_limit_reported_and_cleared(harness, t0):
    station = await station201(harness)
    await station.send(call.NotifyChargingLimit(
        charging_limit={"charging_limit_source": "EMS", "is_grid_critical": True}, evse_id=1,
        charging_schedule=[{"id": 1, "charging_rate_unit": "W", "start_schedule": ocpp_time(t0),
                            "duration": 3600, "charging_schedule_period": [
                                {"start_period": 0, "limit": 7000.0},
                                {"start_period": 1800, "limit": 3500.0, "number_phases": 1}]}]))
    limit = of(harness, ExternalLimitReported)[0]
    assert (limit.connector_id, limit.source, limit.grid_critical) == (1, "EMS", True)
    schedule = limit.schedules[0]
    assert (schedule.start, schedule.unit, schedule.offsets_s, schedule.limits,
            schedule.phases) == (t0, "W", (0, 1800), (7000.0, 3500.0), (None, 1))
    await station.send(call.ClearedChargingLimit(charging_limit_source="EMS", evse_id=1))
    cleared = of(harness, ExternalLimitCleared)[0]
    assert (cleared.connector_id, cleared.source) == (1, "EMS")
    kinds = [r["kind"] for r in await harness.store.run(lambda tx: reports(tx, "CP1"))]
    assert kinds == ["NotifyChargingLimit", "ClearedChargingLimit"]


async def test_reported_charging_profiles_are_published_for_the_control_port(harness):
    station = await station201(harness)
    profile = {"id": 7, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
               "charging_profile_kind": "Relative", "charging_schedule": [{
                   "id": 1, "charging_rate_unit": "A",
                   "charging_schedule_period": [{"start_period": 0, "limit": 16.0}]}]}
    await station.send(call.ReportChargingProfiles(
        request_id=3, charging_limit_source="CSO", charging_profile=[profile], evse_id=0,
        tbc=True))
    reported = of(harness, ChargingProfilesReported)[0]
    assert (reported.request_id, reported.connector_id, reported.source,
            reported.more_to_come) == (3, 0, "CSO", True)
    assert reported.profiles[0]["chargingProfilePurpose"] == "TxDefaultProfile"


async def test_notify_report_and_notifications_are_stored(harness, t0):
    station = await station201(harness)
    await station.send(call.NotifyReport(request_id=1, generated_at=ocpp_time(t0), seq_no=0,
                                         report_data=[{
                                             "component": {"name": "SmartChargingCtrlr"},
                                             "variable": {"name": "Entries"},
                                             "variable_attribute": [{"value": "3"}]}]))
    await station.send(call.SecurityEventNotification(type="FirmwareUpdated",
                                                      timestamp=ocpp_time(t0)))
    await station.send(call.FirmwareStatusNotification(status="Installed", request_id=4))
    await station.send(call.LogStatusNotification(status="Uploaded", request_id=5))
    kinds = [r["kind"] for r in await harness.store.run(lambda tx: reports(tx, "CP1"))]
    assert kinds == ["NotifyReport", "SecurityEventNotification"]
    row = (await harness.store.run(lambda tx: tx.stations()))[0]
    assert (row["firmware_status"], row["diagnostics_status"]) == ("Installed", "Uploaded")
    history = await harness.store.run(lambda tx: tx.execute(
        "SELECT kind, status FROM station_notifications ORDER BY id").fetchall())
    assert history == [("security", "FirmwareUpdated"), ("firmware", "Installed"),
                       ("log", "Uploaded")]


async def test_other_station_messages_are_stored_and_acknowledged(harness, t0):
    station = await station201(harness)
    await station.send(call.NotifyEvent(generated_at=ocpp_time(t0), seq_no=0, event_data=[{
        "event_id": 1, "timestamp": ocpp_time(t0), "trigger": "Alerting",
        "actual_value": "true", "event_notification_type": "HardWiredNotification",
        "component": {"name": "Connector", "evse": {"id": 1, "connector_id": 1}},
        "variable": {"name": "Problem"}}]))
    await station.send(call.ReservationStatusUpdate(reservation_id=3,
                                                    reservation_update_status="Expired"))
    schedule = await station.send(call.NotifyEVChargingSchedule(
        time_base=ocpp_time(t0), evse_id=1, charging_schedule={
            "id": 1, "charging_rate_unit": "W",
            "charging_schedule_period": [{"start_period": 0, "limit": 11000.0}]}))
    assert schedule.status == "Accepted"
    await station.send(call.PublishFirmwareStatusNotification(status="Published"))
    transfer = await station.send(call.DataTransfer(vendor_id="com.example", data="x"))
    assert transfer.status == "UnknownVendorId"
    kinds = [r["kind"] for r in await harness.store.run(lambda tx: reports(tx, "CP1"))]
    assert kinds == ["NotifyEvent", "ReservationStatusUpdate", "NotifyEVChargingSchedule",
                     "PublishFirmwareStatusNotification"]
    transfers = await harness.store.run(lambda tx: tx.data_transfers("CP1"))
    assert transfers[0]["vendor_id"] == "com.example"
