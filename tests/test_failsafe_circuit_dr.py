"""The fail-safe defaults obey a DR event on a circuit (an OpenADR program on a feeder): with
smartcharge gone, the stations' TxDefaultProfiles alone keep the feeder under the event's limit
for the whole event, for a 1.6 station (the simulator) and a 2.0.1 station (the strict K01
station) alike. The event starts after every plan and idle share sent now has run out, so only
the fail-safe defaults are in force then (the forecast of tests/test_failsafe_forecast.py)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.sim.fleet import Fleet
from tests.installed_limits import connector_limit_w, forecast_excesses
from tests.ocpp201_station import station201
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "sim-password-0123"
FEEDER_DR_W = 8_000.0


def _site() -> Site:
    return Site(name="feeder-dr",
                circuits=(Circuit("grid", None, limit_w=60_000), Circuit("feeder", "grid")),
                stations=(Station("CP16", "feeder", (Connector(1),), password=PASSWORD),
                          Station("CP201", "feeder", (Connector(1),), password=PASSWORD),
                          Station("CP5", "grid", (Connector(1),), password=PASSWORD)),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=30_000, dwell_s=6 * 3600))


async def test_failsafe_defaults_keep_a_circuit_under_its_dr_event(tmp_path):
    clock = AcceleratedClock(T0, speed=10.0)
    site = _site()
    lifetime_s = 1800.0
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0,
                                                        profile_lifetime_s=lifetime_s)
                              ) as server:
        ones16 = replace(site, stations=(site.stations[0], site.stations[2]))
        fleet = Fleet(ones16, server.ws_url, clock, meter_interval_s=3600, call_timeout_s=5.0)
        try:
            await fleet.start(wait_booted_s=10)
            async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as cp201:
                controller, dispatcher = server.controller, server.dispatcher
                await wait_until(lambda: dispatcher.stations["CP201"].caps is not None
                                 and dispatcher.stations["CP201"].default_layer, 10,
                                 "the 2.0.1 station set up")
                port201 = dispatcher.stations["CP201"].port
                await wait_until(lambda: all(c.default_layer for c in
                                             dispatcher.stations.values()), 10, "all set up")
                # the station maximum does not follow limits: set up once per connection, not
                # sent again with every station's new defaults when a DR event comes (a DR
                # event at 1 000 connectors sent 500 of them: issue 10)
                station_max_sent = []
                for control in dispatcher.stations.values():
                    def spy(*args, _send=control.port.install_station_max,
                            _sid=control.station_id):
                        station_max_sent.append(_sid)
                        return _send(*args)
                    control.port.install_station_max = spy

                def feeder_w(at: datetime) -> float:
                    w16 = connector_limit_w(fleet.station("CP16"), 1, at)[0]
                    rate = cp201.table.limit_at(1, at, port201.unit)
                    w201 = 32 * 3 * 230.0 if rate is None else \
                        rate * (3 * 230.0 if port201.unit == "A" else 1.0)
                    return w16 + w201

                # after every profile sent now has ended: only the fail-safe defaults hold
                start = clock.now() + timedelta(seconds=lifetime_s + 600)
                end = start + timedelta(minutes=30)
                inside = [start + timedelta(minutes=m) for m in (0, 10, 29)]
                assert max(feeder_w(m) for m in inside) > FEEDER_DR_W
                controller.limits.add_event(DemandResponseEvent(
                    "dr-feeder", start, end, limit_w=FEEDER_DR_W, circuit_id="feeder"))
                controller.request_replan("dr on the feeder")
                await wait_until(lambda: max(feeder_w(m) for m in inside) <= FEEDER_DR_W + 1.0,
                                 15, "the fail-safe defaults under the feeder's DR limit")
                # back to usable shares after the event (a window, not a clamp for ever)
                assert feeder_w(end + timedelta(minutes=5)) > FEEDER_DR_W
                fleet_only = forecast_excesses(ones16, fleet, controller.limits, clock.now(),
                                               hours=2.0, step_s=60.0)
                assert not fleet_only, fleet_only[:6]
                assert cp201.table.refusals == []
                assert station_max_sent == []
        finally:
            await fleet.stop()
