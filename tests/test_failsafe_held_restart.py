"""An offline station's fail-safe default is held across a restart of ours.

While a station is offline it keeps the default it last accepted whatever we decide, so the
other stations' defaults share what it leaves (failsafe.hold_offline,
tests/test_failsafe_offline_default.py). A new process knew nothing of what it holds: CP1 and
CP2 each accepted a 22 kW default under a 44 kW grid; CP1 goes away, smartcharge is killed and
started again, the operator caps the site at 30 kW - CP2 got half of it (15 kW) as if CP1 had
taken the other half, and with us gone the stations' own profiles let 22 + 15 = 37 kW flow
under the 30 kW cap. What each station was last sent and accepted as its default is stored, and
a station not yet back after the restart is held at it.

A real `smartcharge serve` on a SQLite file (SIGKILL), simulated stations over real OCPP."""

from __future__ import annotations

import signal
from datetime import timedelta

from test_crash import kill
from test_site_restart import Rig, listening

from smartcharge.sim.spec import Quirks
from smartcharge.site.topology import ConnectorRef
from tests.installed_limits import connector_limit_w, stored_default_w
from tests.site_e2e import wait_until

CP1, CP2 = ConnectorRef("CP1", 1), ConnectorRef("CP2", 1)
MAX_W = 22_080            # each connector's maximum (32 A, 3 phases): its share of 44.16 kW
CAP_W = 30_000


def default_w(rig: Rig, ref: ConnectorRef) -> float:
    """What the station's own profiles let the idle connector draw two hours from now (every
    plan and idle share of ours has ended by then: its fail-safe default)."""
    station = rig.fleet.station(ref.station_id)
    at = rig.clock.now() + timedelta(hours=2)
    return connector_limit_w(station, ref.connector_id, at, assume_phases=3)[0]


def defaults_from_us(rig: Rig) -> bool:
    """Both stations hold a default of ours (each its maximum: the grid is no limit)."""
    return all(rig.fleet.station(ref.station_id).profiles.profiles
               and abs(default_w(rig, ref) - MAX_W) < 50 for ref in (CP1, CP2))


async def test_a_station_offline_through_a_restart_keeps_its_default_off_the_others(tmp_path):
    rig = Rig(tmp_path, stations=2, connectors=1)
    rig.start_server()
    try:
        await rig.fleet.start(wait_booted_s=30)
        cp1, cp2 = rig.fleet.station("CP1"), rig.fleet.station("CP2")
        await wait_until(lambda: defaults_from_us(rig), 30, "both defaults at 22 kW")
        await cp1.go_offline()
        await rig.restart(signal.SIGKILL)
        await cp2.wait_for(lambda: cp2.connected.is_set(), 30)
        status, body = await rig.api("PUT", "/api/site/cap", {"limit_w": CAP_W})
        assert status == 200, body
        await wait_until(lambda: default_w(rig, CP2) < MAX_W - 50, 30,
                         "CP2's default lowered under the cap")
        held_w = {ref: default_w(rig, ref) for ref in (CP1, CP2)}
        assert abs(held_w[CP1] - MAX_W) < 50, held_w   # what CP1 holds, away
        assert held_w[CP1] + held_w[CP2] <= CAP_W + 1, held_w

        # back (set up again): CP1 takes its share of the cap, and CP2 its own again
        cp1.go_online()
        await wait_until(lambda: all(abs(default_w(rig, ref) - CAP_W / 2) < 100
                                     for ref in (CP1, CP2)), 30, "15 / 15 kW once CP1 is back")
    finally:
        await rig.close()


def stored_w(rig: Rig, ref: ConnectorRef) -> float | None:
    """What the SQLite file says the connector's default may be two hours from now."""
    return stored_default_w(rig.tmp_path / "site.sqlite", ref,
                            rig.clock.now() + timedelta(hours=2))


async def test_a_raised_default_is_stored_before_it_goes_out(tmp_path):
    """Killed while a station takes a raised default (the answer never back): the restart must
    hold it at the raise. CP1 and CP2 on 15 kW defaults under a 30 kW cap, the cap cleared:
    CP2 gets 22 kW and hangs on its answer; we are killed, CP2 takes it and stays away, the
    cap comes back - CP1's default is what CP2 leaves of it. (One stack level: the default is
    the only profile an idle connector gets, so the request CP2 hangs on is its default.)"""
    rig = Rig(tmp_path, stations=2, connectors=1, max_stack_level=0)
    rig.tmp_path = tmp_path
    rig.start_server()
    try:
        await rig.fleet.start(wait_booted_s=30)
        cp2 = rig.fleet.station("CP2")
        await wait_until(lambda: defaults_from_us(rig), 30, "both defaults at 22 kW")
        status, body = await rig.api("PUT", "/api/site/cap", {"limit_w": CAP_W})
        assert status == 200, body
        await wait_until(lambda: all(abs(default_w(rig, ref) - CAP_W / 2) < 100
                                     for ref in (CP1, CP2)), 30, "15 / 15 kW")
        cp2.quirks = Quirks(silent_profiles=True)
        status, body = await rig.api("PUT", "/api/site/cap", {"limit_w": None})
        assert status == 200, body
        await wait_until(lambda: cp2.profiles_held > 0, 30, "CP2 hanging on its raised default")
        # the station has the request: what it may hold is stored already
        assert stored_w(rig, CP2) >= MAX_W - 50, stored_w(rig, CP2)

        kill(rig.server)
        await cp2.go_offline()
        cp2.profile_answers.set()        # it takes the raise; its answer goes nowhere
        await wait_until(lambda: default_w(rig, CP2) > MAX_W - 50, 30, "CP2 on 22 kW")
        rig.start_server()
        await listening(rig.http_url)
        status, body = await rig.api("PUT", "/api/site/cap", {"limit_w": CAP_W})
        assert status == 200, body
        await wait_until(lambda: default_w(rig, CP1) < MAX_W - 50, 30,
                         "CP1's default lowered under the cap")
        held_w = {ref: default_w(rig, ref) for ref in (CP1, CP2)}
        assert held_w[CP1] + held_w[CP2] <= CAP_W + 1, held_w
    finally:
        await rig.close()
