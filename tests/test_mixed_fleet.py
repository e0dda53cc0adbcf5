"""Issue 8's "done when": a 2.0.1 station and a 1.6 station under one breaker share it, the sum of
what each is told stays under the breaker's limit, and under a DR event's limit inside its window
- the 1.6 station a simulated one, the 2.0.1 station the strict K01 station, both over real
WebSockets through one server and one control port per protocol."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from tests.installed_limits import connector_limit_w
from tests.ocpp201_station import station201
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "sim-password-0123"
BREAKER_W = 30_000.0
DR_W = 9_000.0
REF16, REF201 = ConnectorRef("CP16", 1), ConnectorRef("CP201", 1)


def _site() -> Site:
    return Site(name="mixed", circuits=(Circuit("breaker", None, limit_w=BREAKER_W),),
                stations=(Station("CP16", "breaker", (Connector(1),), password=PASSWORD),
                          Station("CP201", "breaker", (Connector(1),), password=PASSWORD)),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


async def test_a_16_and_a_201_station_share_one_breaker_through_a_dr_event(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        # the 1.6 station only: the 2.0.1 one is the strict station below
        fleet = Fleet(replace(site, stations=site.stations[:1]), server.ws_url, clock,
                      meter_interval_s=3600, call_timeout_s=5.0)
        try:
            await fleet.start(wait_booted_s=10)
            async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as cp201:
                controller, dispatcher = server.controller, server.dispatcher
                await wait_until(lambda: dispatcher.stations["CP201"].caps is not None, 10,
                                 "the 2.0.1 station set up")
                assert await fleet.plug_in("CP16", 1, SimEV(capacity_wh=100_000, soc=0.1),
                                           "DRIVER-1")
                tx = await cp201.start_transaction(1)
                port201 = dispatcher.stations["CP201"].port

                def told_w(at: datetime) -> tuple[float, float]:
                    w16 = connector_limit_w(fleet.station("CP16"), 1, at)[0]
                    rate = cp201.table.limit_at(1, at, port201.unit)
                    w201 = float("inf") if rate is None else \
                        rate * (3 * 230.0 if port201.unit == "A" else 1.0)
                    return w16, w201

                def both_on_plans() -> bool:
                    tx16 = any(p.purpose == "TxProfile" for p in
                               fleet.station("CP16").profiles.profiles)
                    tx201 = any(p.get("transactionId") == tx for _, p in
                                cp201.table.profiles.values())
                    return tx16 and tx201
                await wait_until(lambda: both_on_plans() and REF16 in controller.state.sessions
                                 and REF201 in controller.state.sessions, 10,
                                 "both transactions on their plans")
                w16, w201 = told_w(clock.now())
                assert w16 > 0 and w201 > 0 and w16 + w201 <= BREAKER_W + 1.0
                # a DR event announced: 9 kW from 10 to 30 minutes from now
                start = clock.now() + timedelta(minutes=10)
                controller.limits.add_event(DemandResponseEvent(
                    "dr-mixed", start, start + timedelta(minutes=20), limit_w=DR_W))
                controller.request_replan("dr")
                inside = start + timedelta(minutes=1)
                assert sum(told_w(inside)) > DR_W   # what they were told before the event
                await wait_until(lambda: sum(told_w(inside)) <= DR_W + 1.0, 10,
                                 "both stations told to stay under the DR limit")
                assert sum(told_w(clock.now())) <= BREAKER_W + 1.0
                assert cp201.table.refusals == []
        finally:
            await fleet.stop()
