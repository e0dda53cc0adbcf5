"""Fixtures for the central-system tests: a real server on 127.0.0.1 with a real SQLite file, and
small OCPP 1.6 test stations built on the `ocpp` library's client side over aiohttp WebSockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

# Bytecode for the suite's processes, also where PYTHONDONTWRITEBYTECODE is set (this machine
# sets it): without it each xdist worker compiled this tree's ~150 modules and rewrote the ~200
# test modules from source at every run (collection 9.6 -> 5.0 s of CPU per worker), and every
# `smartcharge serve` subprocess the tests start compiled the tree again (~0.4 s of CPU each,
# ~70 of them). Kept under .pytest_cache/ (ignored by git, pytest's own), never beside the
# sources. Before the imports below: they are the first of this tree's modules loaded.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE"):
    sys.dont_write_bytecode = False
    sys.pycache_prefix = os.path.join(_ROOT, ".pytest_cache", "pycache")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from smartcharge.app import create_app
from smartcharge.appkeys import EVENTS, REGISTRY, STORE
from smartcharge.clock import format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.ocpp.registry import StationCallError
from tests import port_leases
from tests.hang_budget import hang_budget_s

# The `smartcharge serve` and benchmark subprocesses the tests start run this tree's code, not
# whatever checkout an editable install points at (worktrees side by side: a subprocess in a
# temporary directory imported another tree's smartcharge)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)

# The `smartcharge serve` subprocesses compile each OCPP schema at its first use, not all 206
# before they listen (~0.4-0.7 s of CPU each, ~90 of them a run); the production default is
# proved by tests/test_cli_import.py, which clears this for its own `serve`.
os.environ["SMARTCHARGE_SCHEMAS_AT_FIRST_USE"] = "1"

# Every temporary file of the tests (tmp_path, TemporaryDirectory: every SQLite file, also those
# of the `smartcharge serve` subprocesses, which inherit TMPDIR) on a RAM file system where there
# is one. The store commits with synchronous=FULL, and on this machine's disk each fsync cost
# milliseconds: ~30 ms per fresh app, most of the billing property tests' time. No test can
# observe durability against a power cut; a SIGKILL leaves the page cache, as on a disk.
# SMARTCHARGE_TEST_TMPDIR picks another directory ("" keeps the system's default).
# Only where it has room: a container's /dev/shm is often 64 MB, and a suite's files (pytest keeps
# the last three runs' directories) take over 100 MB.
_TEST_TMPDIR = os.environ.get("SMARTCHARGE_TEST_TMPDIR", "/dev/shm")
_TEST_TMPDIR_MIN_FREE_BYTES = 1 << 30


def _roomy_writable_dir(path: str) -> bool:
    if not (path and os.path.isdir(path) and os.access(path, os.W_OK)):
        return False
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize >= _TEST_TMPDIR_MIN_FREE_BYTES


if _roomy_writable_dir(_TEST_TMPDIR):
    os.environ["TMPDIR"] = _TEST_TMPDIR
    tempfile.tempdir = _TEST_TMPDIR

PASSWORD = "station-password-01"          # 19 bytes: inside the 16..20 the whitepaper requires
ID_TAG = "DRIVER-1"
API_TOKEN = "test-operator-token"   # the harness's API client is an operator
HEARTBEAT_FRAME = [2, "hb-1", "Heartbeat", {}]   # the same in 1.6 and 2.0.1


def make_site(**overrides) -> Site:
    stations = tuple(
        Station(station_id=f"CP{n}", circuit_id="grid", password=PASSWORD,
                connectors=(Connector(1), Connector(2)), max_power_w=22_000.0)
        for n in (1, 2, 3))
    fields = dict(name="test", circuits=(Circuit("grid", None, limit_w=100_000.0),),
                  stations=stations, id_tags=frozenset({ID_TAG}),
                  operator_tokens=frozenset({API_TOKEN}))
    fields.update(overrides)
    return Site(**fields)


def station_auth_header(station_id: str, password: str = PASSWORD) -> dict[str, str]:
    """HTTP Basic auth of a station (security profile 1)."""
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def ocpp_time(moment: datetime) -> str:
    return format_ocpp_time(moment)


class WsConnection:
    """recv/send over an aiohttp client WebSocket, for the library's ChargePoint."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def recv(self) -> str:
        message = await self.ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket {message.type.name}")
        return message.data

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)


