"""A station's energy register is the one at its outlet: registers a station reports at other
locations in the same messages (its grid inlet, which counts every connector; the car's side, DC
chargers) are kept but never billed, nor taken for the connector's live energy or draw.

Found by the session 21 audit: with an Outlet, an EV and an Inlet register in each sample, the
register chain read them as one meter going up and down - every drop a "meter reset" counted
from zero - and billed 9.3 kWh for 4 kWh delivered (2.0.1, an Ended without an End register:
the chain decides) and flagged a plausible 1.6 stop `samples_disagree`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from ocpp.v16 import call

from smartcharge.events import MeterSampled
from tests.conftest import ocpp_time
from tests.v201_billing import sessions, tx_event
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)


def _registers(k: int, *, text: bool = False, base_wh: int = 0) -> list[dict]:
    """The outlet's register (k kWh on `base_wh`), the car's (5 % lost on the way), the inlet's
    (the whole station: another car's 50 kWh too). 1.6 sends strings, 2.0.1 numbers."""
    values = [(base_wh + 1000 * k, "Outlet"), (950 * k, "EV"), (50_000 + 2000 * k, "Inlet")]
    return [{"value": str(v) if text else v, "measurand": "Energy.Active.Import.Register",
             "location": where} for v, where in values]


def flags(session):
    return set(session.flags.split(",")) - {""}


async def test_2_0_1_bills_the_outlet_register_only(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-L", 0, t0, register_wh=1000))
    for k in range(2, 6):
        at = t0 + 5 * k * MIN
        await station.send(replace(tx_event("Updated", "tx-L", k - 1, at), meter_value=[
            {"timestamp": ocpp_time(at), "sampled_value": _registers(k)}]))
    await station.send(tx_event("Ended", "tx-L", 5, t0 + 30 * MIN))   # no End register
    [session] = await sessions(harness)
    assert session.energy_wh == 4000, (session.energy_wh, flags(session))
    assert "meter_reset" not in flags(session)
    live = [e for e in harness.events if isinstance(e, MeterSampled)
            and e.energy_register_wh is not None]
    assert {e.energy_register_wh for e in live} <= {1000.0 * k for k in range(1, 6)}


async def test_1_6_bills_the_outlet_register_only(harness, t0):
    station = await harness.station("CP1")
    started = await station.start_tx(1, 1000, t0)
    tx_id = started.transaction_id
    for k in range(2, 6):
        await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
            {"timestamp": ocpp_time(t0 + 5 * k * MIN), "sampledValue": _registers(k, text=True)}]),
            suppress=False)
    await station.call(call.StopTransaction(meter_stop=5000, timestamp=ocpp_time(t0 + 30 * MIN),
                                            transaction_id=tx_id), suppress=False)
    [session] = await sessions(harness)
    assert session.energy_wh == 4000
    assert "samples_disagree" not in flags(session), flags(session)


async def test_1_6_offline_start_billed_from_the_outlet_chain(harness, t0):
    """A station that started offline sends a start register of 0 that its first sample belies
    (its meter reads 1 002 kWh 10 minutes later): the outlet's samples decide."""
    station = await harness.station("CP1")
    started = await station.start_tx(1, 0, t0)
    tx_id = started.transaction_id
    for k in range(2, 6):
        await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
            {"timestamp": ocpp_time(t0 + 5 * k * MIN),
             "sampledValue": _registers(k, text=True, base_wh=1_000_000)}]), suppress=False)
    await station.call(call.StopTransaction(meter_stop=1_005_000,
                                            timestamp=ocpp_time(t0 + 30 * MIN),
                                            transaction_id=tx_id), suppress=False)
    [session] = await sessions(harness)
    assert session.energy_wh == 3000, (session.energy_wh, flags(session))   # 1 002 -> 1 005 kWh
    assert "meter_reset" not in flags(session)


async def test_1_6_the_main_meter_on_connector_0_is_no_sessions_register(harness, t0):
    """connectorId 0 is the station's main meter (OCPP 1.6), whatever transactionId a station
    puts beside it: its register (the whole station, 900 kWh) is kept, not billed. It was read
    into the session's chain - a bad stop register left the chain to bill, and the step to the
    main meter and back cost the car's 1 kWh of the 3 it took (billed 2)."""
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 1000, t0)).transaction_id
    await station.meter(1, tx_id, t0 + 10 * MIN, 3000)
    await station.meter(0, tx_id, t0 + 12 * MIN, 900_000)
    await station.meter(1, tx_id, t0 + 15 * MIN, 4000)
    await station.stop_tx(tx_id, 0, t0 + 20 * MIN)     # a stop register the station lost
    [session] = await sessions(harness)
    assert session.energy_wh == 3000, (session.energy_wh, flags(session))
    assert "implausible_jump" not in flags(session), flags(session)
    samples = await harness.store.run(lambda tx: tx.samples(session.transaction_id))
    assert 900_000 not in [s["value_si"] for s in samples]
