"""A 2.0.1 transaction whose TransactionEvent Started was lost (issue 8): the site learns of it
from its first Updated, with no start register (`SessionStarted.meter_start_wh` None - never
read as 0: a 4.5 MWh register is not 4.5 MWh delivered). It is planned, and the dashboard shows
the energy the registers that did arrive prove - before and after the server starts again on
the same SQLite file (restore)."""

from datetime import UTC, datetime, timedelta

import aiohttp

from smartcharge.clock import AcceleratedClock
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from tests.ocpp201_station import station201
from tests.site_e2e import control_server, wait_until
from tests.test_v201_port import PASSWORD, _site
from tests.v201_reports import send_register

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF = ConnectorRef("CP201", 1)
TX = "tx-started-lost"


def _server(tmp_path, clock):
    return control_server(_site(), tmp_path / "sc.sqlite", clock,
                          settings=ControllerSettings(stale_after_s=600.0),
                          dispatch=DispatchSettings(call_timeout_s=5.0), insecure_open_api=True)


async def _shown(server) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.http_url}/api/site") as response:
            assert response.status == 200
            snapshot = await response.json()
    return next(s for s in snapshot["sessions"] if s["connector_id"] == REF.connector_id)


async def _started_lost(station, controller) -> None:
    """A running transaction whose seq 0 (Started, with its Transaction.Begin register) never
    arrived: two periodic registers 2 kWh apart, then the site plans it."""
    station.table.transactions[1] = TX
    await send_register(station, 1, TX, 1, 4_500_000.0, T0 - timedelta(minutes=20))
    await send_register(station, 1, TX, 2, 4_502_000.0, T0 - timedelta(minutes=10))
    await wait_until(lambda: REF in controller.state.sessions, 10, "the session")


async def test_a_transaction_without_its_started_is_planned_and_shown_from_its_registers(
        tmp_path):
    clock = AcceleratedClock(T0, speed=1.0)
    async with _server(tmp_path, clock) as server:
        controller = server.controller
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as station:
            await _started_lost(station, controller)
            session = controller.state.sessions[REF]
            assert session.meter_start_wh is None
            assert session.energy_wh == 2_000.0
            assert (await _shown(server))["energy_wh"] == 2_000.0
            await wait_until(lambda: controller.plan is not None
                             and REF in controller.plan.connectors
                             and controller.plan.connectors[REF].power_at(clock.now()) > 0,
                             10, "the session planned")

    async with _server(tmp_path, clock) as server:
        session = server.controller.state.sessions[REF]
        assert session.meter_start_wh is None
        assert session.energy_wh == 2_000.0
        assert (await _shown(server))["energy_wh"] == 2_000.0


async def test_a_session_reopened_after_a_reboot_keeps_what_the_site_knew(tmp_path):
    """The station reboots (its sessions are closed), then shows the transaction went on: the
    session is open again with the energy so far and the need it had - not from 0 with no start
    register to count from."""
    clock = AcceleratedClock(T0, speed=1.0)
    async with _server(tmp_path, clock) as server:
        controller = server.controller
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as station:
            await _started_lost(station, controller)
            ours = controller.state.sessions[REF].transaction_id
            departure = T0 + timedelta(hours=5)
            async with aiohttp.ClientSession() as http:
                response = await http.put(f"{server.http_url}/api/sessions/{ours}", json={
                    "requested_wh": 9_000, "departure": "2026-01-01T17:00:00Z"})
                assert response.status == 200, await response.text()
            await station.boot()
            await wait_until(lambda: REF not in controller.state.sessions, 10,
                             "the session closed by the reboot")
            await send_register(station, 1, TX, 3, 4_503_000.0, T0 + timedelta(minutes=1))
            await wait_until(lambda: REF in controller.state.sessions, 10, "reopened")
            session = controller.state.sessions[REF]
            assert session.transaction_id == ours
            assert session.energy_wh == 3_000.0
            assert (session.requested_wh, session.departure, session.need_source) == (
                9_000.0, departure, "operator")
            assert (await _shown(server))["energy_wh"] == 3_000.0