class TestStation(ChargePoint):
    """A scriptable station: answers the central system's calls with `self.answers`."""

    __test__ = False

    def __init__(self, station_id: str, connection: WsConnection) -> None:
        super().__init__(station_id, connection, response_timeout=10)
        self.received: list[tuple[str, dict]] = []
        self.hold = asyncio.Event()          # set() -> stop holding back answers
        self.hold.set()

    async def _answered(self, action: str, **payload):
        self.received.append((action, payload))
        await self.hold.wait()

    @on(Action.remote_start_transaction)
    async def remote_start(self, **payload):
        await self._answered("RemoteStartTransaction", **payload)
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.remote_stop_transaction)
    async def remote_stop(self, **payload):
        await self._answered("RemoteStopTransaction", **payload)
        return call_result.RemoteStopTransaction(status="Accepted")

    @on(Action.change_availability)
    async def change_availability(self, **payload):
        await self._answered("ChangeAvailability", **payload)
        return call_result.ChangeAvailability(status="Scheduled")

    @on(Action.reset)
    async def reset(self, **payload):
        await self._answered("Reset", **payload)
        return call_result.Reset(status="Accepted")

    @on(Action.unlock_connector)
    async def unlock(self, **payload):
        await self._answered("UnlockConnector", **payload)
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.trigger_message)
    async def trigger(self, **payload):
        await self._answered("TriggerMessage", **payload)
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.get_configuration)
    async def get_configuration(self, **payload):
        await self._answered("GetConfiguration", **payload)
        return call_result.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
            unknown_key=[k for k in payload.get("key", []) if k != "HeartbeatInterval"] or None)

    @on(Action.change_configuration)
    async def change_configuration(self, **payload):
        await self._answered("ChangeConfiguration", **payload)
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.clear_charging_profile)
    async def clear_profile(self, **payload):
        await self._answered("ClearChargingProfile", **payload)
        return call_result.ClearChargingProfile(status="Unknown")

    @on(Action.get_composite_schedule)
    async def composite(self, **payload):
        await self._answered("GetCompositeSchedule", **payload)
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=payload["connector_id"],
            schedule_start=ocpp_time(datetime(2026, 1, 1, 12, tzinfo=UTC)),
            charging_schedule={"charging_rate_unit": "A", "charging_schedule_period": [
                {"start_period": 0, "limit": 16.0}]})

    # -- helpers for the tests ---------------------------------------------------------------
    async def boot(self):
        return await self.call(call.BootNotification(charge_point_vendor="Test",
                                                     charge_point_model="T1"), suppress=False)

    async def start_tx(self, connector_id: int, meter_start_wh: int, at: datetime,
                       id_tag: str = ID_TAG):
        return await self.call(call.StartTransaction(
            connector_id=connector_id, id_tag=id_tag, meter_start=meter_start_wh,
            timestamp=ocpp_time(at)), suppress=False)

    async def meter(self, connector_id: int, transaction_id: int | None, at: datetime,
                    register_wh: float, unit: str = "Wh", extra: list | None = None):
        value = register_wh / 1000 if unit == "kWh" else register_wh
        sampled = [{"value": f"{value:g}", "measurand": "Energy.Active.Import.Register",
                    "unit": unit, "context": "Sample.Periodic"}] + (extra or [])
        return await self.call(call.MeterValues(
            connector_id=connector_id, transaction_id=transaction_id,
            meter_value=[{"timestamp": ocpp_time(at), "sampled_value": sampled}]),
            suppress=False)

    async def stop_tx(self, transaction_id: int, meter_stop_wh: int, at: datetime,
                      transaction_data: list | None = None, reason: str | None = "Local"):
        return await self.call(call.StopTransaction(
            meter_stop=meter_stop_wh, timestamp=ocpp_time(at), transaction_id=transaction_id,
            reason=reason, id_tag=ID_TAG, transaction_data=transaction_data), suppress=False)


