"""A session a station's BootNotification closed (Reboot) while the station kept the transaction
(the simulator boots on every reconnect) runs on the TxProfile we sent it before: a TxProfile
overrules every default, so no fail-safe default or idle share bounds the car. Dispatch forgot
that TxProfile at the implicit stop, and again at the reopen (a "start" of the transaction it
was for): afterwards it counted the reopened car at its connector's defaults - 0 W under a DR
event - so a plan giving that car 0 W was "no change" and nothing was sent. The car went on
drawing its old 11.4 A (7.9 kW) under a 5 kW DR limit for good (the station's profiles let the
site draw 12.8 kW; s38-flaky's restart-then-DR failure ended the same way, 4 968 W under
5 kW, where the old profile happened to be below the limit).

The real app over real WebSockets, the simulator (built on the `ocpp` library) as CP1, a real
SQLite file; what the station would let its cars draw is read from its own profiles.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.site.controller import ControllerSettings
from tests.site_e2e import post_dr_event, server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 30_000.0
LIMIT_W = 5_000.0
TAGS = ("DRIVER-1", "DRIVER-2")
UTILITY = "utility-token"


def _site() -> Site:
    return Site(name="reopen",
                circuits=(Circuit("grid", None, limit_w=GRID_W),),
                # a third connector, idle: the fail-safe defaults are a third of the grid
                # each, so the two cars' plans go out as TxProfiles above them
                stations=(Station("CP1", "grid", (Connector(1), Connector(2), Connector(3))),),
                id_tags=frozenset(TAGS), utility_tokens=frozenset({UTILITY}),
                session_defaults=SessionDefaults(energy_wh=200_000, dwell_s=8 * 3600))


def _allowed_w(station, at: datetime) -> float:
    """What CP1's installed profiles let its connectors draw at `at` [W], as the station reads
    them: for the transactions it runs, and for a car arriving at the idle one (three phases at
    its voltage)."""
    total = 0.0
    for cid, state in station.connectors.items():
        tx = state.transaction.context() if state.transaction else None
        limit = station.profiles.limit_w(cid, at, tx, voltage_v=station.spec.voltage_v,
                                         phases_in_use=3)
        total += float("inf") if limit is None else limit
    return total


def _on_tx_profiles(station) -> bool:
    """Both cars run on a TxProfile of ours for their own transaction."""
    return all(state.transaction is not None and state.transaction.transaction_id is not None
               and any(p.purpose == "TxProfile"
                       and p.transaction_id == state.transaction.transaction_id
                       for p in station.profiles.profiles)
               for state in station.connectors.values() if state.ev is not None)


async def test_a_session_reopened_under_a_dr_limit_is_sent_its_decrease(tmp_path):
    clock = AcceleratedClock(T0, speed=10.0)
    settings = ControllerSettings(stale_after_s=600.0)
    async with server_and_fleet(_site(), tmp_path, clock, settings=settings) as (server, fleet):
        controller = server.controller
        station = fleet.station("CP1")
        await fleet.start(wait_booted_s=10)
        for cid, tag in zip((1, 2), TAGS):
            assert await fleet.plug_in("CP1", cid, SimEV(capacity_wh=80_000, soc=0.2), tag)
        # (a plan's raise is in force a settle time after it is sent)
        await wait_until(lambda: _on_tx_profiles(station)
                         and _allowed_w(station, clock.now()) > 2 * LIMIT_W, 10,
                         "both cars on a TxProfile of their plan, in force")
        transactions = {s.transaction.transaction_id for s in station.connectors.values()
                        if s.transaction is not None}
        # the link drops and comes back: the simulator boots again keeping its transactions,
        # so the ledger closes both sessions (Reboot) until the station's next message
        await station.go_offline()
        await station.wait_for(lambda: not station.connected.is_set(), 10)
        station.go_online()
        await wait_until(lambda: set(controller.state.reboot_closed) == transactions
                         and not controller.state.sessions, 10,
                         "both sessions closed by the reconnect's boot")
        closed_seen = clock.now()

        # the DR event: the boot-closed cars, fixed loads at what their TxProfiles allow,
        # leave the plan nothing to lower until they are seen running again
        now = clock.now()
        await post_dr_event(server, UTILITY, "dr-reopen", now, now + timedelta(hours=1),
                            LIMIT_W)
        assert _allowed_w(station, clock.now() + timedelta(minutes=5)) > LIMIT_W

        # the station's next sample reopens both sessions (stamped in whole seconds: one
        # after the second of the close, or it may be from before the boot)
        closed_by = closed_seen.replace(microsecond=0) + timedelta(seconds=1)
        await wait_until(lambda: clock.now() > closed_by, 5, "the next second on the clock")
        station.trigger("MeterValues", None)
        await wait_until(lambda: set(controller.state.sessions) and {
            s.transaction_id for s in controller.state.sessions.values()} == transactions,
            10, "both sessions reopened")
        await wait_until(lambda: _allowed_w(station, clock.now() + timedelta(minutes=5))
                         <= LIMIT_W, 10,
                         "the reopened cars' profiles under the DR limit")
