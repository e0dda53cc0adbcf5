"""Full sessions over real WebSockets and a real SQLite file: billed energy is the meter delta."""

from __future__ import annotations

from datetime import timedelta

from smartcharge.events import SessionStarted, SessionStopped


async def _session(harness, transaction_id):
    return await harness.store.run(lambda tx: tx.session(transaction_id))


async def test_full_session_bills_exactly_the_register_delta(harness, t0):
    station = await harness.station("CP1")
    started = await station.start_tx(1, 1_234_567, t0)
    assert started.id_tag_info["status"] == "Accepted"
    tx_id = started.transaction_id
    for minute, register in ((5, 1_235_400), (10, 1_236_350)):
        await station.meter(1, tx_id, t0 + timedelta(minutes=minute), register)
    await station.stop_tx(tx_id, 1_237_002, t0 + timedelta(minutes=15))
    row = await _session(harness, tx_id)
    assert row.state == "stopped"
    assert row.energy_wh == 1_237_002 - 1_234_567
    assert row.energy_method == "registers"
    kinds = [type(e) for e in harness.events]
    assert SessionStarted in kinds and SessionStopped in kinds


async def _samples(harness, transaction_id):
    return await harness.store.run(lambda tx: tx.samples(transaction_id))


async def test_duplicates_after_reconnect_are_idempotent(harness, t0):
    station = await harness.station("CP1")
    first = await station.start_tx(1, 10_000, t0)
    again = await station.start_tx(1, 10_000, t0)            # the answer was lost: retried
    assert again.transaction_id == first.transaction_id
    tx_id = first.transaction_id
    await station.meter(1, tx_id, t0 + timedelta(minutes=5), 11_000)
    await station.meter(1, tx_id, t0 + timedelta(minutes=5), 11_000)
    assert len(await _samples(harness, tx_id)) == 1
    data = [{"timestamp": (t0 + timedelta(minutes=9)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "sampledValue": [{"value": "11900", "context": "Transaction.End"}]}]
    await station.stop_tx(tx_id, 12_000, t0 + timedelta(minutes=10), transaction_data=data)
    await station.stop_tx(tx_id, 12_000, t0 + timedelta(minutes=10), transaction_data=data)
    row = await _session(harness, tx_id)
    assert row.energy_wh == 2_000
    assert len(await _samples(harness, tx_id)) == 2        # transactionData counted once
    sessions = await harness.store.run(lambda tx: tx.sessions())
    assert len(sessions) == 1
    stops = [e for e in harness.events if isinstance(e, SessionStopped)]
    assert len(stops) == 1


async def test_late_delivery_after_disconnect_is_recorded_exactly(harness, t0):
    station = await harness.station("CP2")
    tx_id = (await station.start_tx(2, 500_000, t0)).transaction_id
    await station.ws.close()
    # offline: the station queues its messages and replays them on the next connection
    back = await harness.station("CP2", boot=False)
    for minute, register in ((10, 503_000), (20, 506_500)):
        await back.meter(2, tx_id, t0 + timedelta(minutes=minute), register, unit="kWh")
    await back.stop_tx(tx_id, 507_250, t0 + timedelta(minutes=25))
    row = await _session(harness, tx_id)
    assert (row.state, row.energy_wh) == ("stopped", 7_250)
    values = sorted(s["value_si"] for s in await _samples(harness, tx_id))
    assert values == [503_000, 506_500]                     # kWh converted to Wh


async def test_reboot_closes_open_session_and_late_stop_still_wins(harness, t0):
    station = await harness.station("CP3")
    tx_id = (await station.start_tx(1, 1_000, t0)).transaction_id
    await station.meter(1, tx_id, t0 + timedelta(minutes=5), 2_000)
    await station.boot()                                    # rebooted without a stop
    row = await _session(harness, tx_id)
    assert (row.state, row.closed_by, row.energy_wh) == ("closed_implicitly", "Reboot", 1_000)
    implicit = [e for e in harness.events if isinstance(e, SessionStopped) and e.implicit]
    assert [e.transaction_id for e in implicit] == [tx_id]
    await station.stop_tx(tx_id, 2_400, t0 + timedelta(minutes=7), reason="PowerLoss")
    row = await _session(harness, tx_id)
    assert (row.state, row.energy_wh, row.stop_reason) == ("stopped", 1_400, "PowerLoss")
    assert "late_stop" in row.flags


async def test_new_session_on_connector_closes_the_previous_one(harness, t0):
    station = await harness.station("CP1")
    old = (await station.start_tx(2, 7_000, t0)).transaction_id
    await station.meter(2, old, t0 + timedelta(minutes=30), 9_500)
    new = (await station.start_tx(2, 9_600, t0 + timedelta(minutes=40))).transaction_id
    assert new != old
    row = await _session(harness, old)
    assert (row.state, row.closed_by, row.energy_wh) == ("closed_implicitly", "NewSession",
                                                         2_500)
    started = [e for e in harness.events if isinstance(e, SessionStarted)]
    assert started[-1].closed_previous == old


async def test_unknown_transaction_ids_are_acknowledged_and_reconciled(harness, t0):
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 40_000, t0)).transaction_id
    # -1: the start exchange never completed on the station's side
    await station.meter(1, -1, t0 + timedelta(minutes=3), 40_500)
    await station.stop_tx(-1, 41_000, t0 + timedelta(minutes=6))
    row = await _session(harness, tx_id)
    assert (row.state, row.energy_wh, row.station_tx_id) == ("stopped", 1_000, -1)
    assert "reconciled_unknown_transaction_id" in row.flags
    assert len(await _samples(harness, tx_id)) == 1
    # 0 and an id from before a crash, with nothing open to match: kept as orphans
    await station.stop_tx(0, 55_000, t0 + timedelta(minutes=8))
    await station.meter(2, 987_654, t0 + timedelta(minutes=9), 60_000)
    await station.stop_tx(987_654, 61_000, t0 + timedelta(minutes=10))
    orphans = [s for s in await harness.store.run(lambda tx: tx.sessions())
               if s.state == "orphan_stop"]
    assert sorted(o.station_tx_id for o in orphans) == [0, 987_654]
    assert all(o.energy_wh is None for o in orphans)


