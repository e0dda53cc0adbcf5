"""What stations report, as the site takes it (issue 8, `site/station_reports.py`): an ISO 15118
car's needs become its session's need unless a person set one; a limit set outside us
(NotifyChargingLimit) caps that EVSE over time until it is cleared. Fed real domain events."""

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge import events as ev
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import SiteController
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
REF = ConnectorRef("CP1", 1)


def _controller():
    site = Site(name="t", circuits=(Circuit("grid", None, limit_w=100_000.0),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),))
    clock = AcceleratedClock(T0, speed=1.0)
    controller = SiteController(site, clock)
    controller.on_event(ev.StationBooted("CP1", clock.now(), True, "v", "m"))
    controller.on_event(ev.SessionStarted("CP1", 1, 7, "TAG", 0.0, clock.now()))
    return controller, clock


def _needs(clock, energy_wh=12_000.0, hours=3.0, tx=7):
    return ev.ChargingNeedsReported("CP1", 1, tx, clock.now(), "AC_three_phase_core",
                                    departure=clock.now() + timedelta(hours=hours),
                                    energy_wh=energy_wh, max_current_a=32.0)


def _planned_wh(controller):
    plan = controller.plan.connectors[REF]
    ends = list(plan.slot_starts[1:]) + [plan.slot_starts[-1] + timedelta(minutes=15)]
    return sum(p * (e - s).total_seconds() / 3600 for p, s, e in
               zip(plan.power_w, plan.slot_starts, ends))


async def test_the_cars_needs_become_the_sessions_need_and_change_the_plan():
    controller, clock = _controller()
    await controller.replan()
    before = _planned_wh(controller)
    session = controller.state.sessions[REF]
    session.energy_wh = 2_000.0            # already delivered
    needs = _needs(clock)
    controller.on_event(needs)
    assert session.requested_wh == 14_000.0 and session.need_source == "ev"
    assert session.departure == needs.departure
    assert any(r.startswith("ev-needs:CP1/1") for r in controller._reasons)
    await controller.replan()
    # the car's 12 kWh (less at most one slot at the minimum rate: 0 or >= the minimum)
    assert 12_000.0 - 3 * 230 * 6 * 0.25 <= _planned_wh(controller) <= 12_000.0 + 1.0
    assert _planned_wh(controller) != pytest.approx(before, rel=0.01)


async def test_a_need_a_person_set_wins_over_the_cars():
    controller, clock = _controller()
    controller.state.set_need(7, requested_wh=5_000.0)     # the API's way (operator/driver)
    controller.on_event(_needs(clock))
    session = controller.state.sessions[REF]
    assert session.requested_wh == 5_000.0 and session.need_source == "operator"


async def test_needs_without_a_session_or_in_the_past_change_nothing():
    controller, clock = _controller()
    session = controller.state.sessions[REF]
    requested, departure = session.requested_wh, session.departure
    controller.on_event(ev.ChargingNeedsReported("CP1", 2, None, clock.now(), "DC",
                                                 energy_wh=9_000.0))
    controller.on_event(_needs(clock, energy_wh=None, hours=-1.0))
    assert (session.requested_wh, session.departure) == (requested, departure)


def _limit(clock, limit, unit="A", evse=1, source="EMS", offsets=(0,), duration_s=None):
    schedule = ev.ReportedSchedule(clock.now(), duration_s, unit, tuple(offsets),
                                   tuple(limit), tuple(None for _ in offsets))
    return ev.ExternalLimitReported("CP1", evse, clock.now(), source, False, (schedule,))


async def test_an_external_limit_caps_that_evse_over_time_until_cleared():
    controller, clock = _controller()
    await controller.replan()
    assert controller.plan.connectors[REF].power_at(clock.now()) > 20_000
    # 10 A per phase for the first hour, then 0 (a DSO relay), from the station's EMS
    controller.on_event(_limit(clock, (10.0, 0.0), offsets=(0, 3600)))
    await controller.replan()
    plan = controller.plan.connectors[REF]
    assert plan.power_at(clock.now()) <= 3 * 230 * 10.0 + 1e-6
    assert plan.power_at(clock.now() + timedelta(hours=1, minutes=1)) == 0.0
    # a limit on the other EVSE only does not touch this one
    controller.on_event(_limit(clock, (3_000.0,), unit="W", evse=2, source="SO"))
    # cleared (by its source): the EVSE is free again
    controller.on_event(ev.ExternalLimitCleared("CP1", 1, clock.now(), "EMS"))
    await controller.replan()
    assert controller.plan.connectors[REF].power_at(clock.now()) > 20_000


async def test_a_station_wide_external_limit_caps_each_evse_and_below_minimum_is_zero():
    controller, clock = _controller()
    controller.on_event(_limit(clock, (2_000.0,), unit="W", evse=None))   # < 6 A x 3 x 230
    await controller.replan()
    assert controller.plan.connectors[REF].power_at(clock.now()) == 0.0


async def test_the_most_the_car_takes_caps_its_connector_while_it_stays():
    controller, clock = _controller()
    controller.state.set_need(7, requested_wh=50_000.0)   # a person's need: still capped
    controller.on_event(ev.ChargingNeedsReported("CP1", 1, 7, clock.now(), "AC_single_phase",
                                                 max_current_a=16.0))
    await controller.replan()
    assert controller.plan.connectors[REF].power_at(clock.now()) <= 16.0 * 230 + 1e-6
    # the car leaves, the next one is not capped by it
    controller.on_event(ev.SessionStopped("CP1", 1, 7, clock.now(), 1_000.0, "EVDisconnected"))
    controller.on_event(ev.SessionStarted("CP1", 1, 8, "TAG", 0.0, clock.now()))
    await controller.replan()
    assert controller.plan.connectors[REF].power_at(clock.now()) > 20_000
    assert REF not in controller.reports.ev_max_w
