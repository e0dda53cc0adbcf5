"""What a 2.0.1 station reported comes back when the server starts again on the same SQLite file
(site/restore.py), in detail: a need a person set still wins over the car's, the car's minimum
current (evMinCurrent) is its connector's minimum again, an external limit that ended or was
cleared stays gone, one in force binds. Two server runs in one test over real sockets (the
SIGKILL case is tests/test_site_restart_v201.py)."""

from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.v201 import call

from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from tests.ocpp201_station import station201
from tests.site_e2e import control_server, wait_until
from tests.test_v201_port import PASSWORD, _site
from tests.v201_reports import clear_limit, notify_limit

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EV1, EV2 = ConnectorRef("CP201", 1), ConnectorRef("CP201", 2)
CAR_MIN_A = 10.0


def _server(tmp_path, clock):
    return control_server(_site(44_000.0), tmp_path / "sc.sqlite", clock,
                          settings=ControllerSettings(stale_after_s=600.0),
                          dispatch=DispatchSettings(call_timeout_s=5.0), insecure_open_api=True)


async def _needs(station, evse_id: int, energy_wh: float, departure: datetime):
    return await station.call(call.NotifyEVChargingNeeds(evse_id=evse_id, charging_needs={
        "requested_energy_transfer": "AC_three_phase",
        "departure_time": format_ocpp_time(departure),
        "ac_charging_parameters": {"energy_amount": int(energy_wh),
                                   "ev_min_current": int(CAR_MIN_A), "ev_max_current": 32,
                                   "ev_max_voltage": 400}}))


async def test_reports_come_back_as_they_were_taken(tmp_path):
    clock = AcceleratedClock(T0, speed=1.0)
    car_departure = T0 + timedelta(hours=4)
    person_departure = T0 + timedelta(hours=6)
    async with _server(tmp_path, clock) as server:
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock) as station:
            tx1 = await station.start_transaction(1)
            tx2 = await station.start_transaction(2)
            state = server.controller.state
            await wait_until(lambda: EV1 in state.sessions and EV2 in state.sessions, 10,
                             "both sessions")
            ours2 = state.sessions[EV2].transaction_id
            async with aiohttp.ClientSession() as http:
                response = await http.put(f"{server.http_url}/api/sessions/{ours2}", json={
                    "requested_wh": 7_000, "departure": format_ocpp_time(person_departure)})
                assert response.status == 200, await response.text()
            await _needs(station, 1, 12_000.0, car_departure)
            await _needs(station, 2, 30_000.0, car_departure)
            assert state.sessions[EV2].need_source == "operator"
            await notify_limit(station, 1, "EMS", 12.0, T0, 4 * 3600)      # in force
            await notify_limit(station, 1, "SO", 8.0, T0 - timedelta(hours=3), 3600)  # ended
            await notify_limit(station, 2, "Other", 7.0, T0, 4 * 3600)
            await clear_limit(station, 2, "Other")                          # cleared

    async with _server(tmp_path, clock) as server:
        controller = server.controller
        state = controller.state
        ev1, ev2 = state.sessions[EV1], state.sessions[EV2]
        assert (ev1.need_source, ev1.requested_wh, ev1.departure) == ("ev", 12_000.0,
                                                                      car_departure)
        assert (ev2.need_source, ev2.requested_wh, ev2.departure) == ("operator", 7_000.0,
                                                                      person_departure)
        assert set(controller.reports.external) == {("CP201", 1, "EMS")}
        async with station201(server.ws_url, "CP201", PASSWORD, clock=clock,
                              boot=False) as station:
            station.table.transactions.update({1: tx1, 2: tx2})
            await wait_until(lambda: controller.plan is not None
                             and EV1 in controller.plan.connectors, 10, "a plan with EVSE 1")
            cplan = controller.plan.connectors[EV1]
            assert cplan.min_power_w == CAR_MIN_A * 3 * 230.0
            assert cplan.power_at(clock.now()) <= 12.0 * 3 * 230.0 + 1.0
