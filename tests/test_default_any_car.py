"""A plan that goes out as a connector's default (TxDefaultProfile) limits whatever car is
plugged in, not only the car the picture holds: in W it must be safe for a single-phase car,
which draws all its watts on one phase.

The demo's depot-b excess: a station's TransactionEvents lagged hours behind, so the picture
still held the old three-phase car's transaction while a single-phase car charged. The plan's
TxProfile for the old transaction was refused (TxNotFound) and the plan went out as the
connector's default, in W sized for three phases: on one phase, three times the planned current.
"""

from contextlib import asynccontextmanager

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, RateUnit, SessionDefaults, Site, Station
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.station import Quirks
from tests.installed_limits import connector_limit_w
from tests.site_e2e import hold_messages, server_and_fleet, wait_until
from tests.test_dispatch_trust import SETTINGS, T0

PASSWORD = "sim-password-0123"
PHASE_A = 24.0            # the feeder's per-phase limit
REF = ConnectorRef("CP1", 1)


def _site() -> Site:
    return Site(name="any-car",
                circuits=(Circuit("grid", None), Circuit("feeder", "grid", limit_a=PHASE_A)),
                stations=(Station("CP1", "feeder", (Connector(1, max_current_a=32),),
                                  password=PASSWORD, rate_unit=RateUnit.WATTS),),
                id_tags=frozenset({"DRIVER-1", "DRIVER-2"}),
                session_defaults=SessionDefaults(energy_wh=200_000, dwell_s=8 * 3600))


def _car(onboard_phases: int) -> SimEV:
    return SimEV(capacity_wh=80_000, soc=0.2, onboard_phases=onboard_phases,
                 max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})


@pytest.mark.parametrize("version", ["2.0.1", "1.6"])
async def test_a_plan_sent_as_the_default_is_safe_for_a_single_phase_car(tmp_path, version):
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with server_and_fleet(site, tmp_path, clock, settings=SETTINGS,
                                fleet_kw={"meter_interval_s": 60,
                                          "ocpp_versions": {"CP1": version}}
                                ) as (server, fleet):
        controller = server.controller
        station = fleet.station("CP1")
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP1", 1, _car(3), "DRIVER-1")
        sessions = controller.state.sessions
        await wait_until(lambda: REF in sessions and controller.phase_use(REF)[2], 20,
                         "the three-phase car's phases learned from its currents")
        assert controller.phase_use(REF) == (3, 0, True)
        old_tx = sessions[REF].transaction_id
        await wait_until(lambda: server.dispatcher.idle, 10, "dispatched")
        # the station's messages lag (held in its outbox, as the demo's queue did): the
        # three-phase car leaves and a single-phase one starts charging unseen
        hold_messages(station)
        await fleet.unplug("CP1", 1)
        assert await fleet.plug_in("CP1", 1, _car(1), "DRIVER-2")
        assert sessions[REF].transaction_id == old_tx     # the picture is stale
        # a new plan for the old transaction: its TxProfile is refused (2.0.1: TxNotFound;
        # 1.6, whose station accepts a TxProfile for a transaction it ended: a station
        # that refuses TxProfiles), the plan goes out as the connector's default and limits
        # the single-phase car
        if version == "1.6":
            station.quirks = Quirks(reject_tx_profiles=True)
        controller.ev_cap_w[REF] = 16_000.0
        controller.request_replan("test")
        await wait_until(lambda: any(p.purpose == "TxDefaultProfile" and p.stack_level >= 1
                                     and p.schedule.rate_unit == "W"
                                     for p in station.profiles.profiles), 10,
                         "the plan installed as the connector's default")
        await wait_until(lambda: server.dispatcher.idle, 10, "dispatched")
        limit_w, phases = connector_limit_w(station, 1, clock.now())
        assert phases == 1
        assert limit_w / 230.0 <= PHASE_A + 0.05, (limit_w, limit_w / 230.0)


FEEDER_W = 11_000.0       # the feeder's power limit in the tests below (and 32 A per phase)


def _feeder_site() -> Site:
    return Site(name="any-car-a",
                circuits=(Circuit("grid", None),
                          Circuit("feeder", "grid", limit_w=FEEDER_W, limit_a=32.0)),
                stations=(Station("CP1", "feeder", (Connector(1, max_current_a=32),),
                                  password=PASSWORD),),
                id_tags=frozenset({"DRIVER-1", "DRIVER-2"}),
                session_defaults=SessionDefaults(energy_wh=200_000, dwell_s=8 * 3600))


