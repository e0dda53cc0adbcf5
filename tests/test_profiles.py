"""Allocation -> OCPP 1.6 charging profiles: rounding down, units, merging, schema-valid."""

import decimal
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ocpp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from smartcharge.clock import parse_ocpp_time
from smartcharge.ocpp.v16 import profiles as P

SCHEMA_PATH = Path(ocpp.__file__).parent / "v16/schemas/SetChargingProfile.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(),
                    parse_float=decimal.Decimal)
NOW = datetime(2026, 1, 1, 12, 3, 7, 800_000, tzinfo=UTC)


def assert_schema_valid(payload: dict) -> None:
    # The ocpp library validates with Decimal so multipleOf 0.1 is exact; do the same.
    data = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    errors = list(Draft4Validator(SCHEMA).iter_errors(data))
    assert not errors, errors


def test_round_down_never_rounds_up():
    assert P.round_down_01(7.36) == 7.3
    assert P.round_down_01(7.3) == 7.3
    assert P.round_down_01(7.2999999999) == 7.3  # float noise is not a step down
    assert P.round_down_01(0.05) == 0.0
    assert P.round_down_01(-1) == 0.0


def test_unit_and_phase_conversion():
    assert P.power_to_rate(11_040, "A", 3, 230) == 16.0
    assert P.power_to_rate(11_000, "A", 3, 230) == 15.9     # 15.942 -> down
    assert P.power_to_rate(3_000, "A", 1, 230) == 13.0      # 13.04 -> down
    assert P.power_to_rate(7_359.99, "W", 3, 230) == 7359.9
    with pytest.raises(ValueError, match="chargingRateUnit"):
        P.power_to_rate(1, "kW", 1, 230)


def test_tx_profile_shape_and_start_never_in_future():
    payload = P.tx_profile(2, 77, NOW, [0, 112.2, 1012.2], [11_040, 0, 4_140], unit="A",
                           phases=3, voltage_v=230, caps=P.Capabilities(), duration_s=3600,
                           min_power_w=4_140)
    assert_schema_valid(payload)
    profile = payload["csChargingProfiles"]
    assert payload["connectorId"] == 2 and profile["transactionId"] == 77
    assert profile["chargingProfilePurpose"] == "TxProfile"
    sched = profile["chargingSchedule"]
    start = parse_ocpp_time(sched["startSchedule"])
    assert start <= NOW and NOW - start < timedelta(seconds=1)
    # slot boundary at NOW + 112.2 s = 12:05:00 exactly -> 113 s after the truncated start
    assert [p["startPeriod"] for p in sched["chargingSchedulePeriod"]] == [0, 113, 1013]
    assert [p["limit"] for p in sched["chargingSchedulePeriod"]] == [16.0, 0.0, 6.0]
    assert all(p["numberPhases"] == 3 for p in sched["chargingSchedulePeriod"])
    assert sched["minChargingRate"] == 6.0 and sched["duration"] == 3600


def test_profile_ids_are_deterministic_per_connector_and_purpose():
    ids = {(c, p): P.profile_id(c, p) for c in range(0, 5)
           for p in (P.TX_PROFILE, P.TX_DEFAULT_PROFILE, P.CHARGE_POINT_MAX_PROFILE)}
    assert len(set(ids.values())) == len(ids)
    a = P.tx_profile(1, 5, NOW, [0], [1000], unit="W", phases=1, voltage_v=230,
                     caps=P.Capabilities())
    b = P.tx_profile(1, 6, NOW + timedelta(hours=1), [0], [2000], unit="W", phases=1,
                     voltage_v=230, caps=P.Capabilities())
    profile_a, profile_b = a["csChargingProfiles"], b["csChargingProfiles"]
    assert profile_a["chargingProfileId"] == profile_b["chargingProfileId"]


def test_merge_takes_the_minimum_of_what_it_replaces():
    starts = [0, 900, 1800, 2700, 3600, 4500]
    limits = [16.0, 15.9, 32.0, 6.0, 6.0, 20.0]
    merged_starts, merged = P.merge_periods(starts, limits, 3)
    assert len(merged) <= 3 and merged_starts[0] == 0
    for t in range(0, 5400, 60):
        original = limits[max(i for i, s in enumerate(starts) if s <= t)]
        now = merged[max(i for i, s in enumerate(merged_starts) if s <= t)]
        assert now <= original


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 50_000), min_size=1, max_size=40), st.integers(1, 10),
       st.sampled_from(["A", "W"]), st.sampled_from([1, 3]))
def test_any_schedule_is_schema_valid_bounded_and_never_above_allocation(powers, max_periods,
                                                                         unit, phases):
    period_starts = [i * 900.0 - 187.8 if i else 0.0 for i in range(len(powers))]
    payload = P.tx_profile(1, 1, NOW, period_starts, powers, unit=unit, phases=phases,
                           voltage_v=230, caps=P.Capabilities(max_periods=max_periods),
                           duration_s=len(powers) * 900)
    assert_schema_valid(payload)
    periods = payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
    assert len(periods) <= max_periods
    for i, power in enumerate(powers):
        # check in the middle of each planned slot (relative to the truncated start)
        offset = period_starts[i] + 0.8 + 10
        sent = P.profile_limit_at(payload, offset)
        assert P.rate_to_power(sent, unit, phases, 230) <= power + 1e-6


def test_default_and_max_profiles_are_schema_valid():
    default = P.tx_default_profile(1, NOW, [0], [5000], unit="W", phases=3, voltage_v=230,
                                   caps=P.Capabilities())
    assert_schema_valid(default)
    assert default["csChargingProfiles"]["stackLevel"] == 0
    assert "transactionId" not in default["csChargingProfiles"]
    cp_max = P.charge_point_max_profile(NOW, 22_000, unit="A", phases=3, voltage_v=230)
    assert_schema_valid(cp_max)
    assert cp_max["connectorId"] == 0
    periods = cp_max["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
    assert periods[0]["limit"] == 31.8


def test_stack_level_capped_by_station():
    payload = P.tx_profile(1, 1, NOW, [0], [1000], unit="W", phases=1, voltage_v=230,
                           caps=P.Capabilities(max_stack_level=0), stack_level=1)
    assert payload["csChargingProfiles"]["stackLevel"] == 0
