"""Session 36, an outside judge of promise 2 (docs/promises.md: the site never goes over its
cap because of us, also once we are dead) where a station holds an idle share (a
TxDefaultProfile above its fail-safe default, stack level 1, until the plans' common end) that
the plan no longer counts on. Real `smartcharge serve` processes, bare `ocpp` 1.6 stations
keeping what they take (tests/test_outside_s32_kills.py), a real SQLite file. Each test failed
before its fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncio
import base64

import aiohttp
import pytest
from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as call_result201

from smartcharge.sim.connection import WsConnection
from smartcharge.sim.profiles import TxContext, parse_profile
from tests.held_share_steps import (
    FULL_CAR_SETTLE_S, SOON_H, WithholdsIdleShare, killed_and_held_under, said_full_until)
from tests.ocpp201_station import Station201, StationSetup
from tests.sim_fixtures import STATION_PASSWORD
from tests.test_outside_s32_kills import (
    CLOCK, HUNG_CALL_TIMEOUT_S, MAX_W, Bare16, Bare16Fleet, _serve, until)
from tests.test_outside_s32_kills import _server as restartable_server
from tests.test_outside_s35_cap_answer import _server


def _idle_share(station: Bare16):
    return [p for p in station.store.profiles
            if p.purpose == "TxDefaultProfile" and p.stack_level > 0]


class RefusesIdleLowering(WithholdsIdleShare):
    """Takes its fail-safe defaults (stack level 0) but, while `hang_defaults`, refuses every
    idle share (a TxDefaultProfile at a higher stack level) and keeps the one it took before -
    a firmware whose stack level 1 is full or locked."""

    idle_share_answer = "Rejected"


async def _capped_then_killed(server, cp1, cp2, cap_w: int, refused) -> None:
    """The refused-decrease tests' common course (1.6 and 2.0.1): the cap set; CP2 refuses its
    idle share's decrease (`refused()`) and keeps 22 kW; CP1 must be given only what that
    leaves, while we run and once we are SIGKILLed."""
    status, body = await server.api("PUT", "/api/site/cap", {"limit_w": cap_w})
    assert status == 200, body
    await until(lambda: refused() and cp2.idle_w(2) <= cap_w / 2 + 1, 30,
                "CP2's idle share refused, its default lowered")
    assert cp2.idle_w(SOON_H) == MAX_W   # what it kept
    await until(lambda: cp1.idle_w(SOON_H) + cp2.idle_w(SOON_H) <= cap_w + 1, 30,
                "CP1 given what CP2's kept idle share leaves of the cap")
    killed_and_held_under(server, (cp1.idle_w, cp2.idle_w), cap_w)


async def test_a_refused_idle_share_decrease_is_kept_free_under_a_cap(tmp_path):
    """CP1 and CP2 idle, each with a 22 kW idle share above its 22 kW default (a 44 kW grid).
    Capped at 25 kW, CP2 takes its lowered default but refuses its idle share's decrease: it
    keeps 22 kW for a car arriving there until the plans' common end (up to 30 min). The plan
    kept CP2's connector free at its lowered 12.5 kW default only, and gave CP1 an idle share
    of 6.2 kW (half of what was left): a car at each drew 28.3 kW under the 25 kW cap for up
    to half an hour, while we ran and once we were killed. CP1 must be given only what CP2's
    kept idle share leaves (3 kW: under a car's 6 A minimum, 0)."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S)
    cap_w = 25_000
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2, station_class=RefusesIdleLowering)
            cp1, cp2 = await fleet.start_at_max_defaults()
            await until(lambda: _idle_share(cp2) and _idle_share(cp1), 30, "the idle shares")
            cp2.hang_defaults = True
            await _capped_then_killed(server, cp1, cp2, cap_w, lambda: cp2.hung)
            fleet.close()
    finally:
        server.stop()


