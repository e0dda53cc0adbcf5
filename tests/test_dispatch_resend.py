"""What a re-plan re-sends when the plan has not changed (issue 10: at 5 000 stations every
connector's TxProfile went out again for reasons of dispatch's own, counted by
`benchmarks/resend_causes.py` from the audit table).

A car whose plan ends below its connector's fail-safe default at the common end got its first
TxProfile with a delayed end (the fall to the higher default is a raise: `edges.py`), and the
0 W default under the car after it; the next round took that 0 W as what the plan falls to,
ended the plan at the common end without the delay, found the 10 s between the two ends
lowered (to the 0 W) and sent every such plan again, with the decreases.

A plan that raises a connector by a little (the optimizer's allocations move by tens of W from
one re-plan to the next) is not sent: the connector keeps what it has, at most the dead band
below its plan (`DispatchSettings.raise_deadband_w` / `raise_deadband_fraction`), or lower for
no longer than a raise delay and a second at a stretch. Every decrease goes out, however small;
a raise beyond the band goes out whole."""

from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from smartcharge.appkeys import STORE
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site import steps
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import server_and_fleet, wait_until
from tests.installed_limits import connector_limit_w

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REFS = (ConnectorRef("CP1", 1), ConnectorRef("CP2", 1))


def _site(energy_wh: float) -> Site:
    """Two cars on a 22 kW feeder that each need `energy_wh` (5 kWh: both done within 30
    minutes - below the fail-safe default, 11 kW, at the common end 30 minutes on)."""
    return Site(name="resend",
                circuits=(Circuit("grid", None), Circuit("feeder", "grid", limit_w=22_000)),
                stations=(Station("CP1", "feeder", (Connector(1),)),
                          Station("CP2", "feeder", (Connector(1),))),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=energy_wh, dwell_s=8 * 3600))


async def _rows(server) -> list[dict]:
    await server.dispatcher.flush_audit()
    return await server.app[STORE].run(lambda tx: tx.profiles_sent())


@asynccontextmanager
async def _both_planned(tmp_path, version: str, energy_wh: float = 5_000.0, **server_kw):
    """Both cars charging, their plan dispatched: (server, fleet, plan)."""
    # real time: the plan does not move while the test runs
    clock = AcceleratedClock(T0, speed=1.0)
    site = _site(energy_wh)
    versions = {"CP1": version, "CP2": version}
    async with server_and_fleet(site, tmp_path, clock, fleet_kw={"ocpp_versions": versions},
                                **server_kw) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await fleet.start(wait_booted_s=10)
        for ref in REFS:
            assert await fleet.plug_in(ref.station_id, 1, SimEV(capacity_wh=60_000, soc=0.2),
                                       "DRIVER-1")
        await wait_until(lambda: controller.plan is not None
                         and set(REFS) <= controller.plan.connectors.keys(), 10, "both planned")
        await wait_until(lambda: dispatcher.idle, 10, "dispatched")
        yield server, fleet, controller.plan


async def _round(server, plan) -> list[tuple[str, str]]:
    """(station, purpose) of every profile a round of `plan` sends (handed to dispatch as
    the controller does)."""
    dispatcher = server.dispatcher
    before = await _rows(server)
    rounds = dispatcher.rounds_done
    dispatcher.apply(plan)
    await wait_until(lambda: dispatcher.rounds_done > rounds and dispatcher.idle, 10,
                     "the round over")
    return [(r["station_id"], r["purpose"]) for r in await _rows(server)
            if r["id"] > before[-1]["id"]]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_round_of_an_unchanged_plan_sends_nothing(tmp_path, version):
    async with _both_planned(tmp_path, version) as (server, fleet, plan):
        dispatcher = server.dispatcher
        for ref in REFS:   # the case: the plan ends below the fail-safe default
            assert plan.connectors[ref].power_at(dispatcher.expiry) == 0.0
        # the plan's round is over: each car on its TxProfile, the 0 W under it
        rows = await _rows(server)
        assert {r["station_id"] for r in rows if r["purpose"] == "TxProfile"} \
            == {"CP1", "CP2"}
        assert await _round(server, plan) == []   # the same plan, a round again


def _moved(plan, ref: ConnectorRef, by_slot_w: list[float]):
    """`plan` with `ref`'s power moved by `by_slot_w[t]` in each of its first slots."""
    cplan = plan.connectors[ref]
    power = np.array(cplan.power_w, dtype=float)
    power[:len(by_slot_w)] += by_slot_w
    connectors = dict(plan.connectors)
    connectors[ref] = replace(cplan, power_w=power)
    return replace(plan, connectors=connectors)


def _installed_and_station_w(server, fleet, ref, at) -> tuple[float, float]:
    """(what dispatch's installed view says the connector may draw at `at`, what the simulated
    station's profiles let it draw then) [W]."""
    dispatcher = server.dispatcher
    control = dispatcher.stations[ref.station_id]
    session = server.controller.state.sessions[ref]
    step = dispatcher.installed.installed_steps(control, ref, 3, 1.0, session.transaction_id)
    station = fleet.station(ref.station_id)
    return steps.value_at(step, at), connector_limit_w(station, ref.connector_id, at,
                                                       assume_phases=3)[0]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_small_raise_waits_a_decrease_goes_out_a_raise_beyond_the_band_too(
        tmp_path, version):
    settings = DispatchSettings(raise_deadband_w=250.0, raise_deadband_fraction=0.05)
    async with _both_planned(tmp_path, version, energy_wh=8_000.0,
                             dispatch=settings) as (server, fleet, plan):
        cp1 = REFS[0]
        # CP1 charges in the first two slots, below its maximum in the second
        assert plan.connectors[cp1].power_w[0] > 5_000
        assert 5_000 < plan.connectors[cp1].power_w[1] < 15_000
        assert await _round(server, plan) == []
        # +100 W: kept where it is (within 250 W); the installed view says what it has
        assert await _round(server, _moved(plan, cp1, [0.0, 100.0])) == []
        second = plan.connectors[cp1].slot_starts[1] + timedelta(minutes=1)
        installed_w, station_w = _installed_and_station_w(server, fleet, cp1, second)
        assert installed_w == pytest.approx(station_w, abs=1.0)
        assert installed_w <= plan.connectors[cp1].power_w[1] + 1.0
        # -100 W: a decrease, however small, goes out at once
        assert await _round(server, _moved(plan, cp1, [-100.0, -100.0])) == [("CP1", "TxProfile")]
        # +150 W over that (+50 over the first plan): within the band again
        assert await _round(server, _moved(plan, cp1, [50.0, 50.0])) == []
        # lower now, a little higher in the next slot: only the decrease goes out (one
        # request: the pointwise minimum, not it and then the plan)
        assert await _round(server, _moved(plan, cp1, [-2_000.0, 0.0])) == [("CP1", "TxProfile")]
        # and that plan again: nothing (the minimum's edges, built from what was installed,
        # lie a raise delay or a second from the plan's: no raise worth a request)
        assert await _round(server, _moved(plan, cp1, [-2_000.0, 0.0])) == []
        # +400 W over the first plan in the next slot (+500 W over what CP1 has): beyond the
        # band, the raise goes out
        assert await _round(server, _moved(plan, cp1, [-2_000.0, 400.0])) \
            == [("CP1", "TxProfile")]
        # with no dead band: every raise goes out
        server.dispatcher.settings = replace(server.dispatcher.settings, raise_deadband_w=0.0)
        assert await _round(server, _moved(plan, cp1, [-2_000.0, 500.0])) \
            == [("CP1", "TxProfile")]
