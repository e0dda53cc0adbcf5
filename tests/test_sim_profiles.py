"""The station's composite-schedule logic, against OCPP 1.6 section 3.13 (pure, no I/O)."""

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.sim.profiles import (Capabilities, ProfileRejected, ProfileStore, TxContext,
                                      parse_profile)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
V = 230.0


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def profile(pid, purpose, stack, periods, *, unit="A", kind="Absolute", start=T0, duration=None,
            connector=1, recurrency=None, valid_from=None, valid_to=None, tx_id=None):
    schedule = {"chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods]}
    if start is not None and kind != "Relative":
        schedule["startSchedule"] = iso(start)
    if duration is not None:
        schedule["duration"] = duration
    data = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": schedule}
    if recurrency:
        data["recurrencyKind"] = recurrency
    if valid_from:
        data["validFrom"] = iso(valid_from)
    if valid_to:
        data["validTo"] = iso(valid_to)
    if tx_id is not None:
        data["transactionId"] = tx_id
    return parse_profile(connector, data, installed_at=T0)


def store(*profiles, tx=None):
    s = ProfileStore((1, 2))
    for p in profiles:
        s.install(p, tx)
    return s


def limit_a(s, at, tx=None, connector=1):
    w = s.limit_w(connector, at, tx, voltage_v=V, phases_in_use=3)
    return None if w is None else round(w / (V * 3), 6)


def test_no_profile_means_no_limit():
    assert limit_a(store(), T0) is None


def test_highest_stack_level_prevails_within_a_purpose():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 32)], connector=0),
              profile(2, "TxDefaultProfile", 1, [(0, 10)], connector=0))
    assert limit_a(s, T0 + timedelta(minutes=5)) == 10


def test_lower_stack_takes_over_when_higher_one_ends():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 16)], connector=0),
              profile(2, "TxDefaultProfile", 1, [(0, 10)], connector=0, duration=3600))
    assert limit_a(s, T0 + timedelta(minutes=59)) == 10
    assert limit_a(s, T0 + timedelta(minutes=61)) == 16


def test_tx_profile_overrules_tx_default_even_when_higher():
    tx = TxContext(transaction_id=7, started_at=T0)
    s = store(profile(1, "TxDefaultProfile", 5, [(0, 10)], connector=0))
    s.install(profile(2, "TxProfile", 0, [(0, 20)], tx_id=7), tx)
    assert limit_a(s, T0, tx) == 20
    assert limit_a(s, T0, None) == 10          # without its transaction the TxProfile is inert


def test_charge_point_max_caps_everything():
    tx = TxContext(1, T0)
    s = store(profile(1, "ChargePointMaxProfile", 0, [(0, 12)], connector=0))
    s.install(profile(2, "TxProfile", 0, [(0, 20)]), tx)
    assert limit_a(s, T0, tx) == 12


def test_periods_follow_each_other():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 16), (1800, 8), (3600, 0)], connector=0))
    assert limit_a(s, T0 + timedelta(seconds=1799)) == 16
    assert limit_a(s, T0 + timedelta(seconds=1800)) == 8
    assert limit_a(s, T0 + timedelta(hours=2)) == 0


def test_absolute_schedule_in_the_future_sets_nothing_yet():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 8)], connector=0,
                      start=T0 + timedelta(hours=1)))
    assert limit_a(s, T0) is None
    assert limit_a(s, T0 + timedelta(hours=1)) == 8


def test_watts_and_amps_compare_in_watts_with_phases_in_use():
    tx = TxContext(1, T0)
    s = store(profile(1, "ChargePointMaxProfile", 0, [(0, 5_000)], unit="W", connector=0))
    s.install(profile(2, "TxProfile", 0, [(0, 16)]), tx)
    assert s.limit_w(1, T0, tx, voltage_v=V, phases_in_use=3) == 5_000      # 16 A*3ph = 11 kW
    assert s.limit_w(1, T0, tx, voltage_v=V, phases_in_use=1) == pytest.approx(16 * V)


def test_number_phases_in_a_period_limits_the_conversion():
    data = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": iso(T0),
                                 "chargingSchedulePeriod": [
                                     {"startPeriod": 0, "limit": 10, "numberPhases": 1}]}}
    s = store(parse_profile(0, data, T0))
    assert s.limit_w(1, T0, None, voltage_v=V, phases_in_use=3) == pytest.approx(10 * V)


def test_relative_profile_starts_with_the_transaction():
    tx = TxContext(1, T0 + timedelta(hours=3))
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 32), (600, 6)], kind="Relative",
                      connector=0))
    assert limit_a(s, tx.started_at + timedelta(seconds=599), tx) == 32
    assert limit_a(s, tx.started_at + timedelta(seconds=600), tx) == 6


def test_daily_recurring_profile_repeats():
    midnight = datetime(2026, 1, 1, tzinfo=UTC)
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 32), (17 * 3600, 10), (20 * 3600, 32)],
                      kind="Recurring", recurrency="Daily", start=midnight, connector=0))
    three_days_later = midnight + timedelta(days=3)
    assert limit_a(s, three_days_later + timedelta(hours=18)) == 10
    assert limit_a(s, three_days_later + timedelta(hours=21)) == 32


