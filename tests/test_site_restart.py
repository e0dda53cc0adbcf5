"""An acknowledged obligation survives a restart of `smartcharge serve` (issue 7, part 1).

The server runs as a user runs it (`python -m smartcharge serve` in a subprocess, wall clock), the
station is the simulator over real OCPP. What the station has installed is read from the
simulator's profile store: the limit each connector would get at a given moment from the
profiles it holds, whatever happens to the central system after that.
"""

from __future__ import annotations

import asyncio
import math
import re
import signal
from datetime import datetime, timedelta

import aiohttp

from sim_fixtures import OPERATOR_TOKEN, free_port, site_toml
from smartcharge.clock import SystemClock, format_ocpp_time
from smartcharge.config import load_site
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from test_crash import kill, serve
from tests.hang_budget import hang_budget_s
from tests.site_e2e import wait_until

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
# a station's samples and heartbeats and our answers to its calls, as the `ocpp` library logs
# them at DEBUG: left out of a failed wait's explanation
PERIODIC_FRAME = re.compile(r'"(MeterValues|Heartbeat)",|: send \[3,')
TX_PROFILE = "TxProfile"


def installed_w(station, at: datetime) -> float:
    """The sum over the station's connectors of the limit its installed profiles set at `at`
    [W] (inf where nothing limits). Three phases: the most watts an A limit allows."""
    total = 0.0
    for cid, state in station.connectors.items():
        tx = state.transaction.context() if state.transaction else None
        limit = station.profiles.limit_w(cid, at, tx, voltage_v=station.spec.voltage_v,
                                         phases_in_use=3)
        total += math.inf if limit is None else limit
    return total


def installed_since(station, moment: datetime, purpose: str | None = None) -> set[int]:
    """Connector ids that got a profile (of `purpose`) installed at or after `moment`."""
    return {p.connector_id for p in station.profiles.profiles
            if p.installed_at >= moment and (purpose is None or p.purpose == purpose)}


