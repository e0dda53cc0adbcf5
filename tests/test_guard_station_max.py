"""The guard counts a station's accepted maximum as a cap on what its connectors draw together.

A connector whose meter is stale counts at its maximum (missing is not zero); two such on one
station counted at 44 kW while the station's maximum profile, which it accepted, holds the two
at 22 kW together - a false overload on the circuit above it, and a re-plan that lowered the
others for nothing (docs/demo.md, guard lines, cause 3). What a station reports measured is
never reduced; only the estimates of its connectors are, to the station's maximum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.station import Quirks
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _site() -> Site:
    return Site(name="guard-max", circuits=(Circuit("grid", None, limit_w=30_000),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2)),
                                  max_power_w=22_000),),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


async def _two_stale_connectors(tmp_path, quirks=None):
    clock = AcceleratedClock(T0, speed=60.0)
    server_cm = control_server(_site(), tmp_path / "sc.sqlite", clock,
                               settings=ControllerSettings(stale_after_s=120.0),
                               dispatch=DispatchSettings(call_timeout_s=5.0))
    server = await server_cm.__aenter__()
    fleet = Fleet(_site(), server.ws_url, clock, meter_interval_s=3600, call_timeout_s=5.0,
                  quirks=quirks or {})
    await fleet.start(wait_booted_s=10)
    for cid in (1, 2):
        assert await fleet.plug_in("CP1", cid, SimEV(capacity_wh=80_000, soc=0.2), "DRIVER-1")
    controller = server.controller
    start = clock.now()
    # both meters go stale (one sample an hour, stale after 2 min)
    await wait_until(lambda: clock.now() > start + timedelta(seconds=180), 10, "3 min")
    return server_cm, server, fleet, controller, clock


async def test_two_stale_meters_under_an_accepted_station_maximum_are_no_overload(tmp_path):
    server_cm, server, fleet, controller, clock = await _two_stale_connectors(tmp_path)
    try:
        draws = {ref: controller.guard.draw_w(ref, clock.now())
                 for ref in (ConnectorRef("CP1", 1), ConnectorRef("CP1", 2))}
        assert all(how == "stale" for _, how in draws.values()), draws
        found, _ = controller.guard.overloads(clock.now())
        assert found == [], found
    finally:
        await fleet.stop()
        await server_cm.__aexit__(None, None, None)


async def test_a_station_that_refused_its_maximum_still_counts_each_connector(tmp_path):
    server_cm, server, fleet, controller, clock = await _two_stale_connectors(
        tmp_path, quirks={"CP1": Quirks(reject_station_max=True)})
    try:
        found, _ = controller.guard.overloads(clock.now())
        assert {(o.node, o.unit) for o in found if o.unit == "W"} == {
            ("grid", "W"), ("station:CP1", "W")}, found
    finally:
        await fleet.stop()
        await server_cm.__aexit__(None, None, None)
