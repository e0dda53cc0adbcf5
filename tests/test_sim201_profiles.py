"""Smart charging on the simulated 2.0.1 station, over the wire from the independent mini CSMS:
the Part 2 K01 rules a strict station enforces (each rejection with its statusInfo reasonCode),
the composite limit the car obeys, GetCompositeSchedule, GetChargingProfiles ->
ReportChargingProfiles, ClearChargingProfile, and ISO 15118 (NotifyEVChargingNeeds; a TxProfile
before it is refused, K15.FR.17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ocpp.v201 import call

from sim201_fixtures import mini_csms_201
from sim_fixtures import running_station, station_spec
from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.sim.ev import SimEV

START = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
V = 230.0


def spec201(**overrides):
    return station_spec("CS1", ocpp_version="2.0.1", **overrides)


def profile(pid, purpose, limit, *, stack=0, kind="Relative", start=None, periods=None,
            tx=None, valid_from=None, valid_to=None, unit="A"):
    schedule = {"id": pid, "charging_rate_unit": unit,
                "charging_schedule_period": periods or [{"start_period": 0, "limit": limit}]}
    if start is not None:
        schedule["start_schedule"] = format_ocpp_time(start)
    out = {"id": pid, "stack_level": stack, "charging_profile_purpose": purpose,
           "charging_profile_kind": kind, "charging_schedule": [schedule]}
    for key, value in (("transaction_id", tx), ("valid_from", valid_from),
                       ("valid_to", valid_to)):
        if value is not None:
            out[key] = value if isinstance(value, str) else format_ocpp_time(value)
    return out


async def send(link, evse_id, data):
    answer = await link.call(call.SetChargingProfile(evse_id=evse_id, charging_profile=data))
    return answer.status, (answer.status_info or {}).get("reason_code")


async def test_k01_rules_reject_with_a_reason_and_good_profiles_install():
    clock = AcceleratedClock(START, speed=60)
    async with mini_csms_201() as csms, \
            running_station(spec201(max_periods=3), csms.url, clock) as station:
        await station.booted.wait()
        await station.plug_in(1, SimEV(capacity_wh=80_000, soc=0.2), "TAG-OK")
        tx_id = station.connectors[1].transaction.transaction_id
        link = csms.links["CS1"]
        now = clock.now()
        later = now + timedelta(hours=1)
        cases = [
            # K01.FR.31: the first period starts at 0
            (0, profile(1, "TxDefaultProfile", 16, periods=[{"start_period": 60, "limit": 16}]),
             ("Rejected", "InvalidSchedule")),
            # K01.FR.38: a ChargingStationMaxProfile is on EVSE 0 and never Relative
            (1, profile(2, "ChargingStationMaxProfile", 32, kind="Absolute", start=now),
             ("Rejected", "InvalidProfile")),
            (0, profile(2, "ChargingStationMaxProfile", 32), ("Rejected", "InvalidProfile")),
            # K01.FR.40/41: startSchedule for Absolute, none for Relative
            (0, profile(3, "TxDefaultProfile", 16, kind="Absolute"),
             ("Rejected", "InvalidSchedule")),
            (0, profile(3, "TxDefaultProfile", 16, start=now), ("Rejected", "InvalidSchedule")),
            # a TxProfile needs evseId > 0 and the running transactionId
            (0, profile(4, "TxProfile", 10, tx=tx_id), ("Rejected", "InvalidProfile")),
            (1, profile(4, "TxProfile", 10), ("Rejected", "TxNotFound")),
            (1, profile(4, "TxProfile", 10, tx="not-this-one"), ("Rejected", "TxNotFound")),
            (2, profile(4, "TxProfile", 10, tx=tx_id), ("Rejected", "TxNotFound")),
            # periods <= PeriodsPerSchedule
            (0, profile(5, "TxDefaultProfile", 16, periods=[
                {"start_period": 600 * k, "limit": 16} for k in range(4)]),
             ("Rejected", "TooManyPeriods")),
            # the CSMS never sends external constraints (K01.FR.22)
            (0, profile(6, "ChargingStationExternalConstraints", 16),
             ("Rejected", "InvalidProfile")),
            # good ones
            (0, profile(10, "ChargingStationMaxProfile", 40, kind="Absolute", start=now),
             ("Accepted", None)),
            (0, profile(11, "TxDefaultProfile", 16, stack=1, valid_to=later),
             ("Accepted", None)),
            (1, profile(12, "TxProfile", 10, stack=1, tx=tx_id), ("Accepted", None)),
            # K01.FR.39: same stackLevel and purpose on the same EVSE, overlapping validity
            (0, profile(13, "TxDefaultProfile", 12, stack=1), ("Rejected", "DuplicateProfile")),
            # ... unless the validities do not overlap, or it is the same id (a replacement)
            (0, profile(13, "TxDefaultProfile", 12, stack=1, valid_from=later),
             ("Accepted", None)),
            (0, profile(11, "TxDefaultProfile", 14, stack=1, valid_to=later),
             ("Accepted", None)),
        ]
        for evse_id, data, expected in cases:
            assert await send(link, evse_id, data) == expected, (evse_id, data)
        assert sorted(p.profile_id for p in station.profiles.profiles) == [10, 11, 12, 13]
        assert [code for code, _ in station.rejections].count("TxNotFound") == 3
        # the car obeys the TxProfile (10 A on three phases)
        assert abs(station.draw_w(1) - 10 * V * 3) < 1.0


async def test_composite_schedule_reports_and_clear():
    clock = AcceleratedClock(START, speed=60)
    async with mini_csms_201() as csms, \
            running_station(spec201(), csms.url, clock) as station:
        await station.booted.wait()
        link = csms.links["CS1"]
        now = clock.now().replace(microsecond=0)
        assert await send(link, 0, profile(1, "ChargingStationMaxProfile", 20, kind="Absolute",
                                           start=now)) == ("Accepted", None)
        assert await send(link, 0, profile(2, "TxDefaultProfile", 16, stack=1, periods=[
            {"start_period": 0, "limit": 16}, {"start_period": 3600, "limit": 25}])) \
            == ("Accepted", None)
        await station.plug_in(1, SimEV(capacity_wh=80_000, soc=0.2,
                                       max_power_w_by_phases={3: 22_000.0}), "TAG-OK")
        assert abs(station.draw_w(1) - 16 * V * 3) < 1.0
        answer = await link.call(call.GetCompositeSchedule(duration=7200, evse_id=1,
                                                           charging_rate_unit="A"))
        assert answer.status == "Accepted"
        schedule = answer.schedule
        assert schedule["evse_id"] == 1 and schedule["charging_rate_unit"] == "A"
        limits = [(p["start_period"], p["limit"]) for p in schedule["charging_schedule_period"]]
        assert limits[0] == (0, 16) and limits[-1][1] == 20   # TxDefault, then the station max
        answer = await link.call(call.GetChargingProfiles(
            request_id=7, charging_profile={"charging_profile_purpose": "TxDefaultProfile"}))
        assert answer.status == "Accepted"
        await csms.wait_until(lambda: csms.of("ReportChargingProfiles"))
        report = csms.of("ReportChargingProfiles")[0]
        assert report["request_id"] == 7 and report["evse_id"] == 0
        assert [p["id"] for p in report["charging_profile"]] == [2]
        answer = await link.call(call.GetChargingProfiles(
            request_id=8, charging_profile={"stack_level": 9}))
        assert answer.status == "NoProfiles"
        answer = await link.call(call.ClearChargingProfile(
            charging_profile_criteria={"charging_profile_purpose": "TxDefaultProfile"}))
        assert answer.status == "Accepted"
        assert [p.profile_id for p in station.profiles.profiles] == [1]
        assert (await link.call(call.ClearChargingProfile(charging_profile_id=99))).status \
            == "Unknown"
        assert abs(station.draw_w(1) - 20 * V * 3) < 1.0


async def test_iso15118_car_tells_its_needs_and_a_tx_profile_before_them_is_refused():
    clock = AcceleratedClock(START, speed=60)
    departure = START + timedelta(hours=5)
    async with mini_csms_201() as csms, \
            running_station(spec201(), csms.url, clock) as station:
        await station.booted.wait()
        car = SimEV(capacity_wh=60_000, soc=0.5, target_soc=0.9, iso15118=True,
                    departure=departure, max_power_w_by_phases={1: 3680.0, 3: 11_040.0})
        await station.plug_in(1, car, "TAG-OK")
        tx_id = station.connectors[1].transaction.transaction_id
        await csms.wait_until(lambda: csms.of("NotifyEVChargingNeeds"))
        link = csms.links["CS1"]
        assert await send(link, 1, profile(5, "TxProfile", 10, tx=tx_id)) == ("Accepted", None)
        # the car takes it and says what it will follow (NotifyEVChargingSchedule)
        await csms.wait_until(lambda: csms.of("NotifyEVChargingSchedule"))
        followed = csms.of("NotifyEVChargingSchedule")[0]
        assert followed["evse_id"] == 1
        periods = followed["charging_schedule"]["charging_schedule_period"]
        assert periods[0]["start_period"] == 0 and periods[0]["limit"] == 10
        # offline at plug-in: the needs never went out, so a TxProfile is refused
        await station.go_offline()
        await station.plug_in(2, SimEV(capacity_wh=60_000, soc=0.5, iso15118=True), "TAG-OK")
        other_tx = station.connectors[2].transaction.transaction_id
        station.go_online()
        await station.drained(timeout_s=15)
        link = csms.links["CS1"]
        assert await send(link, 2, profile(6, "TxProfile", 10, tx=other_tx)) == (
            "Rejected", "NoChargingNeeds")
    needs = csms.of("NotifyEVChargingNeeds")
    assert len(needs) == 1 and needs[0]["evse_id"] == 1
    charging = needs[0]["charging_needs"]
    assert charging["requested_energy_transfer"] == "AC_three_phase"
    assert charging["departure_time"] == format_ocpp_time(departure)
    assert charging["ac_charging_parameters"] == {
        "energy_amount": 24_000, "ev_min_current": 6, "ev_max_current": 16,
        "ev_max_voltage": 230}
    # the Started event went before the needs, so the CSMS knows the transaction first
    kinds = [r.action for r in csms.received if r.action in ("TransactionEvent",
                                                              "NotifyEVChargingNeeds")]
    assert kinds.index("NotifyEVChargingNeeds") > kinds.index("TransactionEvent")