class Harness:
    def __init__(self, server: TestServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = session
        # the REST API's client: every request carries the operator token (the WebSocket
        # client above sends no bearer token, as a station would not)
        self.api = aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"})
        self.app = server.app
        self._tasks: list[asyncio.Task] = []
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.events: list = []
        self.app[EVENTS].subscribe(self.events.append)

    @property
    def store(self):
        return self.app[STORE]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def open_ws(self, station_id: str, password: str | None = PASSWORD,
                      protocols=("ocpp1.6",)) -> aiohttp.ClientWebSocketResponse:
        headers = {}
        if password is not None:
            token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        ws = await self.http.ws_connect(self.url(f"/ocpp/{station_id}"), protocols=protocols,
                                        headers=headers, heartbeat=None)
        self.sockets.append(ws)
        return ws

    async def station(self, station_id: str = "CP1", boot: bool = True,
                      password: str | None = PASSWORD) -> TestStation:
        ws = await self.open_ws(station_id, password)
        station = TestStation(station_id, WsConnection(ws))
        station.ws = ws
        self._tasks.append(asyncio.create_task(self._serve(station)))
        if boot:
            answer = await station.boot()
            assert answer.status == "Accepted"
        return station

    @staticmethod
    async def _serve(station: TestStation) -> None:
        try:
            await station.start()
        except ConnectionError:
            pass

    async def raw_call(self, ws, frame) -> list:
        """Send a raw frame (str or JSON-able) and return the parsed answer."""
        await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    async def booted_raw_socket(self, boot_frame: list, station_id: str = "CP1",
                                protocols=("ocpp1.6",)) -> aiohttp.ClientWebSocketResponse:
        """A raw socket of `station_id` whose BootNotification (`boot_frame`, in the words of
        `protocols`) was accepted."""
        ws = await self.open_ws(station_id, protocols=protocols)
        answer = await self.raw_call(ws, boot_frame)
        assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
        return ws

    async def assert_still_up(self, ws) -> None:
        assert (await self.raw_call(ws, HEARTBEAT_FRAME))[:2] == [3, "hb-1"]

    async def assert_callerror(self, ws, frame, expected: list) -> None:
        """`frame` gets the CALLERROR `expected` ([4, message id, code]) with a description and
        details, and the connection goes on."""
        answer = await self.raw_call(ws, frame)
        assert answer[:3] == expected
        assert isinstance(answer[3], str) and isinstance(answer[4], dict)
        await self.assert_still_up(ws)

    async def our_call_refused(self, ws, request, code: str) -> StationCallError:
        """Our `request` to CP1 (through the registry's link), answered on CP1's raw socket `ws`
        with a CALLERROR `code`: what the caller got."""
        await self.wait_for(lambda: self.app[REGISTRY].get("CP1") is not None)
        link = self.app[REGISTRY].get("CP1")
        pending = asyncio.create_task(link.call(request, timeout_s=5))
        frame = json.loads((await ws.receive(timeout=5)).data)
        assert frame[2] == type(request).__name__
        await ws.send_str(json.dumps([4, frame[1], code, "no", {}]))
        with pytest.raises(StationCallError) as failed:
            await pending
        return failed.value

    async def wait_for(self, predicate, timeout_s: float = 5.0) -> None:
        """Wait on a condition without sleeping a fixed time: poll the loop, bounded (a
        hang: tests/hang_budget.py)."""
        deadline = asyncio.get_running_loop().time() + hang_budget_s(timeout_s)
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.api.close()
        for ws in self.sockets:
            await ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture(autouse=True)
def _ports_held_for_the_test():
    """The ports a test reserved for its `serve` subprocesses (sim_fixtures.port_for_this_test)
    are let go once it is over: its own clean-up has stopped the servers by then."""
    yield
    port_leases.let_go()


@pytest.fixture
def site() -> Site:
    return make_site()


async def serve_harness(app, server_class=TestServer) -> AsyncIterator[Harness]:
    """`app` served on a real socket (by `server_class`, aiohttp's TestServer or a subclass)
    with the tests' harness around it (its stations, its operator's API client); closed in
    order at the end. Use as an async generator fixture's body:
    `async for h in serve_harness(app): yield h`."""
    server = server_class(app, host="127.0.0.1", port=0)
    await server.start_server()
    session = aiohttp.ClientSession()
    h = Harness(server, session)
    try:
        yield h
    finally:
        await h.close()
        await session.close()
        await server.close()


@pytest.fixture
async def harness(site, tmp_path) -> AsyncIterator[Harness]:
    # The central system alone: these tests check exactly which calls reach the station.
    app = create_app(site, db_path=str(tmp_path / "smartcharge.sqlite"), smart_charging=False)
    async for h in serve_harness(app):
        yield h


@pytest.fixture
async def controlled(tmp_path) -> AsyncIterator[Harness]:
    """The central system with its site controller (as `serve` builds it) on a real SQLite
    file, and the tests' harness around it (its stations, its operator's API client)."""
    app = create_app(make_site(), db_path=str(tmp_path / "s.sqlite"))
    async for h in serve_harness(app):
        yield h


@pytest.fixture
async def api(tmp_path):
    """The app `serve` builds on `make_site()` (its site controller too), a real SQLite file,
    and a client with the operator's token: (server, http). A test file may define its own."""
    app = create_app(make_site(), db_path=str(tmp_path / "api.sqlite"))
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        yield server, http
    await server.close()


@pytest.fixture
def t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
