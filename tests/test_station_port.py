"""The control port (issue 8 redesign): the site talks to stations only through
`smartcharge/ocpp/port.py`; the 1.6 implementation against simulated stations over real
WebSockets; what dispatch learns reaches the controller as events; one W <-> A conversion."""

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smartcharge import units
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.ocpp.port import Answer
from smartcharge.site import learned
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.station import Quirks
from tests.site_e2e import control_server, wait_until

SITE_DIR = Path(__file__).resolve().parent.parent / "smartcharge" / "site"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "sim-password-0123"


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
            out += [f"{node.module}.{alias.name}" for alias in node.names]
    return out


@pytest.mark.parametrize("path", sorted(SITE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_site_imports_no_protocol_package(path):
    protocol = [m for m in _imported_modules(path)
                if m == "ocpp" or m.startswith(("ocpp.", "smartcharge.ocpp.v16",
                                                "smartcharge.ocpp.v201"))]
    assert protocol == [], f"{path.name} imports a protocol package: {protocol}"


def test_one_conversion_and_one_station_maximum():
    station = Station("CP1", "grid", (Connector(1), Connector(2, phases=1)),
                      max_current_a=40.0)
    assert units.w_to_a(22_080.0, 3, 230.0) == pytest.approx(32.0)
    assert units.a_to_w(16.0, 1, 230.0) == pytest.approx(3_680.0)
    assert units.rate_to_w(11_000.0, "W", 3, 230.0) == 11_000.0
    # 3-phase 32 A + 1-phase 32 A, under the station's 40 A on 3 phases
    assert units.connector_max_w(station, station.connectors[1]) == pytest.approx(7_360.0)
    assert units.station_max_w(station) == pytest.approx(min(22_080.0 + 7_360.0, 27_600.0))


def _site():
    return Site(name="port",
                circuits=(Circuit("grid", None, limit_w=60_000.0),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),), password=PASSWORD)
                               for i in (1, 2)),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=40_000, dwell_s=8 * 3600))


def test_what_dispatch_learns_reaches_the_controller_as_events():
    controller = SiteController(_site(), AcceleratedClock(T0, speed=1.0), ControllerSettings())
    ref = ConnectorRef("CP1", 1)
    controller.site_bus.publish(learned.ConnectorControl(ref, "every profile rejected"))
    controller.site_bus.publish(learned.ConnectorFloor(ref, 4_140.0))
    controller.site_bus.publish(learned.ProfileSent())
    assert controller.uncontrollable[ref] == "every profile rejected"
    assert controller.floor_w[ref] == 4_140.0
    assert controller.stats.profiles_sent == 1
    controller.site_bus.publish(learned.ConnectorControl(ref, None))
    assert ref not in controller.uncontrollable
    controller.site_bus.publish(learned.PlansAsDefault(ref, True))
    assert ref in controller.plans_on_default     # planned for any car (plan_inputs)
    controller.site_bus.publish(learned.PlansAsDefault(ref, False))
    assert ref not in controller.plans_on_default


async def test_v16_port_tries_the_minimum_for_a_pause_and_reports_refusals(tmp_path):
    """CP1 refuses limit 0: the port sends the minimum instead and says so; CP2 refuses
    everything: REJECTED with the station's word, after every alternative."""
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    quirks = {"CP1": Quirks(reject_zero_limit=True), "CP2": Quirks(reject_all_profiles=True)}
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        fleet = Fleet(site, server.ws_url, clock, quirks=quirks, meter_interval_s=30,
                      call_timeout_s=5.0)
        try:
            await fleet.start(wait_booted_s=10)
            for sid in ("CP1", "CP2"):
                assert await fleet.plug_in(sid, 1, SimEV(capacity_wh=80_000, soc=0.2),
                                           "DRIVER-1")
            dispatcher, controller = server.dispatcher, server.controller
            refs = [ConnectorRef(s, 1) for s in ("CP1", "CP2")]
            await wait_until(lambda: all(r in controller.state.sessions for r in refs)
                             and all(dispatcher.stations[r.station_id].caps for r in refs),
                             10, "both sessions running, both stations set up")
            # probed with GetConfiguration (the simulator has one connector)
            assert dispatcher.stations["CP1"].caps.connectors == 1
            for ref in refs:
                control = dispatcher.stations[ref.station_id]
                async with control.lock:   # no dispatch round in between
                    now = clock.now()
                    schedule = dispatcher.power_schedule(
                        ref, now, [0, 600], [0.0, 11_000.0], phases=3, phases_known=True,
                        duration_s=1200, min_power_w=dispatcher.topology.min_power_w(ref),
                        pauses=True)
                    tx = controller.state.sessions[ref].transaction_id
                    result = await control.port.set_connector_schedule(1, tx, schedule)
                    installed = [p for p in fleet.station(ref.station_id).profiles.profiles
                                 if p.connector_id == 1 and p.stack_level > 0]
                if ref.station_id == "CP1":
                    assert result.answer is Answer.ACCEPTED
                    assert result.installed.unit == "A"
                    assert result.installed.limits == [6.0, 15.9]   # 6 A, not 0; 11 kW / 690 V
                    assert control.port.zero_ok is False
                    assert any(p.schedule.periods[0].limit == 6.0 for p in installed)
                else:
                    assert result.answer is Answer.REJECTED and result.installed is None
                    assert result.detail == "Rejected"
                    assert installed == []
        finally:
            await fleet.stop()
