"""A restart with a changed site file: a station removed while its sessions were open.

Probed from outside (a SIGKILL of `smartcharge serve` with cars charging on three stations, the
site file then without one of them): the removed station is refused at its handshake (404), and
its open sessions stay open in the store - not planned, not billed until a stop arrives (the
station added back sends it). Nothing said so: the restart's log counted the other sessions and
was silent about these. An operator who removes a station with a car on it is now told, once,
at the start, which sessions are left open and why."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.store import SqliteStore
from tests.site_e2e import control_server

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _site() -> Site:
    return Site(name="changed", circuits=(Circuit("grid", None, limit_w=50_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),))


async def test_open_sessions_of_a_removed_station_are_named_at_the_start(tmp_path, caplog):
    db = str(tmp_path / "s.sqlite")
    store = await SqliteStore.open(db)

    def seed(tx):
        return [tx.insert_session(station_id=station_id, connector_id=1, id_tag="TAG",
                                  start_time=T0 - timedelta(hours=1), meter_start_wh=0.0,
                                  reservation_id=None, state="open", at=T0 - timedelta(hours=1))
                for station_id in ("CP1", "CP3", "CP3")]
    kept, *orphaned = await store.run(seed)
    await store.close()

    caplog.set_level(logging.INFO, logger="smartcharge.site.restore")
    async with control_server(_site(), db, AcceleratedClock(T0, speed=1.0)) as server:
        state = server.controller.state
        assert [s.transaction_id for s in state.sessions.values()] == [kept]
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "smartcharge.site.restore" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "CP3" in warnings[0] and all(str(t) in warnings[0] for t in orphaned), warnings
    counts = [r for r in caplog.records if r.getMessage().startswith("restored from the store")]
    assert "'not_in_site_file': 2" in counts[0].getMessage(), counts[0].getMessage()
