"""Session 36, an outside judge of promise 2 (docs/promises.md: the site never goes over its
cap because of us, also once we are dead) where a station holds an idle share (a
TxDefaultProfile above its fail-safe default, stack level 1, until the plans' common end) that
the plan no longer counts on. Real `smartcharge serve` processes, bare `ocpp` 1.6 stations
keeping what they take (tests/test_outside_s32_kills.py), a real SQLite file. Each test failed
before its fix."""

from __future__ import annotations

import aiohttp
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from smartcharge.sim.profiles import parse_profile
from tests.test_outside_s32_kills import CLOCK, HUNG_CALL_TIMEOUT_S, MAX_W, Bare16, Bare16Fleet, until
from tests.test_outside_s35_cap_answer import _server

SOON_H = 0.2   # 12 min: inside the plans' common end (at most 30 min on)


def _idle_share(station: Bare16):
    return [p for p in station.store.profiles
            if p.purpose == "TxDefaultProfile" and p.stack_level > 0]


class RefusesIdleLowering(Bare16):
    """Takes its fail-safe defaults (stack level 0) but, while `hang_defaults`, refuses every
    idle share (a TxDefaultProfile at a higher stack level) and keeps the one it took before -
    a firmware whose stack level 1 is full or locked."""

    @on(Action.set_charging_profile)
    async def set_profile(self, connector_id, cs_charging_profiles, **_):
        profile = parse_profile(connector_id, cs_charging_profiles, CLOCK.now())
        if self.hang_defaults and profile.purpose == "TxDefaultProfile" \
                and profile.stack_level > 0:
            self.hung += 1
            return call_result.SetChargingProfile(status="Rejected")
        self.store.install(profile, None)
        return call_result.SetChargingProfile(status="Accepted")


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
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": cap_w})
            assert status == 200, body
            await until(lambda: cp2.hung and cp2.idle_w(2) <= cap_w / 2 + 1, 30,
                        "CP2's idle share refused, its default lowered")
            assert cp2.idle_w(SOON_H) == MAX_W   # what it kept
            await until(lambda: cp1.idle_w(SOON_H) + cp2.idle_w(SOON_H) <= cap_w + 1, 30,
                        "CP1 given what CP2's kept idle share leaves of the cap")
            server.process.kill()
            server.process.wait(timeout=10)
            for hours in (0.05, SOON_H, 0.5, 2, 6):
                held_w = [s.idle_w(hours) for s in (cp1, cp2)]
                assert sum(held_w) <= cap_w + 1, (hours, held_w)
            fleet.close()
    finally:
        server.stop()
