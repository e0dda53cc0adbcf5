"""What one MeterValues costs the store's writer, counted (issue 10, s27-store).

Part 1, deterministic counts: a database of `--stations` open sessions with `--history-min`
minutes of MeterValues already in it (one per station per minute, six sampled values each, as
the simulator sends them), then `--messages` more written the way the writer thread writes them
(the real `ledger.meter_values` in this tree's `SqliteStore._run_group`, one COMMIT per group
of `--group`). Per MeterValues: SQL statements run (SQLite's trace callback: one per executed
statement, one per row of an `executemany`; each is a step that lets the GIL go and takes it
back), WAL frames and KB written (the automatic checkpoint off while counting), database KB,
and the writer thread's CPU (`time.thread_time`: parse excluded, it runs on the loop).

Part 2, the GIL: the same groups, one in flight at a time, committed by a writer *thread* of
this process or by a writer *process* fed over a pipe (`multiprocessing`, replying once the
group is committed), while this process's main thread - the event loop's stand-in - is idle or
busy in pure Python (it looks at its queue or pipe every ~1 ms of work, as a loop turn would).
Prints each group's send -> committed-reply time (median, p99) and the main thread's CPU spent
per MeterValues on the hand-over (pickling and pipe for the process).

    python -m benchmarks.writer_cost [--stations 5000] [--history-min 5] [--messages 3000]
                                     [--group 6] [--convoy-groups 150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta

from smartcharge import ledger
from smartcharge.metering import parse_meter_values
from smartcharge.store import SqliteStore
from smartcharge.store_ops import connect_writer
from smartcharge.store_tx import StoreTx

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)
SLICE_ITERATIONS = 20_000   # ~1 ms of pure Python between two looks at the queue / pipe


def meter_value(at: datetime, register_wh: int) -> list[dict]:
    """One MeterValues' meterValue as the simulator sends it (sim/physics.py), snake_case as
    the `ocpp` library hands it to the adapter."""
    outlet = {"context": "Sample.Periodic", "location": "Outlet"}
    return [{"timestamp": at.isoformat().replace("+00:00", "Z"), "sampled_value": [
        {"value": str(register_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh",
         **outlet},
        {"value": "11000.0", "measurand": "Power.Active.Import", "unit": "W", **outlet},
        *({"value": "15.94", "measurand": "Current.Import", "phase": phase, "unit": "A",
           **outlet} for phase in ("L1", "L2", "L3")),
        {"value": "50", "measurand": "SoC", "unit": "Percent", "context": "Sample.Periodic",
         "location": "EV"}]}]


def connect(path: str) -> sqlite3.Connection:
    """As the store's writer connects (store_ops.connect_writer), usable from any thread."""
    return connect_writer(path, check_same_thread=False)


def prepare(path: str, stations: int, history_min: int) -> list[tuple[str, int]]:
    async def create() -> None:   # the schema as the store makes it (this tree's migrations)
        store = await SqliteStore.open(path)
        await store.close()
    asyncio.run(create())
    db = connect(path)
    tx = StoreTx(db)
    db.execute("BEGIN IMMEDIATE")
    for index in range(stations):
        ledger.start_transaction(tx, station_id=f"CP{index:05d}", connector_id=1, id_tag="T",
                                 meter_start_wh=0, timestamp=T0, reservation_id=None,
                                 payload={}, answer_status="Accepted", at=T0,
                                 max_power_w=22000)
    db.execute("COMMIT")
    sessions = db.execute("SELECT station_id, transaction_id FROM sessions "
                          "ORDER BY transaction_id").fetchall()
    for minute in range(1, history_min + 1):
        items = messages(sessions, minute, len(sessions))
        for first in range(0, len(items), 1000):
            run_group(db, tx, items[first:first + 1000])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return sessions