class Car16(Bare16):
    """A bare 1.6 station whose car's transaction (`tx`) its TxProfiles apply to; counts the
    TxProfiles it took on this connection."""

    tx: TxContext | None = None
    tx_profiles_taken = 0
    # called (the server SIGKILLed) as it takes an idle share above `kill_above_a` A, which it
    # then never answers
    kill = None
    kill_above_a = 0.0

    @on(Action.set_charging_profile)
    async def set_profile(self, connector_id, cs_charging_profiles, **_):
        profile = parse_profile(connector_id, cs_charging_profiles, CLOCK.now())
        on_tx = profile.purpose == "TxProfile"
        self.store.install(profile, self.tx if on_tx else None)
        self.tx_profiles_taken += on_tx
        if self.kill is not None and profile.purpose == "TxDefaultProfile" \
                and profile.stack_level > 0 \
                and max(p.limit for p in profile.schedule.periods) > self.kill_above_a:
            self.kill()
            await asyncio.Event().wait()
        return call_result.SetChargingProfile(status="Accepted")

    def draw_w(self, hours: float) -> float:
        """What its own profiles let its car draw `hours` from now."""
        at = CLOCK.now() + timedelta(hours=hours)
        limit = self.store.limit_w(1, at, self.tx, voltage_v=230.0, phases_in_use=3)
        return MAX_W if limit is None else min(limit, MAX_W)

    async def status(self, status: str) -> None:
        await self.call(call.StatusNotification(connector_id=1, error_code="NoError",
                                                status=status), suppress=False)


async def reconnect_without_boot(fleet: Bare16Fleet, old: Car16) -> Car16:
    """`old`'s station connects again, as a 1.6 station whose connection dropped does - no
    BootNotification (it did not reboot: its transaction runs on) - its store and car kept."""
    await fleet.server.wait_listening()
    sid = old.id
    auth = base64.b64encode(f"{sid}:{STATION_PASSWORD}".encode()).decode()
    ws = await fleet.http.ws_connect(
        f"ws://127.0.0.1:{fleet.server.port}/ocpp/{sid}", protocols=("ocpp1.6",),
        headers={"Authorization": f"Basic {auth}"})
    station = Car16(sid, WsConnection(ws), old.store)
    station.tx = old.tx
    fleet.stations[sid] = station
    fleet._serving.append(asyncio.create_task(_serve(station)))
    return station


@pytest.mark.parametrize("killed_as_it_takes_the_share", [False, True])
async def test_an_idle_share_held_by_a_station_offline_through_a_restart_is_left_free(
        tmp_path, killed_as_it_takes_the_share):
    """A 30 kW grid, CP1 and CP2 on 15 kW defaults. CP1's car says SuspendedEV (full): its
    plan goes to 0 and CP2, idle, is given 22 kW until the plans' common end - above its
    15 kW default. CP2's connection drops; we are SIGKILLed and start again on the same
    SQLite file; CP1 comes back, its car charging again. The new process held CP2 at its
    stored 15 kW default only - its idle share was the old process's - and sent CP1 a 15 kW
    TxProfile: 37 kW under the 30 kW grid for up to half an hour (CP2's car unseen: it is
    offline), whether we run or are killed again. `killed_as_it_takes_the_share`: SIGKILLed
    the moment CP2 takes its 22 kW share, before its answer (the record written ahead)."""
    server = restartable_server(tmp_path, 2, HUNG_CALL_TIMEOUT_S, settle_s=FULL_CAR_SETTLE_S)
    grid_w = 30_000
    server.site_file.write_text(server.site_file.read_text().replace(
        f"limit_w = {2 * int(MAX_W)}", f"limit_w = {grid_w}"))
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2, station_class=Car16)
            server.start()
            await fleet.connect()
            cp1, cp2 = fleet.stations["CP1"], fleet.stations["CP2"]
            await until(lambda: cp1.holds_our_default() and cp2.holds_our_default(), 30,
                        "both defaults")
            await cp1.status("Preparing")
            started = await cp1.call(call.StartTransaction(
                connector_id=1, id_tag="DRIVER-1", meter_start=0,
                timestamp=CLOCK.now().isoformat()), suppress=False)
            cp1.tx = TxContext(started.transaction_id, CLOCK.now())
            await cp1.status("Charging")
            await until(lambda: cp1.tx_profiles_taken, 30, "CP1's plan")
            if killed_as_it_takes_the_share:
                cp2.kill, cp2.kill_above_a = server.process.kill, 21.8   # its default: 21.7 A
            await said_full_until(cp1.status, lambda: cp2.idle_w(SOON_H) > grid_w / 2 + 1,
                                  "CP1's car taken for full, CP2's idle share risen")
            assert cp2.idle_w(SOON_H) == MAX_W and cp2.idle_w(2) <= grid_w / 2 + 1
            if not killed_as_it_takes_the_share:
                fleet._serving[1].cancel()
                await cp2._connection._ws.close()
                log = tmp_path / "server.log"
                await until(lambda: b"station CP2: disconnected" in log.read_bytes(), 30,
                            "CP2 seen gone")
            server.process.kill()
            server.process.wait(timeout=10)
            fleet._serving[1].cancel()
            server.start()
            # CP2 stays away, holding what it took
            cp1_back = await reconnect_without_boot(fleet, cp1)
            await cp1_back.status("Charging")
            await until(lambda: cp1_back.tx_profiles_taken, 30, "CP1's plan after the restart")
            await until(lambda: cp1_back.draw_w(SOON_H) + cp2.idle_w(SOON_H) <= grid_w + 1, 30,
                        "CP1 planned in what CP2's idle share leaves")
            killed_and_held_under(server, (cp1_back.draw_w, cp2.idle_w), grid_w)
            fleet.close()
    finally:
        server.stop()


