"""The 2.0.1 control port (issue 8) against a strict 2.0.1 station over a real WebSocket, through
the real server: the setup the site does at boot (capabilities, station maximum, fail-safe per
EVSE, composite check), idle shares, plans with the rejection alternatives, K01 kept throughout
(the station refuses what breaks it; `tests/ocpp201_station.py`)."""

from datetime import UTC, datetime

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.ocpp.port import Answer
from smartcharge.ocpp.v201 import profiles as P
from smartcharge.ocpp.v201.station_port import V201StationPort
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from tests.ocpp201_station import StationSetup, station201
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "sim-password-0123"


def _site(limit_w: float = 22_000.0):
    return Site(name="v201",
                circuits=(Circuit("grid", None, limit_w=limit_w),),
                stations=(Station("CP201", "grid", (Connector(1), Connector(2)),
                                  password=PASSWORD),),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=40_000, dwell_s=8 * 3600))


def _installed(station, purpose, evse_id=None):
    return [p for evse, p in station.table.profiles.values()
            if p["chargingProfilePurpose"] == purpose and (evse_id is None or evse == evse_id)]


@pytest.fixture
def clock():
    return AcceleratedClock(T0, speed=1.0)


async def _set_up(server, station, evses=(1, 2)):
    dispatcher = server.dispatcher
    await wait_until(lambda: dispatcher.stations["CP201"].caps is not None
                     and len(dispatcher.stations["CP201"].default_layer) == len(evses),
                     10, "the 2.0.1 station set up")
    return dispatcher.stations["CP201"]


async def test_setup_probes_capabilities_and_installs_k01_clean_failsafes(tmp_path, clock):
    """TC_K_01-like: at boot the site reads SmartChargingCtrlr, installs the station maximum on
    EVSE 0 and a fail-safe TxDefaultProfile per EVSE (no end), each accepted by a station
    that refuses anything breaking K01, and checks with GetCompositeSchedule what it applies."""
    setup = StationSetup(rate_units="W", periods_per_schedule=4)
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup,
                              clock=clock) as station:
            control = await _set_up(server, station)
            port = control.port
            assert isinstance(port, V201StationPort)
            assert port.caps.rate_units == ("W",) and port.caps.max_periods == 4
            assert port.unit == "W"          # the site file said A; the station takes W only
            assert station.table.refusals == []
            station_max = _installed(station, P.STATION_MAX_PROFILE)
            assert len(station_max) == 1 and station_max[0]["stackLevel"] == 0
            for evse in (1, 2):
                failsafe = [p for p in _installed(station, P.TX_DEFAULT_PROFILE, evse)
                            if p["stackLevel"] == P.FAILSAFE_LEVEL]
                assert len(failsafe) == 1 and "validTo" not in failsafe[0]
                assert "duration" not in failsafe[0]["chargingSchedule"][0]
                # the composite the station reported is what we installed (or less)
                verified = port.verified[evse]
                assert verified and verified[0][0] == 0
                assert verified[0][1] <= failsafe[0]["chargingSchedule"][0][
                    "chargingSchedulePeriod"][0]["limit"]
            # the two EVSE fail-safes share the 22 kW grid limit
            total = sum(p["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"]
                        for p in _installed(station, P.TX_DEFAULT_PROFILE)
                        if p["stackLevel"] == 0)
            assert total <= 22_000.0


async def test_a_station_taking_few_items_per_get_variables_is_asked_in_parts(tmp_path, clock):
    """A strict station with ItemsPerMessageGetVariables under our 8 variables refuses the whole
    request (OccurrenceConstraintViolation): its real capabilities are still learnt, not the
    conservative defaults."""
    setup = StationSetup(rate_units="W", periods_per_schedule=4, items_per_get_variables=4)
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup,
                              clock=clock) as station:
            port = (await _set_up(server, station)).port
            assert port.caps.rate_units == ("W",) and port.caps.max_periods == 4
            assert station.table.refusals == []


async def test_idle_shares_and_plans_replace_by_id_never_stack(tmp_path, clock):
    """Idle shares and plans sent again and again: every one replaces its predecessor by id,
    the station never sees two profiles of one purpose and level overlap on an EVSE."""
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as station:
            control = await _set_up(server, station)
            dispatcher = server.dispatcher
            ref = ConnectorRef("CP201", 1)
            async with control.lock:
                for value in (5_000.0, 7_000.0, 3_000.0):
                    schedule = dispatcher.power_schedule(ref, clock.now(), [0], [value],
                                                         phases=3, phases_known=False,
                                                         duration_s=900)
                    answer, installed = await control.port.set_idle_schedule(1, schedule)
                    assert answer is Answer.ACCEPTED and installed.default
                    # no transaction id known: the plan goes out as the EVSE's default
                    result = await control.port.set_connector_schedule(1, 42, schedule)
                    assert result.answer is Answer.ACCEPTED and result.installed.default
                assert await control.port.clear(1) is Answer.ACCEPTED   # nothing: "Unknown"
            assert station.table.refusals == []
            upper = [p for p in _installed(station, P.TX_DEFAULT_PROFILE, 1)
                     if p["stackLevel"] == P.UPPER_LEVEL]
            assert len(upper) == 1
            assert upper[0]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == \
                pytest.approx(4.3, abs=0.1)   # 3 kW on 3 x 230 V, rounded down


