"""Every kWh billed exactly once: duplicates recognised by meaning, orphans never billed twice,
and the billing CSV says which rows count (real server, real SQLite, `ocpp` client)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from ocpp.v16 import call

from smartcharge.events import SessionStopped

from conftest import ID_TAG


def _z(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _offset(moment) -> str:
    """The same instant written another way: milliseconds and a numeric zone."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def _sample(moment, value, unit="Wh", context="Sample.Periodic", fmt=_z):
    return {"timestamp": fmt(moment), "sampledValue": [
        {"value": value, "unit": unit, "measurand": "Energy.Active.Import.Register",
         "context": context}]}


async def _sessions(harness):
    return await harness.store.run(lambda tx: tx.sessions())


async def _all_samples(harness):
    return await harness.store.run(lambda tx: tx._dicts("SELECT * FROM meter_samples"))


async def _csv(harness) -> list[dict]:
    answer = await harness.api.get(harness.url("/api/sessions.csv"))
    assert answer.status == 200, await answer.text()
    return list(csv.DictReader(io.StringIO(await answer.text())))


async def test_reworded_retries_are_duplicates_by_meaning(harness, t0):
    station = await harness.station("CP1")
    first = await station.start_tx(1, 10_000, t0)
    again = await station.call(call.StartTransaction(
        connector_id=1, id_tag=ID_TAG, meter_start=10_000, timestamp=_offset(t0)),
        suppress=False)
    assert again.transaction_id == first.transaction_id
    tx_id = first.transaction_id
    five = t0 + timedelta(minutes=5)
    await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
        {"timestamp": _z(five), "sampledValue": [
            {"value": "11000", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "7000", "measurand": "Power.Active.Import", "unit": "W"}]}]),
        suppress=False)
    # the retry: other sample order, kWh instead of Wh, another way to write the time
    await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
        {"timestamp": _offset(five), "sampledValue": [
            {"value": "7", "measurand": "Power.Active.Import", "unit": "kW"},
            {"value": "11.0", "measurand": "Energy.Active.Import.Register", "unit": "kWh"}]}]),
        suppress=False)
    assert len(await _all_samples(harness)) == 2

    stop_at = t0 + timedelta(minutes=10)
    data = [_sample(t0 + timedelta(minutes=9), "11900", context="Transaction.End")]
    await station.stop_tx(tx_id, 12_000, stop_at, transaction_data=data)
    reworded = [_sample(t0 + timedelta(minutes=8), "11.8", "kWh", fmt=_offset),
                _sample(t0 + timedelta(minutes=9), "11.9", "kWh", "Transaction.End", _offset)]
    answer = await station.call(call.StopTransaction(
        meter_stop=12_000, timestamp=_offset(stop_at), transaction_id=tx_id, reason="Local",
        id_tag=ID_TAG, transaction_data=reworded), suppress=False)
    assert answer.id_tag_info["status"] == "Accepted"
    sessions = await _sessions(harness)
    assert [(s.transaction_id, s.state, s.energy_wh) for s in sessions] == [
        (tx_id, "stopped", 2_000)]
    assert [s["connector_id"] for s in await _all_samples(harness)] == [1, 1, 1]
    assert len([e for e in harness.events if isinstance(e, SessionStopped)]) == 1


async def test_reworded_retry_of_a_reconciled_stop_is_not_an_orphan(harness, t0):
    station = await harness.station("CP2")
    tx_id = (await station.start_tx(1, 40_000, t0)).transaction_id
    stop_at = t0 + timedelta(minutes=6)
    data = [_sample(t0 + timedelta(minutes=1), "40100", context="Transaction.Begin"),
            _sample(t0 + timedelta(minutes=6), "41000", context="Transaction.End")]
    await station.stop_tx(-1, 41_000, stop_at, transaction_data=data)
    await station.stop_tx(-1, 41_000, stop_at, transaction_data=data[::-1])
    sessions = await _sessions(harness)
    assert [(s.transaction_id, s.state, s.energy_wh) for s in sessions] == [
        (tx_id, "stopped", 1_000)]
    assert {s["connector_id"] for s in await _all_samples(harness)} == {1}


def _billable_wh(rows) -> float:
    return sum(float(r["energy_wh"]) for r in rows if r["billable"] == "true")


