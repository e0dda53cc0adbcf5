"""A late 2.0.1 event that revises a stopped session's bill (an offline Updated arriving after
its Ended) changes the store and `/api/sessions`, and nothing the site shows: the site and the
dashboard show open sessions only, and the late event neither reopens the session there nor
leaves a stale energy - so no second SessionStopped is needed (docs/ocpp201.md)."""

from datetime import UTC, datetime, timedelta

import aiohttp

from smartcharge.clock import AcceleratedClock
from smartcharge.site.topology import ConnectorRef
from tests.ocpp201_station import station201
from tests.site_e2e import wait_until
from tests.test_v201_lost_started import _server
from tests.test_v201_port import PASSWORD
from tests.v201_billing import tx_event

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF = ConnectorRef("CP201", 1)


async def _get(server, path: str):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.http_url}{path}") as response:
            assert response.status == 200
            return await response.json()


async def test_a_late_revision_of_a_stopped_bill_leaves_nothing_stale_on_the_site(tmp_path):
    clock = AcceleratedClock(T0, speed=1.0)
    async with _server(tmp_path, clock) as server:
        state = server.controller.state
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as station:
            at = T0 - timedelta(minutes=40)
            await station.call(tx_event("Started", "late-1", 0, at, register_wh=0.0))
            await station.call(tx_event("Updated", "late-1", 1, at + timedelta(minutes=10),
                                        register_wh=2_000.0))
            await wait_until(lambda: REF in state.sessions and
                             state.sessions[REF].energy_wh == 2_000.0, 10, "the session")
            # ended without registers: billed from the last one seen
            await station.call(tx_event("Ended", "late-1", 3, at + timedelta(minutes=30)))
            await wait_until(lambda: REF not in state.sessions, 10, "the session stopped")
            [row] = await _get(server, "/api/sessions")
            assert row["energy_wh"] == 2_000.0
            # the offline Updated that was queued before the Ended
            await station.call(tx_event("Updated", "late-1", 2, at + timedelta(minutes=20),
                                        register_wh=3_500.0, offline=True))
            [row] = await _get(server, "/api/sessions")
            assert row["energy_wh"] == 3_500.0          # the bill is revised
            snapshot = await _get(server, "/api/site")
            assert REF not in state.sessions and snapshot["sessions"] == []
            connector = next(c for c in snapshot["connectors"] if c["connector_id"] == 1)
            assert connector["session_id"] is None
