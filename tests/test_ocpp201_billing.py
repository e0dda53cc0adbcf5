"""OCPP 2.0.1 billing from TransactionEvent, through the same ledger as 1.6: one session per
station transaction, energy from the registers, duplicates, seqNo gaps, offline replays out of
order, a late idToken, a lost Started, an Ended without meter values, reboots."""

from __future__ import annotations

from datetime import datetime, timedelta

from smartcharge.appkeys import REGISTRY
from smartcharge.events import MeterSampled, SessionStarted, SessionStopped
from tests.conftest import ID_TAG
from tests.v201_billing import sessions, tx_event
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)


def of(harness, kind):
    return [e for e in harness.events if isinstance(e, kind)]


def flags(session):
    return set(session.flags.split(",")) - {""}


async def test_a_transaction_is_billed_from_its_registers(harness, t0):
    station = await station201(harness)
    started = await station.send(tx_event("Started", "tx-A", 0, t0, register_wh=1000))
    assert started.id_token_info == {"status": "Accepted"}
    await station.send(tx_event("Updated", "tx-A", 1, t0 + 10 * MIN, register_wh=3000))
    await station.send(tx_event("Ended", "tx-A", 2, t0 + 20 * MIN, register_wh=5500))
    [session] = await sessions(harness)
    assert (session.state, session.energy_wh, session.energy_method) == ("stopped", 4500,
                                                                         "registers")
    assert (session.station_tx_ref, session.connector_id, session.id_tag) == ("tx-A", 1, ID_TAG)
    assert (session.meter_start_wh, session.meter_stop_wh) == (1000, 5500)
    assert session.stop_reason == "EVDisconnected" and flags(session) == set()
    [begun] = of(harness, SessionStarted)
    assert (begun.transaction_id, begun.connector_id, begun.meter_start_wh, begun.at) == (
        session.transaction_id, 1, 1000, t0)
    assert [m.energy_register_wh for m in of(harness, MeterSampled)] == [1000, 3000, 5500]
    assert all(m.transaction_id == session.transaction_id for m in of(harness, MeterSampled))
    [ended] = of(harness, SessionStopped)
    assert (ended.transaction_id, ended.energy_wh, ended.implicit) == (
        session.transaction_id, 4500, False)
    adapter = harness.app[REGISTRY].get("CP1").adapter
    assert await adapter.station_transaction_id(session.transaction_id) == "tx-A"
    assert await adapter.station_transaction_id(session.transaction_id + 1) is None
    async with harness.api.get(harness.url(f"/api/sessions/{session.transaction_id}")) as got:
        body = await got.json()
    assert (body["station_transaction_id"], body["energy_wh"]) == ("tx-A", 4500)


async def test_our_id_maps_back_from_the_store_after_a_reconnect(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-B", 0, t0, register_wh=10))
    await station.ws.close()
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is None)
    await station201(harness, boot=False)
    [session] = await sessions(harness)
    adapter = harness.app[REGISTRY].get("CP1").adapter
    assert await adapter.station_transaction_id(session.transaction_id) == "tx-B"
    other = await station201(harness, "CP2")
    await other.send(tx_event("Started", "tx-C", 0, t0, register_wh=10))
    theirs = [s for s in await sessions(harness) if s.station_id == "CP2"][0]
    assert await adapter.station_transaction_id(theirs.transaction_id) is None


async def test_duplicates_even_reworded_change_nothing(harness, t0):
    station = await station201(harness)
    events = [tx_event("Started", "tx-D", 0, t0, register_wh=2000),
              tx_event("Updated", "tx-D", 1, t0 + 10 * MIN, register_wh=4000),
              tx_event("Ended", "tx-D", 2, t0 + 20 * MIN, register_wh=7000)]
    reworded = [tx_event("Started", "tx-D", 0, t0, register_wh=2000, kwh=True),
                tx_event("Updated", "tx-D", 1, t0 + 10 * MIN, register_wh=4000, kwh=True,
                         trigger="ChargingStateChanged"),
                tx_event("Ended", "tx-D", 2, t0 + 20 * MIN, register_wh=7000, kwh=True)]
    for request in events + events + reworded:
        answer = await station.send(request)
        assert answer.id_token_info == {"status": "Accepted"}
    [session] = await sessions(harness)
    assert session.energy_wh == 5000
    assert len(of(harness, SessionStarted)) == 1 and len(of(harness, SessionStopped)) == 1
    assert len(of(harness, MeterSampled)) == 3


