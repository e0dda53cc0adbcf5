"""The store's writer thread against a busy event loop thread (issue 10, s26-p99): the GIL.

Every SQLite call of the writer (`sqlite3` gives the GIL up around each statement's prepare and
step) must take the GIL back; while the loop thread runs Python without pause (a dispatch
round's 500-600 calls out a second at 5 000 stations), CPython hands it back only after the
switch interval (`sys.getswitchinterval()`, 5 ms by default) - so a group's wall time grows with
its statements, not its CPU. Counted here in-process, no event loop: groups of MeterValues as
the writer runs them (a savepoint each, one commit per group; `benchmarks/ledger_cpu.py`'s
work) in a thread, with the main thread idle and then spinning in pure Python, at several
switch intervals. Prints statements per MeterValues (counted by SQLite's trace callback), the
writer's CPU and wall per group.

    python -m benchmarks.writer_convoy [--groups 30] [--size 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta

from smartcharge import ledger
from smartcharge.metering import parse_meter_values
from smartcharge.store import SqliteStore
from smartcharge.store_tx import StoreTx

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)


def open_db(path: str, sessions: int) -> tuple[sqlite3.Connection, list]:
    async def create() -> None:   # the schema as the store makes it, and open sessions
        store = await SqliteStore.open(path)

        def start(tx) -> None:
            for index in range(sessions):
                ledger.start_transaction(tx, station_id=f"S{index:05d}", connector_id=1,
                                         id_tag="T", meter_start_wh=0, timestamp=T0,
                                         reservation_id=None, payload={},
                                         answer_status="Accepted", at=T0, max_power_w=22000)
        await store.run(start)
        await store.close()
    asyncio.run(create())
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db, db.execute("SELECT station_id, station_tx_id FROM sessions").fetchall()


def messages(rows: list, count: int, minute: int) -> list:
    out = []
    for k in range(count):
        sid, stx = rows[k % len(rows)]
        at = T0 + timedelta(minutes=minute, seconds=k % 60)
        mv = [{"timestamp": at.isoformat(), "sampled_value": [
            {"value": str(1000 + minute * 100 + k), "measurand": "Energy.Active.Import.Register",
             "unit": "Wh"},
            {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
            *({"value": "16.0", "measurand": "Current.Import", "unit": "A", "phase": p}
              for p in ("L1", "L2", "L3")),
            {"value": "50", "measurand": "SoC", "unit": "Percent"}]}]
        out.append((sid, stx, mv, at))
    return out


def run_group(db: sqlite3.Connection, tx: StoreTx, group: list) -> None:
    db.execute("BEGIN IMMEDIATE")
    for sid, stx, mv, at in group:
        db.execute("SAVEPOINT work")
        ledger.meter_values(tx, station_id=sid, connector_id=1, station_tx_id=stx,
                            readings=parse_meter_values(mv),
                            payload={"connectorId": 1, "transactionId": stx, "meterValue": mv},
                            at=at, max_power_w=22000)
        db.execute("RELEASE work")
    db.execute("COMMIT")


def spin(stop: threading.Event) -> None:
    """The busy loop thread: pure Python, never giving the GIL up by itself."""
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i


def measure(db, rows, groups: int, size: int, busy: bool, minute: int) -> tuple[float, float]:
    tx = StoreTx(db)
    batches = [messages(rows, size, minute + g) for g in range(groups)]
    walls, cpus = [], []

    def writer() -> None:
        for group in batches:
            wall, cpu = time.perf_counter(), time.thread_time()
            run_group(db, tx, group)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.thread_time() - cpu)
    stop = threading.Event()
    thread = threading.Thread(target=writer)
    thread.start()
    if busy:
        spinner = threading.Thread(target=spin, args=(stop,))
        spinner.start()
    thread.join()
    stop.set()
    if busy:
        spinner.join()
    walls.sort()
    cpus.sort()
    return walls[len(walls) // 2], cpus[len(cpus) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--checkpoint-groups", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db, rows = open_db(os.path.join(tmp, "c.sqlite"), args.size)
        statements = [0]
        db.set_trace_callback(lambda _: statements.__setitem__(0, statements[0] + 1))
        run_group(db, StoreTx(db), messages(rows, args.size, 1))
        db.set_trace_callback(None)
        print(f"# {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; groups of {args.size} "
              f"MeterValues, {statements[0] / args.size:.1f} SQL statements each (trace "
              f"callback, the group's BEGIN/COMMIT shared)")
        print("| switch interval | loop thread | writer wall per group, median | writer CPU "
              "per group | wall / CPU |")
        print("|---:|---|---:|---:|---:|")
        minute = 10
        default = sys.getswitchinterval()
        for interval in (default, 0.001, 0.0005):
            sys.setswitchinterval(interval)
            for busy in (False, True):
                wall, cpu = measure(db, rows, args.groups, args.size, busy, minute)
                minute += args.groups + 1
                print(f"| {interval * 1000:.1f} ms | {'busy' if busy else 'idle'} | "
                      f"{wall * 1000:.1f} ms | {cpu * 1000:.1f} ms | {wall / cpu:.1f} |")
        sys.setswitchinterval(default)
        checkpoints(db, rows, args.checkpoint_groups, 6)
    return 0


def checkpoints(db, rows, groups: int, size: int) -> None:
    """SQLite's automatic checkpoint runs inside the commit that takes the WAL past
    `wal_autocheckpoint` pages (1 000): that commit copies the WAL into the database file and
    syncs it, on the writer thread, before anyone in its group is answered. Groups of `size`
    (the 5 000-station runs' median) with it on, then off (as a checkpoint on another
    connection would leave the writer): WAL pages per MeterValues, the groups' wall time."""
    print(f"# the automatic checkpoint: {groups} groups of {size} MeterValues, loop thread idle")
    print("| wal_autocheckpoint | WAL pages per MeterValues | group wall median | p99 | max |"
          " groups over 3x the median |")
    print("|---:|---:|---:|---:|---:|---:|")
    tx = StoreTx(db)
    minute = 10_000
    for pages in (1000, 0):
        db.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        walls, frames = [], 0
        for g in range(groups):
            group = messages(rows, size, minute + g)
            began = time.perf_counter()
            run_group(db, tx, group)
            walls.append(time.perf_counter() - began)
        minute += groups + 1
        if pages == 0:
            frames = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        walls.sort()
        median = walls[len(walls) // 2]
        per_mv = f"{frames / (groups * size):.1f}" if frames else "-"
        print(f"| {pages} | {per_mv} | {median * 1000:.1f} ms | "
              f"{walls[int(0.99 * len(walls))] * 1000:.1f} ms | {walls[-1] * 1000:.1f} ms | "
              f"{sum(1 for w in walls if w > 3 * median)} |")
    db.execute("PRAGMA wal_autocheckpoint = 1000")


if __name__ == "__main__":
    raise SystemExit(main())
