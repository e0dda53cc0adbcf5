"""A new car's phases are learned in seconds: once the plan offers it power, the central system
asks its station for a meter sample (TriggerMessage MeterValues, site/phase_probe.py) instead
of waiting for the first periodic one. Over real sockets with the simulated stations, in both
OCPP versions: asked once per session, refusals and "not implemented" asked no more, and the
triggered sample billed like any other (a register reading: no double count)."""

import asyncio
from datetime import UTC, datetime

import pytest

from smartcharge.appkeys import STORE
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, RateUnit, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.setup import PHASE_PROBING
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.station import Quirks
from tests.site_e2e import server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
PASSWORD = "sim-password-0123"
BAY = ConnectorRef("CPW", 1)


def _site() -> Site:
    """A 22 kW bay on a station addressed in W under a 32 A circuit below a 16 kW cap: a car
    of unknown phases there is sent a third of its plan (installed.w_factor)."""
    return Site(name="phase probe",
                circuits=(Circuit("grid", None, limit_w=16_000.0),
                          Circuit("depot", "grid", limit_a=32.0)),
                stations=(Station("CPW", "depot", (Connector(1, max_current_a=32),),
                                  rate_unit=RateUnit.WATTS, password=PASSWORD),),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


def _car(phases: int) -> SimEV:
    return SimEV(capacity_wh=80_000, soc=0.2, onboard_phases=phases,
                 max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})


def _fleet_kw(version: str, quirks: Quirks | None = None) -> dict:
    # periodic samples once a simulated day: only a triggered sample can teach the phases
    # while the test watches (checked: `_periodic_sent`)
    kw = {"ocpp_versions": {"CPW": version}, "meter_interval_s": 86_400}
    if quirks is not None:
        kw["quirks"] = {"CPW": quirks}
    return kw


def _periodic_sent(station) -> bool:
    """Whether the station has sent a periodic meter sample (1.6 MeterValues, 2.0.1
    TransactionEvent) that was answered."""
    return any("Sample.Periodic" in str(request) for _, request, _ in station.acknowledged)


def _serve(tmp_path, clock, version, quirks=None):
    return server_and_fleet(_site(), tmp_path, clock, fleet_kw=_fleet_kw(version, quirks),
                            settings=ControllerSettings(stale_after_s=2 * 86_400.0),
                            dispatch=DispatchSettings(call_timeout_s=5.0), phase_probe=True)


async def _two_replans(controller) -> None:
    """Two re-plans from now, each a chance for the probing to ask again: asked for, one after
    the other (waiting for the slot edges' own - 1.5 s real each at 600x - was half of each
    test's time)."""
    for _ in range(2):
        replans = controller.stats.replans
        controller.request_replan("test: a re-plan after the probe")
        await wait_until(lambda: controller.stats.replans > replans, 30, "a re-plan")


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("phases", [1, 3])
async def test_a_new_cars_phases_are_asked_for_once_and_learned_in_seconds(tmp_path, version,
                                                                           phases):
    clock = AcceleratedClock(T0, speed=600.0)
    async with _serve(tmp_path, clock, version) as (server, fleet):
        controller = server.controller
        await fleet.start(wait_booted_s=10)
        station = fleet.station("CPW")
        assert await fleet.plug_in("CPW", 1, _car(phases), "DRIVER-1")
        sessions = controller.state.sessions
        await wait_until(lambda: BAY in sessions and sessions[BAY].phases_in_use == phases, 20,
                         "the car's phases learned")
        # from the triggered sample: the station sent no periodic one yet
        assert not _periodic_sent(station)
        assert station.triggers_received == [("MeterValues", 1)]
        await wait_until(lambda: controller.phase_use(BAY)[2] and
                         controller.plan.connectors[BAY].phases_known, 20,
                         "planned on its phases")
        # later re-plans ask nothing more of this session
        await _two_replans(controller)
        assert station.triggers_received == [("MeterValues", 1)]
        assert server.app[PHASE_PROBING].answers == {"Accepted": 1}
        # billed exactly: the triggered reading is a register reading like any other
        transaction_id = sessions[BAY].transaction_id
        tx = await fleet.unplug("CPW", 1)
        store = server.app[STORE]
        await wait_until(lambda: BAY not in sessions, 20, "the session stopped")
        row = await store.run(lambda t: t.session(transaction_id))
        assert row.energy_wh == pytest.approx(tx.meter_stop_wh - tx.meter_start_wh, abs=0.5)
        assert row.energy_wh > 0
        samples = await store.run(lambda t: t.samples(transaction_id))
        if version == "1.6":   # 2.0.1 sends the triggered sample outside the transaction
            assert any(s["context"] == "Trigger" for s in samples)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("refusal", ["Rejected", "NotImplemented"])
