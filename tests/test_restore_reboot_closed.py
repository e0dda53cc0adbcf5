"""What `site/restore.py` brings back of sessions a station's boot closed: each connector's
latest one, still to be reopened by the station's next message, with its driver's need and the
id the store had given (an earlier process's transaction), unless an open session holds the
connector. Real SQLite file, the ledger's own functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge import ledger
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import SiteController
from smartcharge.site.restore import restore
from smartcharge.site.topology import ConnectorRef
from smartcharge.store import SqliteStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SITE = Site(name="r", circuits=(Circuit("grid", None, limit_w=50_000.0),),
            stations=(Station("CP1", "grid", (Connector(1), Connector(2))),))
REF1, REF2 = ConnectorRef("CP1", 1), ConnectorRef("CP1", 2)


def _session(tx, connector_id: int, minutes: int) -> int:
    return tx.insert_session(station_id="CP1", connector_id=connector_id, id_tag="T",
                             start_time=T0 + timedelta(minutes=minutes), meter_start_wh=0.0,
                             reservation_id=None, state=ledger.OPEN, at=T0)


async def test_the_latest_boot_closed_session_per_connector_comes_back_to_be_reopened(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))

    def write(tx):
        older = _session(tx, 1, 0)       # closed by a new session, then...
        ledger.close_implicitly(tx, tx.session(older), "NewSession", T0, 22_000.0)
        latest = _session(tx, 1, 5)      # ...this one by the station's boot
        open_one = _session(tx, 2, 1)    # connector 2: an older session reopened after the
        booted = _session(tx, 2, 6)      # same boot, the newer one still closed by it
        ledger.close_on_reboot(tx, "CP1", T0 + timedelta(minutes=10), 22_000.0)
        tx.execute("UPDATE sessions SET state = 'open', closed_by = NULL "
                   "WHERE transaction_id = ?", (open_one,))
        tx.execute("INSERT INTO session_needs (transaction_id, requested_wh, departure, "
                   "updated_at) VALUES (?, 12345, ?, ?)", (latest, "2026-01-01T18:00:00.000000Z",
                                                         "2026-01-01T12:00:00.000000Z"))
        return older, latest, open_one, booted

    older, latest, open_one, booted = await store.run(write)
    controller = SiteController(SITE, ManualClock(T0 + timedelta(minutes=20)))
    await restore(controller, store)
    await store.close()
    state = controller.state
    assert state.earlier_transactions_upto == booted
    assert set(state.reboot_closed) == {latest}     # not the older, not the one held open
    assert state.reboot_closed[latest].ref == REF1
    assert state.reboot_closed[latest].requested_wh == 12345
    assert REF1 not in state.sessions
    assert state.sessions[REF2].transaction_id == open_one   # the open one holds connector 2
