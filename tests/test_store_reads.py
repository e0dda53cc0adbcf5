"""Reads have their own read-only SQLite connection (WAL): an API read, a CSV export or a
snapshot never waits behind, nor delays, the writer thread that acknowledges station messages."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime

import pytest

from smartcharge.store import SqliteStore

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


async def test_reads_do_not_wait_for_a_busy_writer_and_cannot_write(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "r.sqlite"))
    release = threading.Event()
    try:
        await store.run(lambda tx: tx.set_boot("CP1", "Accepted", NOW, {}))
        # the writer thread is busy (a slow disk, a long group): it holds a write transaction
        stuck = asyncio.ensure_future(store.run(lambda tx: release.wait(10)))
        stations = await asyncio.wait_for(store.read(lambda tx: tx.stations()), 5)
        assert [s["station_id"] for s in stations] == ["CP1"]
        assert not stuck.done()
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
            await store.read(lambda tx: tx.put_id_tag("TAG-1"))
    finally:
        release.set()
        await store.close()


async def test_api_reads_go_through_the_read_connection(harness, t0):
    """With the writer thread blocked, the stations list, the sessions, a session's meter values
    and the CSV export still answer."""
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 10_000, t0)).transaction_id
    release = threading.Event()
    stuck = asyncio.ensure_future(harness.store.run(lambda tx: release.wait(10)))
    try:
        for path in ("/api/stations", "/api/stations/CP1", "/api/sessions",
                     f"/api/sessions/{tx_id}", f"/api/sessions/{tx_id}/meter-values",
                     "/api/sessions.csv"):
            response = await asyncio.wait_for(harness.api.get(harness.url(path)), 5)
            assert response.status == 200, path
            await response.read()
        assert not stuck.done()
    finally:
        release.set()
        await stuck
