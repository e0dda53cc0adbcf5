"""The SQLite store: pragmas, migrations, one committed transaction per run, rollback on error."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from smartcharge.store import SqliteStore
from smartcharge.store_schema import MIGRATIONS

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


async def test_new_file_is_migrated_with_wal_and_full_sync(tmp_path):
    path = tmp_path / "s.sqlite"
    store = await SqliteStore.open(str(path))
    try:
        pragmas = await store.run(lambda tx: (
            tx.pragma("journal_mode"), tx.pragma("synchronous"), tx.pragma("user_version")))
        assert pragmas == ("wal", 2, len(MIGRATIONS))          # 2 = FULL
    finally:
        await store.close()
    tables = {row[0] for row in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"stations", "connector_status", "id_tags", "sessions", "meter_samples",
            "inbound_messages", "data_transfers", "station_notifications",
            "profiles_sent"} <= tables


async def test_committed_rows_survive_reopen_and_failed_work_rolls_back(tmp_path):
    path = str(tmp_path / "s.sqlite")
    store = await SqliteStore.open(path)
    await store.run(lambda tx: tx.set_boot("CP1", "Accepted", NOW, {"chargePointVendor": "V",
                                                                     "chargePointModel": "M"}))

    def half_done(tx):
        tx.put_id_tag("TAG-1")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        await store.run(half_done)
    await store.close()
    again = await SqliteStore.open(path)     # reopening does not migrate twice
    try:
        assert await again.run(lambda tx: tx.boot_status("CP1")) == "Accepted"
        assert await again.run(lambda tx: tx.id_tag_status("TAG-1")) is None
    finally:
        await again.close()


async def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        await SqliteStore.open(str(path))


async def test_an_upgrade_that_fails_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """Every pending step runs in one transaction: all of them or none."""
    import smartcharge.store as store_module
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    monkeypatch.setattr(store_module, "MIGRATIONS",
                        [*MIGRATIONS, "CREATE TABLE later_step (x INTEGER); CREATE TABLE ("])
    with pytest.raises(sqlite3.OperationalError):
        await SqliteStore.open(str(path))
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'later_step'"
                              ).fetchall()
    finally:
        db.close()


async def test_profiles_sent_audit_and_session_filters(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    try:
        await store.run(lambda tx: tx.insert_profile_sent(
            "CP1", 1, "TxProfile", {"chargingProfileId": 7}, "Accepted", NOW))
        audit = await store.run(lambda tx: tx.profiles_sent("CP1"))
        assert audit[0]["answer"] == "Accepted" and '"chargingProfileId": 7' in audit[0][
            "profile_json"]
        for hour, station in ((8, "CP1"), (10, "CP2"), (14, "CP1")):
            start = NOW.replace(hour=hour)
            await store.run(lambda tx, s=station, t=start: tx.insert_session(
                station_id=s, connector_id=1, id_tag="T", start_time=t, meter_start_wh=0.0,
                reservation_id=None, state="open", at=t))
        cp1 = await store.run(lambda tx: tx.sessions("CP1"))
        assert [s.start_time[11:13] for s in cp1] == ["08", "14"]
        window = await store.run(lambda tx: tx.sessions(until=NOW.replace(hour=11),
                                                        since=NOW.replace(hour=9)))
        assert [s.station_id for s in window] == ["CP1", "CP2"]   # open sessions overlap
    finally:
        await store.close()


async def test_concurrent_work_is_committed_together_and_a_failure_stays_alone(tmp_path):
    import asyncio
    store = await SqliteStore.open(str(tmp_path / "g.sqlite"))
    try:
        def put(n):
            def work(tx):
                if n == 13:
                    tx.put_id_tag("UNLUCKY")
                    raise ValueError("thirteen")
                tx.put_id_tag(f"TAG-{n}")
                return n
            return work

        results = await asyncio.gather(*(store.run(put(n)) for n in range(40)),
                                       return_exceptions=True)
        assert [r for r in results if isinstance(r, ValueError)] == [results[13]]
        assert [r for r in results if not isinstance(r, Exception)] == [
            n for n in range(40) if n != 13]
        statuses = await store.run(lambda tx: [tx.id_tag_status(f"TAG-{n}")
                                               for n in range(40)])
        assert statuses == ["Accepted" if n != 13 else None for n in range(40)]
        assert await store.run(lambda tx: tx.id_tag_status("UNLUCKY")) is None
    finally:
        await store.close()
