"""A three-phase bay on a station that takes W, whose car's phases are not known yet, under a
per-phase current limit: it is sent a third of its plan (site/installed.py `w_factor`), so the
car draws at most that third in all. Planned as its balanced plan, it needed 12.4 kW of the
cap to start at 4.14 kW (the demo day's rounding left that room unused: benchmarks/README.md,
"s20-limituse"); it needs only what it can draw against every W limit."""

import dataclasses
from datetime import UTC, datetime, timedelta

from smartcharge import events as ev
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, RateUnit, Site, Station
from smartcharge.site.controller import SiteController
from smartcharge.site.installed import w_factor
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
CAP_W = 16_000.0
DEPOT_A = 32.0
A_CAR, W_CAR = ConnectorRef("CPA", 1), ConnectorRef("CPW", 1)


def _site() -> Site:
    """An 11 kW bay on an A station and a 22 kW bay on a W station under a 32 A circuit, below
    a 16 kW cap: the 11 kW car leaves 5 kW, enough for the other car's 4.14 kW minimum drawn
    on three phases (6 A) or one (18 A), not for 12.4 kW."""
    return Site(name="unknown phases",
                circuits=(Circuit("grid", None, limit_w=CAP_W),
                          Circuit("depot", "grid", limit_a=DEPOT_A)),
                stations=(Station("CPA", "grid", (Connector(1, max_current_a=16),)),
                          Station("CPW", "depot", (Connector(1, max_current_a=32),),
                                  rate_unit=RateUnit.WATTS)))


async def _planned(first: str):
    clock = AcceleratedClock(T0, speed=1.0)
    controller = SiteController(_site(), clock)
    order = ("CPA", "CPW") if first == "CPA" else ("CPW", "CPA")
    for tx, station in enumerate(order, start=1):
        controller.on_event(ev.StationBooted(station, clock.now(), True, "v", "m"))
        controller.on_event(ev.SessionStarted(station, 1, tx, "TAG", 0.0, clock.now()))
    await controller.replan()
    return controller, clock


def _drawable_w(controller, ref, at) -> float:
    """What the car at `ref` may draw in all at `at`: its plan, times what its station is told."""
    plan = controller.plan.connectors[ref]
    factor = w_factor(controller.topology, "W" if ref == W_CAR else "A", ref, plan.phases,
                      plan.phases_known)
    return plan.power_at(at) * factor


async def test_an_unknown_phase_car_on_a_w_station_starts_on_the_room_it_can_draw():
    for first in ("CPA", "CPW"):
        controller, clock = await _planned(first)
        assert controller.phase_use(W_CAR) == (3, 0, False)       # phases not known yet
        for minutes in (0, 1, 14):
            at = clock.now() + timedelta(minutes=minutes)
            a_w, w_w = _drawable_w(controller, A_CAR, at), _drawable_w(controller, W_CAR, at)
            # the cap used (it was 11 kW: the W car paused, or 7.7 kW: the A car paused)
            assert a_w + w_w >= CAP_W - 100.0, (first, minutes, a_w, w_w)
            assert a_w + w_w <= CAP_W + 1e-6, (first, minutes, a_w, w_w)
            # the W car starts: a three-phase car needs 6 A on every phase
            assert w_w >= 3 * 230 * 6.0 - 1e-6, (first, minutes, w_w)
            # drawn on one phase, it stays under the circuit's 32 A
            assert w_w / 230.0 <= DEPOT_A + 1e-6, (first, minutes, w_w)


async def test_its_plan_is_still_sent_as_a_third_and_never_lets_one_phase_over():
    controller, clock = await _planned("CPA")
    plan = controller.plan.connectors[W_CAR]
    assert not plan.phases_known and plan.phases == 3
    # the plan is in the site's units (a balanced plan, a third of it sent in W): its
    # minimum is 12.4 kW there, so dispatch sends 4.14 kW
    assert plan.min_power_w == 3 * 3 * 230 * 6.0
    assert plan.power_at(clock.now()) >= plan.min_power_w - 1e-6
    # a 22 kW bay's plan stays at most 22 kW (7.36 kW sent)
    assert max(plan.power_w) <= 3 * 230 * 32.0 + 1e-6


async def test_a_w_station_addressed_in_a_sends_the_share_the_planner_counted(tmp_path):
    """The same site over real sockets, the W station taking only A (the port falls back): a
    three-phase car whose phases are not known yet is sent a third of its plan's current
    too, so it draws what the planner counted against the cap - never the balanced plan's
    current on every phase (three times that in all)."""
    from smartcharge.model import SessionDefaults
    from smartcharge.site.controller import ControllerSettings
    from smartcharge.site.dispatch import DispatchSettings
    from smartcharge.sim.ev import SimEV
    from smartcharge.sim.fleet import Fleet
    from smartcharge.sim.station import Quirks
    from tests.site_e2e import control_server, wait_until

    password = "sim-password-0123"
    site = _site()
    site = Site(name=site.name, circuits=site.circuits,
                stations=tuple(dataclasses.replace(s, password=password)
                               for s in site.stations),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))
    clock = AcceleratedClock(T0, speed=60.0)
    # samples every simulated hour (a minute real): the W car's phases stay unknown while it
    # is watched, however slow the machine
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=4 * 3600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        controller = server.controller
        fleet = Fleet(site, server.ws_url, clock, quirks={"CPW": Quirks(only_rate_unit="A")},
                      meter_interval_s=3600, call_timeout_s=5.0)
        try:
            await fleet.start(wait_booted_s=10)
            car = lambda: SimEV(capacity_wh=80_000, soc=0.2,   # noqa: E731
                                max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})
            assert await fleet.plug_in("CPA", 1, car(), "DRIVER-1")
            assert await fleet.plug_in("CPW", 1, car(), "DRIVER-1")
            await wait_until(lambda: fleet.draw_w("CPW", 1) > 1000.0 and
                             fleet.draw_w("CPA", 1) > 1000.0, 20, "both cars charging")
            assert controller.phase_use(W_CAR) == (3, 0, False)
            drawn = []

            def watched() -> bool:     # every 10 ms real (10 s simulated), 5 simulated minutes
                for station in fleet.stations.values():
                    station.advance_to(clock.now())
                drawn.append(fleet.draw_w("CPA", 1) + fleet.draw_w("CPW", 1))
                return len(drawn) >= 30

            await wait_until(watched, 20, "5 minutes watched")
            assert controller.phase_use(W_CAR) == (3, 0, False)
            assert max(drawn) <= CAP_W + 100.0, drawn
            assert fleet.draw_w("CPW", 1) >= 3 * 230 * 6.0 - 50.0
        finally:
            await fleet.stop()


async def test_what_it_was_measured_taking_caps_what_it_is_sent():
    """The closed loop caps a car at what it was measured drawing (plus headroom), in W the car
    draws: for a car planned in what it is sent, that cap is what it is sent, not a third of it
    (a sample without per-phase currents teaches no phases, so the cap can hold while they are
    unknown)."""
    controller, clock = await _planned("CPA")
    controller.ev_cap_w[A_CAR] = 3_000.0          # room for the W car up to its third
    controller.ev_cap_w[W_CAR] = 6_000.0
    await controller.replan()
    assert controller.phase_use(W_CAR) == (3, 0, False)
    assert abs(_drawable_w(controller, W_CAR, clock.now()) - 6_000.0) < 1.0
