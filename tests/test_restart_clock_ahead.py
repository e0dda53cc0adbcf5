"""After a restart, a station whose clock is ahead of ours is asked what its connectors apply,
as one whose clock is in step is.

A transaction is "older than this process" (it may run a TxProfile an earlier process sent:
0 W, a share, the whole limit) when its start is before the process started - by the
station's clock. A station ahead of ours by more than the restart took stamps the
transactions it ran under the earlier process after our start: they were taken for new ones,
the station was not asked (GetCompositeSchedule, `site/installed_restore.py`) and each
connector counted at its fail-safe default. A plan that moves power from the car the earlier
process left high to the one it left low then sends the low car's raise as a "decrease"
(below its default share), ungated, before the high car's decrease - the site over its limit
for at least the settle time, the case tests/test_restart_first_round.py closed for stations
in step. A transaction open in the store at the start is one an earlier process knew, whatever
its station's clock says. Both versions, in-process restart on one SQLite file, the simulator
over real OCPP."""

from __future__ import annotations

import sqlite3

import pytest

from sim_fixtures import free_port
from smartcharge.clock import AcceleratedClock
from smartcharge.sim.fleet import Fleet
from tests.site_e2e import FLEET_DEFAULTS, control_server, wait_until
from tests.test_restart_first_round import (REF1, REF2, T0, _car_2_on_the_whole_limit_then_away,
                                            _site)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("ahead_s", [0, 600])
async def test_a_station_ahead_of_our_clock_is_asked_after_a_restart(tmp_path, version,
                                                                     ahead_s):
    site, clock, port = _site(), AcceleratedClock(T0, speed=10.0), free_port()
    db = tmp_path / "r.sqlite"
    fleet = Fleet(site, f"ws://127.0.0.1:{port}/ocpp", clock, ocpp_versions={"CP1": version},
                  clock_offsets_s={"CP1": ahead_s},
                  **{**FLEET_DEFAULTS, "meter_interval_s": 2})
    try:
        station = await _car_2_on_the_whole_limit_then_away(site, db, clock, port, fleet)
        async with control_server(site, db, clock, port=port) as second:   # restarted
            installed = second.controller.installed
            station.go_online()
            sessions = second.controller.state.sessions
            await wait_until(lambda: all(ref in installed.restored.by_ref and ref in sessions
                                         for ref in (REF1, REF2)), 20,
                             "what both connectors apply, as the station says, and both "
                             "sessions running")
            # car 2 on the earlier process's whole limit, car 1 at 0, as the station says -
            # and taken for the running transactions (not dropped as started after the
            # question: by the station's clock they did)
            told = {ref: installed.restored.for_session(ref, sessions[ref])
                    for ref in (REF1, REF2)}
            assert None not in told.values(), told
            # in force from the moment it was asked, on our clock: the station's composite
            # begins at its own "now" (10 min ahead) - read on our clock, the old TxProfile
            # would only begin in 10 min, the connector counted at its default until then
            assert all(t.start <= clock.now() for t in told.values()), told
            told = {ref: installed.limits for ref, installed in told.items()}
            assert max(told[REF2]) > 0 and max(told[REF1]) < max(told[REF2]), told
    finally:
        await fleet.stop()
    with sqlite3.connect(db) as conn:
        asked = conn.execute("SELECT connector_id FROM profiles_sent WHERE purpose = "
                             "'GetCompositeSchedule' ORDER BY connector_id").fetchall()
    assert sorted(set(asked)) == [(1,), (2,)], asked   # (again at a second set-up: allowed)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_the_first_round_after_a_restart_lowers_first_on_a_clock_ahead(tmp_path, version):
    """test_restart_first_round's case on a station 10 min ahead: car 2 on the whole limit, car
    1 at 0; after the restart the plan turns round - every profile the station installs is
    checked. (Passed before the fix too: counted at its default share, the car left at 0 was
    raised as a raise; with the transactions known at start but the station's answer dropped
    it was counted at its maximum and raised as a "decrease", ungated.)"""
    from tests.test_restart_first_round import restarted_and_turned_round

    site, clock, port = _site(), AcceleratedClock(T0, speed=10.0), free_port()
    db = tmp_path / "r.sqlite"
    fleet = Fleet(site, f"ws://127.0.0.1:{port}/ocpp", clock, ocpp_versions={"CP1": version},
                  clock_offsets_s={"CP1": 600}, **{**FLEET_DEFAULTS, "meter_interval_s": 2})
    try:
        await restarted_and_turned_round(site, db, clock, port, fleet)
    finally:
        await fleet.stop()