async def test_orphans_are_never_billed_twice_and_the_csv_says_what_counts(harness, t0):
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 40_000, t0)).transaction_id
    stop_at = t0 + timedelta(minutes=30)
    data = [_sample(t0 + timedelta(minutes=1), "40100", context="Transaction.Begin"),
            _sample(t0 + timedelta(minutes=29), "44900")]
    await station.stop_tx(tx_id, 45_000, stop_at, transaction_data=data)
    # a different second stop for the same transaction (firmware bug): kept, never billed
    await station.stop_tx(tx_id, 45_050, stop_at + timedelta(seconds=5), transaction_data=data)
    # the same energy again under id 0 with another stop register: overlaps the billed session
    again = [_sample(t0 + timedelta(minutes=2), "40200"), _sample(t0 + timedelta(minutes=28),
                                                                  "44800")]
    await station.stop_tx(0, 45_020, stop_at + timedelta(seconds=2), transaction_data=again)
    # an orphan whose energy is billed nowhere else (another connector's meter): it counts
    other = [_sample(t0 + timedelta(minutes=2), "900000", context="Transaction.Begin")]
    await station.stop_tx(987_654, 903_000, t0 + timedelta(minutes=20), transaction_data=other)
    # a session still running has no billable energy yet
    await station.start_tx(2, 5_000, t0 + timedelta(minutes=40))

    rows = await _csv(harness)
    by_state = [(r["state"], r["billable"]) for r in rows]
    assert by_state == [("stopped", "true"), ("orphan_stop", "false"),
                        ("orphan_stop", "false"), ("orphan_stop", "true"), ("open", "false")]
    assert "billed_on_another_session" in rows[2]["flags"]
    assert _billable_wh(rows) == 5_000 + 3_000


async def test_unknown_id_stop_after_a_reboot_is_the_late_stop_of_the_closed_session(
        harness, t0):
    station = await harness.station("CP3")
    tx_id = (await station.start_tx(1, 1_000, t0)).transaction_id
    await station.meter(1, tx_id, t0 + timedelta(minutes=5), 2_000)
    await station.boot()                                     # closed implicitly at 1 000 Wh
    await station.stop_tx(-1, 2_400, t0 + timedelta(minutes=7), reason="PowerLoss")
    rows = await _csv(harness)
    assert [(r["transaction_id"], r["state"], r["billable"]) for r in rows] == [
        (str(tx_id), "stopped", "true")]
    assert _billable_wh(rows) == 1_400
    assert "late_stop" in rows[0]["flags"]


async def test_meter_events_carry_the_time_we_received_them(harness, t0):
    from datetime import UTC, datetime

    from smartcharge.events import MeterSampled
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 10_000, t0)).transaction_id
    before = datetime.now(UTC)
    await station.meter(1, tx_id, before + timedelta(days=1), 11_000)   # a clock a day ahead
    (sampled,) = [e for e in harness.events if isinstance(e, MeterSampled)]
    assert sampled.at == (before + timedelta(days=1)).replace(microsecond=0)
    assert before <= sampled.received_at <= datetime.now(UTC)


async def test_retries_are_recognised_without_their_remembered_keys(harness, t0):
    # a database from before keys by meaning (payload hashes): a retry in flight at the upgrade
    # must still be the same start and the same stop
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 10_000, t0)).transaction_id
    await harness.store.run(lambda tx: tx._db.execute("DELETE FROM inbound_messages"))
    assert (await station.start_tx(1, 10_000, t0)).transaction_id == tx_id
    await station.stop_tx(tx_id, 12_000, t0 + timedelta(minutes=10))
    await harness.store.run(lambda tx: tx._db.execute("DELETE FROM inbound_messages"))
    await station.stop_tx(tx_id, 12_000, t0 + timedelta(minutes=10))
    rows = await _csv(harness)
    assert [(r["state"], r["energy_wh"], r["billable"]) for r in rows] == [
        ("stopped", "2000.0", "true")]


async def test_two_unknown_id_stops_at_one_instant_are_two_stops(harness, t0):
    # found by the property test: two connectors, both meters reset, both stop under -1 at the
    # same instant with the same register; only the id tag tells them apart
    from ocpp.v16 import call as calls
    station = await harness.station("CP1")
    for connector, tag in ((1, "TAG-A"), (2, "TAG-B")):
        await harness.store.run(lambda tx, tag=tag: tx.put_id_tag(tag))
        await station.call(calls.StartTransaction(connector_id=connector, id_tag=tag,
                                                  meter_start=10_000, timestamp=_z(t0)),
                           suppress=False)
    for tag in ("TAG-A", "TAG-B"):
        await station.call(calls.StopTransaction(
            meter_stop=10_500, timestamp=_z(t0 + timedelta(minutes=5)), transaction_id=-1,
            id_tag=tag), suppress=False)
    rows = await _csv(harness)
    assert [(r["connector_id"], r["state"], r["energy_wh"]) for r in rows] == [
        ("1", "stopped", "500.0"), ("2", "stopped", "500.0")]


