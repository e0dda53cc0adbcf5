"""OCPP 1.6: a station whose TxProfile is refused twice for the same open transaction runs
its plans as the connector's default (TxDefaultProfile). A refusal for a transaction the
station has ended, unseen by us (its StopTransaction still on the way), says nothing about
whether it takes TxProfiles: the next transaction gets TxProfiles again."""

import json

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.ocpp.port import Answer
from smartcharge.sim.station import Quirks
from smartcharge.site.topology import ConnectorRef
from tests.site_e2e import hold_messages, release_messages, server_and_fleet, wait_until
from tests.test_dispatch_trust import SETTINGS, T0, big_ev

REF = ConnectorRef("CP1", 1)


def _site() -> Site:
    return Site(name="stale-refusals",
                circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1", "DRIVER-2"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


def _tx_profiles(station, transaction_id: int) -> list:
    return [p for p in station.profiles.profiles
            if p.purpose == "TxProfile" and p.transaction_id == transaction_id]


async def _refused_tx_profiles(dispatcher, transaction_id: int) -> int:
    """How many TxProfiles for `transaction_id` the station refused (the audit table)."""
    await dispatcher.flush_audit()
    rows = await dispatcher.store.run(lambda tx: tx.profiles_sent("CP1"))
    return sum(1 for row in rows if row["purpose"] == "TxProfile" and row["answer"] != "Accepted"
               and json.loads(row["profile_json"])["csChargingProfiles"].get("transactionId")
               == transaction_id)


async def _replan_with_cap(controller, dispatcher, cap_w: float) -> None:
    """A new plan for the connector (its car planned at `cap_w`, as if it drew that), sent."""
    plan, rounds = controller.plan, dispatcher.rounds_done
    controller.ev_cap_w[REF] = cap_w
    controller.request_replan("test")
    await wait_until(lambda: controller.plan is not plan, 10, "a new plan")
    await wait_until(lambda: dispatcher.rounds_done > rounds and dispatcher.idle, 10,
                     "dispatched")


async def test_refusals_for_a_transaction_that_ended_unseen_do_not_switch_to_defaults(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with server_and_fleet(site, tmp_path, clock, settings=SETTINGS) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        station = fleet.station("CP1")
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-1")
        sessions = controller.state.sessions
        await wait_until(lambda: REF in sessions, 10, "the first session")
        first_tx = sessions[REF].transaction_id
        # a plan below the idle share it started under (one equal to it is not sent)
        await _replan_with_cap(controller, dispatcher, 10_000.0)
        await wait_until(lambda: dispatcher.idle and _tx_profiles(station, first_tx), 10,
                         "the first car on its TxProfile")
        # the car leaves; the station's StopTransaction lags (held in its outbox), so
        # the picture still holds the first transaction
        hold_messages(station)
        await fleet.unplug("CP1", 1)
        # two new plans for it: the station refuses their TxProfiles (no such
        # transaction) and takes them as the connector's default
        for cap_w in (9_000.0, 8_000.0):
            await _replan_with_cap(controller, dispatcher, cap_w)
        assert await _refused_tx_profiles(dispatcher, first_tx) >= 2
        assert any(p.purpose == "TxDefaultProfile" and p.stack_level >= 1
                   for p in station.profiles.profiles), "the plan runs as the default"
        # the StopTransaction arrives; the next car's transaction is one the station runs
        release_messages(station)
        await wait_until(lambda: REF not in sessions, 10, "the first session closed")
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-2")
        await wait_until(lambda: REF in sessions, 10, "the second session")
        second_tx = sessions[REF].transaction_id
        assert second_tx != first_tx
        # a plan unlike the idle share the car may have started under (that is not sent)
        await _replan_with_cap(controller, dispatcher, 12_000.0)
        sent = dispatcher.stations["CP1"].sent
        await wait_until(lambda: dispatcher.idle and 1 in sent
                         and sent[1].transaction_id == second_tx, 10,
                         "the second car's plan accepted")
        assert _tx_profiles(station, second_tx), \
            [(p.purpose, p.stack_level, p.transaction_id) for p in station.profiles.profiles]


async def test_a_station_that_refuses_tx_profiles_runs_each_transaction_on_defaults(tmp_path):
    """The other side: a station that takes no TxProfile. Its first transaction's plans go out
    as the default from its second refusal on; a later transaction tries a TxProfile once
    (the refusals may have been for a stale transaction) and, refused again, runs on defaults
    from then on."""
    clock = AcceleratedClock(T0, speed=60.0)
    site = _site()
    async with server_and_fleet(site, tmp_path, clock, settings=SETTINGS,
                                fleet_kw={"quirks": {"CP1": Quirks(reject_tx_profiles=True)}}
                                ) as (server, fleet):
        dispatcher = server.dispatcher
        await fleet.start(wait_booted_s=10)
        control = dispatcher.stations["CP1"]
        await wait_until(lambda: control.caps is not None and dispatcher.idle, 10,
                         "CP1 set up")
        async with control.lock:   # no dispatch round in between
            port = control.port
            schedule = dispatcher.power_schedule(
                REF, clock.now(), [0], [11_000.0], phases=3, phases_known=True,
                duration_s=1200)

            def goes_as_default(transaction_id: int) -> bool:
                return port.preview(1, transaction_id, schedule, floor=False).default

            modes = []
            for transaction_id in (101, 101, 101, 102, 102):
                modes.append(goes_as_default(transaction_id))
                result = await port.set_connector_schedule(1, transaction_id, schedule)
                assert result.answer is Answer.ACCEPTED and result.installed.default
            assert modes == [False, False, True, False, True]
