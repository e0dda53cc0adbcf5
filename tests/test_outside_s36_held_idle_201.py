"""Session 36, an outside judge of promise 2 (docs/promises.md: the site never goes over its
cap because of us, also once we are dead) over strict OCPP 2.0.1 stations: an idle share (a
TxDefaultProfile above the fail-safe default, stack level 1, until the plans' common end) held
by a station that is offline through a SIGKILL and restart of `smartcharge serve` on the same
SQLite file. The 1.6 version is tests/test_outside_s36_held_idle.py (s36-judge's fix: the idle
share stored beside the default record, migration 13, written ahead). Real `smartcharge serve`
processes, `ocpp.v201` stations enforcing K01 (tests/ocpp201_station.py), a real SQLite file."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v201 import call as call201

from smartcharge.clock import format_ocpp_time
from smartcharge.sim.connection import WsConnection
from tests.hang_budget import hang_budget_s
from tests.held_share_steps import (
    FULL_CAR_SETTLE_S, SOON_H, killed_and_held_under, said_full_until)
from tests.ocpp201_station import Station201, StationSetup
from tests.sim_fixtures import STATION_PASSWORD
from tests.sim_fixtures import OPERATOR_TOKEN
from tests.test_kill_points import Server
from tests.test_outside_s32_kills import HUNG_CALL_TIMEOUT_S, MAX_W, until
from tests.v201_billing import tx_event
from tests.test_outside_s32_kills import _server as restartable_server


class Car201(Station201):
    """A strict 2.0.1 station of one EVSE (its K01 table kept across connections: what it
    holds while we are gone) whose car's transaction is `tx`. `kill`: called (the server
    SIGKILLed) the moment it takes an idle share above `kill_above_w`, which it then never
    answers."""

    tx: str | None = None
    seq_no = 0
    tx_profiles_taken = 0
    kill = None
    kill_above_w = 0.0

    @on("SetChargingProfile")
    async def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **_):
        answer = await super().on_set_charging_profile(evse_id, charging_profile)
        profile = snake_to_camel_case(charging_profile)
        purpose = profile["chargingProfilePurpose"]
        self.tx_profiles_taken += purpose == "TxProfile" and answer.status == "Accepted"
        if self.kill is not None and answer.status == "Accepted" \
                and purpose == "TxDefaultProfile" and profile["stackLevel"] > 0 \
                and max(p["limit"] for s in profile["chargingSchedule"]
                        for p in s["chargingSchedulePeriod"]) > self.kill_above_w:
            self.kill()
            await asyncio.Event().wait()
        return answer

    def draw_w(self, hours: float) -> float:
        """What its own profiles let the car at EVSE 1 draw `hours` from now (its TxProfile
        while its transaction runs, else its TxDefaultProfiles)."""
        at = datetime.now(UTC) + timedelta(hours=hours)
        limit = self.table.limit_at(1, at, "W")
        return MAX_W if limit is None else min(limit, MAX_W)

    def holds_w_defaults(self) -> bool:
        return any(p["chargingProfilePurpose"] == "TxDefaultProfile" and p["stackLevel"] == 0
                   for _, p in self.table.profiles.values())

    async def status(self, connector_status: str) -> None:
        await self.call(call201.StatusNotification(
            timestamp=format_ocpp_time(datetime.now(UTC)), connector_status=connector_status,
            evse_id=1, connector_id=1))

    async def charging_state(self, state: str) -> None:
        """TransactionEvent Updated: the car's charging state changed (K: a car that stops
        by itself while offered power says SuspendedEV)."""
        self.seq_no += 1
        await self.call(call201.TransactionEvent(
            event_type="Updated", timestamp=format_ocpp_time(datetime.now(UTC)),
            trigger_reason="ChargingStateChanged", seq_no=self.seq_no,
            transaction_info={"transaction_id": self.tx, "charging_state": state},
            evse={"id": 1, "connector_id": 1}))


class Connected:
    """A Car201 on its own WebSocket, its `start()` running; `drop()` closes it."""

    def __init__(self, station: Car201, ws, http: aiohttp.ClientSession,
                 runner: asyncio.Task) -> None:
        self.station, self.ws, self.http, self.runner = station, ws, http, runner

    async def drop(self) -> None:
        self.runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.runner
        await self.ws.close()
        await self.http.close()


async def connect201(server, station_id: str, old: Car201 | None = None) -> Connected:
    """Connect `station_id` as a strict 2.0.1 station (W only); a new one boots and says its
    EVSE is Available, `old` (a connection that dropped, no reboot: its transaction runs on)
    comes back with its table, transaction and sequence number, without a BootNotification."""
    await server.wait_listening()
    auth = base64.b64encode(f"{station_id}:{STATION_PASSWORD}".encode()).decode()
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"ws://127.0.0.1:{server.port}/ocpp/{station_id}",
                               protocols=("ocpp2.0.1",),
                               headers={"Authorization": f"Basic {auth}"})
    station = Car201(station_id, WsConnection(ws), StationSetup(
        rate_units="W", registered_from_before=old is not None),
        response_timeout_s=hang_budget_s(10))
    runner = asyncio.create_task(station.start())
    if old is None:
        await station.boot()
        await station.status("Available")
    else:
        station.table, station.tx, station.seq_no = old.table, old.tx, old.seq_no
    return Connected(station, ws, http, runner)


@pytest.mark.parametrize("killed_as_it_takes_the_share", [False, True])
async def test_an_idle_share_held_by_a_201_station_offline_through_a_restart_is_left_free(
        tmp_path, killed_as_it_takes_the_share):
    """The 2.0.1 version of tests/test_outside_s36_held_idle.py's restart test. A 30 kW grid,
    CP1 and CP2 on 15 kW defaults. CP1's car says SuspendedEV (full, TransactionEvent
    Updated): its plan goes to 0 and CP2, idle, is given 22 kW until the plans' common end -
    above its 15 kW default. CP2's connection drops; we are SIGKILLed and start again on the
    same SQLite file; CP1 comes back (no reboot), its car charging again. CP1 must be planned
    in what CP2's idle share leaves of the grid, whether we run or are killed again.
    `killed_as_it_takes_the_share`: SIGKILLed the moment CP2 takes its 22 kW share, before
    its answer (the record written ahead)."""
    server = restartable_server(tmp_path, 2, HUNG_CALL_TIMEOUT_S, settle_s=FULL_CAR_SETTLE_S)
    grid_w = 30_000
    server.site_file.write_text(server.site_file.read_text().replace(
        f"limit_w = {2 * int(MAX_W)}", f"limit_w = {grid_w}"))
    connected: list[Connected] = []
    try:
        server.start()
        connected += [await connect201(server, "CP1"), await connect201(server, "CP2")]
        cp1, cp2 = (c.station for c in connected)
        await until(lambda: all(s.holds_w_defaults() and s.draw_w(2) <= grid_w / 2 + 1
                                for s in (cp1, cp2)), 30, "both 15 kW defaults")
        await cp1.status("Occupied")
        cp1.tx = await cp1.start_transaction(1)
        await until(lambda: cp1.tx_profiles_taken, 30, "CP1's plan")
        if killed_as_it_takes_the_share:
            cp2.kill, cp2.kill_above_w = server.process.kill, grid_w / 2 + 100
        await said_full_until(cp1.charging_state, lambda: cp2.draw_w(SOON_H) > grid_w / 2 + 1,
                              "CP1's car taken for full, CP2's idle share risen")
        assert cp2.draw_w(SOON_H) == MAX_W and cp2.draw_w(2) <= grid_w / 2 + 1
        if not killed_as_it_takes_the_share:
            await connected[1].drop()
            log = tmp_path / "server.log"
            await until(lambda: b"station CP2: disconnected" in log.read_bytes(), 30,
                        "CP2 seen gone")
        server.process.kill()
        server.process.wait(timeout=10)
        for c in connected:
            await c.drop()
        server.start()
        # CP2 stays away, holding what it took
        connected.append(await connect201(server, "CP1", old=cp1))
        cp1_back = connected[-1].station
        await cp1_back.charging_state("Charging")
        await until(lambda: cp1_back.tx_profiles_taken, 30, "CP1's plan after the restart")
        await until(lambda: cp1_back.draw_w(SOON_H) + cp2.draw_w(SOON_H) <= grid_w + 1, 30,
                    "CP1 planned in what CP2's idle share leaves")
        killed_and_held_under(server, (cp1_back.draw_w, cp2.draw_w), grid_w)
    finally:
        for c in connected:
            await c.drop()
        server.stop()


async def _billing(server: Server) -> tuple[list[dict], list[dict]]:
    """(GET /api/sessions, the rows of GET /api/sessions.csv) with an operator's token."""
    async with aiohttp.ClientSession(headers={
            "Authorization": f"Bearer {OPERATOR_TOKEN}"}) as http:
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(f"{base}/api/sessions") as answer:
            assert answer.status == 200, await answer.text()
            listed = await answer.json()
        async with http.get(f"{base}/api/sessions.csv") as answer:
            assert answer.status == 200, await answer.text()
            rows = list(csv.DictReader(io.StringIO(await answer.text())))
    return listed, rows