async def test_an_offline_start_is_planned_as_a_car_that_still_needs_energy(tmp_path):
    # meterStart 0 after an offline start, a 4.5 MWh register: the controller (the whole app,
    # a real station over a WebSocket) plans the car by the ledger's rules, not at 0 W as
    # "energy need met"
    import aiohttp
    from aiohttp.test_utils import TestServer

    from conftest import Harness, make_site
    from smartcharge.app import create_app
    from smartcharge.site.setup import CONTROLLER
    from smartcharge.site.topology import ConnectorRef
    app = create_app(make_site(), db_path=str(tmp_path / "c.sqlite"))
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    http = aiohttp.ClientSession()
    harness = Harness(server, http)
    try:
        from datetime import UTC, datetime
        now = datetime.now(UTC).replace(microsecond=0)
        station = await harness.station("CP1")
        tx_id = (await station.start_tx(1, 0, now - timedelta(minutes=10))).transaction_id
        for minutes, register_wh in ((10, 4_500_000), (5, 4_500_900), (0, 4_501_800)):
            await station.meter(1, tx_id, now - timedelta(minutes=minutes), register_wh)
        controller = app[CONTROLLER]
        await harness.wait_for(lambda: controller.state.session_by_id(tx_id) is not None
                               and controller.state.session_by_id(tx_id).energy_wh == 1_800)
        plan = await controller.replan()
        assert plan.connectors[ConnectorRef("CP1", 1)].power_at(controller.clock.now()) > 0
    finally:
        await harness.close()
        await http.close()
        await server.close()


async def test_of_two_orphans_with_the_same_energy_only_the_first_is_billed(harness, t0):
    station = await harness.station("CP2")
    data = [_sample(t0 + timedelta(minutes=1), "900000", context="Transaction.Begin"),
            _sample(t0 + timedelta(minutes=19), "902900")]
    await station.stop_tx(987_654, 903_000, t0 + timedelta(minutes=20), transaction_data=data)
    again = [_sample(t0 + timedelta(minutes=2), "900100"),
             _sample(t0 + timedelta(minutes=18), "902800")]
    await station.stop_tx(0, 903_010, t0 + timedelta(minutes=20, seconds=3),
                          transaction_data=again)
    rows = await _csv(harness)
    assert [(r["state"], r["billable"]) for r in rows] == [("orphan_stop", "true"),
                                                           ("orphan_stop", "false")]
    assert _billable_wh(rows) == 3_000


async def test_a_stop_reworded_after_a_reboot_under_another_id_is_the_same_stop(harness, t0):
    """A station that stopped a transaction and rebooted before it got the answer sends the
    stop again from what it kept: the same register, tag and instant - but that instant without
    its milliseconds, and the transaction under an id it made up again (another number, or -1).
    Matched by exact instant only, each became an orphan row of its own (not billed, but a
    phantom session in the API, the CSV and the site's events: s26-trust); the same second is
    the same stop."""
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 10_000, t0)).transaction_id
    stop_at = t0 + timedelta(minutes=30)
    data = [_sample(t0 + timedelta(minutes=29), "14900")]
    for transaction_id, stamp in ((tx_id, stop_at.strftime("%Y-%m-%dT%H:%M:%S.250Z")),
                                  (tx_id + 7, _z(stop_at)),
                                  (-1, stop_at.strftime("%Y-%m-%dT%H:%M:%S.999Z"))):
        answer = await station.call(call.StopTransaction(
            meter_stop=15_000, timestamp=stamp, transaction_id=transaction_id, reason="Local",
            id_tag=ID_TAG, transaction_data=data), suppress=False)
        assert answer.id_tag_info["status"] == "Accepted"
    sessions = await _sessions(harness)
    assert [(s.transaction_id, s.state, s.energy_wh) for s in sessions] == [
        (tx_id, "stopped", 5_000)], [(s.transaction_id, s.state, s.flags) for s in sessions]
    assert len([e for e in harness.events if isinstance(e, SessionStopped)]) == 1
    rows = await _csv(harness)
    assert [(int(r["transaction_id"]), r["billable"]) for r in rows] == [(tx_id, "true")]
    # another stop register in the same second is another stop (kept for review, as before)
    await station.call(call.StopTransaction(
        meter_stop=15_010, timestamp=_z(stop_at), transaction_id=-1, reason="Local",
        id_tag=ID_TAG), suppress=False)
    assert len(await _sessions(harness)) == 2


async def test_a_start_reworded_after_a_reboot_is_the_same_start(harness, t0):
    """The same for a StartTransaction a station sends again after a reboot from what it kept:
    the instant without its milliseconds. Matched to the microsecond it was a second session,
    stamped before the first, so the first was not closed by it: the first stayed open in the
    store with nothing billed (a phantom, planned as a car after a restart), the stop went to
    the second (s26-trust). Within the second, the same connector, tag and register, it is the
    same start, answered with the same transaction id."""
    station = await harness.station("CP1")
    first = await station.call(call.StartTransaction(
        connector_id=1, id_tag=ID_TAG, meter_start=1_000,
        timestamp=t0.strftime("%Y-%m-%dT%H:%M:%S.250Z")), suppress=False)
    again = await station.call(call.StartTransaction(
        connector_id=1, id_tag=ID_TAG, meter_start=1_000, timestamp=_z(t0)), suppress=False)
    assert again.transaction_id == first.transaction_id
    await station.stop_tx(first.transaction_id, 3_000, t0 + timedelta(minutes=20))
    sessions = await _sessions(harness)
    assert [(s.transaction_id, s.state, s.energy_wh) for s in sessions] == [
        (first.transaction_id, "stopped", 2_000)]
