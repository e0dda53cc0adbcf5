"""Session 34's judge: an ISO 15118 car says how many periods a schedule may have for it
(NotifyEVChargingNeeds `maxScheduleTuples`, ISO 15118-2's MaxEntriesSAScheduleTuple: "the
maximum schedule tuples the car supports per schedule"); the station hands our TxProfile on to
the car as its schedule, so a profile with more periods than that cannot reach the car. It was
stored and then ignored: the EVSE got as many periods as the station takes
(`PeriodsPerSchedule`). Real server, real WebSockets, the strict 2.0.1 station, real SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.v201 import call

from smartcharge.clock import format_ocpp_time
from tests.conftest import API_TOKEN, PASSWORD, make_site
from tests.ocpp201_station import StationSetup
from tests.ocpp201_station import station201 as strict201
from tests.sim_fixtures import real_server
from tests.site_e2e import wait_until

TUPLES = 2


def _tx_periods(station, evse_id: int) -> list[list[dict]]:
    """The periods of every TxProfile the station took on `evse_id`, in order."""
    return [p["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"]
            for p in station.of("SetChargingProfile")
            if p["evseId"] == evse_id
            and p["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"]


def _needs(evse_id: int, departure: datetime, tuples: int | None) -> call.NotifyEVChargingNeeds:
    return call.NotifyEVChargingNeeds(
        evse_id=evse_id, max_schedule_tuples=tuples, charging_needs={
            "requested_energy_transfer": "AC_three_phase",
            "departure_time": format_ocpp_time(departure),
            "ac_charging_parameters": {"energy_amount": 60_000, "ev_min_current": 6,
                                       "ev_max_current": 32, "ev_max_voltage": 400}})


def _changing_cap(now: datetime) -> dict:
    """An operator's cap that changes every 5 minutes for half an hour: a car's plan changes
    with it, and its TxProfile has a period for each change."""
    return {"windows": [
        {"start": format_ocpp_time(now + timedelta(minutes=m)),
         "end": format_ocpp_time(now + timedelta(minutes=m + 5)), "limit_w": limit_w}
        for m, limit_w in ((5, 12_000), (10, 20_000), (15, 8_000), (20, 16_000), (25, 10_000),
                           (30, 18_000))]}


async def test_a_cars_max_schedule_tuples_bounds_the_periods_it_is_sent(controlled):
    """A car on CP1 under an operator's cap that changes every 5 minutes: its plan changes
    too, and its TxProfile has a period for each change. Then its needs arrive: it takes at
    most 2 periods. Failed first: the TxProfiles sent after its needs had 6 and more."""
    harness = controlled
    now = datetime.now(UTC).replace(microsecond=0)
    async with harness.api.put(harness.url("/api/site/cap-schedule"),
                               json=_changing_cap(now)) as answer:
        assert answer.status == 200, await answer.text()
    ws_url = harness.url("/ocpp").replace("http", "ws", 1)
    async with strict201(ws_url, "CP1", PASSWORD) as cp1:
        await cp1.start_transaction(1, id_token="DRIVER-1")
        # before its needs: a period per change of the plan (this test bites)
        await harness.wait_for(lambda: any(len(p) > TUPLES for p in _tx_periods(cp1, 1)), 15)
        before = len(_tx_periods(cp1, 1))
        await cp1.call(_needs(1, now + timedelta(hours=6), TUPLES))
        await harness.wait_for(lambda: len(_tx_periods(cp1, 1)) > before, 15)
        after = _tx_periods(cp1, 1)[before:]
        assert [len(p) for p in after if len(p) > TUPLES] == [], after


async def test_a_cars_max_schedule_tuples_still_bounds_its_periods_after_a_restart(tmp_path):
    """The car told its needs, the server restarts (its station reconnects, no reboot): what
    is sent it then is still at most 2 periods (the needs are rebuilt from the store)."""
    db_path, site = tmp_path / "s.sqlite", make_site()
    now = datetime.now(UTC).replace(microsecond=0)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with real_server(site, db_path) as server:
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.put(f"{server.http_url}/api/site/cap-schedule",
                                json=_changing_cap(now)) as answer:
                assert answer.status == 200, await answer.text()
        async with strict201(server.ws_url, "CP1", PASSWORD) as cp1:
            await cp1.start_transaction(1, id_token="DRIVER-1")
            await cp1.call(_needs(1, now + timedelta(hours=6), TUPLES))
            table = cp1.table
    async with real_server(site, db_path) as server:
        async with strict201(server.ws_url, "CP1", PASSWORD, boot=False,
                             setup=StationSetup(registered_from_before=True)) as cp1:
            cp1.table = table     # what it held, and its transaction, from before
            await wait_until(lambda: _tx_periods(cp1, 1), 15, "a TxProfile after the restart")
            assert [len(p) for p in _tx_periods(cp1, 1) if len(p) > TUPLES] == []
