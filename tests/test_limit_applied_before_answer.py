"""A limit answered 2xx is in the stations' profiles: SIGKILL right after the answer.

`PUT /api/site/cap` answered 200 (a DR event's POST 201) once the limit was committed, and the
round that tells the stations went out after: killed in between, the stations kept drawing
under their old TxProfiles and fail-safe defaults until the restart (39.8 kW under a 15 kW cap
measured in session 24). Now the answer waits (bounded) until the round that applies the
limit has had every station's decreases and lowered defaults answered, and says which
stations acknowledged. The server is `smartcharge serve` in a subprocess; the stations are
the simulator over the `ocpp` library; what each holds is read from its own profile store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sim_fixtures import DRIVER_TAGS
from test_crash import kill
from test_site_restart import TX_PROFILE, Rig, installed_w

from smartcharge.clock import format_ocpp_time
from smartcharge.sim.ev import SimEV
from tests.site_e2e import wait_until

CARS = ((1, 1), (1, 2), (2, 1), (2, 2), (3, 1))   # (station, connector); CP3/2 stays idle


def site_installed_w(rig, at) -> float:
    return sum(installed_w(station, at) for station in rig.fleet.stations.values())


@pytest.mark.parametrize("kind", ["cap", "dr"])
async def test_a_limit_answered_is_held_by_every_station_when_we_die_at_once(tmp_path, kind):
    rig = Rig(tmp_path, stations=3, connectors=2)       # a 132 kW grid
    rig.start_server()
    try:
        await rig.fleet.start(wait_booted_s=30)
        for n, (index, cid) in enumerate(CARS):
            assert await rig.fleet.plug_in(f"CP{index}", cid, SimEV(capacity_wh=80_000,
                                                                    soc=0.2), DRIVER_TAGS[n % 3])
        charging = [(rig.fleet.station(f"CP{i}"), cid) for i, cid in CARS]
        await wait_until(lambda: all(
            cid in {p.connector_id for p in station.profiles.profiles
                    if p.purpose == TX_PROFILE} for station, cid in charging), 30,
            "a TxProfile under every car")
        now = rig.clock.now()
        assert site_installed_w(rig, now) > 40_000   # the cars may take the grid's room
        limit_w = 15_000
        if kind == "cap":
            status, body = await rig.api("PUT", "/api/site/cap", {"limit_w": limit_w})
            kill(rig.server)                           # as soon as the answer is here
            assert status == 200, body
            start = rig.clock.now()
        else:
            start = now + timedelta(minutes=2)
            status, body = await rig.api("POST", "/api/demand-response/events", {
                "start": format_ocpp_time(start), "limit_w": limit_w,
                "end": format_ocpp_time(start + timedelta(hours=2))})
            kill(rig.server)
            assert status == 201, body
        # what each station holds, from the limit's start over the next hours as if we
        # never came back (the plans expire at their common end, then the defaults)
        for later_s in (1, 60, 600, 1800, 3600, 3 * 3600):
            at = start + timedelta(seconds=later_s)
            if kind == "dr" and at >= start + timedelta(hours=2):
                continue
            assert site_installed_w(rig, at) <= limit_w + 1.0, (
                later_s, {sid: installed_w(s, at) for sid, s in rig.fleet.stations.items()})
        applied = body["applied"]
        assert applied["complete"] is True, applied
        assert applied["stations_acknowledged"] == 3 and applied["stations_pending"] == [], \
            applied
    finally:
        await rig.close()


async def test_a_station_that_never_answers_is_named_and_the_answer_still_comes(tmp_path):
    """CP2 takes its profiles and never answers: the cap's 200 comes once CP2's calls time out
    (not after the whole bounded wait), says the application is not complete and names CP2 as
    not acknowledged, while CP1, which answered, is counted."""
    from datetime import UTC, datetime

    import aiohttp

    from smartcharge.clock import AcceleratedClock
    from smartcharge.site.applied import APPLY_WAIT_S
    from smartcharge.site.dispatch import DispatchSettings
    from smartcharge.sim.station import Quirks
    from test_dispatch_trust import SETTINGS, both_charging_at_11_kw, one_grid
    from tests.site_e2e import server_and_fleet

    clock = AcceleratedClock(datetime(2026, 1, 1, 12, tzinfo=UTC), speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=1.0, retries=0)
    async with server_and_fleet(one_grid(22_000), tmp_path, clock, settings=SETTINGS,
                                dispatch=dispatch, insecure_open_api=True) as (server, fleet):
        await both_charging_at_11_kw(server.controller, fleet, clock)
        await wait_until(lambda: server.dispatcher.idle, 10, "rounds over")
        fleet.station("CP2").quirks = Quirks(silent_profiles=True)
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.put("/api/site/cap", json={"limit_w": 9_000}) as resp:
                assert resp.status == 200, await resp.text()
                applied = (await resp.json())["applied"]
    assert applied["complete"] is False, applied
    assert applied["stations_not_acknowledged"] == ["CP2"], applied
    assert applied["stations_acknowledged"] == 1 and applied["stations_pending"] == [], applied
    assert applied["waited_s"] < APPLY_WAIT_S, applied
