"""Sessions a station's boot closed are kept to be reopened by its next message (and planned
as fixed loads until then: plan_inputs.py) - each connector's latest, however many stations
boot at once. A restart of ours is a boot storm: every charging session on the site is closed
by its station's BootNotification, and those not kept were left out of the plan until their
next message (their room given to other cars). Session 23 kept the site's newest 64."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge import events as ev
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.state import SiteState
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STATIONS = 300


def _site() -> Site:
    return Site(name="storm", circuits=(Circuit("grid", None, limit_w=1e6),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1), Connector(2)))
                               for i in range(STATIONS)))


def _start(state: SiteState, station: int, connector: int, tx: int, at: datetime) -> None:
    state.apply(ev.SessionStarted(f"CP{station}", connector, tx, "T", 0.0, at))


def _boot(state: SiteState, station: int, closed: tuple[int, ...], at: datetime) -> None:
    state.apply(ev.StationBooted(f"CP{station}", at, True, "v", "m", sessions_closed=closed))


def test_every_charging_connector_of_a_boot_storm_is_kept_to_be_reopened():
    state = SiteState(_site())
    for i in range(STATIONS):
        _start(state, i, 1, 2 * i + 1, T0)
        _start(state, i, 2, 2 * i + 2, T0)
    for i in range(STATIONS):
        _boot(state, i, (2 * i + 1, 2 * i + 2), T0 + timedelta(minutes=1))
    assert state.sessions == {}
    assert sorted(state.reboot_closed) == list(range(1, 2 * STATIONS + 1))
    # the next message of each reopens it: the same session goes on
    _start(state, 7, 2, 16, T0 + timedelta(minutes=2))
    assert state.sessions[ConnectorRef("CP7", 2)].transaction_id == 16
    assert 16 not in state.reboot_closed


def test_a_connectors_later_boot_closed_session_replaces_its_earlier_one():
    state = SiteState(_site())
    _start(state, 0, 1, 1, T0)
    _boot(state, 0, (1,), T0 + timedelta(minutes=1))
    _start(state, 0, 1, 2, T0 + timedelta(minutes=2))      # a new car, not the old one back:
    assert state.reboot_closed == {}     # the old one is over (else planned again once it ends)
    _boot(state, 0, (2,), T0 + timedelta(minutes=3))
    assert list(state.reboot_closed) == [2]
