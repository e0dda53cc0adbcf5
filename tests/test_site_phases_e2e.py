"""End to end, over real sockets with simulated stations: single-phase cars on three-phase bays
under per-phase current limits, and fail-safe defaults that follow a demand-response event."""

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, RateUnit, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.station import Quirks
from tests.site_e2e import PhaseMonitor, composite_w, control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "sim-password-0123"
UTILITY = "utility-token"
SETTINGS = ControllerSettings(stale_after_s=600.0)
GRID_A = 48.0


def _phase_site(unit: RateUnit) -> Site:
    """Three 22 kW three-phase bays under a 48 A per-phase grid connection (no W cap); CP2's
    L1 is wired to the site's L2."""
    return Site(name="phases",
                circuits=(Circuit("grid", None, limit_a=GRID_A),),
                stations=tuple(Station(f"CP{i}", "grid",
                                       (Connector(1, max_current_a=32, phase=phase),),
                                       password=PASSWORD, rate_unit=unit)
                               for i, phase in ((1, "L1"), (2, "L2"), (3, "L1"))),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


def _car(onboard_phases: int) -> SimEV:
    return SimEV(capacity_wh=80_000, soc=0.2, onboard_phases=onboard_phases,
                 max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})


@pytest.mark.parametrize("unit", [RateUnit.WATTS, RateUnit.AMPS])
async def test_single_phase_car_on_three_phase_bay_never_overloads_a_phase(tmp_path, unit):
    clock = AcceleratedClock(T0, speed=120.0)
    site = _phase_site(unit)
    async with control_server(site, tmp_path / "sc.sqlite", clock, settings=SETTINGS,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        controller = server.controller
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=30, reconnect_min_s=0.05,
                      reconnect_max_s=0.3, call_timeout_s=5.0)
        monitor = PhaseMonitor(site, fleet, clock)
        try:
            await fleet.start(wait_booted_s=10)
            monitor.start()
            # the single-phase cars first: they meet the fail-safe / idle defaults unplanned
            assert await fleet.plug_in("CP1", 1, _car(1), "DRIVER-1")
            assert await fleet.plug_in("CP2", 1, _car(1), "DRIVER-1")
            sessions = controller.state.sessions
            cp1, cp2 = ConnectorRef("CP1", 1), ConnectorRef("CP2", 1)
            await wait_until(lambda: cp1 in sessions and cp2 in sessions and
                             sessions[cp1].phases_in_use == sessions[cp2].phases_in_use == 1,
                             20, "the single-phase cars' phase use learned from their currents")
            assert (sessions[cp1].station_phase, sessions[cp2].station_phase) == (0, 0)
            # CP2's L1 is wired to the site's L2 (its rotation in the site file)
            assert controller.phase_use(cp1) == (1, 0, True)
            assert controller.phase_use(cp2) == (1, 1, True)
            # each car gets the phase the other leaves free: together they draw more current
            # than a balanced plan (each car reserving its current on every phase) ever allows
            await wait_until(lambda: (fleet.draw_w("CP1", 1) + fleet.draw_w("CP2", 1)) / 230.0
                             > GRID_A + 1, 20, "the single-phase cars use the freed phases")
            # a three-phase car arriving later is planned around them, never over a phase
            assert await fleet.plug_in("CP3", 1, _car(3), "DRIVER-1")
            await wait_until(lambda: controller.phase_use(ConnectorRef("CP3", 1))[2]
                             or ConnectorRef("CP3", 1) in controller.plan.connectors, 20,
                             "the three-phase car planned")
            seen = len(monitor.samples)
            await wait_until(lambda: len(monitor.samples) > seen + 200, 10, "more samples")
            await monitor.stop()
            over = [(at, amps) for at, amps in monitor.samples if max(amps) > GRID_A + 0.05]
            assert not over, over[:5]
        finally:
            await monitor.stop()
            await fleet.stop()


CAP_W = 30_000.0
EVENT_W = 22_000.0   # 4.4 kW per bay: above a 3-phase car's 4.14 kW minimum


