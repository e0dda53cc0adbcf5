"""Session 35, an outside judge of the cap answer's truth (docs/promises.md, promise 1: a
limit's 2xx says which stations hold profiles under it). Real `smartcharge serve` processes,
bare `ocpp` 1.6 stations keeping what they take (tests/test_outside_s32_kills.py), a real
SQLite file. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from smartcharge.sim.profiles import parse_profile
from smartcharge.site.controller import steps_from
from smartcharge.site.plan_inputs import _unbounded_w
from smartcharge.site.topology import ConnectorRef, SiteTopology
from smartcharge.site.unbounded import held_reserve
from tests.conftest import make_site
from tests.hang_budget import hang_budget_s
from tests.held_share_steps import WithholdsIdleShare, killed_and_held_under
from tests.test_kill_points import Server
from tests.test_outside_s32_kills import (
    CLOCK, HUNG_CALL_TIMEOUT_S, MAX_W, Bare16, Bare16Fleet, killed_for_good_stays_under,
    until)


class OwnPortServer(Server):
    """`Server` on the port `serve` binds itself (0 in the site file), read from its
    'listening on' line: a port chosen by the test, bound and closed, was taken meanwhile in
    2 of 24 copies run side by side (stations reached another copy's server; s34-suite saw the
    same). Started once (a restart would listen elsewhere)."""

    def __init__(self, tmp_path, stations: int, dispatch_call_timeout_s: float,
                 limit_answer_wait_s: float | None = None) -> None:
        super().__init__(tmp_path, stations=stations,
                         dispatch_call_timeout_s=dispatch_call_timeout_s,
                         limit_answer_wait_s=limit_answer_wait_s)
        self.log_path = tmp_path / "server.log"
        self.site_file.write_text(self.site_file.read_text().replace(
            f"port = {self.port}\n", "port = 0\n"))
        self.port = None

    async def wait_listening(self, timeout_s: float | None = None) -> None:
        if self.port is None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + hang_budget_s(30)
            while (found := re.search(rb"listening on http://127\.0\.0\.1:(\d+)",
                                      self.log_path.read_bytes())) is None:
                assert self.process.poll() is None, "the server exited"
                assert loop.time() < deadline, "the server did not start listening"
                await asyncio.sleep(0.05)
            self.port = int(found.group(1))
        await super().wait_listening(timeout_s)


def _server(tmp_path, stations: int, dispatch_call_timeout_s: float,
            limit_answer_wait_s: float | None = None) -> OwnPortServer:
    return OwnPortServer(tmp_path, stations, dispatch_call_timeout_s, limit_answer_wait_s)


# the cap answer's bound where CP2 leaves its idle share unanswered: the answer waits it out
# (CP2 held again at each set-up, a newer round each time), and what is read is that it does
# not count CP2 - or CP1 beside what CP2 holds - acknowledged once CP2's requests have timed
# out inside it: more than two call timeouts, with room for the re-plan before them (seconds
# under CPU load). The default 15 s made the test wait 16 s; 10 s and 7.5 s each passed 24 of
# 24 copies at load 17-25 and failed on 9cb614b^'s code. (The lowered default's test below
# keeps the default: at 7.5 s and 10 s, 4 and 5 of 24 copies at that load ended the answer
# with CP2 still pending and CP1 counted on 15 kW - see benchmarks/README.md, s38-suite.)
IDLE_SHARE_ANSWER_WAIT_S = 10.0


async def test_a_cap_answer_is_not_complete_beside_an_unanswered_lowered_default(tmp_path):
    """CP1 and CP2 hold 22 kW defaults (a 44 kW grid); CP2 stops answering (and taking) its
    TxDefaultProfile requests. An operator caps the site at 30 kW. With dispatch's call
    timeout short enough for CP2's request and its retry to time out inside the answer's
    bound, the answer read `complete: true, stations_acknowledged: 2` with CP1 on 15 kW
    beside CP2's unanswered 22 kW: 37 kW of profiles under a 30 kW cap, and an operator told
    the site held it. CP2 did not take the cap: it is not acknowledged, and CP1 is counted
    acknowledged only holding what CP2 leaves of the cap."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S)
    cap_w = 30_000
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2)
            cp1, cp2 = await fleet.start_at_max_defaults()
            cp2.hang_defaults = True
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": cap_w})
            assert status == 200, body
            # what CP1 held when the answer was made (a station takes a profile before it
            # answers: whatever it acknowledged is in its store by now)
            cp1_w = cp1.idle_w(2)
            applied = body["applied"]
            assert cp2.hung and cp2.idle_w(2) == MAX_W
            assert applied["complete"] is False, applied
            assert "CP2" in applied["stations_not_acknowledged"] + \
                applied["stations_pending"], applied
            if "CP1" not in applied["stations_pending"] + applied["stations_not_acknowledged"]:
                # counted as holding profiles under the cap: beside what CP2 may still hold
                assert cp1_w + MAX_W <= cap_w + 1, (cp1_w, applied)
            assert applied["stations_acknowledged"] <= 1, applied
            await until(lambda: cp1.idle_w(2) + MAX_W <= cap_w + 1, 30,
                        "CP1's default lowered to what CP2 leaves of the cap")
            killed_for_good_stays_under(server, (cp1, cp2), cap_w)
            fleet.close()
    finally:
        server.stop()


