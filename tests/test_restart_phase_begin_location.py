"""A 2.0.1 session whose start register was measured per phase, at another location than the
outlet, keeps its live energy across a restart of `smartcharge serve`.

The station (a strict 2.0.1 one over a real WebSocket) reports its Transaction.Begin register
only per phase (L1, L2, L3, no total) at its grid inlet and at the car's side (a DC charger's
two meters), its samples per phase at the outlet and the inlet. The live run starts the inlet's
chain alone from that start register (`SessionStarted.meter_start_location`), so the outlet's
chain counts from its first value. The restart looked the start register's location up with
SQL on totals only (`phase = ''`): none found, the outlet's chain started from the inlet's
90 kWh and its first value read as a meter reset - the car counted 3 kWh it had not taken
(s25 left it; found by s26-trust). The server runs as a user runs it (a subprocess, SIGKILLed);
what the site counts is read through the REST API."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

from ocpp.v201 import call

from sim_fixtures import STATION_PASSWORD
from smartcharge.clock import format_ocpp_time
from tests.ocpp201_station import station201
from tests.test_site_restart import Rig, listening
from tests.test_site_restart_v201 import _site, wait_until_async

MIN = timedelta(minutes=1)
REGISTER = "Energy.Active.Import.Register"


def _per_phase(context: str, *where_wh: tuple[str, float]) -> list[dict]:
    """Each location's register split over L1, L2, L3 (equal thirds), no total."""
    return [{"value": wh / 3, "context": context, "measurand": REGISTER, "phase": phase,
             "location": where, "unit_of_measure": {"unit": "Wh"}}
            for where, wh in where_wh for phase in ("L1", "L2", "L3")]


def _event(event_type: str, tx: str, seq_no: int, at: datetime, values: list[dict],
           **extra) -> call.TransactionEvent:
    info = {"transaction_id": tx, "charging_state": "Charging"}
    if event_type == "Ended":
        info = {"transaction_id": tx, "stopped_reason": "EVDisconnected"}
    return call.TransactionEvent(
        event_type=event_type, timestamp=format_ocpp_time(at),
        trigger_reason={"Started": "Authorized", "Updated": "MeterValuePeriodic",
                        "Ended": "EVCommunicationLost"}[event_type],
        seq_no=seq_no, transaction_info=info, evse={"id": 1, "connector_id": 1},
        meter_value=[{"timestamp": format_ocpp_time(at), "sampled_value": values}], **extra)


def _sample(wh_outlet: float, wh_inlet: float) -> list[dict]:
    return _per_phase("Sample.Periodic", ("Outlet", wh_outlet), ("Inlet", wh_inlet))


async def _energy_wh(rig: Rig) -> float | None:
    snapshot = await _site(rig)
    session = next((s for s in snapshot["sessions"] if s["connector_id"] == 1), None)
    return None if session is None else session["energy_wh"]


async def test_a_restart_keeps_a_per_phase_inlet_start_out_of_the_outlet_chain(tmp_path):
    rig = Rig(tmp_path)
    rig.start_server()
    start = (datetime.now(UTC) - 30 * MIN).replace(microsecond=0)
    tx = "tx-phases"
    try:
        await listening(rig.http_url)
        url = f"ws://127.0.0.1:{rig.port}/ocpp"
        async with station201(url, "CP1", STATION_PASSWORD) as station:
            await station.call(_event(
                "Started", tx, 0, start,
                _per_phase("Transaction.Begin", ("Inlet", 90_000.0), ("EV", 900.0)),
                id_token={"id_token": "DRIVER-1", "type": "ISO14443"}))
            await station.call(_event("Updated", tx, 1, start + 10 * MIN,
                                      _sample(3_000.0, 93_000.0)))
            await station.call(_event("Updated", tx, 2, start + 20 * MIN,
                                      _sample(6_000.0, 96_000.0)))
            # the live run: the outlet's chain from its first value, 3 -> 6 kWh
            live: list = []

            async def counted() -> bool:
                live[:] = [await _energy_wh(rig)]
                return live[0] == 3_000.0
            await wait_until_async(counted, 20, f"the live energy of 3 kWh (read {live})")
            await rig.restart(signal.SIGKILL)

        # rebuilt from the store alone: what the live run counted, not 6 kWh (a reset from
        # the inlet's 90 kWh to the outlet's 3 kWh)
        assert await _energy_wh(rig) == 3_000.0
        async with station201(url, "CP1", STATION_PASSWORD, boot=False) as station:
            await station.call(_event("Updated", tx, 3, start + 25 * MIN,
                                      _sample(9_000.0, 99_000.0)))
            assert await _energy_wh(rig) == 6_000.0
            await station.call(_event("Ended", tx, 4, start + 28 * MIN, _per_phase(
                "Transaction.End", ("Outlet", 12_000.0), ("Inlet", 102_000.0))))
        status, sessions = await rig.api("GET", "/api/sessions")
        assert status == 200, sessions
        [session] = sessions
        # billed as the live run counts it: the outlet's 3 -> 12 kWh
        assert session["energy_wh"] == 9_000.0, session
    finally:
        await rig.close()
