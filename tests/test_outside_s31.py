"""Session 31's outside judge: peers written elsewhere, at what sessions 21-30 left open or did
not walk (docs/promises.md, "Audit, session 31 (judge)"). Real server, real WebSockets, real
`ocpp` messages (the library's schema checks on every frame), real SQLite."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.clock import parse_ocpp_time
from smartcharge.ocpp.port_base import LEAD_IN_S
from tests.test_outside_s30 import _accepting_station, _status
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)
# how far the stations' clocks run ahead (the times they are sent are moved up to an hour:
# clock_offset.MAX_SHIFT_S)
AHEAD = timedelta(minutes=50)


async def _api_status(harness, station_id: str, connector_id: int) -> str:
    async with harness.api.get(harness.url(f"/api/stations/{station_id}")) as answer:
        body = await answer.json()
    [connector] = [c for c in body["connectors"] if c["connector_id"] == connector_id]
    return connector["status"]


async def _site_status(harness, station_id: str, connector_id: int) -> str:
    async with harness.api.get(harness.url("/api/site")) as answer:
        snapshot = await answer.json()
    [connector] = [c for c in snapshot["connectors"]
                   if (c["station_id"], c["connector_id"]) == (station_id, connector_id)]
    return connector["status"]


async def _our_time(station) -> Callable[[], datetime]:
    """The clock of a station that sets it from a Heartbeat's answer (OCPP: "the Charge Point
    MAY use it to synchronize its clock"): the answer's currentTime, running on from then -
    what it stamps each later message with when it sends it. (Every later message stamped
    with the answer's time itself read, after a worker starved for 5 s between the answer and
    them, as a station 5 s behind our clock: not set to ours (`clock_offset.AGREE_S`), the
    50 min kept - a full suite's failure of the new-clock test, once. A station's clock
    runs.)"""
    from ocpp.v16 import call
    answer = await station.call(call.Heartbeat(), suppress=False)
    synced, at_s = parse_ocpp_time(answer.current_time), time.monotonic()
    return lambda: synced + timedelta(seconds=time.monotonic() - at_s)


# -- a station's clock set back without a reboot --------------------------------------------
# Session 30 made a status stamped before the one held history (a station's queue delivered
# after its current status), in the site, the store and a 2.0.1 EVSE's connectors, with a
# BootNotification letting the next status stand. A station whose clock runs 50 min ahead and
# sets it from our Heartbeat's currentTime (OCPP lets it; many do) stamps its next, real
# statuses 50 min before the one held: each was ignored, the connector kept `Charging` for a
# car that had left, until the station's clock passed the old stamp - 50 min later.
async def test_a_1_6_station_that_sets_its_clock_back_from_our_heartbeat_is_believed(
        controlled):
    """Failed first: the API and the site still said Charging after the car left."""
    harness = controlled
    station = await _accepting_station(harness, "CP1")
    ahead = datetime.now(UTC) + AHEAD                     # the station's clock, 50 min ahead
    await _status(station, 1, "Preparing", ahead)
    tx_id = (await station.start_tx(1, 1_000, ahead)).transaction_id
    await _status(station, 1, "Charging", ahead + 2 * MIN / 60)
    assert await _api_status(harness, "CP1", 1) == "Charging"
    its_clock = await _our_time(station)               # it takes our time: 50 min back
    await station.stop_tx(tx_id, 3_000, its_clock())
    await _status(station, 1, "Finishing", its_clock())
    await _status(station, 1, "Available", its_clock())
    assert await _api_status(harness, "CP1", 1) == "Available"
    assert await _site_status(harness, "CP1", 1) == "Available"


async def test_a_2_0_1_station_that_sets_its_clock_back_from_our_heartbeat_is_believed(
        controlled):
    """The same through a 2.0.1 EVSE (its connectors' stamps kept by the adapter). Failed
    first: Occupied."""
    from ocpp.v201 import call
    harness = controlled
    station = await station201(harness)
    ahead = datetime.now(UTC) + AHEAD
    await station.status(1, "Available", ahead)
    await station.status(1, "Occupied", ahead + MIN / 60)
    assert await _api_status(harness, "CP1", 1) == "Occupied"
    synced = parse_ocpp_time((await station.send(call.Heartbeat())).current_time)
    await station.status(1, "Available", synced)
    assert await _api_status(harness, "CP1", 1) == "Available"
    assert await _site_status(harness, "CP1", 1) == "Available"


async def test_a_2_0_1_evse_of_two_connectors_whose_clock_is_set_back_is_believed(controlled):
    """A 2.0.1 EVSE of two connectors, 50 min ahead, set to our clock: the EVSE's status was
    stamped with its connectors' newest stamp (the other connector's, still on the old
    clock) but read as the new message's (in step) - held so, every later status stamped by
    the new clock was history again. Failed first: Occupied after both connectors were
    Available."""
    from ocpp.v201 import call
    harness = controlled
    station = await station201(harness)
    ahead = datetime.now(UTC) + AHEAD
    await station.status(1, "Available", ahead, connector_id=1)
    await station.status(1, "Available", ahead + MIN / 60, connector_id=2)
    synced = parse_ocpp_time((await station.send(call.Heartbeat())).current_time)
    await station.status(1, "Occupied", synced, connector_id=1)   # a car on connector 1
    assert await _site_status(harness, "CP1", 1) == "Occupied"
    await station.status(1, "Available", synced + MIN / 60, connector_id=2)
    await station.status(1, "Available", synced + 2 * MIN / 60, connector_id=1)   # it left
    assert await _api_status(harness, "CP1", 1) == "Available"
    assert await _site_status(harness, "CP1", 1) == "Available"


async def test_history_from_the_queue_of_a_station_ahead_is_still_history(controlled):
    """What session 30's rule is for, on a station whose clock runs 50 min ahead: an
    `Available` from its queue, stamped (on its clock) before the car came, after `Charging`,
    is history - on our clock too."""
    harness = controlled
    station = await _accepting_station(harness, "CP1")
    ahead = datetime.now(UTC) + AHEAD
    await _status(station, 1, "Preparing", ahead - 10 * MIN)
    await station.start_tx(1, 1_000, ahead)
    await _status(station, 1, "Charging", ahead + MIN / 60)
    await _status(station, 1, "Available", ahead - 20 * MIN)    # from its queue
    assert await _api_status(harness, "CP1", 1) == "Charging"
    assert await _site_status(harness, "CP1", 1) == "Charging"


def _recording_station_class():
    """The harness's 1.6 station, taking every charging profile it is sent (Accepted) and
    keeping each with the moment it came."""
    from ocpp.routing import on
    from ocpp.v16 import call_result
    from ocpp.v16.enums import Action

    from tests.test_outside_s30 import _accepting_station_class

    class RecordingStation(_accepting_station_class()):
        profiles: list[dict]

        @on(Action.set_charging_profile)
        async def set_profile(self, **payload):
            self.profiles.append(payload)
            return call_result.SetChargingProfile(status="Accepted")

    return RecordingStation


async def _recording_station(harness, station_id: str):
    import asyncio

    from tests.conftest import WsConnection
    ws = await harness.open_ws(station_id)
    station = _recording_station_class()(station_id, WsConnection(ws))
    station.profiles = []
    station.ws = ws
    harness._tasks.append(asyncio.create_task(harness._serve(station)))
    assert (await station.boot()).status == "Accepted"
    return station


def _held(profiles: list[dict]) -> dict:
    """The profiles a station holds: the last of each connector, purpose and stack level."""
    return {(p["connector_id"], p["cs_charging_profiles"]["charging_profile_purpose"],
             p["cs_charging_profiles"]["stack_level"]): p for p in profiles}


def _starts(profile: dict) -> datetime:
    start = profile["cs_charging_profiles"]["charging_schedule"].get("start_schedule")
    return datetime.min.replace(tzinfo=UTC) if start is None else parse_ocpp_time(start)


async def test_a_station_that_sets_its_clock_to_ours_gets_schedules_on_its_new_clock(
        controlled):
    """The same station 50 min ahead: its schedules go out moved 50 min onto its clock
    (session 23's skew: it ignores our time). Then it sets its clock from our Heartbeat and
    says so in every stamp - two statuses stamped by our clock. The estimate kept the old
    50 min (its values stay in the 10-minute window): a cap PUT then sent a TxProfile
    starting 50 min in the station's future - nothing of it in force, the car at its old
    limit under the new cap. Failed first: startSchedule 50 min ahead."""
    harness = controlled
    station = await _recording_station(harness, "CP1")
    # its set-up (fail-safe defaults) before any stamp: on our clock
    await harness.wait_for(lambda: ("TxDefaultProfile" in {
        key[1] for key in _held(station.profiles)}))
    ahead = datetime.now(UTC) + AHEAD
    await _status(station, 1, "Preparing", ahead)
    tx_id = (await station.start_tx(1, 1_000, ahead)).transaction_id
    await _status(station, 1, "Charging", ahead + MIN / 60)
    # the car on a TxProfile of its plan before the cap, so that the cap is a decrease of it
    # and a TxProfile must go out: were the cap's plan the car's first, it needs none (4 kW is
    # under a 3-phase car's 6 A minimum: 0 A, which the 0 A default under the car already
    # holds). Quiet, the car's TxProfile went out 10 ms before the PUT; one possible path to
    # two failures under load in session 34 (not reproduced in session 35: benchmarks/README)
    await harness.wait_for(lambda: any(
        p["cs_charging_profiles"].get("transaction_id") == tx_id for p in station.profiles))
    # its offset known: what it holds sent again, moved onto its clock (session 24); every
    # schedule begins LEAD_IN_S before the now it is sent at (`schedules.lead_in`)
    await harness.wait_for(lambda: any(
        _starts(p) + timedelta(seconds=LEAD_IN_S) > datetime.now(UTC) + AHEAD / 2
        for p in _held(station.profiles).values()
        if p["cs_charging_profiles"]["charging_profile_purpose"] == "TxDefaultProfile"))
    its_clock = await _our_time(station)               # it takes our time: 50 min back
    await _status(station, 1, "SuspendedEVSE", its_clock())
    await _status(station, 1, "Charging", its_clock())
    # what it holds went out on its old clock: its fail-safe defaults too, 50 min in its
    # future now - not in force if we die. Sent again on its new clock (they were sent again
    # once on this connection already, when its offset became known: once was all)
    await harness.wait_for(lambda: all(
        _starts(p) <= datetime.now(UTC) for p in _held(station.profiles).values()))
    sent_before = len(station.profiles)
    async with harness.api.put(harness.url("/api/site/cap"),
                               json={"limit_w": 4_000}) as answer:
        assert answer.status == 200, await answer.text()
        body = await answer.json()

    def told_now() -> list[dict]:
        return [p["cs_charging_profiles"] for p in station.profiles[sent_before:]
                if p["cs_charging_profiles"].get("transaction_id") == tx_id]
    # the answer waits for the decreases a bounded time: on a starved worker it came with
    # CP1 still pending (its TxProfile not out yet; met once in a suite at load ~20)
    try:
        await harness.wait_for(lambda: bool(told_now()), 10)
    except AssertionError:
        # (every profile it was sent, not only those after the cap: what it held before)
        raise AssertionError((body, sent_before, station.profiles)) from None
    told = told_now()
    station_now = datetime.now(UTC)        # its clock is ours now
    for profile in told:
        start = profile["charging_schedule"].get("start_schedule")
        assert start is None or parse_ocpp_time(start) <= station_now, profile


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_one_status_stamped_years_ahead_does_not_freeze_the_connector(controlled, version):
    """Hostile input: one StatusNotification stamped in 2099 (a clock glitch, an unset RTC read
    as garbage) from a station in step. Session 30's rule made every later status - stamped
    before 2099 - history: the connector kept that status until the station's next reboot.
    The next status stamped by our clock replaces it now (it was ahead). Failed first on
    7557076 for both versions (the glitch's status stood)."""
    harness = controlled
    now = datetime.now(UTC)
    if version == "1.6":
        station = await _accepting_station(harness, "CP1")
        await _status(station, 1, "Faulted", datetime(2099, 1, 1, tzinfo=UTC))
        await _status(station, 1, "Available", now)
    else:
        station = await station201(harness)
        await station.status(1, "Unavailable", datetime(2099, 1, 1, tzinfo=UTC))
        await station.status(1, "Available", now)
    assert await _api_status(harness, "CP1", 1) == "Available"
    assert await _site_status(harness, "CP1", 1) == "Available"


async def test_history_from_the_queue_of_a_station_ahead_after_a_reconnect(controlled):
    """The same queue delivered first on a new connection (a reconnect, no reboot): nothing of
    this connection tells its clock yet but that status's own stamp. This session's first
    mend (ae6ecc4) read stamps on our clock by the connection's offset estimate - the first
    stamp alone is taken for it - and placed this one at its arrival, over `Charging`: the
    judge's own case, failed on it; station stamps are compared as they are again."""
    harness = controlled
    station = await _accepting_station(harness, "CP1")
    ahead = datetime.now(UTC) + AHEAD
    await station.start_tx(1, 1_000, ahead)
    await _status(station, 1, "Charging", ahead + MIN / 60)
    await station.ws.close()
    again = await _accepting_station_again(harness, "CP1")
    await _status(again, 1, "Available", ahead - MIN / 60)     # from its queue
    assert await _api_status(harness, "CP1", 1) == "Charging"
    assert await _site_status(harness, "CP1", 1) == "Charging"


async def _accepting_station_again(harness, station_id: str):
    """The station connected again without a reboot (no BootNotification)."""
    import asyncio

    from tests.conftest import WsConnection
    from tests.test_outside_s30 import _accepting_station_class
    ws = await harness.open_ws(station_id)
    station = _accepting_station_class()(station_id, WsConnection(ws))
    station.ws = ws
    harness._tasks.append(asyncio.create_task(harness._serve(station)))
    return station


# -- SIGKILL in the middle of a boot ---------------------------------------------------------
async def test_killed_between_a_boots_commit_and_its_answer_the_sessions_bill_once(tmp_path):
    """A real `smartcharge serve`, SIGKILLed (tests/kill_point.py) once a BootNotification of a
    station that rebooted mid-session is committed - its open sessions closed by the reboot -
    and before the answer. The stations never learned they were registered: they boot again
    after the restart, then deliver their queued stops. One session each, billed stop - start
    once, stopped (not left closed by the reboot)."""
    import asyncio

    import aiohttp
    from ocpp.messages import MessageType
    from ocpp.v16 import call as call16
    from ocpp.v201 import call as call201

    from tests.hang_budget import hang_budget_s
    from tests.test_kill_points import T0, RawStation, Server, _frames_16, _store_rows
    from tests.v201_billing import tx_event

    async def connected(*stations) -> None:
        # a fresh interpreter importing the service took over 30 s at load ~20 (1 of 24
        # copies): the hang's bound, not the quiet time
        await server.wait_listening(timeout_s=hang_budget_s(30))
        await asyncio.gather(*(station.connect() for station in stations))

    server = Server(tmp_path, stations=2)
    boots = (call16.BootNotification(charge_point_vendor="Raw", charge_point_model="R"),
             call201.BootNotification(reason="PowerUp", charging_station={
                 "vendor_name": "Raw", "model": "R"}))
    at = [T0 + timedelta(minutes=m) for m in (0, 10, 20)]
    try:
        async with aiohttp.ClientSession() as http:
            cp1, cp2 = RawStation(http, server, "CP1", "ocpp1.6"), \
                RawStation(http, server, "CP2", "ocpp2.0.1")
            server.start()
            await connected(cp1, cp2)
            for station, boot in zip((cp1, cp2), boots):
                assert (await station.call("boot", boot))[0] == MessageType.CallResult
            started = await cp1.call("start", _frames_16()[0])
            _, meter, stop = _frames_16(started[2]["transactionId"])
            assert (await cp1.call("meter", meter))[0] == MessageType.CallResult
            assert (await cp2.call("started", tx_event(
                "Started", "T-1", 0, at[0], register_wh=1_000)))[0] == MessageType.CallResult
            assert (await cp2.call("updated", tx_event(
                "Updated", "T-1", 1, at[1], register_wh=2_500)))[0] == MessageType.CallResult
            server.process.kill()              # the first life ends anywhere
            server.process.wait(timeout=60)

            server.start("answer:BootNotification")   # both stations rebooted meanwhile
            await connected(cp1, cp2)
            answers = await asyncio.gather(*(station.call("boot-2", boot) for station, boot
                                             in zip((cp1, cp2), boots)))
            assert None in answers
            assert server.killed_at_its_point()

            server.start()
            await connected(cp1, cp2)
            for station, boot in zip((cp1, cp2), boots):
                assert (await station.call("boot-3", boot))[0] == MessageType.CallResult
            stop.reason = "PowerLoss"
            assert (await cp1.call("stop", stop))[0] == MessageType.CallResult
            assert (await cp2.call("ended", tx_event(
                "Ended", "T-1", 2, at[2], register_wh=4_000, stopped_reason="PowerLoss")))[
                    0] == MessageType.CallResult
    finally:
        server.stop()
    sessions, _ = await _store_rows(server.db_path)
    assert sorted((s.station_id, s.state, s.meter_start_wh, s.meter_stop_wh, s.energy_wh)
                  for s in sessions) == [("CP1", "stopped", 1_000, 4_000, 3_000),
                                         ("CP2", "stopped", 1_000, 4_000, 3_000)], sessions
