"""Session 33's outside judge for OCPP 2.0.1: strict stations written to the spec's letter
(docs/promises.md, "Audit, session 33 (judge, 2.0.1)"). Real server, real WebSockets, real
`ocpp` 2.0.1 messages (the library's schema checks on every frame, `tests/ocpp201_station.py`),
real SQLite."""

from __future__ import annotations

import csv
import io

import pytest
from ocpp.v201 import call

from smartcharge.site.setup import CONTROLLER
from smartcharge.site.topology import ConnectorRef
from tests.conftest import PASSWORD
from tests.ocpp201_station import station201 as strict201

VOLTAGE_V = 230.0
EMS_LIMIT_A = 16.0                              # per phase, the station as a whole
EMS_LIMIT_W = EMS_LIMIT_A * 3 * VOLTAGE_V       # 11 040 W
CAP_W = 30_000.0


def _station_limit(evse_id: int | None) -> call.NotifyChargingLimit:
    """The station's energy manager limits the station (not one EVSE) to 16 A per phase."""
    return call.NotifyChargingLimit(
        evse_id=evse_id, charging_limit={"charging_limit_source": "EMS"},
        charging_schedule=[{"id": 1, "charging_rate_unit": "A", "charging_schedule_period": [
            {"start_period": 0, "limit": EMS_LIMIT_A, "number_phases": 3}]}])


# -- a limit on the station as a whole (K12) --------------------------------------------------
# NotifyChargingLimit without an EVSE - or with evseId 0, how many stations write it (OCPP 2.1
# says so in words; 2.0.1's SetChargingProfile reads evseId 0 of an external constraint as "an
# overall limit for the whole Charging Station") - limits the station's total: "the total load
# of all EVSEs SHALL NOT exceed this given limit" (K12.FR.01). Two cars on CP1 under it, one on
# CP2, a 30 kW cap over the three: CP1's cars together get at most 11 kW (what CP1 delivers),
# and CP2's car the room CP1 cannot use.
@pytest.mark.parametrize("evse_id", [None, 0])
async def test_a_station_wide_external_limit_is_planned_as_the_stations_total(controlled,
                                                                              evse_id):
    """Failed first: with no evseId each of CP1's EVSEs was planned up to the whole limit
    (2 x 11 040 W: CP2's car held at 7.9 kW while 11 kW of the cap stood unused); with
    evseId 0 the limit was stored and planned nowhere (CP1's cars at 11 kW each anyway, by
    the cap)."""
    harness = controlled
    async with harness.api.put(harness.url("/api/site/cap"), json={"limit_w": CAP_W}) as answer:
        assert answer.status == 200, await answer.text()
    ws_url = harness.url("/ocpp").replace("http", "ws", 1)
    async with strict201(ws_url, "CP1", PASSWORD) as cp1, \
            strict201(ws_url, "CP2", PASSWORD) as cp2:
        await cp1.call(_station_limit(evse_id))
        await cp1.start_transaction(1, id_token="DRIVER-1")
        await cp1.start_transaction(2, id_token="DRIVER-1")
        await cp2.start_transaction(1, id_token="DRIVER-1")
        controller = harness.app[CONTROLLER]
        refs = [ConnectorRef("CP1", 1), ConnectorRef("CP1", 2), ConnectorRef("CP2", 1)]

        def planned_all() -> bool:
            plan = controller.plan
            return plan is not None and all(ref in plan.connectors for ref in refs)
        await harness.wait_for(planned_all, 10)
        plan, now = controller.plan, controller.clock.now()
        cp1_w = sum(plan.connectors[ref].power_at(now) for ref in refs[:2])
        cp2_w = plan.connectors[refs[2]].power_at(now)
        assert cp1_w <= EMS_LIMIT_W + 1.0, (cp1_w, cp2_w)
        # the room CP1 cannot use is CP2's (30 kW - 11 kW; its station allows 22 kW)
        assert cp2_w >= CAP_W - EMS_LIMIT_W - 500.0, (cp1_w, cp2_w)


async def test_the_site_says_a_station_wide_external_limit_binds(controlled):
    """What binds CP1's two cars under its station-wide limit, as `/api/site` says: that
    limit, by its source - not the station's own maximum (the node it sits on), nor nothing."""
    harness = controlled
    ws_url = harness.url("/ocpp").replace("http", "ws", 1)
    async with strict201(ws_url, "CP1", PASSWORD) as cp1:
        await cp1.call(_station_limit(None))
        await cp1.start_transaction(1, id_token="DRIVER-1")
        await cp1.start_transaction(2, id_token="DRIVER-1")
        controller = harness.app[CONTROLLER]
        refs = [ConnectorRef("CP1", 1), ConnectorRef("CP1", 2)]
        await harness.wait_for(lambda: controller.plan is not None
                               and all(ref in controller.plan.connectors for ref in refs), 10)
        async with harness.api.get(harness.url("/api/site")) as answer:
            snapshot = await answer.json()
    cars = [c for c in snapshot["connectors"] if c["station_id"] == "CP1"]
    assert sum(c["allocated_w"] for c in cars) <= EMS_LIMIT_W + 1.0, cars
    assert [c["binding"] for c in cars] == 2 * [{
        "source": "station", "id": "CP1",
        "detail": "station limit set outside us (EMS)"}], cars


