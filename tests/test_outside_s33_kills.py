"""Session 33, kills and failing disks at bad moments, on real `smartcharge serve` processes,
real SQLite files and real OCPP stations (docs/promises.md, "Audit, session 33 (kills)").
Each test failed before its fix."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from ocpp.charge_point import remove_nones, snake_to_camel_case
from ocpp.messages import MessageType
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from tests.hang_budget import hang_budget_s
from tests.test_kill_points import T0, RawStation
from smartcharge.sim.profiles import parse_profile
from tests.test_outside_s32_kills import (
    CLOCK, HUNG_CALL_TIMEOUT_S, MAX_W, Bare16, Bare16Fleet, _server, until)


def _meter_values(transaction_id: int, i: int) -> call16.MeterValues:
    """The station's i-th sample of its transaction: 100 Wh a minute from 1 000 Wh."""
    return call16.MeterValues(connector_id=1, transaction_id=transaction_id, meter_value=[{
        "timestamp": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sampled_value": [{"value": str(1_000 + 100 * i), "unit": "Wh",
                           "measurand": "Energy.Active.Import.Register",
                           "context": "Sample.Periodic"}]}])


async def _started_charging(http, server) -> tuple[RawStation, int]:
    """`serve` started and CP1 connected over raw 1.6 frames, booted, a transaction begun at
    1 000 Wh: (the station, its transaction id)."""
    server.start()
    cp = RawStation(http, server, "CP1", "ocpp1.6")
    await cp.connect()
    boot = call16.BootNotification(charge_point_vendor="Raw", charge_point_model="R")
    assert (await cp.call("boot", boot))[0] == MessageType.CallResult
    start = await cp.call("start", call16.StartTransaction(
        connector_id=1, id_tag="DRIVER-1", meter_start=1_000,
        timestamp=T0.strftime("%Y-%m-%dT%H:%M:%SZ")))
    return cp, start[2]["transactionId"]


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
            cp, transaction_id = await _started_charging(http, server)
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
            boot = call16.BootNotification(charge_point_vendor="Raw", charge_point_model="R")
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


