"""What a 2.0.1 station reported survives a SIGKILL of `smartcharge serve` (promise 1): an ISO
15118 car's need (energy and departure, NotifyEVChargingNeeds) and an external limit on an EVSE
(NotifyChargingLimit from the station's EMS) are in force after the restart before the station
re-sends anything - the need as it was taken (the energy asked for on top of what the session
had when the car asked), the limit until it ends or is cleared.

The server runs as a user runs it (a subprocess, wall clock); the station is the strict 2.0.1
test station over a real WebSocket; what the site does is read through the REST API."""

from __future__ import annotations

import contextlib
import signal
from datetime import UTC, datetime, timedelta

from sim_fixtures import STATION_PASSWORD
from smartcharge.clock import format_ocpp_time
from tests.hang_budget import hang_budget_s
from tests.ocpp201_station import station201
from tests.test_site_restart import Rig, listening
from tests.v201_reports import clear_limit, notify_limit, send_register

LIMIT_A = 10.0
LIMIT_W = LIMIT_A * 3 * 230.0


async def _site(rig: Rig) -> dict:
    status, snapshot = await rig.api("GET", "/api/site")
    assert status == 200, snapshot
    return snapshot


def _session(snapshot: dict, evse: int) -> dict | None:
    return next((s for s in snapshot["sessions"] if s["connector_id"] == evse), None)


def _allocated(snapshot: dict, evse: int) -> float | None:
    return next(c["allocated_w"] for c in snapshot["connectors"] if c["connector_id"] == evse)


class _HalfHourAgo:
    """The station's transaction began half an hour ago (its registers are then plausible)."""

    def now(self) -> datetime:
        return datetime.now(UTC) - timedelta(minutes=30)


@contextlib.asynccontextmanager
async def _station(rig: Rig, running: dict[int, str] | None = None):
    """The station, booted; or, with its `running` transactions, reconnected (it did not
    reboot: no BootNotification, which would end them)."""
    async with station201(f"ws://127.0.0.1:{rig.port}/ocpp", "CP1", STATION_PASSWORD,
                          boot=False, clock=_HalfHourAgo()) as station:
        station.table.transactions.update(running or {})
        if not running:
            await station.boot()
        yield station


async def test_ev_need_and_external_limit_survive_sigkill(tmp_path):
    rig = Rig(tmp_path)
    rig.start_server()
    try:
        await listening(rig.http_url)
        now = datetime.now(UTC)
        departure = (now + timedelta(hours=3)).replace(microsecond=0)
        async with _station(rig) as station:
            tx = await station.start_transaction(1)
            await send_register(station, 1, tx, 1, 2_000.0, now - timedelta(minutes=20))
            await station.notify_needs(1, 9_000.0, departure)
            await send_register(station, 1, tx, 2, 5_000.0, now - timedelta(minutes=10))
            await notify_limit(station, 1, "EMS", LIMIT_A, now - timedelta(minutes=1), 7200)
            # a limit cleared before the crash stays cleared
            await notify_limit(station, 2, "SO", 6.0, now - timedelta(minutes=1), 7200)
            await clear_limit(station, 2, "SO")
            before: dict = {}

            async def taken() -> bool:
                before.update(await _site(rig))
                session = _session(before, 1)
                return session is not None and session["energy_wh"] == 5_000.0 \
                    and session.get("need_source") == "ev" \
                    and 0 < (_allocated(before, 1) or 0) <= LIMIT_W + 1.0
            await wait_until_async(taken, 20, "the need, the registers and a plan under the "
                                   "EMS's limit")
            session = _session(before, 1)
            # the car asked 9 kWh more when the session had 2 kWh
            assert session["requested_wh"] == 11_000.0
            assert session["departure"] == format_ocpp_time(departure)

            await rig.restart(signal.SIGKILL)

        # restored from the store alone: the station has not re-sent anything yet
        after = await _site(rig)
        session = _session(after, 1)
        assert session is not None
        assert (session["requested_wh"], session["departure"], session["need_source"],
                session["energy_wh"]) == (11_000.0, format_ocpp_time(departure), "ev", 5_000.0)
        async with _station(rig, {1: tx}):
            after = {}

            async def planned() -> bool:
                # planned, not a fixed load: while the station is offline its connector counts
                # at its maximum (what it may draw), with no binding limit of a plan
                after.update(await _site(rig))
                connector = next(c for c in after["connectors"] if c["connector_id"] == 1)
                return connector["online"] and connector["binding"] is not None \
                    and (connector["allocated_w"] or 0) > 0
            await wait_until_async(planned, 20, "a plan after the restart")
            # the EMS's limit still binds the EVSE it was set on
            assert _allocated(after, 1) <= LIMIT_W + 1.0
    finally:
        await rig.close()


async def wait_until_async(predicate, timeout_s: float, what: str) -> None:
    """wait_until for a condition read over HTTP (each check is one request)."""
    import asyncio
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hang_budget_s(timeout_s)
    while not await predicate():
        assert loop.time() < deadline, \
            f"timed out after {hang_budget_s(timeout_s):g} s waiting for {what}"

        await asyncio.sleep(0.05)