async def test_after_a_connection_profiles_that_are_not_ours_are_cleared(tmp_path, clock):
    """K09 after a (re)connection: GetChargingProfiles, the station reports what it holds
    (ReportChargingProfiles), and a CSMS profile that is not ours - here a TxDefaultProfile at
    stack level 2 that would overrule our fail-safe - is cleared; ours stay."""
    foreign = {"id": 77, "stackLevel": 2, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Absolute", "chargingSchedule": [{
                   "id": 1, "startSchedule": "2026-01-01T00:00:00Z", "chargingRateUnit": "A",
                   "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}]}]}
    setup = StationSetup(installed=[(1, foreign)])
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup,
                              clock=clock) as station:
            control = await _set_up(server, station)
            await wait_until(lambda: 77 not in station.table.profiles, 10,
                             "the foreign profile cleared")
            assert control.port.foreign == {77}
            assert [p["chargingProfileId"] for p in station.of("ClearChargingProfile")] == [77]
            assert all(P.is_ours(pid) for pid in station.table.profiles)
            assert len([p for p in _installed(station, P.TX_DEFAULT_PROFILE)
                        if p["stackLevel"] == P.FAILSAFE_LEVEL]) == 2


async def test_refusals_try_the_other_unit_then_the_minimum_instead_of_0(tmp_path, clock):
    """A station that says A and W but takes only W, and refuses a limit of 0: the plan that
    pauses the car goes out in W, at the minimum instead of 0 - remembered for the station."""
    setup = StationSetup(rate_units="W", advertised_units="A,W", refuse_zero_limit=True)
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup,
                              clock=clock) as station:
            control = await _set_up(server, station)
            tx = await station.start_transaction(1)
            ref = ConnectorRef("CP201", 1)
            dispatcher, controller = server.dispatcher, server.controller
            await wait_until(lambda: ref in controller.state.sessions, 10, "the session")
            async with control.lock:      # no dispatch round in between
                schedule = dispatcher.power_schedule(
                    ref, clock.now(), [0, 600], [0.0, 11_000.0], phases=3, phases_known=True,
                    duration_s=1200, min_power_w=dispatcher.topology.min_power_w(ref),
                    pauses=True)
                ours = controller.state.sessions[ref].transaction_id
                result = await control.port.set_connector_schedule(1, ours, schedule)
            assert result.answer is Answer.ACCEPTED and result.floored
            assert result.installed.unit == "W" and not result.installed.default
            assert result.installed.limits == [4140.0, 11000.0]   # 6 A x 3 x 230 V, not 0
            assert control.port.unit == "W" and not control.port.zero_ok
            # A was tried first (at setup: the station maximum) and refused: W remembered
            assert any("RateUnit" in r for r in station.table.refusals)
            assert [p["transactionId"] for p in _installed(station, P.TX_PROFILE)] == [tx]


async def test_a_new_station_is_not_asked_anything_before_its_boot(tmp_path, clock):
    """A station never seen before connects: until its BootNotification is accepted it is not
    registered, and a strict one refuses requests (SecurityError). Its set-up waits for the
    boot (it started at the connection, and the refused GetVariables left the defaults for
    good); a reconnect of a registered station still sets up at once."""
    setup = StationSetup(rate_units="W", periods_per_schedule=4, refuse_before_boot=True)
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup,
                              clock=clock) as station:
            port = (await _set_up(server, station)).port
            assert station.refused_before_boot == []
            assert port.caps.rate_units == ("W",) and port.caps.max_periods == 4


async def test_an_empty_station_transaction_id_plans_as_the_evse_default(tmp_path, clock):
    """transactionId "" is valid for the schema (no minLength) but no TxProfile can name it
    (K01.FR.03): the plan goes out as the EVSE's default (it raised in dispatch, every round)."""
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as station:
            control = await _set_up(server, station)
            await station.start_transaction(1, transaction_id="")
            ref = ConnectorRef("CP201", 1)
            dispatcher, controller = server.dispatcher, server.controller
            await wait_until(lambda: ref in controller.state.sessions, 10, "the session")
            async with control.lock:
                schedule = dispatcher.power_schedule(
                    ref, clock.now(), [0, 600], [4_140.0, 11_000.0], phases=3,
                    phases_known=True, duration_s=1200,
                    min_power_w=dispatcher.topology.min_power_w(ref), pauses=True)
                ours = controller.state.sessions[ref].transaction_id
                result = await control.port.set_connector_schedule(1, ours, schedule)
            assert result.answer is Answer.ACCEPTED and result.installed.default
            assert station.table.refusals == [] and _installed(station, P.TX_PROFILE) == []


async def test_a_reconnected_station_keeps_its_profiles_and_takes_every_re_send(tmp_path,
                                                                                clock):
    """A station keeps its profiles through a reconnection (K01); the fresh port re-sends every
    layer, and each replaces its predecessor by id: nothing refused (FR.06), nothing cleared
    as foreign, no profile twice."""
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as station:
            first = (await _set_up(server, station)).port
            # the station maximum, two fail-safes and the two idle shares of the first round
            await wait_until(lambda: len(station.table.profiles) == 5, 10, "the idle shares")
            kept = list(station.table.profiles.values())
        registry = server.dispatcher.registry
        await wait_until(lambda: registry.get("CP201") is None, 10, "CP201 gone")
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock,
                              setup=StationSetup(installed=kept)) as again:
            control = server.dispatcher.stations["CP201"]
            await wait_until(lambda: control.port is not first and control.caps is not None
                             and len(again.of("SetChargingProfile")) >= 3, 10,
                             "set up again on the new connection")
            await wait_until(lambda: len(again.of("GetCompositeSchedule")) >= 2, 10,
                             "both fail-safes re-sent and checked")
            kept_ids = {p["id"] for _, p in kept}
            await wait_until(lambda: kept_ids <= {r["chargingProfile"]["id"] for r in
                                                  again.of("SetChargingProfile")}, 10,
                             "every layer re-sent")
            assert again.table.refusals == [] and control.port.foreign == set()
            assert not again.of("ClearChargingProfile")
            assert sorted(again.table.profiles) == sorted(p["id"] for _, p in kept)
