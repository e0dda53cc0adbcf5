"""A station's queued transaction messages sent out of order, as real stations do after an
offline period: a late message of an OLDER transaction must not touch the connector's running
one - neither what dispatch last sent it (its TxProfile) nor the site's live session - and
both transactions are billed once each.

Over real sockets: the simulated 1.6 station holds its messages (`hold_messages`) and sends
them in the late order; real SQLite."""

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from ocpp.v16 import call
from ocpp.v201 import call as call201

from smartcharge.appkeys import STORE
from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.ledger import STOPPED, billable
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.station import Quirks
from smartcharge.sim.connection import Outgoing
from tests.site_e2e import control_server, hold_messages, wait_until
from tests.test_dispatch_trust import REF1, big_ev, one_grid, trust_site
from tests.test_guard import _site as guard_site
from tests.test_site_phase_probe import BAY, T0 as PROBE_T0, _car as probe_car, \
    _serve as probe_serve

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def take_held(station, action: str):
    """The held messages of `action`, taken out of the station's held outbox."""
    held = station._enqueue.__self__
    taken = [item for item in held if item.action == action]
    held[:] = [item for item in held if item.action != action]
    return taken


def send_held(station) -> None:
    """The station sends what it holds, in order, and later messages at once."""
    held = station._enqueue.__self__
    del vars(station)["_enqueue"]
    for item in held:
        station._enqueue(item)


async def on_tx_profile(server, fleet, transaction_id: int) -> None:
    """CP1's plan (held at 5 kW by a closed-loop cap) accepted on `transaction_id`."""
    controller = server.controller
    controller.ev_cap_w[REF1] = 5_000.0
    controller.request_replan("test")
    control = server.dispatcher.stations["CP1"]

    def capped_plan_dispatched() -> bool:
        # the plan made with the 5 kW cap, and its round over (a plan is handed to dispatch
        # as it is made: idle only once its round ended). Waiting for any TxProfile of the
        # transaction took the one of the plan made at its start (no cap) when the re-plan
        # asked for here came later - its TxProfile then went out in the middle of the test
        # (4-7 of 24 copies under load, main and s30-pending alike)
        plan = controller.plan
        cplan = plan.connectors.get(REF1) if plan is not None else None
        return cplan is not None and cplan.transaction_id == transaction_id \
            and float(cplan.power_w.max()) <= 5_000.0 + 1.0 and server.dispatcher.idle
    await wait_until(capped_plan_dispatched, 20, "CP1's capped plan dispatched")
    assert 1 in control.sent and not control.sent[1].default \
        and control.sent[1].transaction_id == transaction_id, "CP1's TxProfile accepted"


@asynccontextmanager
async def car_b_on_its_profile(tmp_path, clock, version: str = "1.6"):
    """CP1 (`version`) with car B charging from a register at 50 kWh on its TxProfile:
    (server, fleet, cp1, B's transaction id, its start, what dispatch sent it)."""
    async with trust_site(one_grid(22_000), tmp_path, clock,
                          fleet_kw={"ocpp_versions": {"CP1": version}},
                          dispatch=DispatchSettings(call_timeout_s=10.0, retries=0)
                          ) as (server, fleet):
        state = server.controller.state
        await fleet.start(wait_booted_s=10)
        cp1 = fleet.station("CP1")
        cp1.connectors[1].register_wh = 50_000.0
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-1")
        await fleet.drained()
        await wait_until(lambda: REF1 in state.sessions, 10, "B on the site")
        tx_b, started_b = state.sessions[REF1].transaction_id, state.sessions[REF1].started_at
        await on_tx_profile(server, fleet, tx_b)
        yield server, fleet, cp1, tx_b, started_b, server.dispatcher.stations["CP1"].sent[1]


async def test_a_late_stop_of_an_older_transaction_keeps_the_newer_ones_profile(tmp_path):
    """Car A leaves and car B arrives while the station's messages wait; the station sends B's
    StartTransaction first (we close A without its stop), B gets its TxProfile, then A's
    StopTransaction arrives. Dispatch must still know B's profile: before, any stop on the
    connector dropped what it was last sent, so B's plan was no longer compared with what
    the station runs (and the installed view read nothing there)."""
    clock = AcceleratedClock(T0, speed=60.0)
    async with trust_site(one_grid(22_000), tmp_path, clock,
                          dispatch=DispatchSettings(call_timeout_s=10.0, retries=0)
                          ) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        cp1 = fleet.station("CP1")
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-1")
        await fleet.drained()
        tx_a = cp1.connectors[1].transaction.transaction_id
        # a few site minutes of charging: A's energy is its meter delta, whatever its size
        await wait_until(lambda: clock.now() > T0 + timedelta(minutes=2), 20, "A charges")
        hold_messages(cp1)
        await fleet.unplug("CP1", 1)                           # A's stop waits
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-1")   # B's start waits
        stop_a = take_held(cp1, "StopTransaction")
        assert len(stop_a) == 1
        send_held(cp1)                                         # B's start goes first
        await fleet.drained()
        tx_b = cp1.connectors[1].transaction.transaction_id
        assert tx_b is not None and tx_b != tx_a
        await on_tx_profile(server, fleet, tx_b)
        control = server.dispatcher.stations["CP1"]
        sent_b = control.sent[1]

        cp1._enqueue(stop_a[0])                                # A's stop, late
        await fleet.drained()
        store = server.app[STORE]
        row_a = await store.run(lambda tx: tx.session(tx_a))
        assert row_a.state == STOPPED and row_a.energy_wh > 0
        assert control.sent.get(1) == sent_b, "a late stop of A dropped B's TxProfile"
        assert server.controller.state.sessions[REF1].transaction_id == tx_b


