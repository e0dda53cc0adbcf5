"""Stations whose meters send `Energy.Active.Import.Register` only per phase, never a total.

Valid OCPP (a sampledValue's `phase`: L1, L2, L3 or L1-N, L2-N, L3-N) and what real meters do.
Such a session was flagged `unverifiable` and billed nothing, and the controller planned it as
if the car had taken nothing. The rule now: a set of values (one timestamp, one context, one
location) with no total but a value for every phase the session reports there is billed as the
sum of its phases, each value in its own unit; a total in the set wins; a set with a phase
missing is not summed (`phases_incomplete`), never guessed. The live energy (the controller's),
the ledger's bill, the CSV export and a restart read the same registers."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import timedelta

from ocpp.v16 import call

from smartcharge.clock import ManualClock
from smartcharge.metering import ENERGY_REGISTER
from smartcharge.site.controller import SiteController
from smartcharge.site.restore import restore
from tests.conftest import ocpp_time
from tests.v201_billing import sessions, tx_event
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)


def flags(session) -> set[str]:
    return set(session.flags.split(",")) - {""}


def phase_values(wh: tuple[float | None, ...], *, names=("L1", "L2", "L3"), v201=False,
                 context="Sample.Periodic", kwh_on: str | None = None,
                 total_wh: float | None = None) -> list[dict]:
    """One set's per-phase registers (a None value: that phase left out); `kwh_on`: that
    phase's value in kWh; `total_wh`: a total register in the set as well."""
    values = []
    for name, value in zip(names, wh):
        if value is None:
            continue
        unit = "kWh" if name == kwh_on else "Wh"
        number = value / 1000 if unit == "kWh" else value
        sampled = {"measurand": ENERGY_REGISTER, "phase": name, "context": context}
        if v201:
            sampled |= {"value": number, "unit_of_measure": {"unit": unit}}
        else:
            sampled |= {"value": f"{number:g}", "unit": unit}
        values.append(sampled)
    if total_wh is not None:
        sampled = {"measurand": ENERGY_REGISTER, "context": context}
        sampled |= ({"value": total_wh, "unit_of_measure": {"unit": "Wh"}} if v201
                    else {"value": f"{total_wh:g}", "unit": "Wh"})
        values.append(sampled)
    return values


def updated(ref: str, seq_no: int, at, values: list[dict]):
    return replace(tx_event("Updated", ref, seq_no, at), meter_value=[
        {"timestamp": ocpp_time(at), "sampled_value": values}])


def with_values(event, at, values: list[dict]):
    return replace(event, meter_value=[{"timestamp": ocpp_time(at), "sampled_value": values}])


async def live_energy_wh(harness, site, transaction_id: int, now) -> float | None:
    """The controller's energy of the session from the events the server published."""
    controller = SiteController(site, ManualClock(now))
    for event in harness.events:
        controller.on_event(event)
    return controller.state.session_by_id(transaction_id).energy_wh


async def restarted_energy_wh(harness, site, transaction_id: int, now) -> float | None:
    """The same after a restart: the live site rebuilt from the store."""
    controller = SiteController(site, ManualClock(now))
    await restore(controller, harness.store)
    return controller.state.session_by_id(transaction_id).energy_wh


async def csv_row(harness, transaction_id: int) -> dict:
    answer = await harness.api.get(harness.url("/api/sessions.csv"))
    assert answer.status == 200, await answer.text()
    rows = list(csv.DictReader(io.StringIO(await answer.text())))
    [row] = [r for r in rows if int(r["transaction_id"]) == transaction_id]
    return row


async def test_1_6_per_phase_samples_are_the_live_energy_and_agree_with_the_bill(
        harness, site, t0):
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 30_000, t0)).transaction_id
    for k in range(1, 4):   # 10 + 10 + 10 kWh at the start, +1 kWh a phase and step
        at = t0 + 5 * k * MIN
        await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
            {"timestamp": ocpp_time(at), "sampledValue": phase_values(
                (10_000 + 1000 * k,) * 3, names=("L1-N", "L2-N", "L3-N"), kwh_on="L2-N")}]),
            suppress=False)
    now = t0 + 16 * MIN
    assert await live_energy_wh(harness, site, tx_id, now) == 9000
    assert await restarted_energy_wh(harness, site, tx_id, now) == 9000
    await station.stop_tx(tx_id, 40_000, t0 + 20 * MIN)
    [session] = await sessions(harness)
    assert session.energy_wh == 10_000 and session.energy_method == "registers"
    assert not flags(session) & {"samples_disagree", "unverifiable"}, flags(session)
    assert float((await csv_row(harness, tx_id))["energy_wh"]) == 10_000


