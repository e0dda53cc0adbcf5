"""What dispatch must not send: a TxProfile for a transaction whose StopTransaction was
acknowledged (a plan made before the stop arriving late), and the fail-safe setup twice for one
boot (the connection and the BootNotification that follows it)."""

import asyncio
import json
from datetime import UTC, datetime

from smartcharge.appkeys import STORE
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
REF1 = ConnectorRef("CP1", 1)


def _site() -> Site:
    return Site(name="once", circuits=(Circuit("grid", None, limit_w=30_000),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1), Connector(2)))
                               for i in (1, 2)),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=30_000, dwell_s=4 * 3600))


async def _rows(server) -> list:
    await server.dispatcher.flush_audit()
    return await server.app[STORE].run(lambda tx: tx.profiles_sent())


def _fleet(site, server, clock) -> Fleet:
    return Fleet(site, server.ws_url, clock, meter_interval_s=3600, reconnect_min_s=0.05,
                 reconnect_max_s=0.3, call_timeout_s=5.0)


async def test_no_tx_profile_for_a_transaction_whose_stop_was_acknowledged(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        controller = server.controller
        fleet = _fleet(site, server, clock)
        try:
            await fleet.start(wait_booted_s=10)
            assert await fleet.plug_in("CP1", 1, SimEV(capacity_wh=60_000, soc=0.2),
                                       "DRIVER-1")
            await wait_until(lambda: controller.plan is not None
                             and REF1 in controller.plan.connectors, 10, "CP1 planned")
            old_plan = controller.plan
            tx_id = old_plan.connectors[REF1].transaction_id
            # that plan's own round over first: a raise of it in flight as the car leaves is
            # answered Rejected after the stop, and is not the late round this is about
            await wait_until(lambda: server.dispatcher.idle, 10, "CP1's plan dispatched")
            await fleet.unplug("CP1", 1)
            station = fleet.station("CP1")
            await wait_until(lambda: any(a == "StopTransaction" for a, _, _ in
                                         station.acknowledged), 10, "stop acknowledged")
            await wait_until(lambda: REF1 not in controller.state.sessions, 10, "session gone")
            before = len(await _rows(server))
            # the plan made before the stop is dispatched late (a round already under way)
            await server.dispatcher.dispatch_plan(old_plan)
            late = (await _rows(server))[before:]
            for_stopped = [r for r in late if r["station_id"] == "CP1"
                           and json.loads(r["profile_json"])["csChargingProfiles"]
                           .get("transactionId") == tx_id]
            assert not for_stopped, for_stopped
            assert not [r for r in late if r["station_id"] == "CP1"
                        and r["answer"] != "Accepted"], late
        finally:
            await fleet.stop()


async def test_fail_safe_setup_goes_out_once_per_boot(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        fleet = _fleet(site, server, clock)
        try:
            await fleet.start(wait_booted_s=10)

            def setups(rows, station_id):
                return [r for r in rows if r["station_id"] == station_id
                        and r["purpose"] == "ChargePointMaxProfile"]

            def fail_safe(rows, station_id):
                return [r for r in rows if r["station_id"] == station_id
                        and r["purpose"] == "TxDefaultProfile"
                        and json.loads(r["profile_json"])["csChargingProfiles"]["stackLevel"]
                        == 0]

            def settled():
                # the setups over (they hold the station while they send) and every plan
                # dispatched: a second setup, or a round sending the defaults again, is in
                return server.dispatcher.idle and not any(
                    server.dispatcher.stations[s].lock.locked() for s in ("CP1", "CP2"))

            def installed(station_id):
                return sum(1 for p in fleet.station(station_id).profiles.profiles
                           if p.purpose == "TxDefaultProfile" and p.stack_level == 0)

            await wait_until(lambda: all(installed(s) == 2 for s in ("CP1", "CP2")), 10,
                             "defaults installed")
            await wait_until(settled, 10, "setups over, every plan dispatched")
            rows = await _rows(server)
            for sid in ("CP1", "CP2"):
                assert len(setups(rows, sid)) == 1, setups(rows, sid)
                assert len(fail_safe(rows, sid)) == 2   # one per connector
            # a reboot (new connection, new BootNotification): once more, not twice more
            station = fleet.station("CP1")
            boots = station.boots
            station.request_reset("Hard")
            await wait_until(lambda: station.boots > boots, 10, "CP1 rebooted")
            await wait_until(lambda: installed("CP1") == 2, 10, "defaults again")
            await wait_until(settled, 10, "setups over, every plan dispatched")
            rows = await _rows(server)
            assert len(setups(rows, "CP1")) == 2 and len(fail_safe(rows, "CP1")) == 4
            assert len(setups(rows, "CP2")) == 1
        finally:
            await fleet.stop()


async def test_a_round_computed_while_the_setup_is_in_flight_does_not_send_it_again(tmp_path):
    """The station-max profile went out twice under load: a round compared what the station
    has (no fail-safe defaults yet) while its setup was still sending them, and sent them again
    after it. The order is forced: CP1 holds its setup's first answer; a round starts; then CP1
    answers."""
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=60.0)) as server:
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=3600, reconnect_min_s=0.05,
                      reconnect_max_s=0.3, call_timeout_s=5.0,
                      quirks={"CP1": Quirks(silent_profiles=True)})
        station = fleet.station("CP1")
        dispatcher = server.dispatcher
        try:
            await fleet.start(wait_booted_s=10)
            await wait_until(lambda: station.profiles_held > 0, 10,
                             "CP1's setup waiting for its answer")
            await wait_until(lambda: server.controller.plan is not None, 10, "a plan")
            late = asyncio.ensure_future(dispatcher.dispatch_plan(server.controller.plan))
            await asyncio.sleep(0)     # (a yield, not a wait) the round compares, then queues
            station.quirks = Quirks()
            station.profile_answers.set()
            await late
            await wait_until(lambda: sum(1 for p in station.profiles.profiles
                                         if p.purpose == "TxDefaultProfile"
                                         and p.stack_level == 0) == 2, 10,
                             "CP1's defaults installed")
            rows = [r for r in await _rows(server) if r["station_id"] == "CP1"]
            assert len([r for r in rows if r["purpose"] == "ChargePointMaxProfile"]) == 1, rows
        finally:
            station.profile_answers.set()
            await fleet.stop()
