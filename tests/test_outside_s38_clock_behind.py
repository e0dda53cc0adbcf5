"""Session 38's judge: a station whose clock runs behind ours (it ignores the time our answers
tell it: 10 minutes, as s23-skew and s31-judge saw 3) and stamps nothing we can read its clock
by - a 1.6 station, idle, sends Heartbeats, and StatusNotification's `timestamp` is optional.

Every schedule we send begins `edge_margin_s` (5 s) before our now; on a clock 10 minutes behind
that start is 595 s in its future, and until its clock gets there the station runs what lies
below it - for a fail-safe default at stack level 0, nothing: its maximum. The offset is learnt
only from a minute of its own stamps (`ocpp/clock_offset.py`), never from such a station, so a
cap's lowered default went out and was acknowledged (the 2xx said so) while the station ran
22 kW under an 11 kW cap for ten minutes - with us gone, too, the fail-safe our promise 2 rests
on. What goes out now begins an hour (`clock_offset.MAX_SHIFT_S`, the most an offset is ever
believed) before our now, its first period's limit held over that hour, and every later edge
where it was (`schedules.lead_in`): in force at once on any clock up to an hour behind.

A real `smartcharge serve` subprocess on a real SQLite file (SIGKILLed), a bare `ocpp` 1.6
station (tests/test_outside_s32_kills.py's `Bare16`) that keeps the profiles it takes in the
simulator's profile store, and a strict `ocpp` 2.0.1 one enforcing K01 (validity included:
tests/k01_table.py), each running them on its own clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.v201 import call as call201

from smartcharge.clock import format_ocpp_time
from tests.test_outside_s32_kills import CLOCK, MAX_W, Bare16, Bare16Fleet, _server, until
from tests.test_outside_s36_held_idle_201 import Car201, connect201

BEHIND = timedelta(minutes=10)
CAP_W = 11_000


class Behind(Bare16):
    """Runs its profiles on a clock 10 minutes behind ours."""

    def idle_w_on_its_clock(self, after: timedelta) -> float:
        at = CLOCK.now() - BEHIND + after
        limit = self.store.limit_w(1, at, None, voltage_v=230.0, phases_in_use=3)
        return MAX_W if limit is None else min(limit, MAX_W)


async def test_a_cap_s_default_is_in_force_on_a_clock_behind_ours(tmp_path):
    """Failed first: the cap's 200 came with CP1 holding its lowered default, which on its own
    clock began 595 s later - 22 080 W in force under the 11 000 W cap, for ten minutes, and so
    after our SIGKILL. Now under the cap from the moment it is taken, on its clock."""
    server = _server(tmp_path, 1)
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 1, station_class=Behind)
            server.start()
            await fleet.connect()
            cp1 = fleet.stations["CP1"]
            await until(cp1.holds_our_default, 30, "the set-up's default taken")
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": CAP_W})
            assert status == 200, body
            assert body["applied"]["complete"], body
            await until(lambda: cp1.idle_w(2) <= CAP_W, 30, "the lowered default taken")
            server.process.kill()
            server.process.wait(timeout=10)
            # what it runs once we are gone, on its own clock: from now to six hours on
            held_w = [cp1.idle_w_on_its_clock(timedelta(hours=hours))
                      for hours in (0, 0.05, 0.2, 0.5, 2, 6)]
            assert max(held_w) <= CAP_W, held_w
            fleet.close()
    finally:
        server.stop()


class Behind201(Car201):
    """A strict 2.0.1 station whose clock runs 10 minutes behind ours: its statuses say so."""

    async def status(self, connector_status: str) -> None:
        await self.call(call201.StatusNotification(
            timestamp=format_ocpp_time(datetime.now(UTC) - BEHIND),
            connector_status=connector_status, evse_id=1, connector_id=1))

    def idle_w_on_its_clock(self, after: timedelta) -> float:
        limit = self.table.limit_at(1, datetime.now(UTC) - BEHIND + after, "W")
        return MAX_W if limit is None else min(limit, MAX_W)


async def test_a_cap_s_default_is_in_force_on_a_201_clock_behind_ours(tmp_path, monkeypatch):
    """The same over OCPP 2.0.1 (a schedule's `validFrom` too). Failed first the same way:
    nothing of ours valid on its clock for ten minutes - 22 080 W under the 11 000 W cap."""
    monkeypatch.setattr("tests.test_outside_s36_held_idle_201.Car201", Behind201)
    server = _server(tmp_path, 1)
    try:
        server.start()
        link = await connect201(server, "CP1")
        cp1 = link.station
        assert isinstance(cp1, Behind201)
        await until(cp1.holds_w_defaults, 30, "the set-up's default taken")
        status, body = await server.api("PUT", "/api/site/cap", {"limit_w": CAP_W})
        assert status == 200, body
        assert body["applied"]["complete"], body
        await until(lambda: cp1.draw_w(2) <= CAP_W, 30, "the lowered default taken")
        server.process.kill()
        server.process.wait(timeout=10)
        held_w = [cp1.idle_w_on_its_clock(timedelta(hours=hours))
                  for hours in (0, 0.05, 0.2, 0.5, 2, 6)]
        assert max(held_w) <= CAP_W, held_w
        await link.drop()
    finally:
        server.stop()
