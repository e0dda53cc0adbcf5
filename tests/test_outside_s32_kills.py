"""Session 32, an outside judge of durability: kills and stops at bad moments, on real
`smartcharge serve` processes, real SQLite files and real OCPP stations (docs/promises.md,
"Audit, session 32 (kills)"). Each test failed before its fix."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta

import aiohttp
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from smartcharge.clock import SystemClock
from smartcharge.sim.connection import ConnectionClosed, WsConnection
from smartcharge.sim.profiles import ProfileStore, parse_profile
from tests.hang_budget import hang_budget_s
from tests.scripted_16 import AnswersSetUp
from tests.sim_fixtures import STATION_PASSWORD
from tests.test_kill_points import Server

MAX_W = 22_080.0          # each connector's maximum (32 A, 3 phases at 230 V)
CLOCK = SystemClock()


class Bare16(AnswersSetUp, ChargePoint):
    """A bare `ocpp` 1.6 station of one connector that keeps the profiles it takes in the
    simulator's profile store (what it runs on once we are gone). `hang_defaults`: it leaves
    every TxDefaultProfile request unanswered - and untaken - while it stays connected and
    answers everything else (each inbound message is handled on its own, as firmware does)."""

    configuration_change_status = "Rejected"

    def __init__(self, station_id: str, connection, store: ProfileStore | None = None) -> None:
        # its calls' answers waited for as long as a loaded machine may need (a fresh serve's
        # first BootNotification took over 10 s at load ~30)
        super().__init__(station_id, connection, response_timeout=hang_budget_s(10))
        self.store = store or ProfileStore(connector_ids=(1,))
        self.hang_defaults = False
        self.hung = 0
        self._handling: set[asyncio.Task] = set()

    async def route_message(self, raw_msg):
        task = asyncio.create_task(super().route_message(raw_msg))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    @on(Action.set_charging_profile)
    async def set_profile(self, connector_id, cs_charging_profiles, **_):
        profile = parse_profile(connector_id, cs_charging_profiles, CLOCK.now())
        if self.hang_defaults and profile.purpose == "TxDefaultProfile":
            self.hung += 1
            await asyncio.Event().wait()
        self.store.install(profile, None)
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.get_composite_schedule)
    def composite(self, **_):
        return call_result.GetCompositeSchedule(status="Rejected")

    def holds_our_default(self) -> bool:
        """It took a fail-safe default of ours (a TxDefaultProfile at stack level 0): its
        set-up's defaults are done (its maximum alone also reads as 22 kW idle)."""
        return any(p.purpose == "TxDefaultProfile" and p.stack_level == 0
                   for p in self.store.profiles)

    def idle_w(self, hours: float) -> float:
        """What its own profiles let its idle connector draw `hours` from now (every plan and
        idle share of ours has ended two hours on: its fail-safe default)."""
        at = CLOCK.now() + timedelta(hours=hours)
        limit = self.store.limit_w(1, at, None, voltage_v=230.0, phases_in_use=3)
        return MAX_W if limit is None else min(limit, MAX_W)


