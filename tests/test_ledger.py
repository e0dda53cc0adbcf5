"""The billing rules as pure functions, and the ledger over a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings, strategies as st

from smartcharge import ledger
from smartcharge.metering import (
    PLAUSIBILITY_FACTOR,
    PLAUSIBILITY_SLACK_WH,
    parse_meter_values,
    session_energy,
    to_si,
)
from smartcharge.store import SqliteStore

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_register_delta_is_billed_exactly():
    energy = session_energy(1_000, at(0), 8_500, at(60), [(at(30), 4_000)], 22_000)
    assert (energy.energy_wh, energy.method, energy.flags) == (7_500, "registers", frozenset())


def test_samples_outside_the_registers_are_flagged_not_billed():
    energy = session_energy(1_000, at(0), 8_500, at(60), [(at(30), 9_000)], 22_000)
    assert energy.energy_wh == 7_500 and "samples_disagree" in energy.flags


def test_meter_reset_counts_from_zero_never_negative():
    readings = [(at(10), 1_003_000), (at(20), 200), (at(30), 1_200)]
    energy = session_energy(1_000_000, at(0), 2_000, at(40), readings, 22_000)
    assert energy.energy_wh == 3_000 + 200 + 1_000 + 800
    assert "meter_reset" in energy.flags


def test_rollover_with_no_samples_stays_small():
    energy = session_energy(999_999_000, at(0), 500, at(10), [], 22_000)
    assert energy.energy_wh == 500 and "meter_reset" in energy.flags


def test_gigantic_jump_is_dropped():
    readings = [(at(10), 2_000), (at(11), 90_000_000), (at(20), 90_001_000)]
    energy = session_energy(1_000, at(0), 90_002_000, at(30), readings, 22_000)
    assert energy.energy_wh == 1_000 + 1_000 + 1_000
    assert "implausible_jump" in energy.flags


def test_offline_start_register_zero_without_samples_is_not_billed():
    energy = session_energy(0, at(0), 7_345_000, at(30), [], 22_000)
    assert energy.energy_wh is None and "unverifiable" in energy.flags


def test_implicit_close_uses_the_last_register_sample():
    energy = session_energy(5_000, at(0), None, None, [(at(5), 5_400), (at(9), 6_100)], 22_000)
    assert energy.energy_wh == 1_100 and "no_stop_register" in energy.flags
    nothing = session_energy(5_000, at(0), None, None, [], 22_000)
    assert nothing.energy_wh is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2_000_000_000), min_size=2, max_size=12))
def test_energy_is_never_negative_or_beyond_what_the_station_can_deliver(registers):
    points = [(at(10 * i), float(r)) for i, r in enumerate(registers)]
    energy = session_energy(points[0][1], points[0][0], points[-1][1], points[-1][0],
                            points[1:-1], 22_000)
    duration_h = 10 * (len(registers) - 1) / 60
    if energy.energy_wh is not None:
        assert 0 <= energy.energy_wh <= (22_000 * duration_h * PLAUSIBILITY_FACTOR
                                         + PLAUSIBILITY_SLACK_WH * len(registers))


def test_units_and_defaults():
    assert to_si("7.5", "kWh", "Raw") == 7_500
    assert to_si("11", "kW", "Raw") == 11_000
    assert to_si("abc", "Wh", "Raw") is None
    assert to_si("12", "Wh", "SignedData") is None
    # not a number, or not finite once in Wh: no reading (never an infinite register)
    assert [to_si(text, "kWh", "Raw") for text in ("NaN", "inf", "1e400", "1e308")] == [None] * 4
    (reading,) = parse_meter_values([{"timestamp": "2026-01-01T08:00:00Z",
                                      "sampled_value": [{"value": "1.5", "unit": "kWh"}]}])
    assert (reading.measurand, reading.context, reading.location, reading.value_si) == (
        "Energy.Active.Import.Register", "Sample.Periodic", "Outlet", 1_500)


async def test_retried_stop_does_not_count_transaction_data_twice(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "l.sqlite"))
    try:
        start = await store.run(lambda tx: ledger.start_transaction(
            tx, station_id="S", connector_id=1, id_tag="T", meter_start_wh=100.0,
            timestamp=at(0), reservation_id=None, payload={"n": 1}, answer_status="Accepted",
            at=at(0), max_power_w=22_000))
        data = parse_meter_values([{"timestamp": "2026-01-01T08:30:00Z",
                                    "sampled_value": [{"value": "600"}]}])

        def stop(tx):
            return ledger.stop_transaction(
                tx, station_id="S", station_tx_id=start.transaction_id, meter_stop_wh=1_100.0,
                timestamp=at(60), reason=None, id_tag=None, readings=data,
                payload={"stop": 1}, at=at(60), max_power_w=22_000)

        first, second = await store.run(stop), await store.run(stop)
        assert (first.energy_wh, first.duplicate) == (1_000, False)
        assert (second.energy_wh, second.duplicate) == (1_000, True)
        samples = await store.run(lambda tx: tx.samples(start.transaction_id))
        assert len(samples) == 1
    finally:
        await store.close()


async def test_unknown_stop_is_not_pinned_on_an_unrelated_session(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "r.sqlite"))
    try:
        def start(connector_id, register_wh, tag, payload):
            return lambda tx: ledger.start_transaction(
                tx, station_id="S", connector_id=connector_id, id_tag=tag,
                meter_start_wh=register_wh, timestamp=at(0), reservation_id=None,
                payload=payload, answer_status="Accepted", at=at(0), max_power_w=22_000)

        first = await store.run(start(1, 50_000.0, "A", {"n": 1}))

        def stop(transaction_id, register_wh, tag, n):
            return lambda tx: ledger.stop_transaction(
                tx, station_id="S", station_tx_id=transaction_id, meter_stop_wh=register_wh,
                timestamp=at(30), reason=None, id_tag=tag, readings=[], payload={"s": n},
                at=at(30), max_power_w=22_000)

        # another meter's register (connector 2, never seen): far beyond what 30 min allow
        foreign = await store.run(stop(-1, 9_000_000.0, None, 1))
        assert foreign.matched == "orphan"
        # another driver's tag: not this session either
        other_tag = await store.run(stop(0, 52_000.0, "B", 2))
        assert other_tag.matched == "orphan"
        ours = await store.run(stop(-1, 52_000.0, "A", 3))
        assert (ours.matched, ours.transaction_id, ours.energy_wh) == (
            "reconciled", first.transaction_id, 2_000)
        # a different, second stop for the now stopped session changes nothing billed
        second = await store.run(stop(first.transaction_id, 60_000.0, "A", 4))
        assert second.matched == "orphan" and second.transaction_id != first.transaction_id
        row = await store.run(lambda tx: tx.session(first.transaction_id))
        assert row.energy_wh == 2_000
    finally:
        await store.close()


def test_offline_start_register_zero_with_a_begin_sample_follows_the_samples():
    # meterStart 0, the Transaction.Begin sample shows the real register, the meter then resets:
    # stop - start (0 - 0) would bill nothing; the samples say 1 Wh before the reset
    readings = [(at(0), 4_500_000), (at(10), 4_500_001)]
    energy = session_energy(0, at(0), 0, at(20), readings, 22_000)
    assert energy.energy_wh == 1 and "start_register_zero" in energy.flags


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0.0, 4_500_000.0, 1_000.0]),
       st.lists(st.tuples(st.integers(0, 120), st.integers(0, 9_000_000)), max_size=10),
       st.randoms(use_true_random=False))
def test_live_energy_is_the_energy_the_ledger_would_bill_so_far(start_wh, samples, random):
    # the controller's running total, fed samples in any order (late ones too), is the bill's
    from smartcharge.metering import LiveEnergy, energy_so_far_wh
    readings = [(at(minute), float(wh)) for minute, wh in samples]
    live = LiveEnergy(start_wh, at(0), 22_000)
    arrival = list(readings)
    random.shuffle(arrival)
    for moment, wh in arrival:
        live.add(moment, wh)
    expected = energy_so_far_wh(start_wh, at(0), readings, 22_000)
    assert live.energy_wh == (None if expected is None else __import__("pytest").approx(expected))
