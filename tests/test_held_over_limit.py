"""A station held at what it may hold is sent no more than the room the others leave.

After a restart every station is held at the store's record of what its fail-safe defaults may
be until its own set-up (held_defaults.restore_held), and its set-up sent it that record as its
share. Records that sum above a limit - the grid's cap lowered while we were down, or a kill
after a round's lowered defaults went out and before their record was written (s28-dr: "raised
8970 -> 17940 W > 9000 W" in test_restart_dr_first_round under load) - were sent back as they
were: the stations' own profiles summed over the limit once we were gone. A held connector's
share is now its record less the excess of the records over every node above it: with the
others still at theirs, the node stays under its limit; with records that fit, nothing
changes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.fleet import Fleet
from smartcharge.site.topology import ConnectorRef, SiteTopology
from tests.installed_limits import connector_limit_w
from tests.site_e2e import FLEET_DEFAULTS, control_server, wait_until

CP1, CP2, CP3 = (ConnectorRef(f"CP{k}", 1) for k in (1, 2, 3))
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _site(grid_w: float, station_ids=("CP1", "CP2")) -> Site:
    return Site(name="held", circuits=(Circuit("grid", None, limit_w=grid_w),),
                stations=tuple(Station(sid, "grid", (Connector(1),)) for sid in station_ids),
                id_tags=frozenset({"DRIVER-1"}))


def test_held_records_over_a_limit_are_cut_by_the_excess():
    topo = SiteTopology(_site(9_000.0, ("CP1", "CP2", "CP3")))
    shares = topo.default_shares(held_w={CP1: 17_940.0, CP2: 4_000.0})
    excess_w = 17_940.0 + 4_000.0 - 9_000.0
    assert shares[CP1][0] == 17_940.0 - excess_w
    assert shares[CP2][0] == 0.0
    assert shares[CP3][0] == 0.0              # nothing left for those that take a share
    # each one sent its share while the other keeps its record: under the limit
    assert shares[CP1][0] + 4_000.0 <= 9_000.0
    assert shares[CP2][0] + 17_940.0 > 9_000.0 >= shares[CP2][0] + shares[CP1][0]


def test_held_records_that_fit_are_sent_as_they_are():
    topo = SiteTopology(_site(30_000.0, ("CP1", "CP2", "CP3")))
    shares = topo.default_shares(held_w={CP1: 11_000.0, CP2: 7_000.0})
    assert shares[CP1][0] == 11_000.0 and shares[CP2][0] == 7_000.0
    assert abs(shares[CP3][0] - 12_000.0) < 1.0


def _default_w(fleet, clock, ref) -> float:
    """What the station's own profiles let the idle connector draw two hours on (every idle
    share of ours has ended by then: its fail-safe default)."""
    station = fleet.station(ref.station_id)
    return connector_limit_w(station, ref.connector_id, clock.now() + timedelta(hours=2),
                             assume_phases=3)[0]


async def test_a_restart_under_a_lower_cap_sends_no_record_back_over_it(tmp_path):
    """Both stations set up under a 44 kW grid (each default its 22 kW maximum, recorded);
    we stop; the site file's grid is 30 kW at the next start and CP2 stays away. CP2 may hold
    its 22 kW default: CP1's set-up leaves it that room - before, it got its 22 kW record back
    (44 kW in the stations' own profiles under the 30 kW grid)."""
    db = tmp_path / "sc.sqlite"
    clock = AcceleratedClock(T0, speed=60.0)
    async with control_server(_site(44_160.0), db, clock) as server:
        fleet = Fleet(_site(44_160.0), server.ws_url, clock, **FLEET_DEFAULTS)
        try:
            await fleet.start(wait_booted_s=10)
            await wait_until(lambda: all(abs(_default_w(fleet, clock, ref) - 22_080) < 50
                                         for ref in (CP1, CP2)), 10, "both at 22 kW")
            await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
        finally:
            await fleet.stop()
    with sqlite3.connect(db) as conn:
        recorded = dict(conn.execute("SELECT station_id, steps_json FROM failsafe_held"))
    assert set(recorded) == {"CP1", "CP2"}, recorded

    async with control_server(_site(30_000.0), db, clock) as server:
        fleet = Fleet(_site(30_000.0, ("CP1",)), server.ws_url, clock, **FLEET_DEFAULTS)
        try:
            await fleet.start(wait_booted_s=10)
            cp1 = server.dispatcher.stations["CP1"]
            await wait_until(lambda: cp1.caps is not None and not cp1.lock.locked()
                             and fleet.station("CP1").profiles.profiles, 10, "CP1 set up")
            await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
            # CP2 (away) may hold 22 080 W: CP1's own profiles leave the grid that room
            cp1_w = _default_w(fleet, clock, CP1)
            assert cp1_w + 22_080 <= 30_000 + 1
            assert cp1_w > 7_000, "what CP2 leaves is CP1's"
        finally:
            await fleet.stop()
