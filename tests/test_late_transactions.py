"""A station's queued transaction messages sent out of order, as real stations do after an
offline period: a late message of an OLDER transaction must not touch the connector's running
one - neither what dispatch last sent it (its TxProfile) nor the site's live session - and
both transactions are billed once each.

Over real sockets: the simulated 1.6 station holds its messages (`hold_messages`) and sends
them in the late order; real SQLite."""

from datetime import UTC, datetime, timedelta

from smartcharge.appkeys import STORE
from smartcharge.clock import AcceleratedClock
from smartcharge.ledger import STOPPED
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import hold_messages, wait_until
from tests.test_dispatch_trust import REF1, big_ev, one_grid, trust_site

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
    await wait_until(lambda: 1 in control.sent and not control.sent[1].default
                     and control.sent[1].transaction_id == transaction_id
                     and server.dispatcher.idle, 20, "CP1's TxProfile accepted")


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
        await wait_until(lambda: clock.now() > T0 + timedelta(minutes=10), 20, "A charges")
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

