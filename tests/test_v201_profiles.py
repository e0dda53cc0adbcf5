"""PowerSchedule -> OCPP 2.0.1 SetChargingProfile (issue 8): every request valid against the
library's 2.0.1 schema, and one test per K01 rule a real station enforces (a strict station's
table, `tests/k01_table.py`, written from the spec on its own)."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.messages import Call, validate_payload

from smartcharge.clock import parse_ocpp_time
from smartcharge.ocpp.v201 import profiles as P
from tests.k01_table import K01Table

NOW = datetime(2026, 1, 1, 12, 3, 7, 800_000, tzinfo=UTC)
TX = "b7e2c1a0-5f0e-4c1b-9a1f-3f1e2d4c5b6a"


def sched(limits=(16.0, 0.0, 6.0), offsets=(0, 112.2, 1012.2), *, unit="A", phases=3,
          max_periods=24, duration_s=1800, min_rate=None):
    return P.charging_schedule(NOW, list(offsets), list(limits), unit=unit, phases=phases,
                               max_periods=max_periods, schedule_id=1, duration_s=duration_s,
                               min_rate=min_rate)


async def assert_valid(request: dict) -> None:
    await validate_payload(Call("t", "SetChargingProfile", request), "2.0.1")


async def test_every_layer_is_schema_valid_and_absolute_with_a_start():
    requests = [P.station_max(sched((32.0,), (0,), duration_s=None)),
                P.failsafe(1, sched(duration_s=None)), P.upper_default(1, sched()),
                P.tx_profile(2, TX, sched(min_rate=6.0))]
    for request in requests:
        await assert_valid(request)
        profile = request["chargingProfile"]
        assert profile["chargingProfileKind"] == "Absolute"           # never Relative
        schedule = profile["chargingSchedule"][0]
        start = parse_ocpp_time(schedule["startSchedule"])           # FR.40
        assert start <= NOW and NOW - start < timedelta(seconds=1)   # never in the future
        assert schedule["chargingSchedulePeriod"][0]["startPeriod"] == 0   # FR.31
        assert P.check_request(request) == []


def test_tx_profile_carries_the_stations_transaction_on_its_evse():
    request = P.tx_profile(2, TX, sched())
    profile = request["chargingProfile"]
    assert request["evseId"] == 2 and profile["transactionId"] == TX
    assert profile["chargingProfilePurpose"] == "TxProfile"
    assert [p["limit"] for p in profile["chargingSchedule"][0]["chargingSchedulePeriod"]] == [
        16.0, 0.0, 6.0]
    with pytest.raises(ValueError, match="FR.16"):
        P.tx_profile(0, TX, sched())                      # evseId > 0
    with pytest.raises(ValueError, match="FR.03"):
        P.tx_profile(1, "x" * 37, sched())                # a 2.0.1 transactionId is <= 36


def test_station_max_only_on_evse_0_never_relative():          # K01.FR.38
    request = P.station_max(sched((32.0,), (0,), duration_s=None))
    assert request["evseId"] == 0 and request["chargingProfile"]["stackLevel"] == 0
    bad = dict(request, evseId=1)
    assert any("FR.38" in p for p in P.check_request(bad))
    relative = {**request, "chargingProfile": {**request["chargingProfile"],
                                                "chargingProfileKind": "Relative"}}
    assert any("FR.38" in p for p in P.check_request(relative))
    assert K01Table().set(1, bad["chargingProfile"])[1] == "K01.FR.38"


def test_first_start_period_is_zero_even_when_the_plan_starts_later():   # K01.FR.31
    request = P.failsafe(1, sched((10.0, 20.0), (0, 600)))
    assert request["chargingProfile"]["chargingSchedule"][0][
        "chargingSchedulePeriod"][0]["startPeriod"] == 0
    broken = request["chargingProfile"]
    broken["chargingSchedule"][0]["chargingSchedulePeriod"][0]["startPeriod"] = 5
    assert any("FR.31" in p for p in P.check_request(request))
    assert K01Table().set(1, broken)[1] == "K01.FR.31"


def test_start_schedule_required_for_absolute_absent_for_relative():   # K01.FR.40/41
    request = P.failsafe(1, sched())
    del request["chargingProfile"]["chargingSchedule"][0]["startSchedule"]
    assert any("FR.40" in p for p in P.check_request(request))
    assert K01Table().set(1, request["chargingProfile"])[1] == "K01.FR.40"
    relative = P.failsafe(1, sched())
    relative["chargingProfile"]["chargingProfileKind"] = "Relative"
    assert any("FR.41" in p for p in P.check_request(relative))


def test_periods_never_exceed_periods_per_schedule_and_merge_to_the_minimum():
    limits = [16.0, 10.0, 16.0, 8.0, 16.0, 12.0]
    request = P.tx_profile(1, TX, sched(limits, [0, 900, 1800, 2700, 3600, 4500],
                                        max_periods=3, duration_s=5400))
    periods = request["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert len(periods) <= 3 and periods[0]["startPeriod"] == 0
    assert P.check_request(request, max_periods=3) == []
    table = K01Table(max_periods=3, transactions={1: TX})
    assert table.set(1, request["chargingProfile"]) == ("Accepted", "")
    # every instant: never more than the plan asked for
    for offset in range(0, 5400, 300):
        asked = limits[offset // 900]
        sent = [p["limit"] for p in periods if p["startPeriod"] <= offset][-1]
        assert sent <= asked


def test_phases_are_sane():
    request = P.failsafe(1, sched(phases=1))
    periods = request["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert {p["numberPhases"] for p in periods} == {1}
    assert all("phaseToUse" not in p for p in periods)
    with pytest.raises(ValueError, match="numberPhases"):
        sched(phases=4)


def test_one_id_per_evse_purpose_and_stack_level():
    """FR.05/06/39: the ids are a bijection of (EVSE, purpose, level), so a re-send of any
    layer replaces it by id and never stands beside it."""
    keys = list(itertools.product(range(0, 30), (P.TX_PROFILE, P.TX_DEFAULT_PROFILE,
                                                 P.STATION_MAX_PROFILE), (0, 1)))
    ids = [P.profile_id(*key) for key in keys]
    assert len(set(ids)) == len(ids)


async def test_re_sends_replace_by_id_and_never_overlap():   # K01.FR.06, FR.39
    """A station with every layer installed takes each layer again (a new plan, a new idle
    share), in any order, for a run of rounds; a different id at the same level would be
    refused (that is what the ids prevent)."""
    table = K01Table(transactions={1: TX, 2: "tx-2"})
    for round_ in range(3):
        shift = round_ * 10.0
        for request in [P.station_max(sched((40.0,), (0,), duration_s=None)),
                        P.failsafe(1, sched((10.0 + shift,), (0,), duration_s=None)),
                        P.failsafe(2, sched((10.0,), (0,), duration_s=None)),
                        P.upper_default(1, sched((5.0 + shift,), (0,))),
                        P.upper_default(2, sched((6.0,), (0,))),
                        P.tx_profile(1, TX, sched((16.0 - shift / 2, 0.0), (0, 600))),
                        P.tx_profile(2, "tx-2", sched())]:
            await assert_valid(request)
            assert table.set(request["evseId"], request["chargingProfile"]) == (
                "Accepted", ""), request
    assert len(table.profiles) == 7
    intruder = P.upper_default(1, sched((5.0,), (0,)))["chargingProfile"]
    assert table.set(1, dict(intruder, id=9999))[1] == "K01.FR.06"
    tx_intruder = P.tx_profile(1, TX, sched())["chargingProfile"]
    assert table.set(1, dict(tx_intruder, id=9998))[1] == "K01.FR.39"


def test_upper_default_is_valid_only_while_it_runs():
    request = P.upper_default(1, sched(duration_s=1800))
    profile = request["chargingProfile"]
    start = parse_ocpp_time(profile["chargingSchedule"][0]["startSchedule"])
    assert parse_ocpp_time(profile["validFrom"]) == start
    assert parse_ocpp_time(profile["validTo"]) == start + timedelta(seconds=1800)
    assert "validTo" not in P.failsafe(1, sched(duration_s=None))["chargingProfile"]