def _children(pid: int) -> list[int]:
    found = []
    for task in (Path("/proc") / str(pid) / "task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _writer_pid(serve_pid: int) -> int:
    """The store's writer process of a `serve`: the child of its fork server (store_forks;
    started as `python -m smartcharge.store_forks`, or in a `serve` the tests forked, forked
    from it and named so: tests/serve_forks.py)."""
    def is_fork_server(pid: int) -> bool:
        proc = Path("/proc") / str(pid)
        return b"store_forks" in (proc / "cmdline").read_bytes() \
            or (proc / "comm").read_text().strip() == "store_forks"
    forks = [child for child in _children(serve_pid) if is_fork_server(child)]
    assert len(forks) == 1, forks
    writers = _children(forks[0])
    assert len(writers) == 1, writers
    return writers[0]


def _frame(unique_id: str, request) -> str:
    return json.dumps([2, unique_id, type(request).__name__,
                       snake_to_camel_case(remove_nones(asdict(request)))])


async def _answer(cp: RawStation, unique_id: str, timeout_s: float) -> list | None:
    """The answer frame to `unique_id`, or None if none came within `timeout_s`."""
    return await cp.answer(unique_id, timeout_s)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, a forked writer")
async def test_a_stopped_writer_holds_the_billing_answers_not_the_other_stations(tmp_path):
    """The store's writer process is stopped (SIGSTOP: a freezer, a debugger, a VM paused)
    while three stations send StopTransactions whose transactionData holds a long session's
    samples (~0.4 MB each as the writer's ops). The server wrote its ops to the writer's pipe
    with a blocking write: once the pipe's 1 MiB was full the event loop itself waited in
    write() for the stopped writer - no station answered (a fourth's Heartbeats unanswered
    until SIGCONT), no control round, and the 60 s watchdog that ends a stuck writer is a
    timer on that loop, so a writer stopped for good hung the server for good. The loop must
    go on answering; the stops are answered once committed, each billed once."""
    server = _server(tmp_path, 4)
    samples = 3_000
    try:
        async with aiohttp.ClientSession() as http:
            server.start()
            stations = [RawStation(http, server, f"CP{i}", "ocpp1.6") for i in (1, 2, 3, 4)]
            boot = call16.BootNotification(charge_point_vendor="Raw", charge_point_model="R")
            transactions = []
            for cp in stations:
                await cp.connect()
                assert (await cp.call("boot", boot))[0] == MessageType.CallResult
            for cp in stations[:3]:
                start = await cp.call("start", call16.StartTransaction(
                    connector_id=1, id_tag="DRIVER-1", meter_start=1_000,
                    timestamp=T0.strftime("%Y-%m-%dT%H:%M:%SZ")))
                transactions.append(start[2]["transactionId"])
            writer = _writer_pid(server.process.pid)
            os.kill(writer, signal.SIGSTOP)
            try:
                for cp, transaction_id in zip(stations, transactions):
                    data = [{"timestamp": (T0 + timedelta(seconds=s)).strftime(
                                "%Y-%m-%dT%H:%M:%SZ"),
                             "sampled_value": [{"value": str(1_000 + s), "unit": "Wh",
                                                "measurand": "Energy.Active.Import.Register",
                                                "context": "Sample.Periodic"}]}
                            for s in range(1, samples + 1)]
                    await cp.ws.send_str(_frame("stop", call16.StopTransaction(
                        meter_stop=1_000 + samples, transaction_id=transaction_id,
                        timestamp=(T0 + timedelta(seconds=samples)).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"), id_tag="DRIVER-1", reason="Local",
                        transaction_data=data)))
                # heartbeats one after another, each through the loop's turns: the stops are
                # handed to the writer meanwhile (before the fix the loop stopped at them)
                for beat in range(20):
                    await stations[3].ws.send_str(_frame(f"hb{beat}", call16.Heartbeat()))
                    frame = await _answer(stations[3], f"hb{beat}", hang_budget_s(5))
                    assert frame and frame[0] == MessageType.CallResult, (beat, frame)
                for cp in stations[:3]:   # billing waits for its commit
                    assert await _answer(cp, "stop", 0.2) is None
            finally:
                os.kill(writer, signal.SIGCONT)
            for cp in stations[:3]:
                frame = await _answer(cp, "stop", hang_budget_s(20))
                assert frame and frame[0] == MessageType.CallResult, frame
            status, sessions = await server.api("GET", "/api/sessions")
            assert status == 200, sessions
    finally:
        server.stop()
    db = sqlite3.connect(server.db_path)
    rows = db.execute("SELECT meter_start_wh, meter_stop_wh, energy_wh, state FROM sessions "
                      "ORDER BY transaction_id").fetchall()
    counts = db.execute("SELECT transaction_id, COUNT(*) FROM meter_samples "
                        "GROUP BY transaction_id").fetchall()
    db.close()
    assert rows == [(1_000, 1_000 + samples, samples, "stopped")] * 3, rows
    assert [count for _, count in counts] == [samples] * 3, counts


class HangsItsDefault(Bare16):
    """A bare 1.6 station that, told to, leaves its fail-safe default (the TxDefaultProfile at
    stack level 0) unanswered and untaken, and answers everything else (its idle share, at
    level 1, too)."""

    hang_default = False
    defaults_hung = 0

    @on(Action.set_charging_profile)
    async def set_profile(self, connector_id, cs_charging_profiles, **_):
        profile = parse_profile(connector_id, cs_charging_profiles, CLOCK.now())
        if self.hang_default and profile.purpose == "TxDefaultProfile" \
                and profile.stack_level == 0:
            self.defaults_hung += 1
            await asyncio.Event().wait()
        self.store.install(profile, None)
        return call_result.SetChargingProfile(status="Accepted")


async def test_a_raised_default_left_unanswered_is_sent_again(tmp_path):
    """CP1 and CP2 hold 15 kW defaults under a 30 kW cap (a 44 kW grid). The cap is lifted:
    both defaults are raised to 22 kW, and CP2 leaves its raise unanswered - untaken, it
    still holds 15 kW - while it stays connected. The raise was recorded as sent and never
    sent again (a later round compares what was sent): CP2 kept its lower default for as long
    as the limits stayed - safe (it is counted at the higher one) but 7 kW of the site's
    room never usable once we are gone. Once CP2 answers again it must be sent its raise;
    and the stations' own profiles stay under the grid."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S)
    grid_w = 2 * MAX_W
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2, HangsItsDefault)
            server.start()
            await fleet.connect()
            cp1, cp2 = fleet.stations["CP1"], fleet.stations["CP2"]
            await until(lambda: all(s.holds_our_default() and s.idle_w(2) == MAX_W
                                    for s in (cp1, cp2)), 30, "both defaults at 22 kW")
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": 30_000})
            assert status == 200, body
            await until(lambda: all(s.idle_w(2) <= 15_000 + 1 for s in (cp1, cp2)), 30,
                        "both defaults lowered to 15 kW")
            cp2.hang_default = True
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": None})
            assert status == 200, body
            # the request and its one retry after the call timeout (`retries = 1`), both hung
            await until(lambda: cp1.idle_w(2) == MAX_W and cp2.defaults_hung == 2, 30,
                        "CP1 raised, CP2's raise and its retry hung")
            assert cp2.idle_w(2) <= 15_000 + 1
            cp2.hang_default = False   # it answers again (the hung requests stay untaken)
            await until(lambda: cp2.idle_w(2) == MAX_W, 30, "CP2's raise sent again")
            server.process.kill()   # gone for good: the stations run on what they hold
            server.process.wait(timeout=10)
            for hours in (0.5, 2, 6):
                held_w = [s.idle_w(hours) for s in (cp1, cp2)]
                assert sum(held_w) <= grid_w + 1, (hours, held_w)
            fleet.close()
    finally:
        server.stop()


async def test_a_station_reconnecting_while_the_store_refuses_commits_is_served(tmp_path):
    """The store refuses every commit (here its file was restored from a backup under the
    server; a full disk does the same) and CP1's connection drops - a network blip. Its
    WebSocket handshake recorded the connection in the store first, so it failed with a 500:
    no station that reconnected could be served or controlled at all while the store refused
    (and after a restart on a full disk none could connect). The handshake must be served;
    what needs the store (billing) is refused with a CALLERROR, the rest answered."""
    server = _server(tmp_path, 1)
    try:
        async with aiohttp.ClientSession() as http:
            cp, transaction_id = await _started_charging(http, server)
            _restored_from_backup(server.db_path)
            frame = await cp.call("m1", _meter_values(transaction_id, 1))
            assert frame[0] == MessageType.CallError, frame   # the store refuses
            await cp.ws.close()
            await cp.connect()   # a 500 raised WSServerHandshakeError here
            heartbeat = await cp.call("hb", call16.Heartbeat())
            assert heartbeat[0] == MessageType.CallResult, heartbeat
            frame = await cp.call("m2", _meter_values(transaction_id, 2))
            assert frame[0] == MessageType.CallError, frame
    finally:
        server.stop()
