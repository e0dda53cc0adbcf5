"""A silent driver's need and departure come from the site's history (site/estimates.py): the
driver's own past sessions, else the bay's, else the site's defaults; a told need always wins;
the estimate is marked as one, and comes back after a restart (it is made from stored data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from smartcharge import events as ev
from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.estimates import PastSession, SessionHistory
from smartcharge.site.state import SiteState
from smartcharge.site.topology import ConnectorRef
from smartcharge.store import SqliteStore
from tests.site_e2e import control_server

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)          # a Monday
REF = ConnectorRef("CP1", 1)
OP = "op-secret"


def _site() -> Site:
    return Site(name="estimates", circuits=(Circuit("grid", None, limit_w=50_000),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                operator_tokens=frozenset({OP}))


def _commuter_days(n: int = 5):
    """(arrival, departure, energy) of a driver who comes at 08:00, leaves at 17:00, ~30 kWh."""
    energies = [29_000.0, 30_000.0, 31_000.0, 30_000.0, 30_500.0][:n]
    return [(DAY0 + timedelta(days=d, hours=8), DAY0 + timedelta(days=d, hours=17), wh)
            for d, wh in enumerate(energies)]


def _history() -> SessionHistory:
    history = SessionHistory()
    for arrival, departure, wh in _commuter_days():
        history.add(PastSession("ALICE", REF, arrival, departure, wh))
    return history


def _started(state: SiteState, tag: str, at: datetime, tx: int = 1, ref: ConnectorRef = REF):
    state.apply(ev.SessionStarted(ref.station_id, ref.connector_id, tx, tag, 0.0, at))
    return state.sessions[ref]


def test_a_silent_driver_with_a_history_gets_their_usual_need_and_departure():
    state = SiteState(_site())
    state.history = _history()
    monday_next = DAY0 + timedelta(days=7, hours=8)
    session = _started(state, "ALICE", monday_next)
    assert session.requested_wh == pytest.approx(30_000.0, rel=0.03)
    assert session.departure == monday_next.replace(hour=17)
    assert session.need_source == "estimated"
    assert not session.need_told      # an estimate is not what the driver asked for


def test_a_told_need_wins_over_the_estimate():
    state = SiteState(_site())
    state.history = _history()
    session = _started(state, "ALICE", DAY0 + timedelta(days=7, hours=8))
    state.set_need(session.transaction_id, requested_wh=12_000.0,
                   departure=DAY0 + timedelta(days=7, hours=12))
    assert (session.requested_wh, session.departure) == (12_000.0,
                                                         DAY0 + timedelta(days=7, hours=12))
    assert session.need_source == "operator" and session.need_told


def test_a_new_tag_on_a_site_without_history_gets_the_site_default():
    state = SiteState(_site())
    state.history = _history()
    at = DAY0 + timedelta(days=7, hours=8)
    session = _started(state, "BOB", at, ref=ConnectorRef("CP1", 2))
    defaults = _site().session_defaults
    assert session.requested_wh == defaults.energy_wh
    assert session.departure == at + timedelta(seconds=defaults.dwell_s)
    assert session.need_source == "default"


def test_a_new_tag_at_a_bay_with_history_gets_the_bay_estimate():
    state = SiteState(_site())
    state.history = _history()
    session = _started(state, "BOB", DAY0 + timedelta(days=7, hours=8))
    assert session.requested_wh == pytest.approx(30_000.0, rel=0.03)
    assert session.need_source == "estimated"


def test_sessions_that_stop_teach_the_history_and_only_the_past_counts():
    state = SiteState(_site())
    for tx, (arrival, departure, wh) in enumerate(_commuter_days(3), start=1):
        _started(state, "ALICE", arrival, tx)
        state.apply(ev.SessionStopped("CP1", 1, tx, departure, wh, "EVDisconnected"))
    session = _started(state, "ALICE", DAY0 + timedelta(days=7, hours=8), tx=9)
    assert session.need_source == "estimated"
    assert session.requested_wh == pytest.approx(30_000.0, rel=0.03)
    # a session that ended after another started is not used for that one's estimate
    assert state.history.estimate("ALICE", REF, DAY0 + timedelta(days=1, hours=8)) is None


async def test_the_estimate_is_restored_after_a_restart_and_shown_as_one(tmp_path):
    db = str(tmp_path / "e.sqlite")
    store = await SqliteStore.open(db)
    now = DAY0 + timedelta(days=7, hours=9)

    def seed(tx):
        for arrival, departure, wh in _commuter_days():
            tid = tx.insert_session(station_id="CP1", connector_id=1, id_tag="ALICE",
                                    start_time=arrival, meter_start_wh=0.0, reservation_id=None,
                                    state="open", at=arrival)
            tx.close_session(tid, state="stopped", closed_by="StopTransaction",
                             stop_time=departure, meter_stop_wh=wh, stop_reason="EVDisconnected",
                             stop_id_tag=None, energy_wh=wh, energy_method="registers",
                             flags=(), at=departure)
        return tx.insert_session(station_id="CP1", connector_id=1, id_tag="ALICE",
                                 start_time=now - timedelta(hours=1), meter_start_wh=0.0,
                                 reservation_id=None, state="open", at=now - timedelta(hours=1))
    open_tid = await store.run(seed)
    await store.close()
    async with control_server(_site(), db, AcceleratedClock(now, speed=1.0)) as server:
        session = server.controller.state.session_by_id(open_tid)
        assert session.requested_wh == pytest.approx(30_000.0, rel=0.03)
        assert session.departure == now.replace(hour=17)
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.get("/api/site",
                                headers={"Authorization": f"Bearer {OP}"}) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
        shown = next(s for s in body["sessions"] if s["session_id"] == open_tid)
        assert shown["need_source"] == "estimated"
        assert shown["departure"] == format_ocpp_time(now.replace(hour=17))


async def test_the_history_read_keeps_stopped_sessions_of_the_window_only(tmp_path):
    from smartcharge.store_history import stopped_sessions
    store = await SqliteStore.open(str(tmp_path / "h.sqlite"))
    now = DAY0 + timedelta(days=200)

    def seed(tx):
        def one(start, hours, state, energy_wh=10_000.0):
            tid = tx.insert_session(station_id="CP1", connector_id=1, id_tag="ALICE",
                                    start_time=start, meter_start_wh=0.0, reservation_id=None,
                                    state="open", at=start)
            tx.close_session(tid, state=state, closed_by="StopTransaction",
                             stop_time=start + timedelta(hours=hours), meter_stop_wh=energy_wh,
                             stop_reason=None, stop_id_tag=None, energy_wh=energy_wh,
                             energy_method="registers", flags=(),
                             at=start + timedelta(hours=hours))
        one(now - timedelta(days=2), 8, "stopped")
        one(now - timedelta(days=1), 9, "stopped")
        one(now - timedelta(days=3), 2, "closed_implicitly")   # a reboot says nothing of a stay
        one(now - timedelta(days=120), 8, "stopped")          # older than the window
        one(now - timedelta(days=4), 7, "stopped", energy_wh=None)   # energy not established
    await store.run(seed)
    rows = await store.read(lambda tx: stopped_sessions(tx, now))
    await store.close()
    assert [(r.stop_time - r.start_time) / timedelta(hours=1) for r in rows] == [8.0, 9.0]
    assert [r.id_tag for r in rows] == ["ALICE", "ALICE"]


async def test_the_history_read_uses_an_index_not_a_scan_of_every_session(tmp_path):
    """A site's sessions table grows for years; the start-up read of the last 90 days must not
    scan and sort all of it."""
    from smartcharge.store_history import HISTORY_ROWS, HISTORY_SQL
    store = await SqliteStore.open(str(tmp_path / "h.sqlite"))
    steps = await store.read(lambda tx: [row[-1] for row in tx.execute(
        "EXPLAIN QUERY PLAN " + HISTORY_SQL, (DAY0.isoformat(), HISTORY_ROWS)).fetchall()])
    await store.close()
    assert any("USING INDEX" in s for s in steps), steps
    assert not any("TEMP B-TREE" in s for s in steps), steps      # no sort of the rows
