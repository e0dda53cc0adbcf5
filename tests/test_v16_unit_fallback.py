"""A 1.6 station that lists both rate units but takes only one, and takes no
ChargePointMaxProfile (many do not): a request refused in one unit goes out again in the other.
That second request is the same schedule in the other unit - the one dispatch built
(`site/sending.power_schedule`) - not the refused request converted: it begins edge_margin_s
early (a station whose clock is behind would otherwise find it in its future and run without a
limit until then) and its W carries the W factor (under a per-phase current limit a
single-phase car draws a W limit on one phase), its A none.

(The station's maximum, refused in both units, used to switch the port to the other unit: for
the station that takes only A, its fail-safe default went out in W, refused, then converted.)"""

import json

import pytest
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock, parse_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim import configuration
from smartcharge.sim.spec import Quirks
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.store_tx import from_db_time
from tests.installed_limits import connector_limit_w
from tests.site_e2e import server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CIRCUIT_A = 16.0          # per phase, above the station: its defaults' W get the W factor
BEHIND_S = -3.0           # the station's clock, against the site's (edge_margin_s: 5 s)


def _site() -> Site:
    return Site(name="unit-fallback",
                circuits=(Circuit("grid", None, limit_a=CIRCUIT_A),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))


async def _defaults(server) -> list[dict]:
    """The audited fail-safe defaults (TxDefaultProfile, stack level 0) of CP1, in order."""
    dispatcher = server.dispatcher
    await dispatcher.flush_audit()
    rows = await dispatcher.store.run(lambda tx: tx.profiles_sent("CP1"))
    out = []
    for row in rows:
        profile = json.loads(row["profile_json"])["csChargingProfiles"]
        if profile["chargingProfilePurpose"] == "TxDefaultProfile" and profile["stackLevel"] == 0:
            out.append(dict(row, profile=profile))
    return out


@pytest.mark.parametrize("unit", ["A", "W"])
async def test_a_default_refused_in_one_unit_goes_out_in_the_other_begun_early(tmp_path, unit):
    clock = AcceleratedClock(T0, speed=1.0)
    site = _site()
    async with server_and_fleet(site, tmp_path, clock,
                                settings=ControllerSettings(stale_after_s=3600.0),
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"quirks": {"CP1": Quirks(only_rate_unit=unit,
                                                                   reject_station_max=True)},
                                          "clock_offsets_s": {"CP1": BEHIND_S}}
                                ) as (server, fleet):
        station = fleet.station("CP1")
        # it lists both units (real stations' configurations say more than they take)
        station.config["ChargingScheduleAllowedChargingRateUnit"] = configuration.Key(
            "Current,Power", True, "csl")
        await fleet.start(wait_booted_s=10)
        dispatcher = server.dispatcher
        await wait_until(lambda: "CP1" in dispatcher.stations
                         and dispatcher.stations["CP1"].default_layer, 10,
                         "CP1's fail-safe default installed")
        rows = await _defaults(server)
        taken = rows[-1]
        assert taken["answer"] == "Accepted"
        assert taken["profile"]["chargingSchedule"]["chargingRateUnit"] == unit
        assert dispatcher.stations["CP1"].unit == unit
        # any refused before it began as early: edge_margin_s before it was made
        assert {r["profile"]["chargingSchedule"]["startSchedule"] for r in rows} \
            == {taken["profile"]["chargingSchedule"]["startSchedule"]}
        sent_at = from_db_time(taken["sent_at"])
        start = parse_ocpp_time(taken["profile"]["chargingSchedule"]["startSchedule"])
        assert start <= sent_at + timedelta(seconds=BEHIND_S)
        # so on the station's own clock it holds from the moment it was taken, and a
        # single-phase car under it draws no more than the circuit's A on its one phase
        limit_w, _ = connector_limit_w(station, 1, sent_at + timedelta(seconds=BEHIND_S),
                                       assume_phases=1)
        assert abs(limit_w - CIRCUIT_A * 230.0) <= 1.0
