"""The store's writer process (s28-writer): `StoreOp`s run in a process of their own, answered
after their commit; closures stay on the writer thread. Real SQLite files, real processes, real
signals: SIGSTOP holds the writer with work in hand, SIGKILL ends it - or the server.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smartcharge import ledger
from smartcharge.metering import parse_meter_values
from smartcharge.store import SqliteStore, StoreClosed, StoreOp
from smartcharge.store_ops import writer_pid
from smartcharge.store_schema import MIGRATIONS
from smartcharge.store_writer import WriterProcess

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)
TREE = str(Path(__file__).resolve().parent.parent)


def meter_values_op(station_tx_id: int, at: datetime, register_wh: int) -> StoreOp:
    value = [{"timestamp": at.isoformat(), "sampled_value": [
        {"value": str(register_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "11000.0", "measurand": "Power.Active.Import", "unit": "W"}]}]
    return StoreOp(ledger.meter_values, station_id="CP1", connector_id=1,
                   station_tx_id=station_tx_id, readings=parse_meter_values(value),
                   payload={"connectorId": 1, "transactionId": station_tx_id,
                            "meterValue": value},
                   at=at, max_power_w=22_000)


def start_op() -> StoreOp:
    return StoreOp(ledger.start_transaction, station_id="CP1", connector_id=1, id_tag="T",
                   meter_start_wh=0.0, timestamp=T0, reservation_id=None, payload={},
                   answer_status="Accepted", at=T0, max_power_w=22_000)


def rows(path: Path, sql: str) -> list[tuple]:
    """What is on disk, through a connection of the test's own."""
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def pending(store: SqliteStore, count: int) -> None:
    """Until `count` ops are sent to the writer and not answered (the writer is stopped)."""
    while len(store.writer_process._pending) < count:
        await asyncio.sleep(0)


async def test_ops_run_in_the_writer_process_and_are_on_disk_when_answered(tmp_path):
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        assert await store.run(StoreOp(writer_pid)) == store.writer_process.pid != os.getpid()
        started = await store.run(start_op())
        outcome = await store.run(meter_values_op(started.transaction_id,
                                                  T0 + timedelta(minutes=1), 100))
        # the result crossed the pipe, and the rows were committed before it did
        assert outcome.transaction_id == started.transaction_id and outcome.new_samples == 2
        assert rows(path, "SELECT COUNT(*) FROM meter_samples") == [(2,)]
        # a closure cannot leave this process: the writer thread runs it, on the same file
        assert await store.run(lambda tx: os.getpid()) == os.getpid()
        await store.run(lambda tx: tx.station_seen("CP2", T0))
        assert rows(path, "SELECT station_id FROM stations") == [("CP2",)]
    finally:
        await store.close()
    assert store.writer_process._process.returncode == 0   # it ended with the store


async def test_a_failing_op_fails_alone_the_others_commit(tmp_path):
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        os.kill(store.writer_process.pid, signal.SIGSTOP)   # the three wait in the pipe
        try:
            works = [asyncio.ensure_future(store.run(op)) for op in (
                StoreOp("station_seen", "CP1", T0), StoreOp("no_such_method"),
                StoreOp("station_seen", "CP3", T0))]
            await pending(store, 3)
        finally:
            os.kill(store.writer_process.pid, signal.SIGCONT)
        results = await asyncio.gather(*works, return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], AttributeError)
        assert rows(path, "SELECT station_id FROM stations ORDER BY 1") == [("CP1",), ("CP3",)]
    finally:
        await store.close()


async def test_a_killed_writer_answers_nobody_and_the_resent_message_counts_once(tmp_path):
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        started = await store.run(start_op())
        first = meter_values_op(started.transaction_id, T0 + timedelta(minutes=1), 100)
        second = meter_values_op(started.transaction_id, T0 + timedelta(minutes=2), 200)
        assert (await store.run(first)).new_samples == 2
        killed = store.writer_process.pid
        os.kill(killed, signal.SIGSTOP)   # the second in hand, never run
        waiting = asyncio.ensure_future(store.run(second))
        await pending(store, 1)
        os.kill(killed, signal.SIGKILL)
        with pytest.raises(StoreClosed):
            await waiting
        # the station sends both again (the first's answer may have been lost too): a new
        # writer takes them, the first is a duplicate, the second is written once
        assert (await store.run(first)).duplicate
        again = await store.run(second)
        assert not again.duplicate and again.new_samples == 2
        assert store.writer_process.pid != killed and store.writer_process.starts == 2
        assert rows(path, "SELECT COUNT(*) FROM meter_samples") == [(4,)]
    finally:
        await store.close()


async def test_a_writer_for_another_schema_version_refuses_the_file(tmp_path):
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path))   # migrated by the server's own connection
    try:
        other = WriterProcess(str(path), len(MIGRATIONS) + 1, asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match="schema version"):
            await other.start()
        await other.close()
    finally:
        await store.close()