async def _registers_wh(server: Server, transaction_id: int) -> list[float]:
    """The session's energy registers as /api/sessions/{id}/meter-values lists them, in time
    order."""
    async with aiohttp.ClientSession(headers={
            "Authorization": f"Bearer {OPERATOR_TOKEN}"}) as http:
        async with http.get(f"http://127.0.0.1:{server.port}/api/sessions/{transaction_id}"
                            "/meter-values") as answer:
            assert answer.status == 200, await answer.text()
            samples = await answer.json()
    return [s["value_si"] for s in sorted(samples, key=lambda s: s["timestamp"])
            if s["measurand"] == "Energy.Active.Import.Register"]


@pytest.mark.parametrize("kill_point", ["answer:TransactionEvent/Ended",
                                        "answer:TransactionEvent/Updated"])
async def test_an_offline_queue_replayed_after_a_restart_and_killed_before_an_answer_is_billed_once(
        tmp_path, kill_point):
    """A bad moment tests/test_kill_points.py (a live Ended, database rows) and
    tests/test_crash_v201.py (killed mid-send, an offline queue replayed into a server that
    lives) do not cover, read as the operator's bill: a strict 2.0.1 station's transaction
    (Begin 1 000 Wh) runs while we are SIGKILLed; it queues two Updated and its Ended
    (offline=true, the End register 4 000 Wh); on our restart it replays them and we are
    SIGKILLed again between one's commit and its answer - its Ended, or the first offline
    Updated of the batch. Started once more on the same SQLite file, the station sends the
    unanswered event (same seqNo) and the rest of its queue again: one session, stopped,
    3 000 Wh in the sessions API, each register stored once, and one billable CSV row of
    3 000 Wh."""
    server = Server(tmp_path, stations=1)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    ref = "T-OFFLINE-END"
    queued = [tx_event("Updated", ref, 2, t0 + timedelta(minutes=15), register_wh=3_000,
                       offline=True),
              tx_event("Updated", ref, 3, t0 + timedelta(minutes=20), register_wh=3_500,
                       offline=True)]
    ended = tx_event("Ended", ref, 4, t0 + timedelta(minutes=25), register_wh=4_000,
                     offline=True, stopped_reason="EVDisconnected")
    connected: list[Connected] = []
    try:
        server.start()
        connected.append(await connect201(server, "CP1"))
        station = connected[-1].station
        station.table.transactions[1] = ref
        for event in (tx_event("Started", ref, 0, t0, register_wh=1_000),
                      tx_event("Updated", ref, 1, t0 + timedelta(minutes=10),
                               register_wh=2_500)):
            assert await station.call(event, suppress=False) is not None
        server.process.kill()
        server.process.wait(timeout=10)
        await connected[-1].drop()

        server.start(kill_point)
        connected.append(await connect201(server, "CP1", old=station))
        station = connected[-1].station
        queue = [*queued, ended]
        killed_at = 0 if kill_point.endswith("Updated") else len(queued)
        for event in queue[:killed_at]:
            assert await station.call(event, suppress=False) is not None
        unanswered = asyncio.create_task(station.call(queue[killed_at], suppress=False))
        assert await asyncio.to_thread(server.killed_at_its_point)
        assert not unanswered.done()   # the station never learned it was stored
        unanswered.cancel()
        await asyncio.gather(unanswered, return_exceptions=True)
        await connected[-1].drop()

        server.start()
        connected.append(await connect201(server, "CP1", old=station))
        station = connected[-1].station
        for event in queue[killed_at:]:
            assert await station.call(event, suppress=False) is not None
        # the second life committed it: the third recognised it re-sent
        kind, seq_no = ("Ended", 4) if killed_at else ("Updated", 2)
        seen = re.findall(rf"TransactionEvent {kind} T-OFFLINE-END seq {seq_no} \(\w+, "
                          rf"offline\) -> session \d+( \(duplicate\))?\n".encode(),
                          (tmp_path / "server.log").read_bytes())
        assert seen == [b"", b" (duplicate)"], seen
        listed, rows = await _billing(server)
        registers = await _registers_wh(server, listed[0]["transaction_id"])
    finally:
        for c in connected:
            await c.drop()
        server.stop()
    assert [(s["station_transaction_id"], s["state"], s["meter_start_wh"], s["meter_stop_wh"],
             s["energy_wh"]) for s in listed] == [(ref, "stopped", 1_000, 4_000, 3_000)], listed
    assert registers == [1_000, 2_500, 3_000, 3_500, 4_000], registers   # each once
    billable = [r for r in rows if r["billable"] == "true"]
    assert len(rows) == 1 and len(billable) == 1, rows
    assert (billable[0]["station_transaction_id"], float(billable[0]["energy_wh"]),
            billable[0]["meter_start_wh"], billable[0]["meter_stop_wh"]) == (
        ref, 3_000.0, "1000.0", "4000.0"), billable[0]