async def test_1_6_offline_start_is_billed_from_the_phase_sums(harness, t0):
    """meterStart 0 from a station that started offline, its three phase registers at 333 kWh
    each: stop − start is implausible, so the chain of phase sums decides (it was
    `unverifiable`, billed nothing), the stop's transactionData per phase too."""
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 0, t0)).transaction_id
    for k in range(1, 4):
        await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
            {"timestamp": ocpp_time(t0 + 5 * k * MIN),
             "sampledValue": phase_values((333_000 + 1000 * k,) * 3)}]), suppress=False)
    end = t0 + 20 * MIN
    await station.stop_tx(tx_id, 1_011_000, end, transaction_data=[
        {"timestamp": ocpp_time(end), "sampledValue": phase_values(
            (337_000,) * 3, context="Transaction.End")}])
    [session] = await sessions(harness)
    # 1 002 -> 1 011 kWh: the step from meterStart 0 is not billed (start_register_zero)
    assert session.energy_wh == 9000, (session.energy_wh, flags(session))
    assert "unverifiable" not in flags(session), flags(session)
    row = await csv_row(harness, tx_id)
    assert float(row["energy_wh"]) == 9000 and row["billable"] == "true"


async def test_2_0_1_per_phase_begin_and_end_are_billed(harness, site, t0):
    station = await station201(harness)
    begin = phase_values((10_000, 11_000, 12_000), v201=True, context="Transaction.Begin",
                         kwh_on="L1")
    await station.send(with_values(tx_event("Started", "tx-P", 0, t0), t0, begin))
    for k in range(1, 4):
        at = t0 + 5 * k * MIN
        await station.send(updated("tx-P", k, at, phase_values(
            (10_000 + 1000 * k, 11_000 + 1000 * k, 12_000 + 500 * k), v201=True, kwh_on="L3")))
    [row] = await sessions(harness)
    now = t0 + 16 * MIN
    assert await live_energy_wh(harness, site, row.transaction_id, now) == 7500
    assert await restarted_energy_wh(harness, site, row.transaction_id, now) == 7500
    end = t0 + 20 * MIN
    await station.send(with_values(tx_event("Ended", "tx-P", 4, end), end, phase_values(
        (14_000, 15_000, 14_000), v201=True, context="Transaction.End")))
    [session] = await sessions(harness)
    assert session.energy_wh == 10_000 and session.energy_method == "registers", \
        (session.energy_wh, session.energy_method, flags(session))
    assert session.meter_start_wh == 33_000 and session.meter_stop_wh == 43_000
    assert not flags(session) & {"no_stop_register", "no_start_register", "unverifiable"}
    assert float((await csv_row(harness, session.transaction_id))["energy_wh"]) == 10_000


async def test_2_0_1_a_total_in_the_set_wins_over_its_phases(harness, site, t0):
    """Phases that do not add up to the set's total (rounded, or one phase's register reset):
    the total the station sent is billed."""
    station = await station201(harness)
    await station.send(with_values(tx_event("Started", "tx-T", 0, t0), t0, phase_values(
        (1000, 1000, 1000), v201=True, context="Transaction.Begin", total_wh=20_000)))
    at = t0 + 5 * MIN
    await station.send(updated("tx-T", 1, at, phase_values(
        (2000, 2000, 2000), v201=True, total_wh=22_000)))
    [row] = await sessions(harness)
    assert await live_energy_wh(harness, site, row.transaction_id, at) == 2000
    end = t0 + 10 * MIN
    await station.send(with_values(tx_event("Ended", "tx-T", 2, end), end, phase_values(
        (3000, 3000, 3000), v201=True, context="Transaction.End", total_wh=24_000)))
    [session] = await sessions(harness)
    assert session.energy_wh == 4000, (session.energy_wh, flags(session))


