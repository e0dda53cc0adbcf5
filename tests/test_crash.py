"""Kill the server with SIGKILL in the middle of sessions, restart it on the same port and
database, let the simulated stations reconnect and finish: every start, sample and stop the
server acknowledged is in the database, and every session's energy is its meter delta exactly.

The server runs as `smartcharge serve --config <site file>` in a subprocess, as a user runs it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime


from sim_fixtures import free_port, site_toml
from smartcharge.clock import AcceleratedClock
from smartcharge.config import load_site
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.store import SqliteStore
from tests.hang_budget import hang_budget_s
from tests.serve_forks import serve_popen

STATIONS = 3
CONNECTORS = 2
TAGS = ("DRIVER-1", "DRIVER-2")


def serve(site_file, log_path, *options: str) -> subprocess.Popen:
    log = open(log_path, "ab")
    # forked from a process that has its imports (tests/serve_forks.py)
    return serve_popen(["serve", "--config", str(site_file), *options], stdout=log,
                       stderr=subprocess.STDOUT, cwd=os.path.dirname(site_file))


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def acknowledged(fleet, action):
    """(station id, request) for every message of `action` the server answered."""
    return [(sid, request) for sid, station in fleet.stations.items()
            for name, request, _ in station.acknowledged if name == action]


async def read_db(db_path):
    store = await SqliteStore.open(str(db_path))
    try:
        sessions = await store.run(lambda tx: tx.sessions())
        samples = []
        for session in sessions:
            samples += [(session.station_id, s) for s in await store.run(
                lambda tx, t=session.transaction_id: tx.samples(t))]
    finally:
        await store.close()
    return sessions, samples


def whole_second(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


async def test_sigkill_mid_session_loses_nothing_and_bills_exactly(tmp_path):
    port = free_port()
    db_path = tmp_path / "crash.sqlite"
    site_file = tmp_path / "site.toml"
    site_file.write_text(site_toml(STATIONS, CONNECTORS, port=port, database=str(db_path),
                                   heartbeat_interval_s=60))
    site = load_site(site_file)
    log_path = tmp_path / "server.log"
    # 120x: a sample per connector every 0.5 s real (18 messages a second from the fleet).
    # At 600x (90 a second) a `serve` starved of CPU (four workers on two cores, load 11)
    # answered fewer than the stations queued, and their outboxes never drained (fleet.drained
    # timed out after the restart); the claim needs samples queued while dead, not a flood
    clock = AcceleratedClock(datetime(2026, 1, 1, 8, tzinfo=UTC), speed=120)
    fleet = Fleet(site, f"ws://127.0.0.1:{port}/ocpp", clock, seed=3, meter_interval_s=60,
                  reconnect_min_s=0.05, reconnect_max_s=0.5, call_timeout_s=5.0)
    server = serve(site_file, log_path)
    try:
        await fleet.start(wait_booted_s=hang_budget_s(30))
        for index, (sid, station) in enumerate(fleet.stations.items()):
            for cid in station.connectors:
                ev = SimEV(capacity_wh=150_000, soc=0.1)
                assert await fleet.plug_in(sid, cid, ev, TAGS[index % 2]), (sid, cid)
        stations = list(fleet.stations.values())
        await asyncio.gather(*(s.wait_for(lambda s=s: len(
            [a for a in s.acknowledged if a[0] == "MeterValues"]) >= 3 * CONNECTORS,
            hang_budget_s(20))
            for s in stations))

        kill(server)                                          # mid-session, no warning
        await asyncio.gather(*(s.wait_for(lambda s=s: not s.connected.is_set(),
                                           hang_budget_s(10))
                               for s in stations))
        await asyncio.gather(*(s.wait_for(lambda s=s: s.outbox.pending("MeterValues") >= 4,
                                           hang_budget_s(20))
                               for s in stations))
        first = stations[0]
        await fleet.unplug(first.spec.station_id, 1)          # a stop while the server is dead

        queued_offline = {
            (sid, request.connector_id, request.meter_value[0]["timestamp"],
             request.meter_value[0]["sampledValue"][0]["value"])
            for sid, station in fleet.stations.items() for item in station.outbox.queued()
            if item.action == "MeterValues" for request in [item.build()]}
        server = serve(site_file, log_path)
        await asyncio.gather(*(s.wait_for(lambda s=s: s.boots >= 2, hang_budget_s(30)) for s in stations))
        await fleet.drained(timeout_s=hang_budget_s(30))
        for sid, station in fleet.stations.items():
            for cid, state in station.connectors.items():
                if state.ev is not None:
                    await fleet.unplug(sid, cid)
        await fleet.drained(timeout_s=hang_budget_s(30))
    finally:
        await fleet.stop()
        kill(server)

    sessions, samples = await read_db(db_path)
    starts = acknowledged(fleet, "StartTransaction")
    stops = acknowledged(fleet, "StopTransaction")
    assert len(starts) == STATIONS * CONNECTORS and len(stops) == STATIONS * CONNECTORS
    by_key = {(s.station_id, s.connector_id, whole_second(s.start_time)): s for s in sessions}
    assert len(by_key) == len(sessions) == STATIONS * CONNECTORS        # no phantom sessions
    for station_id, start in starts:
        session = by_key[(station_id, start.connector_id, start.timestamp)]
        assert session.meter_start_wh == start.meter_start
        stop = next(request for sid, request in stops
                    if sid == station_id and request.transaction_id == session.transaction_id)
        assert session.state == "stopped", session
        assert session.meter_stop_wh == stop.meter_stop
        assert session.energy_wh == stop.meter_stop - start.meter_start   # exact
        assert session.energy_wh > 0

    stored = Counter((sid, s["connector_id"], whole_second(s["timestamp"]), s["value_text"])
                     for sid, s in samples
                     if s["measurand"] == "Energy.Active.Import.Register"
                     and s["context"] == "Sample.Periodic")
    assert not [key for key, n in stored.items() if n > 1]              # nothing doubled
    sent = {(sid, m.connector_id, m.meter_value[0]["timestamp"],
             m.meter_value[0]["sampledValue"][0]["value"])
            for sid, m in acknowledged(fleet, "MeterValues")}
    assert sent <= set(stored)                                         # nothing acknowledged lost
    assert len(queued_offline) >= 4 * STATIONS
    assert queued_offline <= set(stored)                               # replayed after restart
