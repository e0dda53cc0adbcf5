"""The first dispatch round after a restart must not raise the site over a limit.

After a restart the controller did not know what profile a running transaction's station
holds (an earlier process's TxProfile, 0 W included, or its fail-safe default): it counted the
connector at its maximum, so the new plan went out as a decrease there, with the other
decreases and ungated. Where the plan moves power from one car to another, the "decrease" of
the first car was a raise in truth: sent before the other car's decrease (a station's items go
in connector order), it took the site over its limit until that one landed - 27.6 kW under a
13.8 kW grid limit, in ~8 of 10 runs (found by the session 22 audit: 13.5 kW in a 9 kW DR
event, SIGKILL in the event's round). Going out first at the fail-safe share is not enough (the
earlier process may have left the car at 0); a pause first holds the limit but pauses every
car after each restart. Now the station is asked what it applies (GetCompositeSchedule at its
set-up, `site/installed_restore.py`), and the plan is ordered against that. Both versions.

In-process servers on one SQLite file (a restart), the simulator over real OCPP; every profile
the station installs is checked (`InstallWatch`)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from sim_fixtures import free_port
from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.spec import Quirks
from smartcharge.site.topology import ConnectorRef
from tests.installed_limits import InstallWatch, connector_limit_w
from tests.site_e2e import FLEET_DEFAULTS, control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LIMIT_W = 13_800.0
OP = "op-secret"
REF1, REF2 = ConnectorRef("CP1", 1), ConnectorRef("CP1", 2)


def _site() -> Site:
    return Site(name="first-round", circuits=(Circuit("grid", None, limit_w=LIMIT_W),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                id_tags=frozenset({"DRIVER-1"}), operator_tokens=frozenset({OP}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


def _ev() -> SimEV:
    return SimEV(capacity_wh=100_000, soc=0.1, max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})


def _limit_w(station, connector_id: int) -> float:
    return connector_limit_w(station, connector_id, station.clock.now())[0]


def _needs(controller, clock, *, soon: ConnectorRef, late: ConnectorRef) -> None:
    for ref, wh, hours in ((soon, 40_000, 1), (late, 5_000, 8)):
        controller.state.set_need(controller.state.sessions[ref].transaction_id,
                                  requested_wh=wh, departure=clock.now() + timedelta(hours=hours))
    controller.request_replan("test")


async def _new_plan_in_without_excess(station, watch: InstallWatch) -> None:
    """Car 1 on the whole limit and car 2 paused at the station, and no install on the way
    took the site over its limit."""
    await wait_until(lambda: _limit_w(station, 1) > LIMIT_W - 100
                     and _limit_w(station, 2) < 100, 20, "the new plan installed")
    assert watch.installs > 0
    assert watch.excesses == [], watch.excesses


async def restarted_and_turned_round(site, db, clock, port, fleet) -> None:
    """The first server leaves car 2 on the whole limit, its station away; restarted, the site
    turns round while it is away - car 1 must leave soon, car 2 not: the plan at its
    reconnect gives car 1 the whole limit and car 2 nothing - and that plan comes into force
    without a moment over the limit."""
    station = await _car_2_on_the_whole_limit_then_away(site, db, clock, port, fleet)
    async with control_server(site, db, clock, port=port) as second:   # restarted
        controller = second.controller
        _needs(controller, clock, soon=REF1, late=REF2)
        watch = InstallWatch(site, fleet, controller.limits, clock, zero_notice=True)
        station.go_online()
        await _new_plan_in_without_excess(station, watch)


async def _car_2_on_the_whole_limit_then_away(site, db, clock, port, fleet):
    """A first server on `db`: a car on each of CP1's connectors, car 2's driver leaving soon
    (car 2 on the whole limit, car 1 none), then the station goes away and the server stops:
    CP1's station."""
    async with control_server(site, db, clock, port=port) as first:
        station = await _two_cars_car_2_first(first, fleet, clock)
        await wait_until(lambda: _limit_w(station, 2) > LIMIT_W - 100
                         and _limit_w(station, 1) < 100, 20, "car 2 on the whole limit")
        await station.go_offline()
    return station


async def _two_cars_car_2_first(server, fleet, clock):
    """The fleet up, a car on each of CP1's connectors, car 2's driver leaving soon and car
    1's late: CP1's station."""
    await fleet.start(wait_booted_s=10)
    station = fleet.station("CP1")
    for cid in (1, 2):
        assert await fleet.plug_in("CP1", cid, _ev(), "DRIVER-1")
    await wait_until(lambda: all(ref in server.controller.state.sessions
                                 for ref in (REF1, REF2)), 10, "both sessions")
    _needs(server.controller, clock, soon=REF2, late=REF1)
    return station

