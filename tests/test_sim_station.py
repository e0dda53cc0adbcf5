"""The simulated station over real WebSockets on 127.0.0.1.

Against the tiny independent central system in `sim_fixtures` (built on the `ocpp` library's
server side): profiles, configuration, triggers, availability, quirks, offline queueing.
Against the project's real server (when it is importable): billed energy, replay, remote control.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from ocpp.v16 import call

from sim_fixtures import (OPERATOR_TOKEN, mini_central_system, real_server, running_station,
                          sim_spec_for, site_toml, station_spec)
from smartcharge.clock import AcceleratedClock
from smartcharge.config import parse_site
from smartcharge.sim.ev import SimEV
from smartcharge.sim.station import Quirks
from smartcharge.store import SqliteStore

START = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
V = 230.0


def fast_clock(speed: float = 1200.0) -> AcceleratedClock:
    return AcceleratedClock(START, speed=speed)


def big_ev(**kwargs) -> SimEV:
    return SimEV(capacity_wh=200_000, soc=0.1, **kwargs)


def tx_profile(limit, *, unit="A", periods=None, stack=1, pid=11, purpose="TxProfile",
               start=None):
    schedule = {"chargingRateUnit": unit,
                "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": limit}]}
    if start is not None:
        schedule["startSchedule"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute" if start else "Relative",
            "chargingSchedule": schedule}


async def started(station, csms, connector_id=1, id_tag="TAG-OK", ev=None):
    await station.booted.wait()
    assert await station.plug_in(connector_id, ev or big_ev(), id_tag)
    await station.wait_for(
        lambda: station.connectors[connector_id].transaction.transaction_id is not None)
    return station.connectors[connector_id].transaction


async def test_session_is_reported_with_exact_registers_and_ordered_samples():
    clock = fast_clock()
    async with mini_central_system() as csms, \
            running_station(station_spec(), csms.url, clock) as station:
        tx = await started(station, csms)
        await station.wait_for(lambda: len([i for i in station.acknowledged
                                            if i[0] == "MeterValues"]) >= 5)
        stopped = await station.unplug(1)
        await station.drained()
    start = csms.of("StartTransaction")[0]
    stop = csms.of("StopTransaction")[0]
    assert stopped is tx and stop["transaction_id"] == tx.transaction_id
    assert stop["reason"] == "EVDisconnected"
    assert stop["meter_stop"] - start["meter_start"] == int(station.connectors[1].register_wh)
    assert stop["meter_stop"] > 0
    registers = [int(v["value"]) for m in csms.of("MeterValues") for s in m["meter_value"]
                 for v in s["sampled_value"] if v["measurand"] == "Energy.Active.Import.Register"]
    assert registers == sorted(registers) and registers[-1] <= stop["meter_stop"]
    assert all(m["transaction_id"] == tx.transaction_id for m in csms.of("MeterValues"))
    begin, end = stop["transaction_data"]
    assert begin["sampled_value"][0]["value"] == str(start["meter_start"])
    assert end["sampled_value"][0]["value"] == str(stop["meter_stop"])
    statuses = [s["status"] for s in csms.of("StatusNotification") if s["connector_id"] == 1]
    assert statuses[-4:] == ["Preparing", "Charging", "Finishing", "Available"]
    sample = csms.of("MeterValues")[0]["meter_value"][0]
    assert sample["timestamp"].endswith("Z") and "." not in sample["timestamp"]
    measurands = {(v["measurand"], v.get("phase")) for v in sample["sampled_value"]}
    assert measurands == {("Energy.Active.Import.Register", None), ("Power.Active.Import", None),
                          ("Current.Import", "L1"), ("Current.Import", "L2"),
                          ("Current.Import", "L3"), ("SoC", None)}


async def test_unknown_tag_is_not_started_and_offline_start_is_stopped_when_refused():
    clock = fast_clock()
    async with mini_central_system() as csms, \
            running_station(station_spec(), csms.url, clock) as station:
        await station.booted.wait()
        assert not await station.plug_in(1, big_ev(), "STRANGER")
        assert station.connectors[1].transaction is None
        # a start made without asking (as offline) is stopped once the answer says Invalid
        station.start_transaction(1, "STRANGER")
        await station.wait_for(lambda: bool(csms.of("StopTransaction")))
        assert csms.of("StopTransaction")[0]["reason"] == "DeAuthorized"


async def test_offline_samples_are_queued_and_replayed_in_order_with_original_times():
    clock = fast_clock()
    async with mini_central_system() as csms, \
            running_station(station_spec(), csms.url, clock) as station:
        tx = await started(station, csms)
        online_samples = len(csms.of("MeterValues"))
        csms.accepting = False
        await csms.drop("CP1")
        await station.wait_for(lambda: not station.connected.is_set())
        await station.wait_for(lambda: station.outbox.pending("MeterValues") >= 5)
        offline_stop = station.stop_transaction(1, "Local")
        assert offline_stop is tx
        queued_times = [item.created_at for item in station.outbox.queued()]
        csms.accepting = True
        await station.drained(timeout_s=15)
    samples = csms.of("MeterValues")
    replayed = samples[online_samples:]
    times = [m["meter_value"][0]["timestamp"] for m in samples]
    assert times == sorted(times) and len(set(times)) == len(times)   # nothing sent twice
    assert len(replayed) >= 5
    first_replayed = datetime.fromisoformat(replayed[0]["meter_value"][0]["timestamp"])
    assert first_replayed <= queued_times[0].replace(microsecond=0) + timedelta(seconds=1)
    stop = csms.of("StopTransaction")[-1]
    assert stop["transaction_id"] == tx.transaction_id
    last_register = int(replayed[-1]["meter_value"][0]["sampled_value"][0]["value"])
    assert last_register <= stop["meter_stop"]
    assert station.boots == 2


async def test_stop_queued_before_start_was_answered_carries_the_assigned_id():
    clock = fast_clock()
    async with mini_central_system(accepting=False) as csms:
        async with running_station(station_spec(), csms.url, clock) as station:
            # offline from the start: local authorization, everything queued
            assert await station.plug_in(1, big_ev(), "TAG-OK")
            station.stop_transaction(1, "Local")
            assert station.outbox.pending("StartTransaction") == 1
            csms.accepting = True
            await station.drained(timeout_s=15)
    start_id = csms.transaction_ids[("CP1", 1, csms.of("StartTransaction")[0]["timestamp"])]
    assert csms.of("StopTransaction")[0]["transaction_id"] == start_id


async def test_pending_boot_is_retried_after_the_interval_and_nothing_else_is_sent():
    clock = fast_clock()
    async with mini_central_system(boot_answers=["Pending", "Rejected"],
                                   heartbeat_interval_s=60) as csms, \
            running_station(station_spec(), csms.url, clock) as station:
        await asyncio.wait_for(station.booted.wait(), 10)
        await csms.wait_until(lambda: len(csms.of("StatusNotification")) >= 3)
    actions = [r.action for r in csms.received]
    assert actions[:3] == ["BootNotification"] * 3
    assert station.boots == 1 and station.config["HeartbeatInterval"].value == "60"


async def test_remote_start_and_stop():
    clock = fast_clock()
    async with mini_central_system() as csms, \
            running_station(station_spec(), csms.url, clock) as station:
        await station.booted.wait()
        await station.plug_in(2, big_ev(), id_tag=None)         # cable in, no badge
        link = csms.links["CP1"]
        answer = await link.call(call.RemoteStartTransaction(id_tag="DRIVER-1", connector_id=2),
                                 suppress=False)
        assert answer.status == "Accepted"
        await station.wait_for(lambda: station.connectors[2].transaction is not None
                               and station.connectors[2].transaction.transaction_id is not None)
        tx_id = station.connectors[2].transaction.transaction_id
        busy = await link.call(call.RemoteStartTransaction(id_tag="DRIVER-1", connector_id=2),
                               suppress=False)
        assert busy.status == "Rejected"
        wrong = await link.call(call.RemoteStopTransaction(transaction_id=tx_id + 999),
                                suppress=False)
        assert wrong.status == "Rejected"
        stop = await link.call(call.RemoteStopTransaction(transaction_id=tx_id), suppress=False)
        assert stop.status == "Accepted"
        await station.drained()
    assert csms.of("StopTransaction")[0]["reason"] == "Remote"
    assert csms.of("StartTransaction")[0]["id_tag"] == "DRIVER-1"


@pytest.mark.parametrize("kind", ["Soft", "Hard"])
async def test_reset_stops_reboots_and_resumes(kind):
    clock = fast_clock()
    async with mini_central_system() as csms, \
            running_station(station_spec(), csms.url, clock) as station:
        await started(station, csms)
        answer = await csms.links["CP1"].call(call.Reset(type=kind), suppress=False)
        assert answer.status == "Accepted"
        await station.wait_for(lambda: station.boots == 2, timeout_s=10)
        await station.wait_for(lambda: len(csms.of("StartTransaction")) == 2)
        await station.drained()
    first_stop = csms.of("StopTransaction")[0]
    assert first_stop["reason"] == f"{kind}Reset"
    second_start = csms.of("StartTransaction")[1]
    assert second_start["meter_start"] == first_stop["meter_stop"]   # register survives reboot
    assert len(csms.of("BootNotification")) == 2


async def test_profiles_are_obeyed_reported_and_cleared():
    clock = fast_clock()
    async with mini_central_system() as csms, \
            running_station(station_spec(), csms.url, clock) as station:
        await started(station, csms)
        link = csms.links["CP1"]
        assert station.draw_w(1) == pytest.approx(11_000)      # the car's own maximum
        answer = await link.call(call.SetChargingProfile(
            connector_id=1, cs_charging_profiles=tx_profile(10)), suppress=False)
        assert answer.status == "Accepted"
        assert station.draw_w(1) == pytest.approx(10 * V * 3)
        composite = await link.call(call.GetCompositeSchedule(
            connector_id=1, duration=3600, charging_rate_unit="A"), suppress=False)
        assert composite.status == "Accepted"
        periods = composite.charging_schedule["charging_schedule_period"]
        assert [float(p["limit"]) for p in periods] == [10.0]
        cp_max = await link.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=tx_profile(
            5000, unit="W", purpose="ChargePointMaxProfile", pid=1, stack=0)), suppress=False)
        assert cp_max.status == "Accepted"
        assert station.draw_w(1) == pytest.approx(5000)
        cleared = await link.call(call.ClearChargingProfile(), suppress=False)
        assert cleared.status == "Accepted"
        assert station.draw_w(1) == pytest.approx(11_000)
        nothing = await link.call(call.ClearChargingProfile(id=12345), suppress=False)
        assert nothing.status == "Unknown"


async def test_limit_below_minimum_current_pauses_and_a_later_period_resumes():
    clock = fast_clock(speed=600)
    async with mini_central_system() as csms, \
            running_station(station_spec(), csms.url, clock) as station:
        await started(station, csms, ev=big_ev(max_power_w_by_phases={3: 22_000}))
        now = clock.now().replace(microsecond=0)
        profile = tx_profile(None, start=now, periods=[
            {"startPeriod": 0, "limit": 0}, {"startPeriod": 300, "limit": 16}])
        answer = await csms.links["CP1"].call(call.SetChargingProfile(
            connector_id=1, cs_charging_profiles=profile), suppress=False)
        assert answer.status == "Accepted"
        register_before = station.connectors[1].register_wh
        assert station.draw_w(1) == 0
        await station.wait_for(lambda: station.connectors[1].status == "Charging"
                               and clock.now() >= now + timedelta(seconds=300))
        # exactly no energy in the paused 300 s: the physics splits steps at period boundaries
        gained_wh = station.connectors[1].register_wh - register_before
        resumed_s = (clock.now() - (now + timedelta(seconds=300))).total_seconds()
        assert gained_wh <= 16 * V * 3 * (resumed_s + 1) / 3600
        assert station.draw_w(1) == pytest.approx(16 * V * 3)
        statuses = [s["status"] for s in csms.of("StatusNotification") if s["connector_id"] == 1]
        assert "SuspendedEVSE" in statuses


@pytest.mark.parametrize("quirks, profile, expected", [
    (Quirks(reject_all_profiles=True), tx_profile(10), "Rejected"),
    (Quirks(reject_zero_limit=True), tx_profile(0), "Rejected"),
    (Quirks(reject_zero_limit=True), tx_profile(6), "Accepted"),
    (Quirks(only_rate_unit="W"), tx_profile(10), "Rejected"),
    (Quirks(only_rate_unit="W"), tx_profile(5000, unit="W"), "Accepted"),
    (Quirks(max_periods=1), tx_profile(None, periods=[{"startPeriod": 0, "limit": 8},
                                                      {"startPeriod": 60, "limit": 9}]),
     "Rejected"),
])
async def test_quirks(quirks, profile, expected):
    clock = fast_clock()
    async with mini_central_system() as csms, \
            running_station(station_spec(quirks=quirks), csms.url, clock) as station:
        await started(station, csms)
        answer = await csms.links["CP1"].call(call.SetChargingProfile(
            connector_id=1, cs_charging_profiles=profile), suppress=False)
        assert answer.status == expected
        if expected == "Rejected":
            assert station.draw_w(1) == pytest.approx(11_000)


async def test_misbehaving_station_accepts_but_ignores_profiles():
    clock = fast_clock()
    async with mini_central_system() as csms, running_station(
            station_spec(quirks=Quirks(ignore_profiles=True)), csms.url, clock) as station:
        await started(station, csms)
        answer = await csms.links["CP1"].call(call.SetChargingProfile(
            connector_id=1, cs_charging_profiles=tx_profile(6)), suppress=False)
        assert answer.status == "Accepted"
        assert station.draw_w(1) == pytest.approx(11_000)


async def test_configuration_keys():
    # 120x, not 1200x: the gaps between meter values are checked to +-1 s of site time, which
    # at 1200x was +-0.8 ms of real time and failed whenever the machine was loaded
    clock = fast_clock(120.0)
    async with mini_central_system() as csms, running_station(
            station_spec(quirks=Quirks(only_rate_unit="A", max_periods=5)), csms.url,
            clock) as station:
        await station.booted.wait()
        link = csms.links["CP1"]
        answer = await link.call(call.GetConfiguration(key=[
            "ChargeProfileMaxStackLevel", "ChargingScheduleMaxPeriods",
            "ChargingScheduleAllowedChargingRateUnit", "MaxChargingProfilesInstalled",
            "NoSuchKey"]), suppress=False)
        values = {k["key"]: k["value"] for k in answer.configuration_key}
        assert values == {"ChargeProfileMaxStackLevel": "10", "ChargingScheduleMaxPeriods": "5",
                          "ChargingScheduleAllowedChargingRateUnit": "Current",
                          "MaxChargingProfilesInstalled": "16"}
        assert answer.unknown_key == ["NoSuchKey"]
        everything = await link.call(call.GetConfiguration(), suppress=False)
        assert {"HeartbeatInterval", "MeterValueSampleInterval"} <= {
            k["key"] for k in everything.configuration_key}
        for key, value, status in [("ChargingScheduleMaxPeriods", "9", "Rejected"),
                                   ("NoSuchKey", "1", "NotSupported"),
                                   ("MeterValueSampleInterval", "soon", "Rejected"),
                                   ("MeterValueSampleInterval", "10", "Accepted")]:
            changed = await link.call(call.ChangeConfiguration(key=key, value=value),
                                      suppress=False)
            assert changed.status == status, key
        assert station.config["MeterValueSampleInterval"].value == "10"
        await started(station, csms)
        await station.wait_for(lambda: len(csms.of("MeterValues")) >= 5)
        times = [datetime.fromisoformat(m["meter_value"][0]["timestamp"])
                 for m in csms.of("MeterValues")[:5]]
        gaps_s = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
        # a sample is stamped at its scheduled moment unless the physics had already moved past
        # it (the loop woken late on a loaded machine: 1 s of site time is 8 ms at 120x), which
        # makes one gap longer and the next shorter (the schedule is kept); every gap checked
        # to +-1 s failed under two pytest-xdist workers at load 7. The median is the interval,
        # and no gap is anywhere near the old 60 s.
        assert 9 <= statistics.median(gaps_s) <= 11, gaps_s
        assert all(0 < gap < 30 for gap in gaps_s), gaps_s


async def test_trigger_message_and_availability():
    clock = fast_clock()
    async with mini_central_system() as csms, \
            running_station(station_spec(meter_interval_s=0), csms.url, clock) as station:
        tx = await started(station, csms)
        link = csms.links["CP1"]
        answer = await link.call(call.TriggerMessage(requested_message="MeterValues",
                                                     connector_id=1), suppress=False)
        assert answer.status == "Accepted"
        await csms.wait_until(lambda: len(csms.of("MeterValues")) == 1)
        assert csms.of("MeterValues")[0]["meter_value"][0]["sampled_value"][0]["context"] \
            == "Trigger"
        statuses_before = len(csms.of("StatusNotification"))
        answer = await link.call(call.TriggerMessage(requested_message="StatusNotification"),
                                 suppress=False)
        assert answer.status == "Accepted"
        await csms.wait_until(lambda: len(csms.of("StatusNotification")) == statuses_before + 3)
        scheduled = await link.call(call.ChangeAvailability(connector_id=1, type="Inoperative"),
                                    suppress=False)
        assert scheduled.status == "Scheduled"
        station.stop_transaction(1)
        await station.drained()
        assert station.connectors[1].status == "Unavailable"
        assert csms.of("StopTransaction")[0]["transaction_id"] == tx.transaction_id
        refused = await link.call(call.RemoteStartTransaction(id_tag="TAG-OK", connector_id=1),
                                  suppress=False)
        assert refused.status == "Rejected"
        down = await link.call(call.ChangeAvailability(connector_id=0, type="Inoperative"),
                               suppress=False)
        assert down.status == "Accepted"
        await csms.wait_until(lambda: {"connector_id": 0, "status": "Unavailable"}.items()
                              <= csms.of("StatusNotification")[-1].items())
        back = await link.call(call.ChangeAvailability(connector_id=0, type="Operative"),
                               suppress=False)
        assert back.status == "Accepted"
        unlocked = await link.call(call.UnlockConnector(connector_id=1), suppress=False)
        assert unlocked.status == "Unlocked"
        await csms.wait_until(lambda: any(
            s["connector_id"] == 1 and s["status"] == "Finishing"
            for s in csms.of("StatusNotification")[-3:]))


# ---- against the project's real server ----------------------------------------------------------


async def stored(db_path):
    store = await SqliteStore.open(str(db_path))
    try:
        sessions = await store.run(lambda tx: tx.sessions())
        samples = {s.transaction_id: await store.run(
            lambda tx, t=s.transaction_id: tx.samples(t)) for s in sessions}
    finally:
        await store.close()
    return sessions, samples


def periodic_registers(samples):
    return [(s["timestamp"], s["value_text"]) for s in samples
            if s["measurand"] == "Energy.Active.Import.Register"
            and s["context"] == "Sample.Periodic"]


def sent(station, action):
    return [request for name, request, _ in station.acknowledged if name == action]


async def test_real_server_bills_exactly_the_meter_delta(tmp_path):
    site = parse_site(site_toml(), tmp_path)
    clock = fast_clock()
    async with real_server(site, tmp_path / "db.sqlite") as server, \
            running_station(sim_spec_for(site, "CP1"), server.ws_url, clock) as station:
        await asyncio.wait_for(station.booted.wait(), 10)
        assert await station.plug_in(1, big_ev(), "DRIVER-1")
        await station.wait_for(lambda: len(sent(station, "MeterValues")) >= 5)
        await station.unplug(1)
        await station.drained()
    sessions, samples = await stored(tmp_path / "db.sqlite")
    start, stop = sent(station, "StartTransaction")[0], sent(station, "StopTransaction")[0]
    assert len(sessions) == 1
    session = sessions[0]
    assert session.state == "stopped" and session.stop_reason == "EVDisconnected"
    assert session.energy_wh == stop.meter_stop - start.meter_start
    assert session.energy_wh == int(station.connectors[1].register_wh) > 0
    stored_registers = periodic_registers(samples[session.transaction_id])
    assert len(stored_registers) == len(sent(station, "MeterValues"))


async def test_real_server_outage_replay_and_redelivery_lose_and_double_nothing(tmp_path):
    site = parse_site(site_toml(), tmp_path)
    clock = fast_clock()
    async with real_server(site, tmp_path / "db.sqlite") as server, \
            running_station(sim_spec_for(site, "CP1"), server.ws_url, clock) as station:
        await asyncio.wait_for(station.booted.wait(), 10)
        assert await station.plug_in(1, big_ev(), "DRIVER-1")
        await station.wait_for(lambda: len(sent(station, "MeterValues")) >= 3)
        await station.go_offline()
        await station.wait_for(lambda: not station.connected.is_set())
        await station.wait_for(lambda: station.outbox.pending("MeterValues") >= 5)
        station.go_online()
        await station.drained(timeout_s=15)
        assert station.redeliver(4) == 4        # answers lost: the same messages again
        await station.drained()
        await station.unplug(1)
        await station.drained()
        station.redeliver(1)                    # the StopTransaction, twice
        await station.drained()
    sessions, samples = await stored(tmp_path / "db.sqlite")
    assert len(sessions) == 1
    session = sessions[0]
    start, stop = sent(station, "StartTransaction")[0], sent(station, "StopTransaction")[0]
    assert session.energy_wh == stop.meter_stop - start.meter_start
    registers = periodic_registers(samples[session.transaction_id])
    assert not [key for key, n in Counter(registers).items() if n > 1]   # nothing doubled
    station_samples = {(v.meter_value[0]["timestamp"], v.meter_value[0]["sampledValue"][0]["value"])
                       for v in sent(station, "MeterValues")}
    stored_samples = {(datetime.fromisoformat(t).strftime("%Y-%m-%dT%H:%M:%SZ"), value)
                      for t, value in registers}
    assert stored_samples == station_samples                              # nothing lost


async def command(http, server, station_id, name, body):
    async with http.post(f"{server.http_url}/api/stations/{station_id}/{name}", json=body,
                         headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_real_server_remote_start_stop_and_reset(tmp_path):
    site = parse_site(site_toml(), tmp_path)
    clock = fast_clock()
    async with real_server(site, tmp_path / "db.sqlite") as server, \
            running_station(sim_spec_for(site, "CP1"), server.ws_url, clock) as station, \
            aiohttp.ClientSession() as http:
        await asyncio.wait_for(station.booted.wait(), 10)
        await station.plug_in(2, big_ev(), id_tag=None)
        answer = await command(http, server, "CP1", "remote-start",
                               {"id_tag": "DRIVER-2", "connector_id": 2})
        assert "Accepted" in str(answer)
        await station.wait_for(lambda: station.connectors[2].transaction is not None
                               and station.connectors[2].transaction.transaction_id is not None)
        await station.wait_for(lambda: len(sent(station, "MeterValues")) >= 2)
        tx_id = station.connectors[2].transaction.transaction_id
        answer = await command(http, server, "CP1", "remote-stop", {"transaction_id": tx_id})
        assert "Accepted" in str(answer)
        await station.wait_for(lambda: len(sent(station, "StopTransaction")) == 1)
        assert await station.plug_in(1, big_ev(), "DRIVER-1")
        await station.wait_for(lambda: len(sent(station, "StartTransaction")) == 2)
        answer = await command(http, server, "CP1", "reset", {"type": "Soft"})
        assert "Accepted" in str(answer)
        await station.wait_for(lambda: station.boots == 2, timeout_s=10)
        await station.wait_for(lambda: len(sent(station, "StartTransaction")) == 3)
        await station.unplug(1)
        await station.drained()
    sessions, _ = await stored(tmp_path / "db.sqlite")
    by_reason = sorted((s.stop_reason, s.energy_wh) for s in sessions)
    stops = sent(station, "StopTransaction")
    starts = sent(station, "StartTransaction")
    assert [s.reason for s in stops] == ["Remote", "SoftReset", "EVDisconnected"]
    expected = sorted((stop.reason, stop.meter_stop - start.meter_start)
                      for start, stop in zip(sorted(starts, key=lambda s: (s.timestamp,)),
                                             [stops[0], stops[1], stops[2]]))
    assert by_reason == expected
    assert all(s.state == "stopped" for s in sessions)


async def get_command(http, server, station_id, name, params):
    async with http.get(f"{server.http_url}/api/stations/{station_id}/{name}", params=params,
                        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["answer"]


async def test_real_server_configuration_trigger_availability_and_schedule_round_trips(tmp_path):
    site = parse_site(site_toml(), tmp_path)
    clock = fast_clock()
    async with real_server(site, tmp_path / "db.sqlite") as server, \
            running_station(sim_spec_for(site, "CP1", quirks=Quirks(max_periods=7)),
                            server.ws_url, clock) as station, \
            aiohttp.ClientSession() as http:
        await asyncio.wait_for(station.booted.wait(), 10)
        config = await get_command(http, server, "CP1", "configuration",
                                   [("key", "ChargingScheduleMaxPeriods"), ("key", "Nope")])
        assert config["configurationKey"] == [
            {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "7"}]
        assert config["unknownKey"] == ["Nope"]
        changed = await command(http, server, "CP1", "change-configuration",
                                {"key": "HeartbeatInterval", "value": "120"})
        assert changed["answer"]["status"] == "Accepted"
        assert station.config["HeartbeatInterval"].value == "120"
        assert await station.plug_in(1, big_ev(), "DRIVER-1")
        await station.wait_for(lambda: station.connectors[1].transaction.transaction_id
                               is not None)
        samples_before = len(sent(station, "MeterValues"))
        triggered = await command(http, server, "CP1", "trigger-message",
                                  {"requested_message": "MeterValues", "connector_id": 1})
        assert triggered["answer"]["status"] == "Accepted"
        await station.wait_for(lambda: any(
            request.meter_value[0]["sampledValue"][0]["context"] == "Trigger"
            for request in sent(station, "MeterValues")[samples_before:]))
        schedule = await get_command(http, server, "CP1", "composite-schedule",
                                     {"connector_id": "1", "duration_s": "600",
                                      "charging_rate_unit": "A"})
        assert schedule["status"] == "Accepted"
        assert [p["limit"] for p in schedule["chargingSchedule"]["chargingSchedulePeriod"]] \
            == [32.0]                                       # no profile: the connector maximum
        cleared = await command(http, server, "CP1", "clear-charging-profile", {"id": 4242})
        assert cleared["answer"]["status"] == "Unknown"
        scheduled = await command(http, server, "CP1", "change-availability",
                                  {"connector_id": 1, "type": "Inoperative"})
        assert scheduled["answer"]["status"] == "Scheduled"
        unlocked = await command(http, server, "CP1", "unlock-connector", {"connector_id": 1})
        assert unlocked["answer"]["status"] == "Unlocked"
        await station.wait_for(lambda: station.connectors[1].status == "Unavailable")
        await station.drained()
    sessions, _ = await stored(tmp_path / "db.sqlite")
    assert [s.stop_reason for s in sessions] == ["UnlockCommand"]
    stop = sent(station, "StopTransaction")[0]
    start = sent(station, "StartTransaction")[0]
    assert sessions[0].energy_wh == stop.meter_stop - start.meter_start
