"""The store's writer: what a MeterValues costs it in SQL statements, and the group path that
runs without a savepoint per piece of work (s27-store). Real SQLite files.

Every statement the writer thread runs is a step that lets the GIL go and waits to take it back
behind a busy event loop (issue 10's tail at 5 000 stations), so the number is the cost.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

from benchmarks.writer_cost import meter_value
from smartcharge import ledger
from smartcharge.metering import parse_meter_values
from smartcharge.store import _RAW, SqliteStore
from smartcharge.store_tx import SampleRow

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)


def write_meter_values(station_tx_id: int, at: datetime, register_wh: int):
    value = meter_value(at, register_wh)
    return lambda tx: ledger.meter_values(
        tx, station_id="CP1", connector_id=1, station_tx_id=station_tx_id,
        readings=parse_meter_values(value),
        payload={"connectorId": 1, "transactionId": station_tx_id, "meterValue": value},
        at=at, max_power_w=22_000)


async def test_a_meter_values_is_written_in_five_statements_its_samples_in_one(tmp_path):
    # before s27-store: 13 (a savepoint and its release, a SELECT for the duplicate check, and
    # one INSERT per sampled value)
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        started = await store.run(lambda tx: ledger.start_transaction(
            tx, station_id="CP1", connector_id=1, id_tag="T", meter_start_wh=0, timestamp=T0,
            reservation_id=None, payload={}, answer_status="Accepted", at=T0,
            max_power_w=22_000))
        traced: list[str] = []
        await store.run(lambda tx: tx._db.set_trace_callback(traced.append))
        traced.clear()
        outcome = await store.run(write_meter_values(started.transaction_id,
                                                     T0 + timedelta(minutes=1), 100))
        assert outcome.transaction_id == started.transaction_id and outcome.new_samples == 6
        kinds = [" ".join(statement.split()[:3]) for statement in traced]
        assert kinds == ["BEGIN IMMEDIATE", "INSERT INTO inbound_messages",
                         "SELECT transaction_id, station_id,", "INSERT OR IGNORE", "COMMIT"], \
            traced
        # the same message again: answered as a duplicate, nothing written twice
        again = await store.run(write_meter_values(started.transaction_id,
                                                   T0 + timedelta(minutes=1), 100))
        assert again.duplicate
        duplicates = await store.read(lambda tx: tx.execute(
            "SELECT duplicates FROM inbound_messages WHERE action = 'MeterValues'").fetchall())
        assert duplicates == [(1,)]
        await store.run(lambda tx: tx._db.set_trace_callback(None))
        assert len(await store.read(lambda tx: tx.samples(started.transaction_id))) == 6
    finally:
        await store.close()


def sample(minute: int, measurand: str) -> SampleRow:
    stamp = (T0 + timedelta(minutes=minute)).isoformat(timespec="microseconds")
    return SampleRow("CP1", 1, None, None, stamp, measurand, "", "Wh", "Sample.Periodic",
                     "Outlet", "Raw", str(minute), float(minute), "MeterValues", stamp)


async def test_many_samples_in_one_call_are_chunked_and_exact_repeats_ignored(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        rows = [sample(minute, measurand) for minute in range(75)
                for measurand in ("Energy.Active.Import.Register", "Power.Active.Import")]
        # 150 rows (three statements of at most 60), 10 of them repeated inside the call
        new = await store.run(lambda tx: tx.insert_samples(rows + rows[:10]))
        assert new == 150
        # a later call: 5 repeats and 5 new rows
        later = rows[-5:] + [sample(100 + k, "SoC") for k in range(5)]
        assert await store.run(lambda tx: tx.insert_samples(later)) == 5
        assert await store.run(lambda tx: tx.insert_samples([])) == 0
        count = await store.read(lambda tx: tx.execute(
            "SELECT COUNT(*) FROM meter_samples").fetchone()[0])
        assert count == 155
    finally:
        await store.close()


async def test_a_failing_piece_of_work_is_rolled_back_alone_and_the_others_commit_once(
        tmp_path):
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        # hold the writer so the five pieces below wait in its queue and run as one group
        go, holding = threading.Event(), threading.Event()

        def hold() -> None:
            holding.set()
            go.wait()
        held = asyncio.ensure_future(store._submit(_RAW, hold))
        await asyncio.get_running_loop().run_in_executor(None, holding.wait)
        calls = [0] * 5

        def work(n: int):
            def write(tx):
                calls[n] += 1
                tx.insert_data_transfer("CP1", "V", str(n), None, T0)
                if n == 2:
                    raise ValueError("two")
                return n
            return write
        pieces = [asyncio.ensure_future(store.run(work(n))) for n in range(5)]
        await asyncio.sleep(0)   # let each submit its work to the queue
        assert store._queue.qsize() == 5
        go.set()
        await held
        results = await asyncio.gather(*pieces, return_exceptions=True)
        assert results[:2] + results[3:] == [0, 1, 3, 4]
        assert isinstance(results[2], ValueError)
        # the group was rolled back at the failure and run again, a savepoint each: the
        # pieces before it ran twice, those after it once - and each wrote its row once
        assert calls == [2, 2, 2, 1, 1]
        rows = await store.read(lambda tx: tx.data_transfers("CP1"))
        assert [row["message_id"] for row in rows] == ["0", "1", "3", "4"]
    finally:
        await store.close()