class HangsIdleShare(WithholdsIdleShare):
    """Leaves the idle share (a TxDefaultProfile above its default, stack level 1) unanswered
    and untaken while `hang_defaults`; its fail-safe default (stack level 0) it takes."""

    idle_share_answer = None


async def test_a_cap_answer_does_not_count_an_unanswered_idle_share(tmp_path):
    """CP1 and CP2 idle, each with a 22 kW idle share above its default (a 44 kW grid). CP2
    leaves its idle share's decrease unanswered (it keeps 22 kW until the plans' common end,
    up to 30 min) and takes its lowered default. Capped at 30 kW: a car arriving at CP2 in
    that time draws 22 kW whether we are there or not - it did not take the cap, and CP1 may
    be counted as holding what the cap needs only beside what CP2 may still draw."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S, IDLE_SHARE_ANSWER_WAIT_S)
    cap_w = 30_000
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2, station_class=HangsIdleShare)
            cp1, cp2 = await fleet.start_at_max_defaults()
            await until(lambda: any(p.stack_level == 1 for p in cp2.store.profiles), 30,
                        "CP2's idle share")
            cp2.hang_defaults = True
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": cap_w})
            assert status == 200, body
            soon_h = 0.2   # 12 min: inside the plans' common end
            cp1_w, cp2_w = cp1.idle_w(soon_h), cp2.idle_w(soon_h)
            applied = body["applied"]
            assert cp2.hung and cp2_w == MAX_W, (cp2_w, applied)
            assert "CP2" in applied["stations_not_acknowledged"] + \
                applied["stations_pending"], applied
            if "CP1" not in applied["stations_pending"] + applied["stations_not_acknowledged"]:
                assert cp1_w + cp2_w <= cap_w + 1, (cp1_w, cp2_w, applied)
            await until(lambda: cp1.idle_w(soon_h) + cp2.idle_w(soon_h) <= cap_w + 1, 30,
                        "CP1 given what CP2's idle share leaves of the cap")
            killed_and_held_under(server, (cp1.idle_w, cp2.idle_w), cap_w)
            fleet.close()
    finally:
        server.stop()


async def test_an_offline_stations_idle_share_is_left_free_under_a_cap(tmp_path):
    """CP1 and CP2 idle, each with a 22 kW idle share above its default (a 44 kW grid). CP2's
    connection drops: it keeps its 22 kW idle share until the plans' common end (up to 30
    min) and its 22 kW default. Capped at 30 kW: its default was held at 22 kW and CP1's
    lowered to 7.9 kW, but CP1's idle share was 15 kW - as if CP2 had taken its half - so a
    car at each drew 37 kW under the 30 kW cap for up to half an hour, whether we were there
    (CP2's car unseen: it is offline) or killed."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S)
    cap_w = 30_000
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2)
            cp1, cp2 = await fleet.start_at_max_defaults()
            await until(lambda: any(p.stack_level == 1 for p in cp2.store.profiles), 30,
                        "CP2's idle share")
            fleet._serving[1].cancel()
            await cp2._connection._ws.close()
            log = tmp_path / "server.log"
            await until(lambda: b"station CP2: disconnected" in log.read_bytes(), 30,
                        "CP2 seen gone")
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": cap_w})
            assert status == 200 and body["applied"]["stations_offline"] == ["CP2"], body
            soon_h = 0.2   # 12 min: inside the plans' common end
            assert cp2.idle_w(soon_h) == MAX_W
            await until(lambda: cp1.idle_w(soon_h) + MAX_W <= cap_w + 1, 30,
                        "CP1's idle share under what CP2 leaves of the cap")
            killed_and_held_under(server, (cp1.idle_w, cp2.idle_w), cap_w)
            fleet.close()
    finally:
        server.stop()