async def listening(http_url: str, timeout_s: float = 30.0) -> None:
    """Bounded wait until the restarted server answers HTTP (polled, like wait_until)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{http_url}/api/site"):
                    return
            except aiohttp.ClientConnectionError:
                assert loop.time() < deadline, "the server did not come back"
                await asyncio.sleep(0.05)


class Rig:
    """One site file, one SQLite file, the server subprocess and a simulated fleet.

    The server runs on the wall clock, so a raise comes into force `settle_s + edge_margin_s`
    after it is sent in real time: the site file's 2 s + 1 s (the defaults' 5 s + 5 s made
    each test that waits for a raise wait 10 s of it). The stations run on our very clock; the
    order of decreases and raises is dispatch's either way. The guard gives a car `settle_s`
    to follow a decrease: 2 s of real time, four times what the in-process tests at 10x give
    (a car taken as disobedient at 0.1 s under load 12: test_restart_first_round's revert)."""

    def __init__(self, tmp_path, stations: int = 1, connectors: int = 2,
                 meter_interval_s: float = 5, **fleet_kw) -> None:
        self.port = free_port()
        self.site_file = tmp_path / "site.toml"
        self.site_file.write_text(site_toml(stations, connectors, port=self.port,
                                            database=str(tmp_path / "site.sqlite"),
                                            heartbeat_interval_s=60, settle_s=2,
                                            edge_margin_s=1))
        self.site = load_site(self.site_file)
        self.log = tmp_path / "server.log"
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.clock = SystemClock()
        self.fleet = Fleet(self.site, f"ws://127.0.0.1:{self.port}/ocpp", self.clock, seed=5,
                           meter_interval_s=meter_interval_s, reconnect_min_s=0.05,
                           reconnect_max_s=0.3, call_timeout_s=5.0, **fleet_kw)
        self.server = None

    def start_server(self) -> None:
        # DEBUG: every OCPP frame (the `ocpp` library's lines) and every re-plan in the log,
        # so that a failed wait names what the server did (`explained`)
        self.server = serve(self.site_file, self.log, "--log-level", "DEBUG")

    async def explain(self, station) -> str:
        """What a failed wait needs to name its cause: the sessions and connectors as the API
        shows them, the station's installed profiles and its connectors' transactions, and the
        server log since its last start without the periodic frames (samples, heartbeats, the
        answers to them: at DEBUG a 180 s wait is all samples otherwise)."""
        lines = []
        try:
            # bounded: a hung server must not hold up the report (aiohttp waits 5 minutes)
            _, sessions = await asyncio.wait_for(self.api("GET", "/api/sessions"),
                                                 hang_budget_s(5))
            for s in sessions if isinstance(sessions, list) else [sessions]:
                lines.append("session " + " ".join(f"{k}={s.get(k)}" for k in (
                    "transaction_id", "connector_id", "state", "closed_by", "stop_time",
                    "flags")))
            _, snapshot = await asyncio.wait_for(self.api("GET", "/api/site"), hang_budget_s(5))
            for c in snapshot.get("connectors", []):
                lines.append("connector " + " ".join(f"{k}={c.get(k)}" for k in (
                    "connector_id", "online", "status", "session_id", "allocated_w",
                    "measured_w", "controllable", "binding")))
        except (aiohttp.ClientError, OSError, ValueError, AttributeError,
                TimeoutError) as error:
            lines.append(f"the API did not answer ({error!r})")
        for cid, state in station.connectors.items():
            tx = state.transaction
            lines.append(f"station connector {cid}: transaction "
                         f"{tx.transaction_id if tx else None}, draw {state.draw_w:.0f} W, "
                         f"connected {station.connected.is_set()}, boots {station.boots}")
        for p in sorted(station.profiles.profiles, key=lambda p: p.installed_at):
            first = p.schedule.periods[0].limit if p.schedule.periods else None
            lines.append(f"profile {p.purpose} connector {p.connector_id} level "
                         f"{p.stack_level} id {p.profile_id} tx {p.transaction_id} installed "
                         f"{p.installed_at:%H:%M:%S.%f} first {first} {p.schedule.rate_unit}")
        log = self.log.read_text(errors="replace").splitlines()
        starts = [i for i, line in enumerate(log) if "listening on" in line]
        kept = [line for line in log[starts[-1] if starts else 0:]
                if not PERIODIC_FRAME.search(line)]
        return "\n".join([*lines, f"--- {self.log} since its last start, without the "
                           "periodic frames (the last 300 lines) ---", *kept[-300:]])

    async def wait_explained(self, station, predicate, timeout_s: float, what: str) -> None:
        """`wait_until`, whose failure says what the server and the station had done."""
        try:
            await wait_until(predicate, timeout_s, what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{await self.explain(station)}") from None

    async def restart(self, sig: int) -> datetime:
        """Stop the server with `sig`, wait for the station links to drop, start it again and
        wait until it answers; returns the moment it was started again."""
        if sig == signal.SIGKILL:
            kill(self.server)
        else:
            self.server.send_signal(sig)
            self.server.wait(timeout=20)
        for station in self.fleet.stations.values():
            await station.wait_for(lambda s=station: not s.connected.is_set(), 10)
        restarted_at = self.clock.now()
        self.start_server()
        await listening(self.http_url)
        return restarted_at

    async def two_cars_on_cp1(self):
        """The fleet up, a car on each of CP1's connectors, both transactions acknowledged:
        (CP1's station, the two transaction ids in order)."""
        await self.fleet.start(wait_booted_s=30)
        station = self.fleet.station("CP1")
        for cid, tag in ((1, "DRIVER-1"), (2, "DRIVER-2")):
            assert await self.fleet.plug_in("CP1", cid, SimEV(capacity_wh=80_000, soc=0.2), tag)
        await station.wait_for(lambda: all(c.transaction and c.transaction.transaction_id
                                           for c in station.connectors.values()), 20)
        return station, sorted(c.transaction.transaction_id for c in station.connectors.values())

    async def api(self, method: str, path: str, body=None) -> tuple[int, object]:
        async with aiohttp.ClientSession(self.http_url) as http:
            async with http.request(method, path, json=body, headers=AUTH) as resp:
                return resp.status, await resp.json()

    async def close(self) -> None:
        await self.fleet.stop()
        if self.server is not None:
            kill(self.server)


async def test_dr_event_survives_sigkill_and_keeps_installed_profiles_under_it(tmp_path):
    rig = Rig(tmp_path)
    rig.start_server()
    try:
        await rig.fleet.start(wait_booted_s=30)
        station = rig.fleet.station("CP1")
        assert await rig.fleet.plug_in("CP1", 1, SimEV(capacity_wh=80_000, soc=0.2), "DRIVER-1")
        now = rig.clock.now()
        start, end, limit_w = now + timedelta(minutes=10), now + timedelta(minutes=70), 15_000
        status, created = await rig.api("POST", "/api/demand-response/events", {
            "start": format_ocpp_time(start), "end": format_ocpp_time(end), "limit_w": limit_w})
        assert status == 201 and created["id"] == "dr-1", created
        at = start + timedelta(minutes=1)
        await wait_until(lambda: installed_w(station, at) <= limit_w, 20,
                         "the DR window in the installed profiles before the crash")

        restarted_at = await rig.restart(signal.SIGKILL)
        await station.wait_for(lambda: station.connected.is_set(), 30)
        # the fail-safe set-up after the restart re-installs every connector's default ...
        await wait_until(lambda: installed_since(station, restarted_at) >= {1, 2}, 30,
                         "the fail-safe profiles re-sent after the restart")
        # ... and the session's TxProfile, now that the controller knows it again
        await wait_until(lambda: 1 in installed_since(station, restarted_at, TX_PROFILE), 30,
                         "a TxProfile for the session after the restart")
        # the plan after the restart, once its round is through (a transient mix of an earlier
        # process's profiles with the new plan's was seen under heavy load: 22.4 kW against
        # 15 kW for a moment; see docs/api-site.md)
        await wait_until(lambda: installed_w(station, at) <= limit_w
                         and installed_w(station, end - timedelta(minutes=1)) <= limit_w, 30,
                         "the DR window in the installed profiles after the restart")
        # the window, not a flat clamp: higher now, before it (not at the `now` taken before the
        # crash: profiles sent after the restart start later, so that past instant is governed
        # by whatever older profiles remain)
        # (after the restart the station said what it applies: the session's plan raises it
        # there, a raise in force the settle time and the clocks' margin after it is sent)
        await wait_until(lambda: installed_w(station, rig.clock.now()) > limit_w, 30,
                         "the plan before the window in force")

        status, listed = await rig.api("GET", "/api/demand-response/events")
        assert [(e["id"], e["state"], e["limit_w"]) for e in listed] == [
            ("dr-1", "scheduled", limit_w)]
        status, snapshot = await rig.api("GET", "/api/site")
        assert [e["id"] for e in snapshot["dr_events"]] == ["dr-1"]
        status, second = await rig.api("POST", "/api/demand-response/events", {
            "start": format_ocpp_time(end), "end": format_ocpp_time(end + timedelta(hours=1)),
            "limit_w": limit_w})
        assert status == 201 and second["id"] == "dr-2", second      # ids go on
    finally:
        await rig.close()


async def test_restart_mid_session_then_lower_limit_reaches_the_station(tmp_path):
    rig = Rig(tmp_path)
    rig.start_server()
    try:
        station, ids = await rig.two_cars_on_cp1()

        # The station stays away until we looked: the simulator sends a BootNotification on
        # every connection, and the ledger then closes its sessions (Reboot) until its next
        # MeterValues reopens them; the restored site must not need the station to say anything.
        await station.go_offline()
        await rig.restart(signal.SIGTERM)                  # a clean restart, mid-session
        status, snapshot = await rig.api("GET", "/api/site")
        assert sorted(s["session_id"] for s in snapshot["sessions"]) == ids, snapshot
        back_at = rig.clock.now()
        station.go_online()
        await station.wait_for(lambda: station.connected.is_set(), 30)

        posted_at = rig.clock.now()
        limit_w = 5_000
        status, created = await rig.api("POST", "/api/demand-response/events", {
            "start": format_ocpp_time(posted_at),
            "end": format_ocpp_time(posted_at + timedelta(hours=1)), "limit_w": limit_w})
        assert status == 201 and created["state"] == "active", created
        # a dispatch round in flight when the event came may still land profiles of the plan
        # before it (and the simulator's reconnect BootNotification closes the sessions until
        # their next MeterValues reopens them), so wait for the outcome itself, bounded. A
        # connector the DR plan gives 0 W may already apply 0 W (its lowered default, read
        # back in the set-up) and is then sent nothing: a TxProfile on both is more than the
        # promise (s38-flaky: a POST inside the set-up failed that way, 4 968 W under 5 kW)
        at = posted_at + timedelta(minutes=5)
        await rig.wait_explained(
            station, lambda: installed_since(station, posted_at, TX_PROFILE)
            and installed_w(station, at) <= limit_w, 30,
            "the DR plan's TxProfiles keeping the station under the DR limit")
        # the restarted process does not know what is under the cars' TxProfiles: each gets
        # its 0 W default again (a car arriving unseen there stays within the plan)
        await rig.wait_explained(
            station, lambda: {p.connector_id for p in station.profiles.profiles
                              if p.purpose == "TxDefaultProfile" and p.stack_level >= 1
                              and p.installed_at >= back_at
                              and p.schedule.periods[0].limit == 0} == {1, 2}, 30,
            "a 0 W default under each car again")
        status, snapshot = await rig.api("GET", "/api/site")
        assert sorted(s["session_id"] for s in snapshot["sessions"]) == ids
        assert snapshot["effective_limit_w"] == limit_w
    finally:
        await rig.close()