@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("refuses", [False, True])
async def test_the_first_round_after_a_restart_lowers_before_it_raises(tmp_path, version,
                                                                       refuses):
    """`refuses`: the station cannot say what it applies (GetCompositeSchedule Rejected):
    each connector may run anything from 0 to its maximum, so a plan for it goes out as a
    decrease to the lower of the two first, then in full (counted at its maximum alone, the
    raise of car 1 went out as a "decrease" before car 2's: 27.6 kW under 13.8)."""
    site, clock, port = _site(), AcceleratedClock(T0, speed=10.0), free_port()
    db = tmp_path / "r.sqlite"
    fleet = Fleet(site, f"ws://127.0.0.1:{port}/ocpp", clock, ocpp_versions={"CP1": version},
                  quirks={"CP1": Quirks(refuse_composite=refuses)},
                  **{**FLEET_DEFAULTS, "meter_interval_s": 2})
    try:
        await restarted_and_turned_round(site, db, clock, port, fleet)
    finally:
        await fleet.stop()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_station_that_cannot_say_keeps_its_connectors_at_their_maximum(tmp_path,
                                                                                version):
    """A station that refuses GetCompositeSchedule: nothing is taken from it (its connectors
    count at their maximum until our plans are accepted, as before), only its first connector
    is asked, and its set-up and plans go on."""
    site, clock, port = _site(), AcceleratedClock(T0, speed=10.0), free_port()
    db = tmp_path / "r.sqlite"
    fleet = Fleet(site, f"ws://127.0.0.1:{port}/ocpp", clock, ocpp_versions={"CP1": version},
                  quirks={"CP1": Quirks(refuse_composite=True)},
                  **{**FLEET_DEFAULTS, "meter_interval_s": 2})
    try:
        async with control_server(site, db, clock, port=port) as first:
            station = await _two_cars_car_2_first(first, fleet, clock)
            await wait_until(lambda: _limit_w(station, 2) > LIMIT_W - 100, 20,
                             "car 2 on the whole limit")
            await station.go_offline()
        async with control_server(site, db, clock, port=port) as second:
            controller = second.controller
            station.go_online()
            await wait_until(lambda: all(ref in controller.state.sessions
                                         for ref in (REF1, REF2))
                             and controller.installed.governs(REF1)
                             and controller.installed.governs(REF2), 20,
                             "both cars on plans of the restarted server")
            assert controller.installed.restored.by_ref == {}
        with sqlite3.connect(db) as conn:
            asked = conn.execute("SELECT connector_id, answer FROM profiles_sent WHERE purpose "
                                 "= 'GetCompositeSchedule' ORDER BY id").fetchall()
        assert asked == [(1, "Rejected")], asked
    finally:
        await fleet.stop()


def _default_w(station, connector_id: int) -> float | None:
    """The limit of the connector's highest TxDefaultProfile now (None: none)."""
    defaults = [p for p in station.profiles.profiles if p.connector_id == connector_id
                and p.purpose == "TxDefaultProfile"]
    if not defaults:
        return None
    return max(defaults, key=lambda p: p.stack_level).schedule.periods[0].limit


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_sessions_a_boot_closed_before_the_restart_reopen_as_an_earlier_processs(
        tmp_path, version):
    """The station reconnects with a BootNotification (the simulator sends one on every
    connection): the ledger closes its sessions until a message shows them running again, and
    the server stops before one does. After the restart no session is open in the store, yet
    the station still runs the first server's TxProfiles (car 2 on the whole limit): the
    restarted server must ask what it applies at its set-up and count the sessions, once
    their samples reopen them, as an earlier process's - not as transactions of its own under
    its 0 W defaults, whose plan could raise car 1 beside car 2's old TxProfile. Their
    drivers' needs come back with them."""
    site, clock, port = _site(), AcceleratedClock(T0, speed=10.0), free_port()
    db = tmp_path / "r.sqlite"
    # hourly samples: nothing reopens the sessions but the station's sample the test asks for
    fleet = Fleet(site, f"ws://127.0.0.1:{port}/ocpp", clock, ocpp_versions={"CP1": version},
                  **FLEET_DEFAULTS)
    sample = "MeterValues" if version == "1.6" else "TransactionEvent"
    try:
        async with control_server(site, db, clock, port=port) as first:
            station = await _two_cars_car_2_first(first, fleet, clock)
            needs = {}
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OP}"}) as http:
                for ref, session in first.controller.state.sessions.items():   # the drivers'
                    needs[ref] = (session.requested_wh, session.departure.replace(microsecond=0))
                    async with http.put(f"{first.http_url}/api/sessions/"
                                        f"{session.transaction_id}", json={
                                            "requested_wh": session.requested_wh,
                                            "departure": format_ocpp_time(session.departure)}
                                        ) as resp:
                        assert resp.status == 200, await resp.text()
            await wait_until(lambda: _limit_w(station, 2) > LIMIT_W - 100
                             and _limit_w(station, 1) < 100, 20, "car 2 on the whole limit")
            await station.go_offline()
            station.go_online()                      # its BootNotification closes both
            await wait_until(lambda: not first.controller.state.sessions, 20,
                             "both sessions closed by the station's boot")
            await station.go_offline()
        with sqlite3.connect(db) as conn:
            states = conn.execute("SELECT state FROM sessions").fetchall()
        assert states == [("closed_implicitly",)] * 2, states
        async with control_server(site, db, clock, port=port) as second:   # restarted
            controller = second.controller
            watch = InstallWatch(site, fleet, controller.limits, clock, zero_notice=True)
            station.go_online()
            restored = controller.installed.restored
            await wait_until(lambda: len(restored.by_ref) == 2, 20,
                             "the station asked what both connectors apply at its set-up")
            assert {ref: r.installed.limits[0] for ref, r in restored.by_ref.items()} \
                == {REF1: 0.0, REF2: 20.0}
            station.trigger(sample, None)            # the station's next samples: running
            await wait_until(lambda: all(ref in controller.state.sessions
                                         for ref in (REF1, REF2)), 20, "both sessions reopened")
            for ref in (REF1, REF2):
                session = controller.state.sessions[ref]
                assert controller.installed.unknown_tx(ref, session.transaction_id)
                assert (session.requested_wh, session.departure) == needs[ref]
            await wait_until(lambda: second.dispatcher.idle and all(
                _default_w(station, cid) == 0.0 for cid in (1, 2)), 20, "0 W defaults")
            _needs(controller, clock, soon=REF1, late=REF2)   # it turns round
            await _new_plan_in_without_excess(station, watch)
    finally:
        await fleet.stop()