# -- a DC car's needs ---------------------------------------------------------------------------
# DCChargingParametersType: evMaxCurrent is the car's DC current (A at its battery's voltage,
# up to evMaxVoltage), evMaxPower optional. Without evMaxPower the car takes at most
# evMaxCurrent x evMaxVoltage - not evMaxCurrent per phase of the AC supply, which reads 40 A
# at 400 V (16 kW) as 27.6 kW and 20 A at 800 V (16 kW) as 13.8 kW.
@pytest.mark.parametrize("max_current_a, max_voltage_v", [(40, 400), (20, 800)])
async def test_a_dc_cars_most_is_its_current_times_its_voltage(controlled, max_current_a,
                                                                max_voltage_v):
    """Failed first: a DC car of 16 kW planned at 22 kW (its connector's maximum; the AC
    reading's 27.6 kW above it) - 6 kW of a 38 kW cap it cannot take, the AC car beside it
    short of it - and one of 800 V capped at 13.8 kW."""
    harness = controlled
    async with harness.api.put(harness.url("/api/site/cap"), json={"limit_w": 38_000}) as answer:
        assert answer.status == 200, await answer.text()
    ws_url = harness.url("/ocpp").replace("http", "ws", 1)
    async with strict201(ws_url, "CP1", PASSWORD) as cp1, \
            strict201(ws_url, "CP2", PASSWORD) as cp2:
        await cp1.start_transaction(1, id_token="DRIVER-1")
        answer = await cp1.call(call.NotifyEVChargingNeeds(evse_id=1, charging_needs={
            "requested_energy_transfer": "DC", "dc_charging_parameters": {
                "ev_max_current": max_current_a, "ev_max_voltage": max_voltage_v,
                "energy_amount": 60_000}}))
        assert answer.status == "Accepted"
        await cp2.start_transaction(1, id_token="DRIVER-1")
        controller = harness.app[CONTROLLER]
        dc_car, ac_car = ConnectorRef("CP1", 1), ConnectorRef("CP2", 1)

        def planned_both() -> bool:
            plan = controller.plan
            return plan is not None and dc_car in plan.connectors and ac_car in plan.connectors
        await harness.wait_for(planned_both, 10)
        plan, now = controller.plan, controller.clock.now()
        dc_w, ac_w = plan.connectors[dc_car].power_at(now), plan.connectors[ac_car].power_at(now)
        assert (dc_w, ac_w) == (pytest.approx(16_000.0, abs=1.0),
                                pytest.approx(22_000.0, abs=1.0)), (dc_w, ac_w)