async def test_a_seq_no_gap_is_flagged_until_the_missing_event_arrives(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-G", 0, t0, register_wh=100))
    await station.send(tx_event("Updated", "tx-G", 2, t0 + 20 * MIN, register_wh=3100))
    await station.send(tx_event("Ended", "tx-G", 3, t0 + 30 * MIN, register_wh=4100))
    [session] = await sessions(harness)
    assert session.energy_wh == 4000 and "seq_gap" in flags(session)
    await station.send(tx_event("Updated", "tx-G", 1, t0 + 10 * MIN, register_wh=1600,
                                offline=True))
    [session] = await sessions(harness)
    assert session.energy_wh == 4000
    assert "seq_gap" not in flags(session) and "offline_events" in flags(session)
    seq_nos = await harness.store.run(lambda tx: tx.execute(
        "SELECT seq_no FROM transaction_events ORDER BY seq_no").fetchall())
    assert [row[0] for row in seq_nos] == [0, 1, 2, 3]


async def test_an_offline_replay_in_reverse_order_is_one_session_billed_exactly(harness, t0):
    station = await station201(harness)
    replay = [tx_event("Ended", "tx-R", 3, t0 + 30 * MIN, register_wh=9000, offline=True),
              tx_event("Updated", "tx-R", 2, t0 + 20 * MIN, register_wh=6000, offline=True),
              tx_event("Updated", "tx-R", 1, t0 + 10 * MIN, register_wh=3000, offline=True),
              tx_event("Started", "tx-R", 0, t0, register_wh=500, offline=True)]
    for request in replay:
        await station.send(request)
    [session] = await sessions(harness)
    assert (session.state, session.energy_wh) == ("stopped", 8500)
    assert (session.start_time, session.meter_start_wh) == (
        t0.isoformat(timespec="microseconds"), 500)
    assert "started_event_missing" not in flags(session)
    assert not of(harness, SessionStarted)        # never running as far as the site knows
    # the stop is published once, with what was known then: its End register alone, which
    # says nothing of what the car took (None; it said 0 Wh until session 33); the bill is
    # revised as the rest arrives
    assert [e.energy_wh for e in of(harness, SessionStopped)] == [None]


async def test_an_id_token_that_arrives_late(harness, t0):
    station = await station201(harness)
    answer = await station.send(tx_event("Started", "tx-L", 0, t0, register_wh=0,
                                         id_tag=None))
    assert answer.id_token_info is None
    [session] = await sessions(harness)
    assert session.id_tag is None and of(harness, SessionStarted)[0].id_tag == ""
    late = await station.send(tx_event("Updated", "tx-L", 1, t0 + MIN, register_wh=10,
                                       trigger="Authorized", id_tag="STRANGER"))
    assert late.id_token_info == {"status": "Unknown"}
    [session] = await sessions(harness)
    assert session.id_tag == "STRANGER"


async def test_a_lost_started_opens_the_session_from_what_is_known(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Updated", "tx-S", 4, t0 + 10 * MIN, register_wh=2000))
    [session] = await sessions(harness)
    assert session.state == "open" and "started_event_missing" in flags(session)
    [begun] = of(harness, SessionStarted)
    assert (begun.transaction_id, begun.meter_start_wh) == (session.transaction_id, None)
    await station.send(tx_event("Ended", "tx-S", 5, t0 + 20 * MIN, register_wh=5000))
    [session] = await sessions(harness)
    assert (session.state, session.energy_wh) == ("stopped", 3000)


async def test_an_ended_without_meter_values_bills_the_last_register_seen(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-E", 0, t0, register_wh=1000))
    await station.send(tx_event("Updated", "tx-E", 1, t0 + 10 * MIN, register_wh=4000))
    await station.send(tx_event("Ended", "tx-E", 2, t0 + 11 * MIN))
    [session] = await sessions(harness)
    assert (session.state, session.energy_wh, session.meter_stop_wh) == ("stopped", 3000, None)
    assert "no_stop_register" in flags(session)
    assert of(harness, SessionStopped)[0].energy_wh == 3000


async def test_a_reboot_closes_the_transaction_and_its_late_ended_still_wins(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-B1", 0, t0, register_wh=1000))
    await station.send(tx_event("Updated", "tx-B1", 1, t0 + 10 * MIN, register_wh=2000))
    await station.boot(reason="PowerUp")
    [session] = await sessions(harness)
    assert (session.state, session.closed_by, session.energy_wh) == (
        "closed_implicitly", "Reboot", 1000)
    assert of(harness, SessionStopped)[0].implicit
    await station.send(tx_event("Ended", "tx-B1", 2, t0 + 15 * MIN, register_wh=3500,
                                stopped_reason="PowerLoss", offline=True))
    [session] = await sessions(harness)
    assert (session.state, session.energy_wh, session.stop_reason) == ("stopped", 2500,
                                                                       "PowerLoss")
    assert "late_stop" in flags(session)


async def test_a_transaction_that_goes_on_after_a_boot_is_open_again(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-B2", 0, t0, register_wh=1000))
    await station.boot(reason="Unknown")
    [closed] = await sessions(harness)
    after_boot = datetime.fromisoformat(closed.stop_time) + MIN   # the boot's time is ours
    await station.send(tx_event("Updated", "tx-B2", 1, after_boot, register_wh=1500))
    [session] = await sessions(harness)
    assert session.state == "open" and "reopened_after_boot" in flags(session)
    assert [e.transaction_id for e in of(harness, SessionStarted)] == [session.transaction_id] * 2


async def test_a_new_transaction_on_the_evse_closes_the_one_whose_end_was_lost(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-N1", 0, t0, register_wh=1000))
    await station.send(tx_event("Updated", "tx-N1", 1, t0 + 10 * MIN, register_wh=2500))
    await station.send(tx_event("Started", "tx-N2", 0, t0 + 30 * MIN, register_wh=2600))
    first, second = await sessions(harness)
    assert (first.state, first.closed_by, first.energy_wh) == ("closed_implicitly",
                                                               "NewSession", 1500)
    assert second.state == "open"
    assert of(harness, SessionStarted)[1].closed_previous == first.transaction_id
    # an old transaction replayed after the newer one began is not what runs there now
    await station.send(tx_event("Started", "tx-N0", 0, t0 - 60 * MIN, register_wh=100,
                                offline=True))
    old = [s for s in await sessions(harness) if s.station_tx_ref == "tx-N0"][0]
    assert old.state == "closed_implicitly"
    assert [s.state for s in await sessions(harness) if s.station_tx_ref == "tx-N2"] == ["open"]


async def test_a_triggered_boot_is_no_reboot(harness, t0):
    # BootNotification with reason Triggered answers our TriggerMessage: the station did not
    # restart, its transactions go on
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-T", 0, t0, register_wh=1000))
    await station.boot(reason="Triggered")
    [session] = await sessions(harness)
    assert session.state == "open" and not of(harness, SessionStopped)


async def test_a_transaction_id_reused_after_its_end_is_a_new_session(harness, t0):
    # the spec wants it unique per station; firmware that counts from 1 after each reboot
    # does not: a Started after that id's Ended is another transaction
    station = await station201(harness)
    await station.send(tx_event("Started", "1", 0, t0, register_wh=1000))
    await station.send(tx_event("Ended", "1", 1, t0 + 10 * MIN, register_wh=2000))
    await station.send(tx_event("Started", "1", 0, t0 + 60 * MIN, register_wh=2000))
    await station.send(tx_event("Updated", "1", 1, t0 + 70 * MIN, register_wh=2500))
    # a late copy of the first transaction's Updated still goes to the first session
    await station.send(tx_event("Updated", "1", 1, t0 + 5 * MIN, register_wh=1400,
                                offline=True))
    first, second = await sessions(harness)
    assert (first.state, first.energy_wh) == ("stopped", 1000)
    assert second.state == "open" and "station_reused_transaction_id" in flags(second)
    assert [r for r in await harness.store.run(lambda tx: tx.execute(
        "SELECT transaction_id FROM meter_samples WHERE value_si = 1400").fetchall())] == [
        (first.transaction_id,)]
    assert [e.transaction_id for e in of(harness, SessionStarted)] == [
        first.transaction_id, second.transaction_id]


async def test_a_started_without_meter_values_says_its_bill_may_miss_the_start(harness, t0):
    """A Started with no Begin register: the bill is what the registers prove (the first
    sample to the End), and it says so - the energy before the first sample is not known
    (`no_start_register`, as an Ended without one says `no_stop_register`), until a late
    Begin value arrives and bills from it."""
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-N", 0, t0))
    await station.send(tx_event("Updated", "tx-N", 1, t0 + 10 * MIN, register_wh=3000))
    await station.send(tx_event("Ended", "tx-N", 2, t0 + 20 * MIN, register_wh=5000))
    [session] = await sessions(harness)
    assert (session.energy_wh, session.energy_method) == (2000, "samples")
    assert flags(session) == {"no_start_register"}, flags(session)
    # the Begin value, re-sent late in an Updated (a station's queue): the bill is exact again
    await station.send(tx_event("Updated", "tx-N", 3, t0 + 25 * MIN, register_wh=1000,
                                context="Transaction.Begin"))
    [session] = await sessions(harness)
    assert session.energy_wh == 4000 and "no_start_register" not in flags(session), (
        session.energy_wh, flags(session))


async def test_a_201_sessions_api_answers_are_in_the_openapi_documents_enums(harness, t0):
    """A 2.0.1 session is closed by its TransactionEvent and its samples come from
    TransactionEvents: the OpenAPI document's `Session.closed_by` and `MeterValue.source`
    enums named only 1.6's messages (session 36's docs check), so a client generated from the
    document refused every 2.0.1 session the API answers with."""
    from smartcharge.api.openapi import openapi_document
    schemas = openapi_document()["components"]["schemas"]
    station = await station201(harness)
    await station.send(tx_event("Started", "tx-Q", 0, t0, register_wh=1000))
    await station.send(tx_event("Ended", "tx-Q", 1, t0 + 20 * MIN, register_wh=2000))
    [session] = await sessions(harness)
    async with harness.api.get(harness.url(f"/api/sessions/{session.transaction_id}")) as got:
        body = await got.json()
    async with harness.api.get(
            harness.url(f"/api/sessions/{session.transaction_id}/meter-values")) as got:
        samples = await got.json()
    assert body["closed_by"] == "TransactionEvent" and len(samples) == 2
    assert body["closed_by"] in schemas["Session"]["properties"]["closed_by"]["enum"]
    assert {s["source"] for s in samples} <= set(
        schemas["MeterValue"]["properties"]["source"]["enum"])
