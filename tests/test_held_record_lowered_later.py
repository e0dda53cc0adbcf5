"""A lowered fail-safe default's record (what the station may hold, kept for a restart:
site/held_defaults.py) is not waited for; a raised one still is, and lands last.

Each station's record after its lowered defaults was awaited under its lock and a sending slot:
a DR event's round waited for a store commit per station (500 at 1 000 connectors, issue 10,
s28-dr). A record that only lowers may land late - lost, the store holds the higher one from
before, which holds the station at more than it has after a restart, never less - so it is
queued and written in one transaction with the others queued meanwhile. A record that raises
is written before the raise goes out, as before; a lowered record still queued then must not
land after it.

A real server on SQLite, simulated stations over real OCPP; the store's writer thread held
busy by a piece of work that waits for the test (a slow disk), so what waits for a commit
cannot finish until the test lets it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.topology import ConnectorRef
from tests.installed_limits import connector_limit_w, stored_default_w
from tests.site_e2e import server_and_fleet, wait_until
from tests.test_dispatch_trust import T0

STATIONS = ("CP1", "CP2", "CP3", "CP4")
REFS = tuple(ConnectorRef(sid, 1) for sid in STATIONS)
MAX_W = 22_080            # each connector's maximum (32 A, 3 phases)
GRID_W = 4 * MAX_W        # every default at the connector's maximum
EVENT_W = GRID_W / 2      # a DR event: each default halved


def four_stations() -> Site:
    return Site(name="held-later", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=tuple(Station(sid, "grid", (Connector(1),)) for sid in STATIONS),
                id_tags=frozenset({"DRIVER-1"}))


def default_w(fleet, clock, ref: ConnectorRef) -> float:
    """What the station's own profiles let its idle connector draw an hour from now (inside
    the event; every plan and idle share of ours has ended by then: its fail-safe default)."""
    station = fleet.station(ref.station_id)
    return connector_limit_w(station, ref.connector_id, clock.now() + timedelta(hours=1),
                             assume_phases=3)[0]


def stored_w(db_path, clock, ref: ConnectorRef) -> float | None:
    """What the SQLite file says the connector's default may be an hour from now."""
    return stored_default_w(db_path, ref, clock.now() + timedelta(hours=1))


def all_at(value_w: float, read) -> bool:
    """Every connector's `read(ref)` within 100 W of `value_w` (None counts as 0)."""
    return all(abs((read(ref) or 0.0) - value_w) < 100 for ref in REFS)


def settled(dispatcher) -> bool:
    """Every set-up done (its records written) and every plan's round over: nothing of ours
    waits for the store when the test holds its writer."""
    return (dispatcher.idle and dispatcher._setups_queued == 0
            and not any(control.lock.locked() for control in dispatcher.stations.values()))


class HeldWriter:
    """The store's writer thread busy in a piece of work until `release`."""

    def __init__(self, store) -> None:
        self._store = store
        self._busy = threading.Event()
        self._go = threading.Event()
        self._work: asyncio.Future | None = None

    async def hold(self) -> None:
        def wait(_tx) -> None:
            self._busy.set()
            self._go.wait(600)   # a bound on a hung test, not a timing
        self._busy.clear()
        self._go.clear()
        self._work = asyncio.ensure_future(self._store.run(wait))
        await wait_until(self._busy.is_set, 10, "the store's writer held")

    async def release(self) -> None:
        self._go.set()
        if self._work is not None:
            await self._work


@contextlib.asynccontextmanager
async def four_stations_set_up(tmp_path):
    """The real server on real time (no periodic call of a station's - a heartbeat every 300
    site s - while the writer is held: at 20x under load it waited for the writer, and its
    station's answers behind it) and the four stations booted: (server, fleet, clock, db path,
    the store's writer to hold); the writer let go at the end whatever happened."""
    clock = AcceleratedClock(T0, speed=1.0)
    async with server_and_fleet(four_stations(), tmp_path, clock) as (server, fleet):
        writer = HeldWriter(server.dispatcher.store)
        try:
            await fleet.start(wait_booted_s=10)
            yield server, fleet, clock, tmp_path / "sc.sqlite", writer
        finally:
            await writer.release()


async def an_event_with_the_writer_held(server, clock, writer) -> int:
    """The store's writer held, then a DR event halving the grid for two hours, re-planned
    for: the dispatcher's rounds done before it."""
    await writer.hold()
    now = clock.now()
    server.controller.limits.add_event(DemandResponseEvent(
        "held-later", now, now + timedelta(hours=2), limit_w=EVENT_W))
    done = server.dispatcher.rounds_done
    server.controller.request_replan("dr:held-later")
    return done


async def test_a_lowered_record_does_not_hold_the_round_and_a_raise_lands_last(tmp_path):
    async with four_stations_set_up(tmp_path) as (server, fleet, clock, db_path, writer):
        controller, dispatcher = server.controller, server.dispatcher

        def held(ref):
            return default_w(fleet, clock, ref)

        def stored(ref):
            return stored_w(db_path, clock, ref)
        await wait_until(lambda: settled(dispatcher) and all_at(MAX_W, held)
                         and all_at(MAX_W, stored), 30, "every default and record at 22 kW")

        # the writer busy: the event's round lowers every default and ends all the same
        done = await an_event_with_the_writer_held(server, clock, writer)
        await wait_until(lambda: dispatcher.rounds_done > done and dispatcher.idle
                         and all_at(EVENT_W / 4, held), 30,
                         "the event's round over, every default at 11 kW, the store held")
        # not written yet: the records from before, higher than what the stations hold
        assert all_at(MAX_W, stored), {ref: stored(ref) for ref in REFS}

        # the event cancelled while the lowered records are queued or in flight: the
        # raises are recorded ahead (they wait for the writer), and the records end at
        # the raise - no lowered one queued before lands after it
        controller.limits.cancel_event("held-later")
        controller.request_replan("dr-cancel:held-later")
        await writer.release()
        await wait_until(lambda: dispatcher.idle and all_at(MAX_W, held)
                         and not dispatcher._held_flushing
                         and not dispatcher._held_pending, 30,
                         "every default back at 22 kW, no record queued")
        records = {ref: stored(ref) for ref in REFS}
        assert all_at(MAX_W, stored), records


async def test_lowered_records_land_in_one_transaction_with_those_queued_meanwhile(tmp_path):
    """The writer busy while four stations' defaults are lowered: once it is free, their
    records land - in at most two transactions (the first one queued alone may have gone to
    the writer before the others came; the rest together), not one each."""
    async with four_stations_set_up(tmp_path) as (server, fleet, clock, db_path, writer):
        dispatcher = server.dispatcher
        await wait_until(lambda: settled(dispatcher) and all_at(
            MAX_W, lambda ref: stored_w(db_path, clock, ref)), 30, "every record at 22 kW")
        batches = []
        write_batch = dispatcher._write_held_batch

        async def counted(batch):
            batches.append(sorted(batch))
            await write_batch(batch)
        dispatcher._write_held_batch = counted

        done = await an_event_with_the_writer_held(server, clock, writer)
        await wait_until(lambda: dispatcher.rounds_done > done and dispatcher.idle and all_at(
            EVENT_W / 4, lambda ref: default_w(fleet, clock, ref)), 30,
            "the event's round over, the store held")
        await writer.release()
        await wait_until(lambda: all_at(EVENT_W / 4,
                                        lambda ref: stored_w(db_path, clock, ref)), 30,
                         "every record at 11 kW")
        assert sorted(sid for batch in batches for sid in batch) == list(STATIONS), batches
        assert len(batches) <= 2, batches