# -- an Ended for a transaction we never saw --------------------------------------------------
# A station whose queue lost the Started and every Updated (a power loss, a full queue) sends
# the Ended alone. Its End register says where the meter stood, not what the car took: nothing
# to go on, so `unverifiable` and not billable - as 1.6's StopTransaction of an unknown
# transaction is - never 0 Wh billed as established. An Ended that carries its Begin value
# beside its End value (TxEndedMeasurands) is billed from them.
async def test_an_ended_alone_is_unverifiable_not_zero(controlled):
    """Failed first: the lone Ended billed 0.0 Wh, `billable` true (its End register taken
    as its own first sample: a step of 0 Wh in 0 s)."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import ID_TAG, ocpp_time
    from tests.v201_billing import tx_event
    harness = controlled
    now = datetime.now(UTC).replace(microsecond=0)
    with_begin = tx_event("Ended", "with-begin", 4, now, register_wh=9_000, evse=2)
    with_begin.meter_value.insert(0, {
        "timestamp": ocpp_time(now - timedelta(hours=1)), "sampled_value": [{
            "value": 5_000, "context": "Transaction.Begin",
            "measurand": "Energy.Active.Import.Register"}]})
    async with strict201(harness.url("/ocpp").replace("http", "ws", 1), "CP1", PASSWORD
                         ) as station:
        await station.call(tx_event("Ended", "alone", 7, now, register_wh=3_000))
        await station.call(with_begin)
    async with harness.api.get(harness.url("/api/sessions?station=CP1")) as answer:
        rows = {r["station_transaction_id"]: r for r in await answer.json()}
    async with harness.api.get(harness.url("/api/sessions.csv?station=CP1")) as answer:
        csv_rows = list(csv.DictReader(io.StringIO(await answer.text())))
    # by the header: the columns' places are not the interface (s34 added one at the end)
    billable = {row["transaction_id"]: row["billable"] for row in csv_rows}
    alone, begun = rows["alone"], rows["with-begin"]
    assert (alone["energy_wh"], billable[str(alone["transaction_id"])]) == (None, "false"), alone
    assert "unverifiable" in alone["flags"], alone
    assert (begun["energy_wh"], billable[str(begun["transaction_id"])]) == (4_000.0, "true"), \
        begun
    assert alone["id_tag"] == ID_TAG


async def test_a_station_wide_external_limit_survives_a_sigkill_as_the_stations_total(tmp_path):
    """The station-wide limit (evseId 0) through a SIGKILL of `smartcharge serve`: rebuilt
    from the stored report, the restarted server plans CP1's two cars within it together (the
    grid leaves them 22 kW each) before CP1 reports anything again - it reconnects without a
    reboot. Failed first: 22 080 W each (evseId 0 was applied nowhere)."""
    import asyncio
    import signal

    from sim_fixtures import STATION_PASSWORD
    from tests.hang_budget import hang_budget_s
    from tests.test_outside_s32_201 import ANSWER_S
    from tests.test_site_restart import Rig, listening
    from tests.test_site_restart_v201 import _site

    rig = Rig(tmp_path)    # CP1, two 22 kW connectors, a 44 kW grid
    rig.start_server()
    url = f"ws://127.0.0.1:{rig.port}/ocpp"
    try:
        await listening(rig.http_url)
        async with strict201(url, "CP1", STATION_PASSWORD, response_timeout_s=ANSWER_S) as cp1:
            await cp1.call(_station_limit(0))
            running = {evse: await cp1.start_transaction(evse) for evse in (1, 2)}
            await rig.restart(signal.SIGKILL)
        async with strict201(url, "CP1", STATION_PASSWORD, boot=False,
                             response_timeout_s=ANSWER_S) as cp1:
            cp1.table.transactions.update(running)
            # the plan once CP1 is set up again (until then it counts at its maximum); a
            # bounded wait that names what it saw last
            deadline = asyncio.get_running_loop().time() + hang_budget_s(30)
            while True:
                snapshot = await _site(rig)
                allocated = {c["connector_id"]: c["allocated_w"] for c in snapshot["connectors"]
                             if c["online"] and c["session_id"] is not None}
                if None not in allocated.values() and len(allocated) == 2 \
                        and sum(allocated.values()) <= EMS_LIMIT_W + 1.0:
                    break
                assert asyncio.get_running_loop().time() < deadline, allocated
                await asyncio.sleep(0.05)
    finally:
        await rig.close()


# -- a ClearedChargingLimit that names no EVSE (K13) -------------------------------------------
# ClearedChargingLimitRequest: chargingLimitSource, evseId optional ("EVSE Identifier"; no EVSE
# named: the station as a whole, as NotifyChargingLimit reads it, K12). The source's limit is
# cleared on the whole station - on every EVSE, not only a station-wide entry: the station
# applies none of that source's limits any more, and planning under them strands capacity.
def _evse_limit(evse_id: int, source: str = "EMS") -> call.NotifyChargingLimit:
    return call.NotifyChargingLimit(
        evse_id=evse_id, charging_limit={"charging_limit_source": source},
        charging_schedule=[{"id": 1, "charging_rate_unit": "A", "charging_schedule_period": [
            {"start_period": 0, "limit": EMS_LIMIT_A, "number_phases": 3}]}])


def _limits_of(harness, station_id: str) -> set[tuple[int | None, str]]:
    return {(evse, source) for (station, evse, source) in
            harness.app[CONTROLLER].reports.external if station == station_id}


@pytest.mark.parametrize("evse_id", [None, 0])
async def test_a_cleared_limit_without_an_evse_clears_the_sources_limits_on_every_evse(
        tmp_path, evse_id):
    """Failed first: the EMS limits reported on EVSEs 1 and 2 stayed in force after the
    station cleared the EMS's limit without an EVSE (only a station-wide entry was cleared) -
    live and after a restart (rebuilt from the stored reports). Another source's stays."""
    import contextlib

    from smartcharge.app import create_app
    from tests.conftest import make_site, serve_harness

    @contextlib.asynccontextmanager
    async def serving():
        app = create_app(make_site(), db_path=str(tmp_path / "s.sqlite"))
        served = serve_harness(app)
        try:
            yield await served.__anext__()
        finally:
            await served.aclose()

    async with serving() as harness:
        ws_url = harness.url("/ocpp").replace("http", "ws", 1)
        async with strict201(ws_url, "CP1", PASSWORD) as cp1:
            for evse, source in ((1, "EMS"), (2, "EMS"), (2, "SO")):
                await cp1.call(_evse_limit(evse, source))
            await harness.wait_for(lambda: _limits_of(harness, "CP1") == {
                (1, "EMS"), (2, "EMS"), (2, "SO")})
            await cp1.call(call.ClearedChargingLimit(charging_limit_source="EMS",
                                                     evse_id=evse_id))
            await harness.wait_for(lambda: _limits_of(harness, "CP1") == {(2, "SO")})
    async with serving() as harness:     # the same SQLite file: rebuilt from its reports
        await harness.wait_for(lambda: (2, "SO") in _limits_of(harness, "CP1"), 10)
        assert _limits_of(harness, "CP1") == {(2, "SO")}
