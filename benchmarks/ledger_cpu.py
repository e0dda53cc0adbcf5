"""The CPU one MeterValues costs the store's writer thread (issue 10, s21-p99): the thread runs
Python for every row while the event loop waits for the GIL, so this is part of every
MeterValues' latency under a burst. In-process, no event loop, thread CPU time (steady under a
shared machine's load, unlike wall time): 3 000 MeterValues of six sampled values for 200 open
sessions, in groups of ten with a savepoint each and one commit per group, as the writer runs
them; the parse of the payload (on the loop in the server) is included.

    python -m benchmarks.ledger_cpu [--profile]
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from smartcharge import ledger
from smartcharge.metering import parse_meter_values
from smartcharge.store import SqliteStore
from smartcharge.store_tx import StoreTx

async def main(n=3000, profile=False):
    d = tempfile.mkdtemp()
    store = await SqliteStore.open(os.path.join(d, "l.sqlite"))
    t0 = datetime(2026, 1, 1, 8, tzinfo=UTC)
    stations = [f"S{i:04d}" for i in range(200)]
    for sid in stations:
        await store.run(lambda tx, sid=sid: ledger.start_transaction(tx, station_id=sid, connector_id=1, id_tag="T", meter_start_wh=0, timestamp=t0, reservation_id=None, payload={}, answer_status="Accepted", at=t0, max_power_w=22000))
    await store.close()
    db = sqlite3.connect(os.path.join(d, "l.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
    tx = StoreTx(db)
    rows = db.execute("select station_id, station_tx_id from sessions").fetchall()
    msgs = []
    for k in range(n):
        sid, stx = rows[k % len(rows)]
        at = t0 + timedelta(minutes=1 + k // len(rows))
        mv = [{"timestamp": at.isoformat(), "sampled_value": [
            {"value": str(1000 + k), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
            *({"value": "16.0", "measurand": "Current.Import", "unit": "A", "phase": p} for p in ("L1", "L2", "L3")),
            {"value": "50", "measurand": "SoC", "unit": "Percent"}]}]
        msgs.append((sid, stx, mv, at))
    prof = cProfile.Profile(time.thread_time) if profile else None
    cpu = 0.0
    for i in range(0, n, 10):    # groups of ten, as the writer does
        start = time.thread_time()
        if prof: prof.enable()
        db.execute("BEGIN IMMEDIATE")
        for sid, stx, mv, at in msgs[i:i + 10]:
            db.execute("SAVEPOINT work")
            readings = parse_meter_values(mv)
            ledger.meter_values(tx, station_id=sid, connector_id=1, station_tx_id=stx, readings=readings,
                                payload={"connectorId": 1, "transactionId": stx, "meterValue": mv}, at=at, max_power_w=22000)
            db.execute("RELEASE work")
        db.execute("COMMIT")
        if prof: prof.disable()
        cpu += time.thread_time() - start
    print(f"thread CPU per MeterValues (parse + ledger + commit share): {cpu / n * 1e6:.0f} us")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)

asyncio.run(main(profile="--profile" in sys.argv))
