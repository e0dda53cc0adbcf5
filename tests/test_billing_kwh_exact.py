"""Registers a station sends in kWh are billed to the Wh the meter said, not to a float's noise.

Found by the session 25 audit, replaying Caltech ACN sessions through real 1.6 and 2.0.1
stations (half their registers in kWh, half in Wh): `2048.229` kWh read as
2048228.9999999998 Wh, so a session of 50 267 Wh was billed 50267.00000000023 Wh (JSON, CSV
sums no longer equal the meters' deltas), and a 1.6 sample of `2048.195` kWh - the very stop
register, 2048195 Wh - read as 2048195.0000000002 Wh, above the stop, flagged the session
`samples_disagree`. The same with a 2.0.1 `multiplier`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from ocpp.v16 import call

from tests.conftest import ocpp_time
from tests.v201_billing import sessions, tx_event
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)


def flags(session) -> set[str]:
    return set(session.flags.split(",")) - {""}


async def test_1_6_registers_in_kwh_are_exact_wh(harness, t0):
    station = await harness.station("CP1")
    started = await station.start_tx(1, 2_045_502, t0)
    tx_id = started.transaction_id
    for k, kwh in enumerate(("2046.811", "2048.195")):
        await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
            {"timestamp": ocpp_time(t0 + 15 * (k + 1) * MIN), "sampledValue": [
                {"value": kwh, "unit": "kWh", "measurand": "Energy.Active.Import.Register"}]}]),
            suppress=False)
    await station.call(call.StopTransaction(meter_stop=2_048_195,
                                            timestamp=ocpp_time(t0 + 40 * MIN),
                                            transaction_id=tx_id), suppress=False)
    [session] = await sessions(harness)
    assert (session.energy_wh, flags(session)) == (2693.0, set())
    samples = await harness.store.run(lambda tx: tx.samples(tx_id))
    assert {s["value_si"] for s in samples} == {2_046_811.0, 2_048_195.0}


async def test_2_0_1_begin_and_end_in_kwh_are_exact_wh(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-K", 0, t0, register_wh=2_048_229, kwh=True))
    await station.send(tx_event("Ended", "tx-K", 1, t0 + 9 * 60 * MIN, register_wh=2_098_496,
                                kwh=True))
    [session] = await sessions(harness)
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (
        2_048_229.0, 2_098_496.0, 50_267.0)


async def test_2_0_1_multiplier_is_exact_wh(harness, t0):
    """`unitOfMeasure {unit: Wh, multiplier: 3}`: the value is in kWh, said another way."""
    def in_kwh_by_multiplier(event):
        [value] = event.meter_value
        [sampled] = value["sampled_value"]
        sampled = {**sampled, "value": sampled["value"] / 1000,
                   "unit_of_measure": {"unit": "Wh", "multiplier": 3}}
        return replace(event, meter_value=[{**value, "sampled_value": [sampled]}])

    station = await station201(harness)
    await station.send(in_kwh_by_multiplier(
        tx_event("Started", "tx-M", 0, t0, register_wh=2_048_229)))
    await station.send(in_kwh_by_multiplier(
        tx_event("Ended", "tx-M", 1, t0 + 9 * 60 * MIN, register_wh=2_098_496)))
    [session] = await sessions(harness)
    assert (session.meter_start_wh, session.energy_wh) == (2_048_229.0, 50_267.0)


async def test_2_0_1_registers_with_decimals_are_billed_to_the_meters_digits(harness, t0):
    """Wh to the tenth: the bill is the meters' difference in decimal, by the stop register
    or by the samples' chain - as binary floats 1000.3 - 0.1 read 1000.1999999999999 Wh."""
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-R", 0, t0, register_wh=0.1))
    await station.send(tx_event("Ended", "tx-R", 1, t0 + 60 * MIN, register_wh=1000.3))
    await station.send(tx_event("Started", "tx-C", 0, t0 + 90 * MIN, register_wh=1000.3))
    await station.send(tx_event("Updated", "tx-C", 1, t0 + 100 * MIN, register_wh=1500.4))
    await station.send(tx_event("Ended", "tx-C", 2, t0 + 120 * MIN))
    by_ref = {s.station_tx_ref: s for s in await sessions(harness)}
    assert (by_ref["tx-R"].energy_wh, by_ref["tx-R"].energy_method) == (1000.2, "registers")
    assert (by_ref["tx-C"].energy_wh, by_ref["tx-C"].energy_method) == (500.1, "samples")