def messages(sessions: list, minute: int, count: int) -> list[tuple]:
    out = []
    for k in range(count):
        station_id, transaction_id = sessions[k % len(sessions)]
        at = T0 + timedelta(minutes=minute, seconds=(k * 60) // len(sessions))
        value = meter_value(at, 1000 + minute * 180 + k % 7)
        out.append((station_id, transaction_id, parse_meter_values(value),
                    {"connectorId": 1, "transactionId": transaction_id, "meterValue": value},
                    at))
    return out


def run_group(db: sqlite3.Connection, tx: StoreTx, group: list) -> None:
    """The group as this tree's store runs one (`SqliteStore._run_group`, on a store object
    around `db` that answers nobody): before and after a change of the writer, the same call."""
    writer = SqliteStore.__new__(SqliteStore)
    writer.path, writer._db, writer._lock_fd = "benchmark", db, None   # no second writer
    writer._answer_all = lambda answers: None
    writer._run_group([("tx", _work(*item), None, None) for item in group])


def _work(station_id: str, transaction_id: int, readings, payload: dict, at: datetime):
    return lambda tx: ledger.meter_values(tx, station_id=station_id, connector_id=1,
                                          station_tx_id=transaction_id, readings=readings,
                                          payload=payload, at=at, max_power_w=22000)


def counts(path: str, sessions: list, minute: int, total: int, group: int) -> dict:
    db = connect(path)
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages_before = db.execute("PRAGMA page_count").fetchone()[0]
    tx = StoreTx(db)
    items = messages(sessions, minute, total)
    statements = [0]
    db.set_trace_callback(lambda _: statements.__setitem__(0, statements[0] + 1))
    groups = 0
    cpu = time.thread_time()
    for first in range(0, total, group):
        run_group(db, tx, items[first:first + group])
        groups += 1
    cpu = time.thread_time() - cpu
    db.set_trace_callback(None)
    wal_bytes = os.path.getsize(path + "-wal")
    frames = (wal_bytes - 32) / (page_size + 24)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages_after = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute("PRAGMA wal_autocheckpoint = 1000")
    db.close()
    return {"statements": (statements[0] - 2 * groups) / total,   # BEGIN/COMMIT apart
            "frames": frames / total, "wal_kb": wal_bytes / total / 1024,
            "db_kb": (pages_after - pages_before) * page_size / total / 1024,
            "cpu_us": cpu / total * 1e6, "page_size": page_size}


# -- part 2: the writer in a thread or in a process, the main thread idle or busy ---------------
def _writer_thread(path: str, inbox: queue.SimpleQueue, outbox: queue.SimpleQueue) -> None:
    db = connect(path)
    tx = StoreTx(db)
    while (group := inbox.get()) is not None:
        run_group(db, tx, group)
        outbox.put(len(group))
    db.close()


def _writer_process(path: str, pipe) -> None:
    db = connect(path)
    tx = StoreTx(db)
    while (group := pipe.recv()) is not None:
        if isinstance(group, str):   # frames as received: parsed here, not on the loop
            group = [(station_id, transaction_id, parse_meter_values(value), {
                "connectorId": 1, "transactionId": transaction_id, "meterValue": value},
                datetime.fromisoformat(at)) for station_id, transaction_id, value, at
                in json.loads(group)]
        run_group(db, tx, group)
        pipe.send(len(group))
    db.close()


def _as_text(group: list) -> str:
    """A group as the loop could hand it over: the frames' text (made here, before the clock
    starts: the server has it as read from the socket)."""
    return json.dumps([(station_id, transaction_id, payload["meterValue"], at.isoformat())
                       for station_id, transaction_id, _, payload, at in group])


def _spin() -> None:
    x = 0
    for i in range(SLICE_ITERATIONS):
        x += i


def convoy(path: str, sessions: list, minute: int, groups: int, group: int, *, process: bool,
           busy: bool, text: bool = False) -> tuple[float, float, float]:
    """Each group's send -> committed reply as the main thread sees it (median, p99, ms) and
    the main thread's CPU for the hand-over per MeterValues (us; the spinning excluded).
    `text`: the process is sent the frames' text and parses them (else parsed readings)."""
    batches = [messages(sessions, minute + g, group) for g in range(groups)]
    if text:
        batches = [_as_text(batch) for batch in batches]
    if process:
        ours, theirs = multiprocessing.Pipe()
        worker = multiprocessing.get_context("fork").Process(
            target=_writer_process, args=(path, theirs), daemon=True)
        worker.start()
        send, ready, receive = ours.send, ours.poll, ours.recv
    else:
        inbox, outbox = queue.SimpleQueue(), queue.SimpleQueue()
        worker = threading.Thread(target=_writer_thread, args=(path, inbox, outbox), daemon=True)
        worker.start()
        send, ready, receive = inbox.put, lambda: not outbox.empty(), outbox.get
    latencies, handover_cpu = [], 0.0
    for batch in batches:
        cpu = time.thread_time()
        began = time.perf_counter()
        send(batch)
        handover_cpu += time.thread_time() - cpu
        while busy and not ready():
            _spin()
        cpu = time.thread_time()
        receive()
        handover_cpu += time.thread_time() - cpu
        latencies.append(time.perf_counter() - began)
    send(None)
    worker.join()
    latencies.sort()
    return (latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000,
            handover_cpu / (groups * group) * 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=5000)
    parser.add_argument("--history-min", type=int, default=5)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--group", type=int, default=6)
    parser.add_argument("--convoy-groups", type=int, default=150)
    parser.add_argument("--no-convoy", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "writer.sqlite")
        sessions = prepare(path, args.stations, args.history_min)
        minute = args.history_min + 1
        print(f"# {os.cpu_count()} cores, Python {sys.version.split()[0]}, SQLite "
              f"{sqlite3.sqlite_version}, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.stations} open sessions, "
              f"{args.history_min} min of history; MeterValues of 6 sampled values")
        print("| group | SQL statements / MV | WAL frames / MV | WAL KB / MV | database KB / MV |"
              " writer CPU / MV |")
        print("|---:|---:|---:|---:|---:|---:|")
        for group in sorted({args.group, 20}):
            c = counts(path, sessions, minute, min(args.messages, len(sessions)), group)
            minute += 1
            print(f"| {group} | {c['statements']:.2f} | {c['frames']:.2f} | {c['wal_kb']:.1f} | "
                  f"{c['db_kb']:.2f} | {c['cpu_us']:.0f} us |")
        if args.no_convoy:
            return 0
        print(f"# groups of {args.group}, one in flight; send -> committed reply as the main "
              f"thread sees it; {args.convoy_groups} groups per row")
        print("| writer | main thread | group median | group p99 | main thread's CPU per MV for"
              " the hand-over |")
        print("|---|---|---:|---:|---:|")
        for process, text in ((False, False), (True, False), (True, True)):
            for busy in (False, True):
                median, p99, cpu_us = convoy(path, sessions, minute, args.convoy_groups,
                                             args.group, process=process, busy=busy, text=text)
                minute += args.convoy_groups + 1
                writer = ("process, sent the frames' text" if text else
                          "process, sent parsed readings" if process else "thread")
                print(f"| {writer} | {'busy' if busy else 'idle'} | {median:.1f} ms | "
                      f"{p99:.1f} ms | {cpu_us:.0f} us |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