async def test_2_0_1_a_set_with_a_phase_missing_is_not_summed(harness, site, t0):
    """L3 missing from one periodic set and from the End set: neither is summed (their sums
    would read as a reset, or bill 14 kWh less): the session is billed to its last complete
    set, flagged `phases_incomplete` and `no_stop_register`, and the live energy skips the
    incomplete set as the bill does."""
    station = await station201(harness)
    await station.send(with_values(tx_event("Started", "tx-M", 0, t0), t0, phase_values(
        (10_000, 10_000, 10_000), v201=True, context="Transaction.Begin")))
    for k, l3 in ((1, 11_000), (2, None), (3, 13_000)):
        at = t0 + 5 * k * MIN
        await station.send(updated("tx-M", k, at, phase_values(
            (10_000 + 1000 * k, 10_000 + 1000 * k, l3), v201=True)))
    [row] = await sessions(harness)
    now = t0 + 16 * MIN
    assert await live_energy_wh(harness, site, row.transaction_id, now) == 9000
    assert await restarted_energy_wh(harness, site, row.transaction_id, now) == 9000
    end = t0 + 20 * MIN
    await station.send(with_values(tx_event("Ended", "tx-M", 4, end), end, phase_values(
        (14_000, 14_000, None), v201=True, context="Transaction.End")))
    [session] = await sessions(harness)
    assert session.energy_wh == 9000, (session.energy_wh, flags(session))
    assert {"phases_incomplete", "no_stop_register"} <= flags(session), flags(session)
    assert "meter_reset" not in flags(session), flags(session)


async def test_a_single_phase_meter_is_billed_from_its_one_phase(harness, site, t0):
    """A meter that reports only L2 (a single-phase connector wired on L2): that phase is
    every phase it reports, so its register is the total."""
    station = await station201(harness)
    await station.send(with_values(tx_event("Started", "tx-S", 0, t0), t0, phase_values(
        (None, 5000, None), v201=True, context="Transaction.Begin")))
    end = t0 + 30 * MIN
    await station.send(updated("tx-S", 1, t0 + 15 * MIN, phase_values((None, 6000, None),
                                                                         v201=True)))
    await station.send(with_values(tx_event("Ended", "tx-S", 2, end), end, phase_values(
        (None, 7000, None), v201=True, context="Transaction.End")))
    [session] = await sessions(harness)
    assert session.energy_wh == 2000, (session.energy_wh, flags(session))


def test_the_live_chain_drops_sums_a_later_set_shows_incomplete():
    """The first sets lack L3 (the live energy cannot know yet); once a set shows L3, the live
    energy is what the bill says of all of them: the sums without L3 left out."""
    from datetime import UTC, datetime

    from smartcharge.metering import LiveEnergy, billed_points, register_points, session_energy

    start = datetime(2026, 1, 1, 8, tzinfo=UTC)
    sets = [(1, {"L1": 1000, "L2": 1000}), (2, {"L1": 2000, "L2": 2000}),
            (3, {"L1": 3000, "L2": 3000, "L3": 3000}), (4, {"L1": 4000, "L2": 3500}),
            (5, {"L1": 5000, "L2": 4000, "L3": 4000})]
    live = LiveEnergy(None, start, 22_000)
    values = []
    for minute, phases in sets:
        at = start + minute * 5 * MIN
        live.add(at, float(sum(phases.values())), "Outlet", frozenset(phases))
        values += [(at, "Sample.Periodic", "Outlet", name, float(wh))
                   for name, wh in phases.items()]
    points, incomplete = register_points(values)
    kept, said = billed_points(points, incomplete)
    bill = session_energy(None, start, None, None,
                          [(p.timestamp, p.value_wh) for p in kept], 22_000)
    assert live.energy_wh == bill.energy_wh == 4000
    assert said == {"phase_sum", "phases_incomplete"}


async def test_phase_sums_of_decimal_registers_are_billed_to_the_meters_digits(harness, t0):
    """Per-phase registers with decimals (Wh to the tenth, as meters write them) add up as the
    meter's digits do: summed as binary floats 100.1 + 200.2 + 300.3 Wh read 600.5999999999999
    and the session's bill 3000.0000000000005 Wh - float noise, as kWh read before (s25-audit)."""
    station = await station201(harness)
    await station.send(with_values(tx_event("Started", "tx-D", 0, t0), t0, phase_values(
        (100.1, 200.2, 300.3), v201=True, context="Transaction.Begin")))
    end = t0 + 20 * MIN
    await station.send(with_values(tx_event("Ended", "tx-D", 1, end), end, phase_values(
        (1100.1, 1200.2, 1300.3), v201=True, context="Transaction.End")))
    [session] = await sessions(harness)
    assert (session.meter_start_wh, session.meter_stop_wh) == (600.6, 3600.6)
    assert session.energy_wh == 3000, (session.energy_wh, flags(session))
