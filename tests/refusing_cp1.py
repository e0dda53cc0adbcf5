"""A two-station site where CP1 refuses every SetChargingProfile and both cars charge - the
stage of the tests of a station that refuses our control (test_refusal_is_a_probe.py,
test_refusing_station_set_up_again.py)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.sim.ev import SimEV
from smartcharge.sim.spec import Quirks
from smartcharge.site import learned
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from tests.site_e2e import big_car, server_and_fleet, two_stations

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CP1 = ConnectorRef("CP1", 1)


@contextlib.asynccontextmanager
async def refusing_cp1_charging(tmp_path, name: str, grid_w: float, *, version: str = "1.6",
                                meter_interval_s: int = 60, fleet_kw: dict | None = None):
    """The real server (60x site time, 5 s call timeouts) on CP1 and CP2 under `grid_w`, CP1
    refusing every profile; a small car plugged in at CP1 and a big one at CP2:
    (server, fleet, clock, dispatch settings)."""
    clock = AcceleratedClock(T0, speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=5.0)
    async with server_and_fleet(
            two_stations(name, grid_w), tmp_path, clock, dispatch=dispatch,
            fleet_kw={"meter_interval_s": meter_interval_s,
                      "ocpp_versions": {"CP1": version, "CP2": version},
                      "quirks": {"CP1": Quirks(reject_all_profiles=True)},
                      **(fleet_kw or {})}) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        small = SimEV(capacity_wh=80_000, soc=0.2, max_power_w_by_phases={1: 3_700.0,
                                                                          3: 7_000.0})
        assert await fleet.plug_in("CP1", 1, small, "DRIVER-1")
        assert await fleet.plug_in("CP2", 1, big_car(), "DRIVER-1")
        yield server, fleet, clock, dispatch


def control_regained_news(seen: list) -> tuple[list, list, list]:
    """From what the site bus carried: CP1 reported controllable again, the plans that counted
    it controlled, and the raises held for it - all empty while CP1 stays planned around."""
    cleared = [e for e in seen if isinstance(e, learned.ConnectorControl)
               and e.ref == CP1 and e.uncontrollable is None]
    plans = [e.plan for e in seen if isinstance(e, learned.PlanMade)]
    assert plans, "no plan after CP1's set-up"
    controlled = [p.at for p in plans if CP1 in p.connectors or CP1 not in p.fixed_w]
    held = [e.reason for e in seen if isinstance(e, learned.ReplanWanted)
            and e.reason.startswith("held:")]
    return cleared, controlled, held