@asynccontextmanager
async def _single_phase_car(tmp_path, version: str, quirks: Quirks):
    """CP1 (`version`, `quirks`, in A) on an 11 kW feeder, a single-phase car charging whose
    phases are known, a plan made knowing them dispatched: (clock, server, station, hold),
    `hold()` keeping the station's messages from here on (released at the end)."""
    clock = AcceleratedClock(T0, speed=60.0)
    site = _feeder_site()
    async with server_and_fleet(site, tmp_path, clock, settings=SETTINGS,
                                fleet_kw={"meter_interval_s": 60,
                                          "ocpp_versions": {"CP1": version},
                                          "quirks": {"CP1": quirks}}) as (server, fleet):
        controller = server.controller
        station = fleet.station("CP1")
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP1", 1, _car(1), "DRIVER-1")
        await wait_until(lambda: REF in controller.state.sessions
                         and controller.phase_use(REF)[2], 20,
                         "the single-phase car's phases learned from its currents")
        assert controller.phase_use(REF)[0] == 1
        first, rounds = controller.plan, server.dispatcher.rounds_done
        controller.request_replan("test")   # a plan made knowing the car's phases
        await wait_until(lambda: controller.plan is not first, 10, "a new plan")
        await wait_until(lambda: server.dispatcher.rounds_done > rounds
                         and server.dispatcher.idle, 10, "dispatched")
        yield clock, server, station, lambda: hold_messages(station)


def _three_phase_car_limits(station, at) -> tuple[float, float]:
    """(W, A per phase) CP1's installed profiles let a three-phase car draw at `at`."""
    limit_w, _ = connector_limit_w(station, 1, at, assume_phases=3)
    return limit_w, limit_w / (230.0 * 3)


@pytest.mark.parametrize("version", ["2.0.1", "1.6"])
async def test_a_default_in_a_made_for_a_single_phase_car_holds_a_three_phase_car(
        tmp_path, version):
    """A station that refuses TxProfiles runs every plan as the connector's default, which
    limits whatever car comes next. A plan in A (per phase) for a car known to draw on one
    phase let a three-phase car that arrived unseen draw that current on all three: 32 A x 3
    = 22 kW on an 11 kW feeder (a station without phase switching cannot hold a car to the
    profile's numberPhases). Whatever car is behind it, the default keeps the feeder's W and
    per-phase A."""
    quirks = Quirks(reject_tx_profiles=True, ignore_number_phases=True)
    async with _single_phase_car(tmp_path, version, quirks) as (clock, server, station, hold):
        assert any(p.purpose == "TxDefaultProfile" and p.stack_level >= 1
                   for p in station.profiles.profiles), "the plan runs as the default"
        # the single-phase car leaves and a three-phase car plugs in, unseen (the station's
        # messages lag): the plan running as the default limits it
        hold()
        await station.unplug(1)
        assert await station.plug_in(1, _car(3), "DRIVER-2")
        limit_w, phase_a = _three_phase_car_limits(station, clock.now())
        assert limit_w <= FEEDER_W + 1.0, (limit_w, phase_a)
        assert phase_a <= 32.0 + 0.05


async def test_a_plan_for_a_single_phase_car_refused_for_a_stale_transaction(tmp_path):
    """2.0.1, a station that takes TxProfiles: the single-phase car left and a three-phase car
    plugged in unseen, so the next plan's TxProfile names a transaction the station ended
    (TxNotFound) and goes out as the connector's default - to the three-phase car. At every
    profile the station installs from then on, a three-phase car stays within the feeder's
    power (the plan's W: the A default of a single-phase plan goes out at a third), and once
    the controller re-plans the connector for any car, within its per-phase current too."""
    quirks = Quirks(ignore_number_phases=True)
    async with _single_phase_car(tmp_path, "2.0.1", quirks) as (clock, server, station, hold):
        controller = server.controller
        assert any(p.purpose == "TxProfile" for p in station.profiles.profiles)
        hold()
        await station.unplug(1)
        assert await station.plug_in(1, _car(3), "DRIVER-2")
        seen: list[tuple[float, float]] = []
        station.on_profiles_changed = lambda s: seen.append(
            _three_phase_car_limits(s, clock.now()))
        controller.ev_cap_w[REF] = 5_000.0    # a new plan (the car drew less, say)
        controller.request_replan("test")
        await wait_until(lambda: REF in controller.plans_on_default, 10, "the plan as default")
        await wait_until(lambda: not controller.plan.connectors[REF].phases_known, 10,
                         "re-planned for any car")
        await wait_until(lambda: server.dispatcher.idle, 10, "dispatched")
        assert seen, "no profile installed"
        assert all(w <= FEEDER_W + 1.0 for w, _ in seen), seen
        limit_w, phase_a = _three_phase_car_limits(station, clock.now())
        assert limit_w <= FEEDER_W + 1.0 and phase_a <= 32.0 + 0.05, (limit_w, phase_a)