async def test_a_late_older_start_leaves_the_running_session_live_and_both_billed(tmp_path):
    """Car B charges (register at 50 kWh); the station's queue then brings a StartTransaction
    of car A from two hours before (40 kWh) and its StopTransaction (45 kWh). A is billed
    5 kWh as usual, but the connector's live session stays B: before, A's late start
    replaced it and A's stop then left the connector empty - the site lost a car that was
    still charging (not planned any more, its TxProfile forgotten)."""
    clock = AcceleratedClock(T0, speed=60.0)
    async with car_b_on_its_profile(tmp_path, clock) as (server, fleet, cp1, tx_b, started_b,
                                                         sent_b):
        state, control = server.controller.state, server.dispatcher.stations["CP1"]
        assert tx_b == cp1.connectors[1].transaction.transaction_id

        answered: dict = {}
        cp1._enqueue(Outgoing(
            "StartTransaction",
            lambda: call.StartTransaction(connector_id=1, id_tag="DRIVER-1", meter_start=40_000,
                                          timestamp=format_ocpp_time(started_b
                                                                     - timedelta(hours=2))),
            clock.now(), durable=True, on_result=lambda a: answered.update(id=a.transaction_id)))
        await fleet.drained()
        tx_a = answered["id"]
        assert tx_a != tx_b
        assert state.sessions[REF1].transaction_id == tx_b, "A's late start replaced B"
        assert control.sent.get(1) == sent_b

        cp1._enqueue(Outgoing(
            "StopTransaction",
            lambda: call.StopTransaction(meter_stop=45_000, transaction_id=tx_a,
                                         timestamp=format_ocpp_time(started_b
                                                                    - timedelta(hours=1)),
                                         id_tag="DRIVER-1", reason="Local"),
            clock.now(), durable=True))
        await fleet.drained()
        assert state.sessions[REF1].transaction_id == tx_b, "A's stop removed B"
        assert control.sent.get(1) == sent_b
        server.controller.request_replan("test")
        await wait_until(lambda: server.controller.plan is not None
                         and REF1 in server.controller.plan.connectors, 10, "B planned")

        await wait_until(lambda: clock.now() > started_b + timedelta(minutes=2), 20,
                         "B charges")
        stopped_b = await fleet.unplug("CP1", 1)
        await fleet.drained()
        store = server.app[STORE]
        rows = await store.run(lambda tx: tx.sessions("CP1"))
        billed = {row.transaction_id: row.energy_wh for row in rows if billable(row)}
        assert billed == {tx_a: 5_000.0, tx_b: stopped_b.meter_stop_wh - 50_000}, rows
        assert all(row.state == STOPPED for row in rows)


def v201_event(event_type: str, seq_no: int, at: datetime, register_wh: int, context: str,
               **fields) -> call201.TransactionEvent:
    """One TransactionEvent of an older transaction "OLD-A", sent from the station's queue."""
    reading = {"timestamp": format_ocpp_time(at), "sampled_value": [
        {"value": register_wh, "context": context, "measurand": "Energy.Active.Import.Register",
         "unit_of_measure": {"unit": "Wh"}}]}
    return call201.TransactionEvent(
        event_type=event_type, timestamp=format_ocpp_time(at), seq_no=seq_no, offline=True,
        transaction_info={"transaction_id": "OLD-A", **fields.pop("info", {})},
        meter_value=[reading], **fields)


