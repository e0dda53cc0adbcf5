"""The audit of sent profiles (the `profiles_sent` table) is written in the background after a
round (`Dispatcher.run_audit`), and on demand by `Dispatcher.flush_audit`. A flush that found
the background one writing returned at once, before the rows that one had taken were
committed. A reader through `SqliteStore.run` was not hurt (the store runs its work in the
order it was handed in: the read after the insert), but one outside that order - the read-only
connection (`SqliteStore.read`), another process on the file - read nothing yet."""

import asyncio
import sqlite3
from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from tests.site_e2e import control_server

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _stored(db_path) -> list[tuple]:
    """What the file holds now (committed), read without yielding to the loop."""
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT station_id, connector_id, purpose, answer "
                          "FROM profiles_sent ORDER BY id").fetchall()


async def test_a_flush_returns_only_once_the_rows_a_flush_already_writing_took_are_stored(
        tmp_path):
    site = Site(name="audit", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))
    db_path = tmp_path / "audit.sqlite"
    async with control_server(site, db_path, AcceleratedClock(T0, speed=1.0)) as server:
        dispatcher = server.dispatcher
        await dispatcher.flush_audit()
        stored = _stored(db_path)
        # a request answered: its row is recorded by the port (as after every SetChargingProfile)
        dispatcher._record("CP1", 1, "TxProfile", {"connectorId": 1}, "Accepted")
        # the background flush after a round takes it and is writing it ...
        writing = asyncio.ensure_future(dispatcher.flush_audit())
        await asyncio.sleep(0)
        # ... when a reader flushes before it reads
        await dispatcher.flush_audit()
        assert _stored(db_path) == stored + [("CP1", 1, "TxProfile", "Accepted")]
        await writing
