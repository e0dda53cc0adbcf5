"""A control port per connection (issue 8): the protocol a station negotiated when it connects
picks the port class (`ocpp/ports.py`); a reconnect gets a fresh port bound to the new link; a
protocol without a port is logged as an error and the station stays uncontrolled, nothing
crashes."""

import logging
from datetime import UTC, datetime

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.ocpp.port import PortSettings, UnknownProtocol
from smartcharge.ocpp.ports import PORT_CLASSES, port_factory
from smartcharge.ocpp.registry import StationLink
from smartcharge.ocpp.v16.station_port import V16StationPort
from smartcharge.ocpp.v201.station_port import V201StationPort
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.sim.fleet import Fleet
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "sim-password-0123"


def _site():
    return Site(name="ports",
                circuits=(Circuit("grid", None, limit_w=60_000.0),),
                stations=(Station("CP1", "grid", (Connector(1),), password=PASSWORD),),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=40_000, dwell_s=8 * 3600))


def _fleet(site, server, clock) -> Fleet:
    return Fleet(site, server.ws_url, clock, meter_interval_s=3600, reconnect_min_s=0.05,
                 reconnect_max_s=0.3, call_timeout_s=5.0)


def _profiles_sent(fleet) -> int:
    return len(fleet.station("CP1").profiles.profiles)   # installed by SetChargingProfile


async def _noop_close(reason: str) -> None:
    return None


def test_the_negotiated_protocol_picks_the_port_class():
    assert PORT_CLASSES["ocpp1.6"] is V16StationPort
    make = port_factory(AcceleratedClock(T0, speed=1.0))
    link = StationLink("CP9", "ocpp1.6", adapter=None, default_timeout_s=1.0,
                       close_socket=_noop_close)
    port = make(link, lambda *row: None, voltage_v=230.0, unit="A", settings=PortSettings())
    assert isinstance(port, V16StationPort) and port.link is link
    v201 = StationLink("CP9", "ocpp2.0.1", adapter=None, default_timeout_s=1.0,
                       close_socket=_noop_close)
    port = make(v201, lambda *row: None, voltage_v=230.0, unit="A", settings=PortSettings())
    assert isinstance(port, V201StationPort) and port.link is v201
    future = StationLink("CP9", "ocpp2.1", adapter=None, default_timeout_s=1.0,
                         close_socket=_noop_close)
    with pytest.raises(UnknownProtocol,
                       match=r"CP9.*'ocpp2\.1'.*known: ocpp1\.6, ocpp2\.0\.1"):
        make(future, lambda *row: None, voltage_v=230.0, unit="A", settings=PortSettings())


async def test_a_reconnected_station_gets_a_fresh_port_bound_to_its_new_link(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        registry, control = server.dispatcher.registry, server.dispatcher.stations["CP1"]
        fleet = _fleet(site, server, clock)
        try:
            await fleet.start(wait_booted_s=10)
            await wait_until(lambda: control.caps is not None, 10, "CP1 set up")
            first, first_link = control.port, registry.get("CP1")
            assert first.link is first_link
            station = fleet.station("CP1")
            await station.go_offline()
            await wait_until(lambda: registry.get("CP1") is None, 10, "CP1 gone")
            station.go_online()
            await wait_until(lambda: registry.get("CP1") is not None
                             and control.port is not first and control.caps is not None,
                             10, "CP1 back and set up again")
            assert control.port.link is registry.get("CP1") is not first_link
            assert isinstance(control.port, V16StationPort)
        finally:
            await fleet.stop()


async def test_a_protocol_without_a_port_is_logged_and_left_alone(tmp_path, caplog):
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        dispatcher = server.dispatcher
        control = dispatcher.stations["CP1"]
        # a build whose table lacks 1.6: the station's protocol is unknown to it
        dispatcher.ports = port_factory(clock, {"ocpp2.0.1": V16StationPort})
        fleet = _fleet(site, server, clock)
        try:
            with caplog.at_level(logging.ERROR, logger="smartcharge.site.dispatch"):
                await fleet.start(wait_booted_s=10)
                await wait_until(lambda: any("no control port for protocol 'ocpp1.6'"
                                             in r.getMessage() for r in caplog.records),
                                 10, "the unknown protocol logged")
            assert control.port is None and control.caps is None
            assert _profiles_sent(fleet) == 0
            # dispatch is alive: with the port back, the next connection is controlled
            dispatcher.ports = port_factory(clock)
            station = fleet.station("CP1")
            await station.go_offline()
            await wait_until(lambda: dispatcher.registry.get("CP1") is None, 10, "CP1 gone")
            station.go_online()
            await wait_until(lambda: control.caps is not None, 10, "CP1 controlled")
            await wait_until(lambda: _profiles_sent(fleet) > 0, 10, "its fail-safe sent")
        finally:
            await fleet.stop()
