"""Only a transaction an earlier process knew can run profiles it sent: a station whose clock
is behind ours starts a new one after our start, stamped before it - it was taken for "older
than this process": asked about (GetCompositeSchedule) at every set-up and counted at its
maximum until a plan of ours was accepted (4 529 of 5 000 stations asked in the load
benchmark, whose stations' clocks are behind; its p99 doubled). Every start an earlier process
acknowledged is in the store: what was open there at our start is what may be unknown."""

import sqlite3
from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.sim.ev import SimEV
from tests.site_e2e import server_and_fleet, wait_until
from tests.test_dispatch_trust import REF1, SETTINGS, one_grid

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def test_a_new_transaction_stamped_before_our_start_is_ours(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(one_grid(22_000), tmp_path, clock, settings=SETTINGS,
                                fleet_kw={"clock_offsets_s": {"CP1": -3_600.0}}
                                ) as (server, fleet):
        controller = server.controller
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP1", 1, SimEV(capacity_wh=80_000, soc=0.2), "DRIVER-1")
        await wait_until(lambda: REF1 in controller.state.sessions, 10, "CP1's session")
        assert controller.state.sessions[REF1].started_at < T0   # before the server started
        assert not controller.installed.unknown_tx(
            REF1, controller.state.sessions[REF1].transaction_id)
        await fleet.station("CP1").go_offline()     # a new connection: its set-up again
        fleet.station("CP1").go_online()
        dispatcher = server.dispatcher
        await wait_until(lambda: dispatcher.stations["CP1"].setup_link is not None
                         and dispatcher.stations["CP1"].setup_link
                         is dispatcher.registry.get("CP1") and dispatcher.idle, 20,
                         "CP1 set up again on its new connection")
    with sqlite3.connect(tmp_path / "sc.sqlite") as conn:
        asked = conn.execute("SELECT count(*) FROM profiles_sent WHERE purpose "
                             "= 'GetCompositeSchedule'").fetchone()[0]
    assert asked == 0