class RefusesIdleLowering201(Station201):
    """A strict 2.0.1 station (K01 rules, `tests/ocpp201_station.py`) that, while
    `refusing`, refuses every idle share (a TxDefaultProfile above stack level 0) and keeps the
    one it took before."""

    refusing = False

    @on("SetChargingProfile")
    async def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **_):
        profile = snake_to_camel_case(charging_profile)
        if self.refusing and profile["chargingProfilePurpose"] == "TxDefaultProfile" \
                and profile["stackLevel"] > 0:
            self.refused += 1
            return call_result201.SetChargingProfile(status="Rejected")
        return await super().on_set_charging_profile(evse_id, charging_profile)

    refused = 0

    def idle_w(self, hours: float) -> float:
        """What its profiles let a car arriving at EVSE 1 draw `hours` from now (W)."""
        at = datetime.now(UTC) + timedelta(hours=hours)
        limit = self.table.limit_at(1, at, "W")
        return MAX_W if limit is None else min(limit, MAX_W)


async def _connect201(server, station_id: str) -> tuple[RefusesIdleLowering201, asyncio.Task]:
    auth = base64.b64encode(f"{station_id}:{STATION_PASSWORD}".encode()).decode()
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"ws://127.0.0.1:{server.port}/ocpp/{station_id}",
                               protocols=("ocpp2.0.1",),
                               headers={"Authorization": f"Basic {auth}"})
    station = RefusesIdleLowering201(station_id, WsConnection(ws),
                                     StationSetup(rate_units="W"))
    station.http = http
    runner = asyncio.create_task(station.start())
    await station.boot()
    await station.call(call201.StatusNotification(
        timestamp=datetime.now(UTC).isoformat(), connector_status="Available", evse_id=1,
        connector_id=1))
    return station, runner


async def test_a_refused_idle_share_decrease_is_kept_free_under_a_cap_201(tmp_path):
    """The same as the 1.6 test above with strict 2.0.1 stations (K01): CP2 refuses its idle
    share's decrease under a 25 kW cap; CP1 is given only what CP2's kept 22 kW leaves."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S)
    cap_w = 25_000
    running = []
    try:
        server.start()
        await server.wait_listening()
        for sid in ("CP1", "CP2"):
            running.append(await _connect201(server, sid))
        (cp1, _), (cp2, _) = running

        def idle_share(station):
            return [p for _, p in station.table.profiles.values()
                    if p["chargingProfilePurpose"] == "TxDefaultProfile" and p["stackLevel"] > 0]
        await until(lambda: idle_share(cp1) and idle_share(cp2)
                    and cp2.idle_w(SOON_H) == MAX_W, 30, "the idle shares")
        cp2.refusing = True
        await _capped_then_killed(server, cp1, cp2, cap_w, lambda: cp2.refused)
    finally:
        for station, runner in running:
            runner.cancel()
            await station.http.close()
        server.stop()
