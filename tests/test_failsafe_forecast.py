"""The fail-safe survives our death: at several moments of a run (cars arriving at different
times, the closed loop moving plans, a DR event announced), forecast from the profiles installed
in the simulated stations what each connector may draw at many instants of the next hours - as
if smartcharge vanished right then: TxProfiles run out, stations fall back on their
TxDefaultProfiles - and check every node's sum against its limit (W, and A per phase)."""

from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, RateUnit, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from tests.installed_limits import forecast_excesses
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SPEED = 450.0          # 45 site minutes in 6 s real


def _site() -> Site:
    feeder = tuple(Station(f"CP{i}", "feeder", (Connector(1),)) for i in (1, 2, 3))
    w_unit = (Station("CP4", "feeder", (Connector(1),), rate_unit=RateUnit.WATTS),)
    grid = tuple(Station(f"CP{i}", "grid", (Connector(1),)) for i in (5, 6))
    return Site(name="forecast",
                circuits=(Circuit("grid", None, limit_w=40_000),
                          Circuit("feeder", "grid", limit_a=40)),
                stations=feeder + w_unit + grid, id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=30_000, dwell_s=6 * 3600))


def _ev(phases=3, soc=0.2) -> SimEV:
    return SimEV(capacity_wh=60_000, soc=soc, onboard_phases=phases,
                 max_power_w_by_phases={1: 7_400.0, 3: 11_000.0})


async def test_installed_profiles_keep_every_node_under_its_limit_for_hours(tmp_path):
    clock = AcceleratedClock(T0, speed=SPEED)
    site = _site()
    # a measurement is stale after one real second, as at the 300x this test ran at before;
    # and a car's settle time is one real second too: the default 5 s is 11 ms real here, and
    # under CPU load (four workers on two cores, load 9-11) a decrease reached its station
    # later than that after its start - the guard read the samples from before as the car
    # drawing over its profile (6.6 kW over 0 W), planned CP1, CP2, CP5 and CP6 as fixed loads
    # and left them their old profiles: 53 kW forecast on the 40 kW grid. No station here
    # disobeys; what is looked at is what the profiles installed allow
    settings = ControllerSettings(stale_after_s=SPEED)
    async with control_server(site, tmp_path / "sc.sqlite", clock, settings=settings,
                              dispatch=DispatchSettings(call_timeout_s=5.0,
                                                        settle_s=SPEED)) as server:
        controller = server.controller
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=60, reconnect_min_s=0.05,
                      reconnect_max_s=0.3, call_timeout_s=5.0)
        found: list[str] = []

        async def forecast_at(minute: float) -> None:
            await wait_until(lambda: clock.now() >= T0 + timedelta(minutes=minute), 30,
                             f"minute {minute}")
            await controller.plan_done.wait()   # a plan made with the limits of now, dispatched
            await wait_until(lambda: controller.plan.extra.get("limits_version")
                             == controller.limits.version and server.dispatcher.idle, 10,
                             "a plan for the limits of now dispatched")
            found.extend(forecast_excesses(site, fleet, controller.limits, clock.now(),
                                           hours=3.0, step_s=30.0))

        try:
            await fleet.start(wait_booted_s=10)
            for sid, phases in (("CP1", 3), ("CP2", 1), ("CP5", 3)):
                assert await fleet.plug_in(sid, 1, _ev(phases), "DRIVER-1")
            await forecast_at(4)
            for sid in ("CP3", "CP6"):
                assert await fleet.plug_in(sid, 1, _ev(soc=0.7), "DRIVER-1")
            await forecast_at(9)
            start = clock.now() + timedelta(minutes=10)
            controller.limits.add_event(DemandResponseEvent(
                "dr-forecast", start, start + timedelta(minutes=15), limit_w=20_000))
            controller.request_replan("dr")
            await forecast_at(12)
            assert await fleet.plug_in("CP4", 1, _ev(), "DRIVER-1")
            await forecast_at(16)
            await forecast_at(24)
            await fleet.unplug("CP5", 1)
            # a car arriving at CP5 gets the share of a plan that knows it left; until then it
            # runs CP5's fail-safe default (a known gap, docs/demo.md). Under load the test runs
            # behind site time and forecast at once, on the plan made before the stop was heard
            # (44.6 kW on the 40 kW grid, a scratch run with 6 copies at once)
            await wait_until(lambda: ConnectorRef("CP5", 1) in controller.plan.idle_w, 10,
                             "a plan with CP5 idle")
            await forecast_at(31)
            await forecast_at(45)
            assert not found, f"{len(found)} excesses, e.g. {found[:6]}"
        finally:
            await fleet.stop()