def test_validity_window():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 8)], connector=0,
                      valid_from=T0 + timedelta(hours=1), valid_to=T0 + timedelta(hours=2)))
    assert limit_a(s, T0 + timedelta(minutes=30)) is None
    assert limit_a(s, T0 + timedelta(minutes=90)) == 8
    assert limit_a(s, T0 + timedelta(hours=2)) is None


def test_tx_profile_for_another_transaction_does_not_apply():
    tx = TxContext(7, T0)
    with pytest.raises(ProfileRejected, match="transactionId"):
        store(profile(1, "TxProfile", 0, [(0, 8)], tx_id=8), tx=tx)


@pytest.mark.parametrize("bad, why", [
    (dict(purpose="TxProfile", connector=1), "needs a transaction"),
    (dict(purpose="ChargePointMaxProfile", connector=1), "connector 0"),
    (dict(purpose="TxDefaultProfile", connector=1, stack=11), "ChargeProfileMaxStackLevel"),
    (dict(purpose="TxDefaultProfile", connector=9), "no connector"),
])
def test_install_rules(bad, why):
    p = profile(1, bad["purpose"], bad.get("stack", 0), [(0, 8)], connector=bad["connector"])
    with pytest.raises(ProfileRejected, match=why):
        store(p)


def test_capabilities_limit_periods_units_and_count():
    s = ProfileStore((1,), Capabilities(max_periods=2, allowed_units=("Current",),
                                        max_installed=1))
    with pytest.raises(ProfileRejected, match="ChargingScheduleMaxPeriods"):
        s.install(profile(1, "TxDefaultProfile", 0, [(0, 8), (60, 9), (120, 10)]), None)
    with pytest.raises(ProfileRejected, match="chargingRateUnit W"):
        s.install(profile(1, "TxDefaultProfile", 0, [(0, 8000)], unit="W"), None)
    s.install(profile(1, "TxDefaultProfile", 0, [(0, 8)]), None)
    with pytest.raises(ProfileRejected, match="MaxChargingProfilesInstalled"):
        s.install(profile(2, "TxDefaultProfile", 1, [(0, 8)]), None)


def test_malformed_schedules_are_rejected():
    with pytest.raises(ProfileRejected, match="start at 0"):
        profile(1, "TxDefaultProfile", 0, [(10, 8)])
    with pytest.raises(ProfileRejected, match="increase"):
        profile(1, "TxDefaultProfile", 0, [(0, 8), (0, 9)])


def test_same_purpose_and_stack_level_replaces_and_same_id_replaces():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 16)]))
    s.install(profile(2, "TxDefaultProfile", 0, [(0, 8)]), None)
    assert [p.profile_id for p in s.profiles] == [2]
    s.install(profile(2, "TxDefaultProfile", 3, [(0, 6)]), None)
    assert [(p.profile_id, p.stack_level) for p in s.profiles] == [(2, 3)]


def test_clear_by_id_and_by_criteria():
    tx = TxContext(1, T0)
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 16)], connector=0),
              profile(2, "ChargePointMaxProfile", 0, [(0, 20)], connector=0))
    s.install(profile(3, "TxProfile", 0, [(0, 8)]), tx)
    assert s.clear(profile_id=99) == 0
    assert s.clear(purpose="TxProfile") == 1
    assert s.clear(profile_id=2) == 1
    assert s.clear() == 1 and s.profiles == []


def test_transaction_end_drops_its_tx_profile():
    tx = TxContext(1, T0)
    s = store()
    s.install(profile(3, "TxProfile", 0, [(0, 8)]), tx)
    s.end_transaction(1)
    assert s.profiles == []


def test_composite_schedule_merges_and_fills_gaps_with_the_maximum():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 16), (600, 16), (1200, 8)], connector=0,
                      duration=1800))
    schedule = s.composite_schedule(1, T0, 3600, "A", None, voltage_v=V, phases=3,
                                    fallback_w=32 * V * 3)
    assert [(p.start_s, p.limit) for p in schedule.periods] == [(0, 16), (1200, 8), (1800, 32)]
    in_watts = s.composite_schedule(1, T0, 3600, "W", None, voltage_v=V, phases=3,
                                    fallback_w=32 * V * 3)
    assert [p.limit for p in in_watts.periods] == [11040, 5520, 22080]


def test_next_change_finds_the_next_period_boundary():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 16), (600, 8)], connector=0))
    assert s.next_change(T0 + timedelta(seconds=1), {1: None}) == T0 + timedelta(seconds=600)
    assert s.next_change(T0 + timedelta(seconds=601), {1: None}) is None


def test_next_change_of_a_relative_connector_zero_profile_follows_each_transaction():
    s = store(profile(1, "TxDefaultProfile", 0, [(0, 16), (600, 8)], kind="Relative",
                      connector=0))
    tx = TxContext(1, T0 + timedelta(seconds=100))
    assert s.next_change(T0 + timedelta(seconds=200), {1: tx, 2: None}) == \
        T0 + timedelta(seconds=700)