class Bare16Fleet:
    """Bare stations CP1..CPn, connected (and booted) again after each restart, their profile
    stores kept: a station keeps what it holds while we are gone."""

    def __init__(self, http: aiohttp.ClientSession, server: Server, n: int,
                 station_class: type[Bare16] = Bare16) -> None:
        self.http, self.server = http, server
        self.station_class = station_class
        self.ids = [f"CP{i}" for i in range(1, n + 1)]
        self.stations: dict[str, Bare16] = {}
        self._serving: list[asyncio.Task] = []

    async def connect(self) -> None:
        for task in self._serving:
            task.cancel()
        self._serving = []
        await self.server.wait_listening()
        for sid in self.ids:
            auth = base64.b64encode(f"{sid}:{STATION_PASSWORD}".encode()).decode()
            ws = await self.http.ws_connect(
                f"ws://127.0.0.1:{self.server.port}/ocpp/{sid}", protocols=("ocpp1.6",),
                headers={"Authorization": f"Basic {auth}"})
            old = self.stations.get(sid)
            station = self.station_class(sid, WsConnection(ws), old.store if old else None)
            station.hang_defaults = old.hang_defaults if old else False
            self.stations[sid] = station
            self._serving.append(asyncio.create_task(_serve(station)))
            await station.call(call.BootNotification(charge_point_vendor="Bare",
                                                     charge_point_model="B"), suppress=False)
            await station.call(call.StatusNotification(connector_id=1, error_code="NoError",
                                                       status="Available"), suppress=False)

    async def start_at_max_defaults(self) -> tuple[Bare16, ...]:
        """The server started, every station connected and holding a default of ours at its
        connector's maximum (22 kW)."""
        self.server.start()
        await self.connect()
        stations = tuple(self.stations[sid] for sid in self.ids)
        await until(lambda: all(s.holds_our_default() and s.idle_w(2) == MAX_W
                                for s in stations), 30, "every default at 22 kW")
        return stations

    def close(self) -> None:
        for task in self._serving:
            task.cancel()


def killed_for_good_stays_under(server: Server, stations, cap_w: float, note=None) -> None:
    """We are SIGKILLed for good: what the stations' own profiles let them draw, summed, stays
    under the cap half an hour, two and six hours on."""
    server.process.kill()
    server.process.wait(timeout=10)
    for hours in (0.5, 2, 6):
        held_w = [s.idle_w(hours) for s in stations]
        assert sum(held_w) <= cap_w + 1, (hours, held_w, note)


# dispatch's call timeout where a station leaves calls unanswered on purpose: what is tested is
# what follows a timeout, not its length - the default 10 s (with its retry and the set-up's
# backoff) made each such test wait 25-40 s
HUNG_CALL_TIMEOUT_S = 3.0
# the cap answer's bound beside it (`server.limit_answer_wait_s`): scaled with the short call
# timeout as the default 15 s is with the default 10 s - the answer ends after a first timeout
# and before the retry's (sent when the request times out). What these tests read of the answer
# is its status, or a station pending; the default bound made each wait its whole 15 s
HUNG_ANSWER_WAIT_S = 1.5 * HUNG_CALL_TIMEOUT_S


def _server(tmp_path, stations: int, dispatch_call_timeout_s: float | None = None,
            limit_answer_wait_s: float | None = None, settle_s: float | None = None) -> Server:
    """`Server` (its port reserved against other pytest processes, `reserved_port`: copies of
    this file run side by side as separate processes share `free_port`'s block, and two of
    them once served on one port - the second's stations talking to the first's server; the
    port bound to 0 and handed over that replaced it was free for any bind to 0 until `serve`
    bound it, and `serve` exited at its start in 2 of 24 copies of a test, cause unconfirmed)."""
    return Server(tmp_path, stations=stations, dispatch_call_timeout_s=dispatch_call_timeout_s,
                  limit_answer_wait_s=limit_answer_wait_s, settle_s=settle_s)


async def _serve(station: Bare16) -> None:
    try:
        await station.start()
    except ConnectionClosed:
        pass   # we were killed: it keeps what it holds


