"""`SiteState.session_by_id` answers from an index kept by watching `sessions` (it is asked per
planned connector when sending; a scan there was O(N^2) a round at 5 000 stations). Every way
the dict changes must move the index with it: the answer is the scan's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.state import Session, SiteState
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
REFS = [ConnectorRef("CP1", 1), ConnectorRef("CP1", 2), ConnectorRef("CP2", 1)]


def _state() -> SiteState:
    return SiteState(Site(name="index", circuits=(Circuit("grid", None, limit_w=50_000.0),),
                          stations=(Station("CP1", "grid", (Connector(1), Connector(2))),
                                    Station("CP2", "grid", (Connector(1),)))))


def _session(transaction_id: int, ref: ConnectorRef) -> Session:
    return Session(transaction_id=transaction_id, ref=ref, id_tag="TAG", started_at=T0,
                   meter_start_wh=0.0, requested_wh=10_000.0, departure=T0 + timedelta(hours=4))


def _scan(state: SiteState, transaction_id: int) -> Session | None:
    return next((s for s in state.sessions.values() if s.transaction_id == transaction_id),
                None)


def _agrees(state: SiteState) -> None:
    for transaction_id in range(0, 12):
        assert state.session_by_id(transaction_id) is _scan(state, transaction_id), \
            transaction_id


def test_session_by_id_follows_every_change_of_the_sessions():
    state = _state()
    _agrees(state)
    state.sessions[REFS[0]] = _session(1, REFS[0])
    state.sessions[REFS[1]] = _session(2, REFS[1])
    _agrees(state)
    assert state.session_by_id(2).ref == REFS[1]
    state.sessions[REFS[0]] = _session(3, REFS[0])           # a new transaction there
    _agrees(state)
    assert state.session_by_id(1) is None
    del state.sessions[REFS[1]]
    _agrees(state)
    state.sessions.update({REFS[1]: _session(4, REFS[1]), REFS[2]: _session(5, REFS[2])})
    state.sessions.pop(REFS[2])
    _agrees(state)
    state.sessions.setdefault(REFS[2], _session(6, REFS[2]))
    state.sessions |= {REFS[2]: _session(7, REFS[2])}
    _agrees(state)
    assert state.session_by_id(6) is None and state.session_by_id(7).ref == REFS[2]
    state.sessions.popitem()
    _agrees(state)
    state.sessions.clear()
    _agrees(state)
    assert not state.sessions and state.session_by_id(3) is None