async def test_v201_a_late_started_of_an_older_transaction_leaves_the_running_one_live(
        tmp_path):
    """2.0.1, a shuffled offline queue: an Updated of an older transaction A (no EVSE in it)
    comes first, then A's Started (its EVSE, two hours before car B's start), then its Ended.
    The site hears of A when its EVSE is known; it must not replace B, which still charges."""
    clock = AcceleratedClock(T0, speed=60.0)
    async with car_b_on_its_profile(tmp_path, clock, "2.0.1") as (server, fleet, cp1, tx_b,
                                                                  started_b, sent_b):
        state, control = server.controller.state, server.dispatcher.stations["CP1"]

        def send(request) -> None:
            cp1._enqueue(Outgoing("TransactionEvent", lambda: request, clock.now(),
                                  durable=True))
        send(v201_event("Updated", 1, started_b - timedelta(minutes=90), 42_000,
                        "Sample.Periodic", trigger_reason="MeterValuePeriodic"))
        send(v201_event("Started", 0, started_b - timedelta(hours=2), 40_000,
                        "Transaction.Begin", trigger_reason="Authorized",
                        evse={"id": 1, "connector_id": 1},
                        id_token={"id_token": "DRIVER-1", "type": "ISO14443"}))
        await fleet.drained()
        assert state.sessions[REF1].transaction_id == tx_b, "A's late Started replaced B"
        assert control.sent.get(1) == sent_b
        send(v201_event("Ended", 2, started_b - timedelta(hours=1), 45_000,
                        "Transaction.End", trigger_reason="EVCommunicationLost",
                        info={"stopped_reason": "EVDisconnected"}))
        await fleet.drained()
        assert state.sessions[REF1].transaction_id == tx_b, "A's Ended removed B"
        assert control.sent.get(1) == sent_b
        rows = await server.app[STORE].run(lambda tx: tx.sessions("CP1"))
        row_a = next(row for row in rows if row.station_tx_ref == "OLD-A")
        assert row_a.state == STOPPED and row_a.energy_wh == 5_000.0, row_a
        assert billable(row_a)


async def test_a_late_stop_of_an_older_transaction_keeps_a_disobedient_connector_caught(
        tmp_path):
    """CP1 accepts its profiles and lets its car draw 11 kW: the guard catches it and the site
    plans it at what it draws until its session ends. An older transaction's start and stop
    then arrive from the station's queue: that stop is not the end of the running session,
    so CP1 stays caught (before, any stop on the connector forgot what it was measured
    drawing, and the next profile it accepted made it controllable again)."""
    clock = AcceleratedClock(T0, speed=120.0)
    site, real = guard_site(cp1_max_a=10.0), guard_site()
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=120.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        controller = server.controller
        fleet = Fleet(real, server.ws_url, clock, meter_interval_s=20, reconnect_min_s=0.05,
                      reconnect_max_s=0.3, call_timeout_s=5.0,
                      quirks={"CP1": Quirks(ignore_profiles=True)})
        try:
            await fleet.start(wait_booted_s=10)
            cp1 = fleet.station("CP1")
            cp1.connectors[1].register_wh = 50_000.0
            for sid in fleet.stations:
                assert await fleet.plug_in(sid, 1, SimEV(capacity_wh=80_000, soc=0.2),
                                           "DRIVER-1")
            await wait_until(lambda: REF1 in controller.overdraw_w, 10,
                             "CP1 caught drawing over its profile")
            tx_b = controller.state.sessions[REF1].transaction_id
            started_b = controller.state.sessions[REF1].started_at
            answered: dict = {}
            cp1._enqueue(Outgoing(
                "StartTransaction",
                lambda: call.StartTransaction(
                    connector_id=1, id_tag="DRIVER-1", meter_start=40_000,
                    timestamp=format_ocpp_time(started_b - timedelta(hours=2))),
                clock.now(), durable=True,
                on_result=lambda a: answered.update(id=a.transaction_id)))
            cp1._enqueue(Outgoing(
                "StopTransaction",
                lambda: call.StopTransaction(
                    meter_stop=45_000, transaction_id=answered["id"], id_tag="DRIVER-1",
                    timestamp=format_ocpp_time(started_b - timedelta(hours=1))),
                clock.now(), durable=True))
            await fleet.drained()
            assert controller.state.sessions[REF1].transaction_id == tx_b
            assert REF1 in controller.overdraw_w, "a late stop of A forgot B's overdraw"
        finally:
            await fleet.stop()


async def test_a_late_older_start_does_not_cancel_the_running_cars_phase_probe(tmp_path):
    """A car of unknown phases starts on a 3-phase bay; right behind its StartTransaction the
    station's queue brings the start of an older transaction there. The running car's
    station is still asked for a sample and its phases learned (before, the late start took
    the bay's place in the probes: the running car was never asked)."""
    clock = AcceleratedClock(PROBE_T0, speed=600.0)
    async with probe_serve(tmp_path, clock, "1.6") as (server, fleet):
        sessions = server.controller.state.sessions
        await fleet.start(wait_booted_s=10)
        station = fleet.station("CPW")
        station.connectors[1].register_wh = 50_000.0
        hold_messages(station)
        assert await fleet.plug_in("CPW", 1, probe_car(3), "DRIVER-1")
        station._enqueue(Outgoing(
            "StartTransaction",
            lambda: call.StartTransaction(
                connector_id=1, id_tag="DRIVER-1", meter_start=40_000,
                timestamp=format_ocpp_time(clock.now() - timedelta(hours=2))),
            clock.now(), durable=True))
        send_held(station)
        await fleet.drained()
        assert sessions[BAY].transaction_id == station.connectors[1].transaction.transaction_id
        await wait_until(lambda: sessions[BAY].phases_in_use == 3, 20,
                         "the running car's phases learned")
        assert station.triggers_received == [("MeterValues", 1)]