async def until(predicate, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hang_budget_s(timeout_s)
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_station_whose_setup_default_goes_unanswered_stays_held(tmp_path):
    """CP1 and CP2 hold 22 kW defaults (a 44 kW grid). We are SIGKILLed; the grid is lowered
    to 30 kW in the site file; we start again, and CP2 leaves its set-up's default unanswered
    (and untaken: it still holds 22 kW) while staying connected. Both held at their stored
    22 kW, each is cut to 7.9 kW - then CP2's set-up ends unanswered and CP2 was let go of
    its hold as if it had taken its share: an operator's 29 kW cap then left CP1 on 7.9 kW
    beside CP2's 22 kW (29.9 kW) - the cap's 2xx said CP1 acknowledged - and with us killed
    for good the stations' own profiles summed over the cap for as long as they ran."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S, HUNG_ANSWER_WAIT_S)
    site = server.site_file.read_text()
    cap_w = 29_000
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2)
            cp1, cp2 = await fleet.start_at_max_defaults()
            server.process.kill()
            server.process.wait(timeout=10)
            server.site_file.write_text(site.replace(f"limit_w = {2 * int(MAX_W)}",
                                                     "limit_w = 30000"))
            cp2.hang_defaults = True
            server.start()
            await fleet.connect()
            cp1, cp2 = fleet.stations["CP1"], fleet.stations["CP2"]
            log = tmp_path / "server.log"
            await until(lambda: b"CP2: setup postponed (no answer to the default"
                        in log.read_bytes(), 60, "CP2's set-up given up")
            assert cp2.idle_w(2) == MAX_W and cp2.hung
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": cap_w})
            assert status == 200, body
            # (its answer waits at most HUNG_ANSWER_WAIT_S for CP1's decrease, and CP2's
            # set-up retries hold CP2 longer: the lowering is waited for by the condition;
            # before, it never came)
            await until(lambda: cp1.idle_w(2) + MAX_W <= cap_w + 1, 30,
                        "CP1's default lowered to what CP2 leaves of the cap")
            # gone for good: the stations run on what they hold
            killed_for_good_stays_under(server, (cp1, cp2), cap_w, body)
            fleet.close()
    finally:
        server.stop()


async def test_a_station_whose_lowered_default_goes_unanswered_is_held_at_its_old_one(tmp_path):
    """CP1 and CP2 hold 22 kW defaults (a 44 kW grid); CP2 stops answering (and taking) its
    TxDefaultProfile requests while it stays connected. An operator caps the site at 30 kW:
    CP1 takes 15 kW, CP2's 15 kW goes unanswered - it still holds 22 kW - and the round was
    done: the 2xx named CP2 pending, nothing sent again, CP1 left on 15 kW. Killed then, the
    stations' own profiles let 37 kW flow under the 30 kW cap for as long as they ran. CP2
    must be held at what it may hold, as an offline station is, and CP1 given what it leaves."""
    # the cap answer's bound (HUNG_ANSWER_WAIT_S) between one call timeout and two: the
    # answer ends before CP2's request and its retry (sent when the request times out) have
    # both timed out, with CP2 pending (the bound's clock starts before the re-plan is run,
    # so the retry times out at least half a call timeout after it). With both timed out
    # inside it the answer names CP2 not acknowledged instead - that case is
    # tests/test_outside_s35_cap_answer.py's (until session 35 it read complete there, CP1 not
    # yet lowered). Short timeouts: the test waits out CP2's (a 9 s call timeout beside the
    # answer's 15 s took 16.5-17 s, these 8.2 s)
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S, HUNG_ANSWER_WAIT_S)
    cap_w = 30_000
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2)
            cp1, cp2 = await fleet.start_at_max_defaults()
            cp2.hang_defaults = True
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": cap_w})
            assert status == 200 and "CP2" in body["applied"]["stations_pending"], body
            assert cp2.hung and cp2.idle_w(2) == MAX_W
            # the next round gives CP1 what CP2 leaves (bounded: before, it never came)
            await until(lambda: cp1.idle_w(2) + MAX_W <= cap_w + 1, 30,
                        "CP1's default lowered to what CP2 leaves of the cap")
            # (the round's default, not a set-up's: both stations held ours before)
            assert b"CP2: a lowered fail-safe default went unanswered" in \
                (tmp_path / "server.log").read_bytes()
            # gone for good: the stations run on what they hold
            killed_for_good_stays_under(server, (cp1, cp2), cap_w)
            fleet.close()
    finally:
        server.stop()