async def test_a_station_that_refuses_is_not_asked_again(tmp_path, version, refusal):
    """Refused, a session is not asked again (its periodic samples will teach); a station
    that does not implement it is not asked for the next session either."""
    clock = AcceleratedClock(T0, speed=600.0)
    async with _serve(tmp_path, clock, version, Quirks(refuse_triggers=refusal)) \
            as (server, fleet):
        controller = server.controller
        await fleet.start(wait_booted_s=10)
        station = fleet.station("CPW")
        probing = server.app[PHASE_PROBING]
        for visit in (1, 2):
            assert await fleet.plug_in("CPW", 1, _car(1), "DRIVER-1")
            await wait_until(lambda: sum(probing.answers.values()) == visit, 20,
                             "the probe answered")
            await _two_replans(controller)
            assert controller.state.sessions[BAY].phases_in_use is None \
                or _periodic_sent(station)
            await fleet.unplug("CPW", 1)
            await wait_until(lambda: BAY not in controller.state.sessions, 20, "stopped")
        asked = 2 if refusal == "Rejected" else 1
        assert station.triggers_received == [("MeterValues", 1)] * asked
        assert probing.answers == {"Rejected": 2}


async def test_a_burst_of_new_cars_is_asked_through_a_few_askers(tmp_path):
    """Forty cars armed together (a depot filling up, a restart): the stations are asked by at
    most PROBES_AT_ONCE tasks at a time, never a task per session made in one turn of the
    loop (at 5 000 stations that turn held the loop 33 ms, s22-msgcost); every car is still
    asked once and its phases learned."""

    from smartcharge.site.phase_probe import PROBES_AT_ONCE
    n = 40
    site = Site(name="phase probe burst",
                circuits=(Circuit("grid", None, limit_w=n * 23_000.0),),   # room for all
                stations=tuple(Station(f"CP{i:02d}", "grid", (Connector(1, max_current_a=32),),
                                       password=PASSWORD) for i in range(n)),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))
    clock = AcceleratedClock(T0, speed=600.0)
    peak, live = [0], [0]

    def counting(spawn):
        """The probing's tasks alive at once, counted as they are made and end (watching
        every turn of the loop instead starved 40 stations' answers past their timeouts)."""
        def spawned(awaitable):
            task = spawn(awaitable)
            live[0] += 1
            peak[0] = max(peak[0], live[0])
            task.add_done_callback(lambda _: live.__setitem__(0, live[0] - 1))
            return task
        return spawned

    # no periodic samples at all: a station's first comes at a seeded moment within its
    # interval (sim/physics.py), and CP19's and CP31's within the first day came 8 site minutes
    # into their sessions - before they were asked when a loaded worker set the site up late
    # in site time (600x): their phases learned unasked, 39 answers, and the wait for 40 sat
    # out its 180 s (5 of 24 copies beside two burners, and a full run at load ~11)
    async with server_and_fleet(site, tmp_path, clock,
                                fleet_kw={"meter_interval_s": 0},
                                settings=ControllerSettings(stale_after_s=2 * 86_400.0),
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                phase_probe=True) as (server, fleet):
        probing = server.app[PHASE_PROBING]
        probing._tasks.spawn = counting(probing._tasks.spawn)
        try:
            await fleet.start(wait_booted_s=20)
            assert all(await asyncio.gather(*(fleet.plug_in(f"CP{i:02d}", 1, _car(3),
                                                            "DRIVER-1") for i in range(n))))
            sessions = server.controller.state.sessions
            refs = [ConnectorRef(f"CP{i:02d}", 1) for i in range(n)]
            await wait_until(lambda: all(ref in sessions and sessions[ref].phases_in_use == 3
                                         for ref in refs), 30, "every car's phases learned")
            # the triggered sample may be read before the asker task has its answer's turn
            await wait_until(lambda: probing.answers.total() >= n, 30,
                             "every trigger's answer counted")
            assert probing.answers == {"Accepted": n}, probing.answers
            assert not any(_periodic_sent(fleet.station(ref.station_id)) for ref in refs)
        finally:
            del probing._tasks.spawn
        assert all(fleet.station(ref.station_id).triggers_received == [("MeterValues", 1)]
                   for ref in refs)
        assert 0 < peak[0] <= PROBES_AT_ONCE
