"""The guard's reading while a station is re-sent its plans (an ISO 15118 car's needs report):
what it accepted still limits its other cars, so a sample taken before a decrease counts at
most at what the profiles allow now, not at the old sample. Captured in the 24 h demo under
CPU load: the paused car of an ISO 15118 station counted at its last sample (7 360 W) from
before the pause while the station's other EVSE reported its car's needs, and the guard
logged a node 16 A over its limit that the simulated cars never drew.

Real server, a simulated OCPP 2.0.1 station over WebSockets, accelerated site time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge import events as ev
from smartcharge.appkeys import EVENTS
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from tests.site_e2e import control_server, post_dr_event, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 40_000.0
DR_LIMIT_W = 6_000.0
UTILITY = "utility-token"
# no periodic sample in the window that matters (the test takes the samples it needs), and
# one sample stays fresh for the whole test
METER_INTERVAL_S = 3_600
SETTINGS = ControllerSettings(stale_after_s=7_200.0)


def _site() -> Site:
    return Site(name="guard needs", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=(Station("CS1", "grid", (Connector(1), Connector(2))),),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=40_000, dwell_s=8 * 3600),
                utility_tokens=frozenset({UTILITY}))


def _ev(iso15118: bool) -> SimEV:
    return SimEV(capacity_wh=80_000, soc=0.2, max_power_w_by_phases={1: 7_400.0, 3: 11_000.0},
                 iso15118=iso15118, departure=T0 + timedelta(hours=6))


async def test_a_needs_report_does_not_bring_back_a_sample_from_before_a_decrease(tmp_path):
    clock = AcceleratedClock(T0, speed=120.0)
    site = _site()
    ref_a = ConnectorRef("CS1", 1)
    async with control_server(site, tmp_path / "sc.sqlite", clock, settings=SETTINGS,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        controller, dispatcher = server.controller, server.dispatcher
        fleet = Fleet(site, server.ws_url, clock, ocpp_versions={"CS1": "2.0.1"},
                      meter_interval_s=METER_INTERVAL_S, reconnect_min_s=0.05,
                      reconnect_max_s=0.3, call_timeout_s=5.0)
        station = fleet.station("CS1")
        seen = []

        def at_needs(event) -> None:
            # right after dispatch took the report (it subscribed first): the guard's reading
            if isinstance(event, ev.ChargingNeedsReported) and event.connector_id == 2:
                now = controller.clock.now()
                station.advance_to(now)
                seen.append((dispatcher.stations["CS1"].resend,
                             controller.guard.draw_w(ref_a, now),
                             controller.installed.installed_w(ref_a),
                             controller.guard.overloads(now)[0],
                             fleet.site_draw_w()))

        try:
            await fleet.start(wait_booted_s=10)
            assert await fleet.plug_in("CS1", 1, _ev(iso15118=False), "DRIVER-1")
            await wait_until(lambda: any(p.purpose == "TxProfile" and p.connector_id == 1
                                         for p in station.profiles.profiles), 15,
                             "car A under its TxProfile")
            # car A measured at its full rate under its plan
            station.sample_all(clock.now())

            def full_rate_sample():
                sample = controller.state.measurements.get(ref_a)
                return sample is not None and sample.power_w > 10_000

            await wait_until(full_rate_sample, 10, "car A's sample at its full rate")
            sampled = controller.state.measurements[ref_a]
            assert controller.guard.draw_w(ref_a, clock.now()) == (sampled.power_w, "fresh")
            # the utility's event at once: car A is lowered; no new sample of it comes
            await post_dr_event(server, UTILITY, "dr-now", clock.now(),
                                clock.now() + timedelta(hours=2), DR_LIMIT_W)
            await wait_until(lambda: (controller.installed.installed_w(ref_a) or 0) <= DR_LIMIT_W
                             and controller.installed.followed_since(ref_a) > sampled.at,
                             15, "car A's decrease accepted")
            assert controller.guard.draw_w(ref_a, clock.now())[0] <= DR_LIMIT_W
            # an ISO 15118 car on the station's other EVSE reports its needs: the station's
            # plans are sent again (K15.FR.17); what it accepted for car A still holds
            server.app[EVENTS].subscribe(at_needs)
            assert await fleet.plug_in("CS1", 2, _ev(iso15118=True), "DRIVER-1")
            await wait_until(lambda: seen, 15, "car B's needs report")
            assert controller.state.measurements[ref_a] is sampled   # no sample since
        finally:
            await fleet.stop()
    resend, (draw_w, how), allowed_w, overloads, true_w = seen[0]
    assert resend, "the needs report marks the station for re-sending"
    assert how == "fresh" and allowed_w is not None and allowed_w <= DR_LIMIT_W
    # the simulated cars are under the limit, and so is the guard's reading of them: car A
    # counts at most at what its profiles allow now (and what it falls back to without its
    # plan), not at its old 11 kW sample
    assert true_w <= DR_LIMIT_W + 1
    assert not overloads, (overloads, true_w, draw_w)
    assert draw_w <= DR_LIMIT_W + 1, (draw_w, sampled.power_w, allowed_w)