async def test_offline_start_register_zero_does_not_bill_the_whole_register(harness, t0):
    station = await harness.station("CP2")
    tx_id = (await station.start_tx(1, 0, t0)).transaction_id
    await station.meter(1, tx_id, t0 + timedelta(minutes=1), 5_000_000)
    await station.meter(1, tx_id, t0 + timedelta(minutes=31), 5_008_000)
    await station.stop_tx(tx_id, 5_011_000, t0 + timedelta(minutes=61))
    row = await _session(harness, tx_id)
    assert row.energy_wh == 11_000
    assert "start_register_zero" in row.flags and row.energy_method == "samples"


async def test_boot_without_a_real_reboot_reopens_the_running_session(harness, t0):
    # some stations send BootNotification on every reconnect: their session keeps running
    from datetime import UTC, datetime
    station = await harness.station("CP2")
    now = datetime.now(UTC).replace(microsecond=0)
    tx_id = (await station.start_tx(1, 100, now - timedelta(minutes=10))).transaction_id
    await station.boot()
    assert (await _session(harness, tx_id)).state == "closed_implicitly"
    await station.meter(1, tx_id, now + timedelta(seconds=5), 900)
    row = await _session(harness, tx_id)
    assert row.state == "open" and "reopened_after_boot" in row.flags
    restarted = [e for e in harness.events if isinstance(e, SessionStarted)]
    assert [e.transaction_id for e in restarted] == [tx_id, tx_id]
    await station.stop_tx(tx_id, 1_300, now + timedelta(minutes=1))
    assert (await _session(harness, tx_id)).energy_wh == 1_200