class RefusesLowering(Bare16):
    """Refuses every TxDefaultProfile (its default and its idle share) while `hang_defaults`,
    keeping what it holds - a flaky firmware that took them before."""

    @on(Action.set_charging_profile)
    async def set_profile(self, connector_id, cs_charging_profiles, **_):
        profile = parse_profile(connector_id, cs_charging_profiles, CLOCK.now())
        if self.hang_defaults and profile.purpose == "TxDefaultProfile":
            self.hung += 1
            return call_result.SetChargingProfile(status="Rejected")
        self.store.install(profile, None)
        return call_result.SetChargingProfile(status="Accepted")


async def test_a_cap_answer_does_not_count_a_refused_lowering(tmp_path):
    """CP2 refuses its lowered default and idle share under a 30 kW cap and keeps its 22 kW:
    the answer counted it acknowledged - `complete: true` - though it holds nothing under
    the cap (a refused plan decrease was never counted so)."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2, station_class=RefusesLowering)
            cp1, cp2 = await fleet.start_at_max_defaults()
            cp2.hang_defaults = True
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": 30_000})
            assert status == 200, body
            applied = body["applied"]
            assert cp2.hung and cp2.idle_w(2) == MAX_W
            assert applied["complete"] is False, applied
            assert "CP2" in applied["stations_not_acknowledged"], applied
            fleet.close()
    finally:
        server.stop()


def test_a_held_idle_connector_is_kept_free_at_the_most_it_allows_from_now_on():
    """What the plan keeps free for a held connector (learned.HeldIdle): its idle share of
    22 kW until the plans' common end, then its 15 kW default - 22 kW before the end, 15 kW
    after it; a default that rises later (a DR event's end) counts from the start."""
    class Picture:   # what `_unbounded_w` reads of the controller
        unbounded_idle = set()
        kept_defaults_w: dict = {}

        def __init__(self, held, topology, sessions) -> None:
            self.held_idle, self.topology = held, topology
            self.state = type("State", (), {"sessions": sessions})()

    topology = SiteTopology(make_site())
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    end = t0 + timedelta(minutes=30)
    cp2 = ConnectorRef("CP2", 1)
    def held_at(*step):
        return {"CP2": held_reserve(topology, "CP2", [(cp2, *steps_from(list(step)))])}

    held = held_at((t0, 22_000.0), (end, 15_000.0))
    assert _unbounded_w(Picture(held, topology, {}), t0 + timedelta(minutes=5)) == \
        (("CP2", 22_000.0),)
    assert _unbounded_w(Picture(held, topology, {}), end + timedelta(seconds=1)) == \
        (("CP2", 15_000.0),)
    rising = held_at((t0, 5_000.0), (end, 15_000.0))
    assert _unbounded_w(Picture(rising, topology, {}), t0) == (("CP2", 15_000.0),)
    # a car there: planned as its session, not kept free
    assert _unbounded_w(Picture(held, topology, {cp2: object()}), t0) == ()
