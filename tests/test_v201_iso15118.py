"""A 2.0.1 transaction under the site's control, end to end over real WebSockets (issue 8): the
plan goes out as a TxProfile with the station's own transactionId; an ISO 15118 station refuses
it until the car's needs arrive (K15.FR.17) - the plan runs as the EVSE's default meanwhile, and
NotifyEVChargingNeeds changes the session's need and brings the TxProfile, without any API call;
remote-stop with our session id reaches the station with its own transaction id."""

from datetime import UTC, datetime, timedelta

import aiohttp

from smartcharge.clock import AcceleratedClock
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from smartcharge.ocpp.v201 import profiles as P
from tests.ocpp201_station import StationSetup, station201
from tests.site_e2e import control_server, wait_until
from tests.test_v201_port import PASSWORD, _installed, _set_up, _site

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF = ConnectorRef("CP201", 1)


def _tx_profiles(station, tx):
    return [p for p in _installed(station, P.TX_PROFILE, 1) if p["transactionId"] == tx]


async def test_plan_goes_out_as_a_txprofile_with_the_stations_transaction_id(tmp_path):
    """TC_K_-like: the running transaction's plan is a TxProfile on its EVSE for the station's
    own (string) transaction id; remote-stop with our integer id reaches it."""
    clock = AcceleratedClock(T0, speed=1.0)
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0),
                              insecure_open_api=True) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as station:
            await _set_up(server, station)
            tx = await station.start_transaction(1)
            controller = server.controller
            await wait_until(lambda: REF in controller.state.sessions, 10, "the session")
            await wait_until(lambda: _tx_profiles(station, tx), 10, "the TxProfile")
            assert station.table.refusals == []
            ours = controller.state.sessions[REF].transaction_id
            async with aiohttp.ClientSession() as http:
                response = await http.post(
                    f"{server.http_url}/api/stations/CP201/remote-stop",
                    json={"transaction_id": ours})
                assert response.status == 200, await response.text()
                assert (await response.json())["answer"] == {"status": "Accepted"}
            assert station.of("RequestStopTransaction") == [{"transactionId": tx}]


async def test_iso15118_txprofile_refused_until_the_needs_then_the_needs_shape_the_plan(
        tmp_path):
    clock = AcceleratedClock(T0, speed=1.0)
    setup = StationSetup(iso15118=True)
    async with control_server(_site(), tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0),
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, setup=setup,
                              clock=clock) as station:
            control = await _set_up(server, station)
            tx = await station.start_transaction(1)
            controller = server.controller
            await wait_until(lambda: REF in controller.state.sessions, 10, "the session")
            # refused before the needs: the plan runs as the EVSE's default meanwhile
            await wait_until(lambda: any("K15.FR.17" in r for r in station.table.refusals),
                             10, "the TxProfile refused (K15.FR.17)")
            await wait_until(lambda: 1 in control.sent, 10,
                             "the plan accepted as the EVSE's default")
            assert control.sent[1].default and not _tx_profiles(station, tx)
            assert REF not in controller.uncontrollable
            # the car tells its needs: 9 kWh by 2 hours from now; no API call
            departure = (clock.now() + timedelta(hours=2)).replace(microsecond=0)
            await station.notify_needs(1, 9_000.0, departure)
            session = controller.state.sessions[REF]
            await wait_until(lambda: session.need_source == "ev", 10, "the need taken")
            assert session.departure == departure
            assert session.requested_wh == session.energy_wh + 9_000.0
            # and the TxProfile goes out now, accepted
            # (the station holds it a moment before its answer reaches the site's record)
            await wait_until(lambda: _tx_profiles(station, tx) and not control.sent[1].default,
                             10, "the TxProfile after needs, recorded as the plan")