SERVER = textwrap.dedent("""
    import asyncio, sys
    from datetime import UTC, datetime
    from smartcharge.store import SqliteStore, StoreOp

    async def main():
        store = await SqliteStore.open(sys.argv[1], writer_process=True)
        await store.run(StoreOp("station_seen", "CP1", datetime.now(UTC)))
        print(store.writer_process.pid, flush=True)   # answered: committed
        await asyncio.Event().wait()
    asyncio.run(main())
""")


def test_the_writer_ends_when_the_server_is_killed_and_what_it_answered_is_kept(tmp_path):
    path = tmp_path / "s.sqlite"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(path)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": TREE})
    try:
        writer = int(server.stdout.readline())
        watch = os.pidfd_open(writer)   # readable once the writer has exited
    finally:
        server.kill()
        server.wait()
    try:
        readable, _, _ = select.select([watch], [], [], 120)
        assert readable, f"the writer {writer} outlived its server"
    finally:
        os.close(watch)
    assert rows(path, "SELECT station_id FROM stations") == [("CP1",)]


async def test_both_writers_take_the_writers_lock_around_their_groups(tmp_path):
    # SQLite's own lock makes a writer that finds it taken poll with sleeps (busy_timeout):
    # behind the process's groups, one after another under load, the thread's work could
    # wait 5 s and fail. Both take a flock() instead, which wakes a waiter on release.
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    held = os.open(str(path) + "-writers.lock", os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            by_op = asyncio.ensure_future(store.run(StoreOp("station_seen", "CP1", T0)))
            by_thread = asyncio.ensure_future(store.run(lambda tx: tx.station_seen("CP2", T0)))
            await pending(store, 1)
            await asyncio.sleep(0.2)   # a negative: neither can write while the lock is held
            assert not by_op.done() and not by_thread.done()
            assert rows(path, "SELECT COUNT(*) FROM stations") == [(0,)]
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
        await asyncio.gather(by_op, by_thread)
        assert rows(path, "SELECT station_id FROM stations ORDER BY 1") == [("CP1",), ("CP2",)]
    finally:
        os.close(held)
        await store.close()


async def test_the_writer_outlives_the_signals_that_end_its_server_gracefully(tmp_path):
    # Ctrl-C and a service manager's SIGTERM reach the whole process group; the server shuts
    # down gracefully and writes on the way, so its writer must still be there
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"), writer_process=True)
    try:
        writer = store.writer_process.pid
        os.kill(writer, signal.SIGINT)
        os.kill(writer, signal.SIGTERM)
        assert await store.run(StoreOp(writer_pid)) == writer
        assert store.writer_process.starts == 1
    finally:
        await store.close()


async def test_a_frame_parsed_by_the_writer_is_the_frame_the_adapter_parsed(tmp_path):
    # the adapters send the frame's meter_value (cheaper to pickle than the parsed readings)
    # and the writer parses it again: the same readings, so the same message key - the
    # readings parsed on the loop, written after it, are recognised as the same message
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"), writer_process=True)
    try:
        started = await store.run(start_op())
        parsed = meter_values_op(started.transaction_id, T0 + timedelta(minutes=1), 100)
        sent = StoreOp(ledger.meter_values_sent, meter_value=parsed.kwargs["payload"]["meterValue"],
                       **{k: v for k, v in parsed.kwargs.items() if k != "readings"})
        first = await store.run(sent)
        assert not first.duplicate and first.new_samples == 2
        assert (await store.run(parsed)).duplicate
    finally:
        await store.close()


async def test_ops_handed_in_one_turn_go_to_the_writer_in_one_write(tmp_path):
    """A boot storm hands the writer ~8 ops per station (s29-boot): each had its own pickle,
    pipe write and wake-up of the writer's pump, and the writer took them one by one. Ops
    handed in during one turn of the loop go in one write, in the order handed in, and each is
    answered on its own."""
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        await store.run(StoreOp(writer_pid))   # the writer started
        before = store.writer_process.writes
        seen = await asyncio.gather(*(store.run(StoreOp("station_seen", f"CP{i:02d}", T0))
                                      for i in range(50)))
        assert store.writer_process.writes - before == 1
        assert len(seen) == 50
        assert rows(path, "SELECT COUNT(*) FROM stations") == [(50,)]
        # in the order handed in: the ops' own rowids follow it
        assert [r[0] for r in rows(path, "SELECT station_id FROM stations ORDER BY rowid")] \
            == [f"CP{i:02d}" for i in range(50)]
    finally:
        await store.close()


async def test_an_op_that_cannot_be_pickled_fails_alone_in_its_turn(tmp_path):
    """Handed in with others in one turn (one write), an op whose arguments cannot cross the
    pipe fails on its own; the others commit."""
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path), writer_process=True)
    try:
        await store.run(StoreOp(writer_pid))
        outcomes = await asyncio.gather(
            store.run(StoreOp("station_seen", "CP1", T0)),
            store.run(StoreOp("station_seen", lambda: None, T0)),   # a lambda: not picklable
            store.run(StoreOp("station_seen", "CP3", T0)), return_exceptions=True)
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], (pickle.PicklingError, AttributeError)), outcomes[1]
        assert rows(path, "SELECT station_id FROM stations ORDER BY station_id") \
            == [("CP1",), ("CP3",)]
    finally:
        await store.close()