def _dr_site() -> Site:
    return Site(name="dr",
                circuits=(Circuit("grid", None, limit_w=CAP_W), Circuit("feeder", "grid")),
                stations=tuple(Station(f"CP{i}", "feeder", (Connector(1, max_current_a=16),),
                                       password=PASSWORD) for i in range(1, 6)),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=40_000, dwell_s=8 * 3600),
                utility_tokens=frozenset({UTILITY}))


def _default_w(fleet, station_id, at) -> float:
    """The station's stack-level-0 fail-safe TxDefaultProfile limit at `at` [W] (3 phases)."""
    profiles = fleet.station(station_id).profiles
    for p in profiles.profiles:
        if p.purpose == "TxDefaultProfile" and p.stack_level == 0:
            offset = (at - p.schedule.start).total_seconds() if p.schedule.start else 0
            limit = p.schedule.periods[0].limit
            for period in p.schedule.periods:
                if period.start_s <= offset:
                    limit = period.limit
            return limit * 230.0 * 3 if p.schedule.rate_unit == "A" else limit
    return float("inf")


async def test_server_gone_before_a_dr_event_defaults_keep_the_site_under_it(tmp_path):
    import aiohttp
    clock = AcceleratedClock(T0, speed=600.0)
    site = _dr_site()
    dispatch = DispatchSettings(call_timeout_s=5.0, profile_lifetime_s=600, refresh_before_s=300)
    async with control_server(site, tmp_path / "sc.sqlite", clock, settings=SETTINGS,
                              dispatch=dispatch) as server:
        # CP2 takes W only (the defaults go out again in W, event periods and all); CP3 takes
        # one period (its default is the lower of the two until the event is over)
        quirks = {"CP2": Quirks(only_rate_unit="W"), "CP3": Quirks(max_periods=1)}
        fleet = Fleet(site, server.ws_url, clock, quirks=quirks, meter_interval_s=30,
                      reconnect_min_s=0.05, reconnect_max_s=0.3, call_timeout_s=5.0)
        await fleet.start(wait_booted_s=10)
        try:
            for sid in ("CP1", "CP2", "CP3", "CP4"):
                assert await fleet.plug_in(sid, 1, SimEV(capacity_wh=80_000, soc=0.2),
                                           "DRIVER-1")
            start = clock.now() + timedelta(seconds=1800)
            end = start + timedelta(hours=2)
            body = {"id": "evening", "start": format_ocpp_time(start),
                    "end": format_ocpp_time(end), "limit_w": EVENT_W}
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{server.http_url}/api/demand-response/events", json=body,
                                     headers={"Authorization": f"Bearer {UTILITY}"}) as resp:
                    assert resp.status == 201, await resp.text()
            # every station's fail-safe default now carries the event's window
            await wait_until(lambda: sum(_default_w(fleet, s, start + timedelta(seconds=60))
                                         for s in fleet.stations) <= EVENT_W + 1, 10,
                             "fail-safe defaults sized for the event")
            cp2_default = next(p for p in fleet.station("CP2").profiles.profiles
                               if p.purpose == "TxDefaultProfile" and p.stack_level == 0)
            assert cp2_default.schedule.rate_unit == "W"
            assert len(cp2_default.schedule.periods) >= 2
            await server.runner.cleanup()            # smartcharge disappears before the event
            await wait_until(lambda: not any(s.connected.is_set()
                                             for s in fleet.stations.values()),
                             5, "stations see the server gone")
            await fleet.plug_in("CP5", 1, SimEV(capacity_wh=80_000, soc=0.2), "DRIVER-1")
            # inside the event, after every TxProfile sent before it (600 s) has run out
            inside = start + timedelta(seconds=700)
            await wait_until(lambda: clock.now() > inside, 15, "the event, TxProfiles gone")
            now = clock.now()
            for station in fleet.stations.values():
                station.advance_to(now)
            assert sum(composite_w(fleet, s, now) for s in fleet.stations) <= EVENT_W + 1
            assert fleet.site_draw_w() <= EVENT_W + 1
            assert 0 < fleet.draw_w("CP5", 1) <= EVENT_W / 5 + 1   # charging, at its share
            # and after the event the defaults are back at the cap's share
            after = end + timedelta(seconds=60)
            assert EVENT_W < sum(_default_w(fleet, s, after) for s in fleet.stations) \
                <= CAP_W + 1
        finally:
            await fleet.stop()
