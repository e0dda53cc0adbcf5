"""Fixtures for running simulated stations over real sockets on 127.0.0.1.

`MiniCentralSystem` is a tiny OCPP 1.6J central system built on the `ocpp` library's server side
on aiohttp: it lets the simulator's own behaviour (profiles, configuration, triggers) be tested
against a second, independent OCPP implementation. `real_server` starts the project's own server
app (`smartcharge.app.create_app`) the way `smartcharge serve` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from aiohttp import web
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action

from smartcharge.sim.connection import WsConnection
from smartcharge.sim.station import ConnectorSpec, StationSpec
from smartcharge.sim.stations import make_station
from tests import port_leases
from tests.hang_budget import hang_budget_s

ACCEPTED_TAGS = {"TAG-OK", "DRIVER-1", "DRIVER-2"}


# Test servers' ports: below the kernel's ephemeral range (32768-60999 on Linux), a block per
# pytest-xdist worker. A port the kernel handed out (bind to 0) was free only at that moment:
# until the test's server bound it, another worker's free_port() or any outgoing connection's
# local port could take it, and a test then talked to another test's server (a 429 for "too
# many unknown API tokens" answered to the rig's own token, s26-suite).
_PORT_BLOCK = 1_500
_FIRST_PORT = 20_000
# started at a place of this process's own: two runs of the suite at once (a developer's and
# a helper's worktree) share the blocks, and from the same start their workers took the same
# ports one after the other ("address already in use" when one bound a port between the
# other's free_port() and its bind)
_next_port = itertools.count(os.getpid() % _PORT_BLOCK)


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) % 8 if worker[2:].isdigit() else 0


# Ports held by a test's `serve` subprocess for its life, against other pytest processes:
# a lock file each (flock, let go when the holder closes it or dies), in one directory for
# every process whatever its TMPDIR (conftest moves it to a RAM file system)
_PORT_LOCKS = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) \
    / "smartcharge-test-ports"


def reserved_port() -> tuple[int, IO]:
    """A port of this worker's block, bindable now, that no other process's `reserved_port()`
    holds, and the open lock file that holds it: close it when the server on the port is gone.
    For a server in another process, which binds the port only seconds later (a `serve`
    importing): a port bound to 0 and handed over is in the kernel's ephemeral range, free for
    any process's bind to 0 meanwhile, and copies of a test run as separate pytest processes
    share this worker's block (worker gw0)."""
    _PORT_LOCKS.mkdir(exist_ok=True)
    for _ in range(_PORT_BLOCK):
        port = _bindable_port()
        lock = open(_PORT_LOCKS / f"{port}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()    # another process's server holds it
            continue
        return port, lock
    raise RuntimeError("no free port to reserve")


def free_port() -> int:
    """A port for a test's server, reserved (`reserved_port`) until the test ends: conftest lets
    it go after the test's own clean-up has stopped its servers. Only looked at (bound and closed
    again), it was free at that moment alone: a `serve` subprocess binds it seconds later, and a
    server in the test's process binds it again at each restart, while another pytest process's
    worker walks the same block (copies of a test; another worktree's suite, as helpers run
    side by side) and could hand it out meanwhile."""
    port, lock = reserved_port()
    port_leases.held.append(lock)
    return port


def _bindable_port() -> int:
    """A port of this worker's block that nothing is bound to now."""
    base = _FIRST_PORT + _worker_index() * _PORT_BLOCK
    for _ in range(_PORT_BLOCK):
        port = base + next(_next_port) % _PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue   # still held (a server of an earlier test closing)
            return port
    raise RuntimeError(f"no free port in {base}..{base + _PORT_BLOCK - 1}")


@dataclass
class Received:
    action: str
    payload: dict


class Recording:
    """Mixin of an `ocpp` ChargePoint (either version) that records what the station sends."""

    def __init__(self, station_id, connection, csms: MiniCsmsBase):
        super().__init__(station_id, connection, response_timeout=5)
        self.csms = csms

    def _record(self, action, **payload):
        self.csms.received.append(Received(action, payload))
        self.csms.changed.set()


class StationLink(Recording, ChargePoint):
    """One station's connection as the mini central system sees it."""

    @on(Action.boot_notification)
    def on_boot(self, **payload):
        self._record("BootNotification", **payload)
        status = self.csms.boot_answers.pop(0) if self.csms.boot_answers else "Accepted"
        return call_result.BootNotification(
            current_time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            interval=self.csms.heartbeat_interval_s, status=status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **payload):
        self._record("Heartbeat")
        return call_result.Heartbeat(
            current_time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @on(Action.status_notification)
    def on_status(self, **payload):
        self._record("StatusNotification", **payload)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag, **payload):
        self._record("Authorize", id_tag=id_tag)
        status = "Accepted" if id_tag in ACCEPTED_TAGS else "Invalid"
        return call_result.Authorize(id_tag_info={"status": status})

    @on(Action.start_transaction)
    def on_start(self, **payload):
        self._record("StartTransaction", **payload)
        key = (self.id, payload["connector_id"], payload["timestamp"])
        if key not in self.csms.transaction_ids:       # a replayed start gets the same id
            self.csms.transaction_ids[key] = next(self.csms.next_transaction_id)
        status = "Accepted" if payload["id_tag"] in ACCEPTED_TAGS else "Invalid"
        return call_result.StartTransaction(transaction_id=self.csms.transaction_ids[key],
                                            id_tag_info={"status": status})

    @on(Action.meter_values)
    def on_meter_values(self, **payload):
        self._record("MeterValues", **payload)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop(self, **payload):
        self._record("StopTransaction", **payload)
        return call_result.StopTransaction()


@dataclass
class MiniCsmsBase:
    """What both mini central systems share: accept a station's socket for one subprotocol,
    record what it sends, wait for it, drop it."""

    heartbeat_interval_s: int = 300
    accepting: bool = True
    offered: list[str] = field(default_factory=list)    # Sec-WebSocket-Protocol of each connect
    received: list[Received] = field(default_factory=list)
    links: dict = field(default_factory=dict)
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    PROTOCOL = "ocpp1.6"
    LINK = None                                          # the ocpp ChargePoint class

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        if not self.accepting:
            raise web.HTTPServiceUnavailable()
        self.offered.append(request.headers.get("Sec-WebSocket-Protocol", ""))
        self.changed.set()
        station_id = request.match_info["station_id"]
        ws = web.WebSocketResponse(protocols=(self.PROTOCOL,))
        await ws.prepare(request)
        link = self.LINK(station_id, WsConnection(ws), self)
        self.links[station_id] = link
        self.sockets[station_id] = ws
        with contextlib.suppress(ConnectionError):
            await link.start()
        return ws

    def of(self, action: str) -> list[dict]:
        return [r.payload for r in self.received if r.action == action]

    async def wait_until(self, predicate, timeout_s: float = 10.0) -> None:
        async def poll():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(poll(), hang_budget_s(timeout_s))   # bounds a hang

    async def drop(self, station_id: str) -> None:
        """Close a station's socket from our side (the network failed)."""
        await self.sockets[station_id].close()


@dataclass
class MiniCentralSystem(MiniCsmsBase):
    boot_answers: list[str] = field(default_factory=list)   # e.g. ["Pending"], then Accepted
    transaction_ids: dict = field(default_factory=dict)
    next_transaction_id: itertools.count = field(default_factory=lambda: itertools.count(100))

    LINK = StationLink


@contextlib.asynccontextmanager
async def serving(csms: MiniCsmsBase):
    """`csms` on 127.0.0.1 at a free port, its `url` set."""
    app = web.Application()
    app.router.add_get("/ocpp/{station_id}", csms.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    csms.url = f"ws://127.0.0.1:{runner.addresses[0][1]}/ocpp"
    try:
        yield csms
    finally:
        await runner.cleanup()


def mini_central_system(**kwargs):
    return serving(MiniCentralSystem(**kwargs))


def station_spec(station_id: str = "CP1", connectors: int = 2, **overrides) -> StationSpec:
    defaults = dict(meter_interval_s=60, reconnect_min_s=0.05, reconnect_max_s=0.2,
                    call_timeout_s=5.0)
    defaults.update(overrides)
    return StationSpec(station_id=station_id,
                       connectors=tuple(ConnectorSpec(i + 1) for i in range(connectors)),
                       **defaults)


@contextlib.asynccontextmanager
async def running_station(spec: StationSpec, url: str, clock, *, seed: int = 0):
    station = make_station(spec, url, clock, seed=seed)    # as spec.ocpp_version says
    await station.start()
    try:
        yield station
    finally:
        await station.stop()


# ---- the project's real server ----------------------------------------------------------------

STATION_PASSWORD = "sim-password-0123"      # 17 bytes: the security whitepaper wants 16..20
OPERATOR_TOKEN = "sim-operator-token"
DRIVER_TAGS = ("DRIVER-1", "DRIVER-2", "TAG-OK")


def site_toml(stations: int = 1, connectors: int = 2, *, port: int = 8080,
              database: str = "smartcharge.sqlite", heartbeat_interval_s: int = 300,
              settle_s: float | None = None, edge_margin_s: float | None = None,
              dispatch_call_timeout_s: float | None = None,
              limit_answer_wait_s: float | None = None) -> str:
    """A site file with stations CP1..CPn, each with `connectors` 3-phase 32 A connectors.
    `settle_s`, `edge_margin_s`, `dispatch_call_timeout_s`, `limit_answer_wait_s`: the
    [server] settings (None: the defaults, 5, 5, 10 and 15 s)."""
    timing = [f'{key} = {value}' for key, value in (
        ("settle_s", settle_s), ("edge_margin_s", edge_margin_s),
        ("dispatch_call_timeout_s", dispatch_call_timeout_s),
        ("limit_answer_wait_s", limit_answer_wait_s)) if value is not None]
    lines = [
        '[site]', 'name = "sim test site"', '',
        '[server]', 'host = "127.0.0.1"', f'port = {port}', f'database = "{database}"',
        f'heartbeat_interval_s = {heartbeat_interval_s}', 'call_timeout_s = 5', *timing, '',
        '[grid]', f'limit_w = {stations * connectors * 22_080}', '',
        '[auth]', 'id_tags = [' + ", ".join(f'"{t}"' for t in DRIVER_TAGS) + ']', '',
        '[api]', f'operator_tokens = ["{OPERATOR_TOKEN}"]', '',
    ]
    for index in range(1, stations + 1):
        lines += ['[[stations]]', f'id = "CP{index}"', f'password = "{STATION_PASSWORD}"',
                  'circuit = "grid"', '']
        for connector_id in range(1, connectors + 1):
            lines += ['[[stations.connectors]]', f'id = {connector_id}', 'phases = 3',
                      'max_current_a = 32', '']
    return "\n".join(lines)


@dataclass
class RunningServer:
    app: object
    ws_url: str          # the OCPP endpoint without the station id
    http_url: str
    db_path: str


@contextlib.asynccontextmanager
async def real_server(site, db_path, clock=None):
    """The project's server app on 127.0.0.1, port 0, with its SQLite file at `db_path`."""
    from smartcharge.app import create_app

    app = create_app(site, db_path=str(db_path), clock=clock)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    try:
        yield RunningServer(app, f"ws://127.0.0.1:{port}/ocpp", f"http://127.0.0.1:{port}",
                            str(db_path))
    finally:
        await runner.cleanup()


def sim_spec_for(site, station_id: str, **overrides) -> StationSpec:
    defaults = dict(meter_interval_s=60, reconnect_min_s=0.05, reconnect_max_s=0.3,
                    call_timeout_s=5.0)
    defaults.update(overrides)
    return StationSpec.from_model(site.station(station_id), **defaults)
