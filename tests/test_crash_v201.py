"""Kill the server with SIGKILL while an OCPP 2.0.1 station sends TransactionEvents, restart it on
the same port and database; the station reconnects, re-sends what was not acknowledged and
replays what it queued offline (one EVSE's queue out of order), then ends its transactions:
every event the server acknowledged is in the database, no transaction is on two rows, and each
session's energy is its End register minus its Begin register exactly.

The server runs as `smartcharge serve --config <site file>` in a subprocess, as a user runs it;
the station is the `ocpp` library's `ocpp.v201.ChargePoint`.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from datetime import UTC, datetime, timedelta

import aiohttp

from sim_fixtures import STATION_PASSWORD, free_port, site_toml
from smartcharge.store import SqliteStore
from tests.conftest import WsConnection
from tests.hang_budget import hang_budget_s
from tests.test_crash import kill, serve
from tests.v201_billing import tx_event
from tests.v201_fixtures import Station201

MIN = timedelta(minutes=1)


class ReplayingStation:
    """Sends its queue in order, one at a time; on a lost connection it reconnects and sends
    the unacknowledged head again (a duplicate when only the answer was lost)."""

    def __init__(self, url: str, station_id: str) -> None:
        self.url, self.station_id = url, station_id
        self.pending: list = []
        self.acknowledged: list = []
        self.connected = asyncio.Event()
        self._more = asyncio.Event()

    def queue(self, *requests) -> None:
        self.pending.extend(requests)
        self._more.set()

    async def run(self) -> None:
        token = base64.b64encode(f"{self.station_id}:{STATION_PASSWORD}".encode()).decode()
        booted = False
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    ws = await http.ws_connect(f"{self.url}/{self.station_id}",
                                               protocols=("ocpp2.0.1",), heartbeat=None,
                                               headers={"Authorization": f"Basic {token}"})
                except (aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.05)      # back off, then dial again
                    continue
                station = Station201(self.station_id, WsConnection(ws))
                station._response_timeout = 5
                serving = asyncio.create_task(station.start())
                try:
                    if not booted:
                        await self._send(station, serving, station.boot())
                        booted = True
                    self.connected.set()
                    await self._drain(station, serving)
                except (ConnectionError, asyncio.TimeoutError, aiohttp.ClientError):
                    pass
                finally:
                    self.connected.clear()
                    serving.cancel()
                    await asyncio.gather(serving, return_exceptions=True)
                    await ws.close()

    async def _drain(self, station: Station201, serving: asyncio.Task) -> None:
        while True:
            if not self.pending:
                self._more.clear()
                await self._send(station, serving, self._more.wait())
                continue
            await self._send(station, serving, station.send(self.pending[0]))
            self.acknowledged.append(self.pending.pop(0))

    @staticmethod
    async def _send(station, serving: asyncio.Task, awaitable):
        """Await `awaitable`, or raise ConnectionError as soon as the socket is gone."""
        work = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({work, serving}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        raise ConnectionError("connection lost")


async def until(predicate, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + hang_budget_s(timeout_s)
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def events_for(evse: int, ref: str, seq_nos: range, t0: datetime, base_wh: int,
               offline: bool = False) -> list:
    return [tx_event("Updated", ref, seq, t0 + seq * MIN, register_wh=base_wh + 700 * seq,
                     evse=evse, offline=offline) for seq in seq_nos]


async def test_sigkill_mid_transaction_loses_no_acknowledged_event(tmp_path):
    port = free_port()
    db_path = tmp_path / "crash201.sqlite"
    site_file = tmp_path / "site.toml"
    site_file.write_text(site_toml(1, 2, port=port, database=str(db_path),
                                   heartbeat_interval_s=60))
    log_path = tmp_path / "server.log"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    base = {1: 1_000, 2: 50_000}
    station = ReplayingStation(f"ws://127.0.0.1:{port}/ocpp", "CP1")
    server = serve(site_file, log_path)
    runner = asyncio.create_task(station.run())
    try:
        station.queue(tx_event("Started", "T-1", 0, t0, register_wh=base[1], evse=1),
                      tx_event("Started", "T-2", 0, t0, register_wh=base[2], evse=2))
        for seq in range(1, 9):   # both EVSEs, interleaved, back to back
            station.queue(*events_for(1, "T-1", range(seq, seq + 1), t0, base[1]),
                          *events_for(2, "T-2", range(seq, seq + 1), t0, base[2]))
        await until(lambda: len(station.acknowledged) >= 7, 30)
        kill(server)                                       # mid-send, no warning
        await until(lambda: not station.connected.is_set(), 10)
        # queued while the server is dead: EVSE 1 ends; EVSE 2's queue replays backwards
        station.queue(*events_for(1, "T-1", range(9, 12), t0, base[1], offline=True),
                      tx_event("Ended", "T-1", 12, t0 + 12 * MIN,
                               register_wh=base[1] + 700 * 12, evse=1, offline=True),
                      *events_for(2, "T-2", range(9, 12), t0, base[2], offline=True)[::-1])
        server = serve(site_file, log_path)
        await until(lambda: not station.pending, 60)
        station.queue(tx_event("Ended", "T-2", 12, t0 + 12 * MIN,
                               register_wh=base[2] + 700 * 12, evse=2))
        await until(lambda: not station.pending, 30)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        kill(server)

    store = await SqliteStore.open(str(db_path))
    try:
        sessions = await store.run(lambda tx: tx.sessions())
        recorded = await store.run(lambda tx: tx.execute(
            "SELECT station_tx_ref, seq_no FROM transaction_events").fetchall())
        registers = await store.run(lambda tx: tx.execute(
            "SELECT station_tx_ref, timestamp, context, value_si FROM meter_samples WHERE "
            "measurand = 'Energy.Active.Import.Register'").fetchall())
    finally:
        await store.close()
    acknowledged = [r for r in station.acknowledged if hasattr(r, "transaction_info")]
    assert len(acknowledged) == 2 * 13                     # everything sent was acknowledged
    assert {(r.transaction_info["transaction_id"], r.seq_no) for r in acknowledged} \
        <= set(recorded)                                   # nothing acknowledged lost
    assert sorted(s.station_tx_ref for s in sessions) == ["T-1", "T-2"]   # one row each
    for session in sessions:
        evse = int(session.station_tx_ref[-1])
        assert session.state == "stopped", session
        assert session.meter_start_wh == base[evse]
        assert session.energy_wh == 700 * 12                # End - Begin, exactly
    doubled = Counter((ref, at, context) for ref, at, context, _ in registers)
    assert not [key for key, n in doubled.items() if n > 1]   # no reading stored twice
    assert len(registers) == 2 * 13
