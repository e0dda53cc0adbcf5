"""A boot storm's set-ups do not wait for their lowered held records (s29-boot).

Each set-up wrote what its station may hold twice, each time waiting for the commit under its
sending slot (SETUP_CONCURRENCY): the station's maximum ahead of its first default (that one
must land first: a restart holds the station at it), then - the default taken - the lowered
record. The second waited only so that a station running a transaction from before a restart
is asked what it applies (GetCompositeSchedule) after its transactions are known
(tests/test_restart_dr_first_round.py); a station with no such transaction has nothing to ask,
and its lowered record is queued and written with the others (held_defaults.py: lost, the
higher one from before holds it at more than it has, never less).

A real server on SQLite, simulated stations over real OCPP; the store's work counted by name."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.topology import ConnectorRef
from tests.installed_limits import stored_default_w
from tests.site_e2e import server_and_fleet, wait_until
from tests.test_dispatch_trust import T0
from tests.test_held_record_lowered_later import MAX_W, settled

STATIONS = ("CP1", "CP2", "CP3", "CP4")
REFS = tuple(ConnectorRef(sid, 1) for sid in STATIONS)
GRID_W = 2 * MAX_W        # each default half the connector's maximum


def four_stations() -> Site:
    return Site(name="setup-queued", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=tuple(Station(sid, "grid", (Connector(1),)) for sid in STATIONS),
                id_tags=frozenset({"DRIVER-1"}))


async def test_set_ups_queue_their_lowered_records_and_write_them_together(tmp_path):
    clock = AcceleratedClock(T0, speed=1.0)
    async with server_and_fleet(four_stations(), tmp_path, clock) as (server, fleet):
        store = server.dispatcher.store
        counted: Counter = Counter()
        run = store.run

        async def counting(work):
            function = getattr(work, "function", None)
            counted[getattr(function, "__name__", function)] += 1
            return await run(work)
        store.run = counting
        await fleet.start(wait_booted_s=10)

        def stored(ref):
            return stored_default_w(tmp_path / "sc.sqlite", ref, clock.now() + timedelta(hours=1))
        await wait_until(lambda: settled(server.dispatcher)
                         and all(abs((stored(ref) or 0.0) - MAX_W / 2) < 100 for ref in REFS),
                         30, "every set-up over and every record lowered to the default")
        # each station's maximum written ahead, alone; the lowered ones in batches
        assert counted["write_held"] == len(STATIONS), counted
        assert 1 <= counted["write_held_batch"] <= len(STATIONS), counted
