"""Session 33, kills and failing disks at bad moments, on real `smartcharge serve` processes,
real SQLite files and real OCPP stations (docs/promises.md, "Audit, session 33 (kills)").
Each test failed before its fix."""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta

import aiohttp
import pytest
from ocpp.messages import MessageType
from ocpp.v16 import call as call16

from tests.test_kill_points import T0, RawStation
from tests.test_outside_s32_kills import _server


def _meter_values(transaction_id: int, i: int) -> call16.MeterValues:
    """The station's i-th sample of its transaction: 100 Wh a minute from 1 000 Wh."""
    return call16.MeterValues(connector_id=1, transaction_id=transaction_id, meter_value=[{
        "timestamp": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sampled_value": [{"value": str(1_000 + 100 * i), "unit": "Wh",
                           "measurand": "Energy.Active.Import.Register",
                           "context": "Sample.Periodic"}]}])


def _restored_from_backup(db_path) -> None:
    """An operator restores last night's backup over the live file (a copy, renamed in)."""
    backup = db_path.with_name("backup.sqlite")
    source, copy = sqlite3.connect(db_path), sqlite3.connect(backup)
    source.backup(copy)
    source.close()
    copy.close()
    os.replace(backup, db_path)


def _deleted(db_path) -> None:
    for path in db_path.parent.glob(db_path.name + "*"):
        if not path.name.endswith(".lock"):
            path.unlink()


def _truncated(db_path) -> None:
    os.truncate(db_path, 0)


@pytest.mark.parametrize("change", [_restored_from_backup, _deleted, _truncated],
                         ids=["restored from a backup", "deleted", "truncated"])
async def test_a_database_file_changed_under_the_server_is_not_answered_as_stored(
        tmp_path, change):
    """The database file is replaced (a backup restored over it), deleted or truncated while
    `serve` runs. SQLite's connections still write to the file they opened - an unlinked
    inode, or pages behind a truncated header - so every MeterValues and cap after the change
    was answered as stored and was gone at the next start: 36 MeterValues and a cap in the
    audit's run. What cannot be stored in the file at the path must not be acknowledged: a
    CALLERROR (the station keeps and re-sends it), a 503, one line naming the file; after a
    restart the station's re-sent samples are in the file, each once."""
    server = _server(tmp_path, 1)
    db_path = server.db_path
    try:
        async with aiohttp.ClientSession() as http:
            server.start()
            cp = RawStation(http, server, "CP1", "ocpp1.6")
            await cp.connect()
            boot = call16.BootNotification(charge_point_vendor="Raw", charge_point_model="R")
            assert (await cp.call("boot", boot))[0] == MessageType.CallResult
            start = await cp.call("start", call16.StartTransaction(
                connector_id=1, id_tag="DRIVER-1", meter_start=1_000,
                timestamp=T0.strftime("%Y-%m-%dT%H:%M:%SZ")))
            transaction_id = start[2]["transactionId"]
            answered = []
            for i in (1, 2):
                assert (await cp.call(f"m{i}", _meter_values(transaction_id, i)))[0] == \
                    MessageType.CallResult
                answered.append(i)
            change(db_path)
            for i in (3, 4, 5):
                frame = await cp.call(f"m{i}", _meter_values(transaction_id, i))
                assert frame[0] == MessageType.CallError, (i, frame)
            heartbeat = await cp.call("hb", call16.Heartbeat())
            assert heartbeat[0] == MessageType.CallResult   # still serving the stations
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": 10_000})
            assert status == 503, body
            said = (tmp_path / "server.log").read_text()
            assert f"the database file {db_path}" in said, said[-3000:]
            if change is not _restored_from_backup:
                return
            # a restart opens the file at the path; the station re-sends what was refused
            server.process.kill()
            server.process.wait(timeout=10)
            server.start()
            await cp.connect()
            assert (await cp.call("boot2", boot))[0] == MessageType.CallResult
            for i in (3, 4, 5):
                frame = await cp.call(f"r{i}", _meter_values(transaction_id, i))
                assert frame[0] == MessageType.CallResult, (i, frame)
                answered.append(i)
    finally:
        server.stop()
    db = sqlite3.connect(db_path)
    stored = [int(value) for (value,) in db.execute(
        "SELECT value_text FROM meter_samples WHERE measurand = "
        "'Energy.Active.Import.Register' ORDER BY value_text")]
    db.close()
    assert stored == [1_000 + 100 * i for i in answered]
