"""SIGKILL of `smartcharge serve` in the round a demand-response event started, and a plan after
the restart that moves the event's power from one car to the other: no profile the restarted
server sends may raise the station over the event's limit (the session 22 audit saw 13.5 kW in a
9 kW event: the car the killed round had paused counted at its maximum after the restart, so its
raise went out as a "decrease", before the other car's decrease).

Before the kill, the car on connector 1 leaves late (the event pauses it; its decrease goes
first and is what the kill waits for), the one on connector 2 soon (it keeps the event's power:
still at its old plan when the server dies). The station stays away while the server restarts
and the drivers turn round (connector 1 soon, connector 2 late), then reconnects: the new plan
raises connector 1 and pauses connector 2 - a raise that must wait for that decrease.

A user's server (a subprocess, wall clock), the simulator over real OCPP 1.6 and 2.0.1, the
REST API; every profile the station installs after its reconnect is checked."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import pytest

from smartcharge.clock import format_ocpp_time
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from test_crash import kill
from tests.installed_limits import connector_limit_w
from tests.site_e2e import wait_until
from tests.test_site_restart import Rig, installed_since, listening

LIMIT_W = 9_000.0


def station_w(station) -> float:
    """What the station's installed profiles let its connectors draw now, summed [W]."""
    now = station.clock.now()
    return sum(connector_limit_w(station, cid, now)[0] for cid in station.connectors)


class RaiseWatch:
    """Every install that leaves the station over the limit and higher than before it."""

    def __init__(self, station) -> None:
        self.installs, self.excesses, self._before = 0, [], (0.0, {})
        station.on_profiles_changing = lambda s: setattr(self, "_before", self._now(s))
        station.on_profiles_changed = self._changed

    @staticmethod
    def _now(station) -> tuple[float, dict]:
        now = station.clock.now()
        return station_w(station), {cid: round(connector_limit_w(station, cid, now)[0])
                                    for cid in station.connectors}

    def _changed(self, station) -> None:
        self.installs += 1
        (before, each_before), (after, each) = self._before, self._now(station)
        if after > LIMIT_W + 1.0 and after > before + 1.0:
            self.excesses.append(
                f"raised {before:.0f} -> {after:.0f} W > {LIMIT_W:.0f} W (per connector "
                f"{each_before} -> {each}; profiles: "
                + "; ".join(f"c{p.connector_id} {p.purpose} L{p.stack_level} tx "
                            f"{p.transaction_id} {[q.limit for q in p.schedule.periods]}"
                            for p in station.profiles.profiles) + ")")


async def _session_ids(rig: Rig) -> dict[int, int]:
    """Connector id -> the server's session id (2.0.1 stations name transactions in text),
    once it knows both (bounded, polled like wait_until)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        status, sessions = await rig.api("GET", "/api/sessions")
        ids = {s["connector_id"]: s["transaction_id"] for s in sessions
               if status == 200 and s["stop_time"] is None}
        if len(ids) == 2:
            return ids
        assert loop.time() < deadline, sessions
        await asyncio.sleep(0.05)


async def _needs(rig: Rig, *, soon: int, late: int, now) -> None:
    """The drivers' needs (bounded wait, polled like wait_until, until the server knows the
    sessions)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    for transaction_id, wh, hours in ((soon, 40_000, 1), (late, 5_000, 8)):
        while True:
            status, body = await rig.api("PUT", f"/api/sessions/{transaction_id}", {
                "requested_wh": wh,
                "departure": format_ocpp_time(now + timedelta(hours=hours))})
            if status == 200:
                break
            assert status == 404 and loop.time() < deadline, body
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_sigkill_in_a_dr_round_then_a_plan_that_moves_power(tmp_path, version):
    rig = Rig(tmp_path)
    rig.fleet = Fleet(rig.site, f"ws://127.0.0.1:{rig.port}/ocpp", rig.clock, seed=5,
                      meter_interval_s=5, reconnect_min_s=0.05, reconnect_max_s=0.3,
                      call_timeout_s=5.0, ocpp_versions={"CP1": version})
    rig.start_server()
    try:
        await rig.fleet.start(wait_booted_s=30)
        station = rig.fleet.station("CP1")
        for cid, tag in ((1, "DRIVER-1"), (2, "DRIVER-2")):
            assert await rig.fleet.plug_in("CP1", cid, SimEV(capacity_wh=80_000, soc=0.2), tag)
        await station.wait_for(lambda: all(c.transaction and c.transaction.transaction_id
                                           for c in station.connectors.values()), 20)
        tx = await _session_ids(rig)

        await _needs(rig, soon=tx[2], late=tx[1], now=rig.clock.now())
        posted_at = rig.clock.now()
        status, created = await rig.api("POST", "/api/demand-response/events", {
            "start": format_ocpp_time(posted_at),
            "end": format_ocpp_time(posted_at + timedelta(hours=1)), "limit_w": LIMIT_W})
        assert status == 201 and created["state"] == "active", created
        await wait_until(lambda: installed_since(station, posted_at), 20,
                         "the DR round's first profile at the station")
        kill(rig.server)                     # SIGKILL in the event's round
        await station.wait_for(lambda: not station.connected.is_set(), 10)
        await station.go_offline()
        rig.start_server()
        await listening(rig.http_url)
        await _needs(rig, soon=tx[1], late=tx[2], now=rig.clock.now())
        watch = RaiseWatch(station)
        station.go_online()
        await wait_until(lambda: connector_limit_w(station, 1, station.clock.now())[0]
                         > LIMIT_W - 500 and station_w(station) <= LIMIT_W + 1.0, 30,
                         "the new plan installed: connector 1 has the event's power")
        assert watch.installs > 0
        assert watch.excesses == [], watch.excesses
    finally:
        if rig.server is not None and rig.server.poll() is None:
            rig.server.send_signal(signal.SIGTERM)   # its audit table flushed, for a look
            rig.server.wait(timeout=20)
        await rig.close()
