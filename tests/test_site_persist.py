"""Acknowledged obligations are stored before the 2xx, refused with 503 when the store is gone
(memory unchanged), and the controller rebuilds limits and live sessions from the store at start.
In-process servers on real SQLite files; the SIGKILL tests are in test_site_restart.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from smartcharge import events as ev
from smartcharge import store_obligations as ob
from smartcharge.appkeys import STORE
from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.store import SampleRow, SqliteStore, db_time
from tests.site_e2e import control_server

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OP, UT = "op-secret", "utility-secret"
HOUR = timedelta(hours=1)


def _site():
    return Site(name="persist", circuits=(Circuit("grid", None, limit_w=50_000),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                operator_tokens=frozenset({OP}), utility_tokens=frozenset({UT}))


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def _event(start, end, **extra):
    return {"start": format_ocpp_time(start), "end": format_ocpp_time(end), "limit_w": 5_000,
            **extra}


@pytest.fixture
def clock():
    return AcceleratedClock(T0, speed=1.0)


async def test_writes_are_committed_before_the_answer(tmp_path, clock):
    async with control_server(_site(), tmp_path / "p.sqlite", clock) as server:
        store = server.app[STORE]
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.post("/api/demand-response/events", headers=_auth(UT),
                                 json=_event(T0 + HOUR, T0 + 2 * HOUR)) as resp:
                assert resp.status == 201, await resp.text()
                event_id = (await resp.json())["id"]
            assert [e.event_id for e in (await store.run(ob.load)).events] == [event_id]
            async with http.put(f"/api/demand-response/events/{event_id}", headers=_auth(UT),
                                json=_event(T0 + HOUR, T0 + 3 * HOUR)) as resp:
                assert resp.status == 200
            assert (await store.run(ob.load)).events[0].end == T0 + 3 * HOUR
            async with http.delete(f"/api/demand-response/events/{event_id}",
                                   headers=_auth(UT)) as resp:
                assert resp.status == 200
            assert (await store.run(ob.load)).events[0].cancelled
            async with http.put("/api/site/cap", json={"limit_w": 30_000},
                                headers=_auth(OP)) as resp:
                assert resp.status == 200
            assert (await store.run(ob.load)).operator_cap[0] == 30_000
            windows = [{"start": format_ocpp_time(T0 + HOUR),
                        "end": format_ocpp_time(T0 + 2 * HOUR), "limit_w": 20_000}]
            async with http.put("/api/site/cap-schedule", json={"windows": windows},
                                headers=_auth(OP)) as resp:
                assert resp.status == 200
            assert (await store.run(ob.load)).cap_windows == [(T0 + HOUR, T0 + 2 * HOUR,
                                                               20_000)]
            server.controller.on_event(ev.SessionStarted("CP1", 1, 77, "TAG", 0.0, T0))
            async with http.put("/api/sessions/77", json={"requested_wh": 9_000},
                                headers=_auth(OP)) as resp:
                assert resp.status == 200
            need = (await store.run(ob.load)).needs[77]
            assert need.requested_wh == 9_000 and need.departure is not None


async def test_store_unavailable_is_503_and_memory_is_unchanged(tmp_path, clock):
    async with control_server(_site(), tmp_path / "p.sqlite", clock) as server:
        controller = server.controller
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.post("/api/demand-response/events", headers=_auth(UT),
                                 json=_event(T0 + HOUR, T0 + 2 * HOUR, id="kept")) as resp:
                assert resp.status == 201
            controller.on_event(ev.SessionStarted("CP1", 1, 77, "TAG", 0.0, T0))
            before = (controller.limits.operator_cap, controller.limits.cap_schedule,
                      controller.limits.events(), controller.state.session_by_id(77).requested_wh)
            await server.app[STORE].close()
            windows = [{"start": format_ocpp_time(T0), "end": format_ocpp_time(T0 + HOUR),
                        "limit_w": 1_000}]
            for method, path, token, body in (
                    ("POST", "/api/demand-response/events", UT, _event(T0, T0 + HOUR)),
                    ("PUT", "/api/demand-response/events/kept", UT, _event(T0, T0 + HOUR)),
                    ("DELETE", "/api/demand-response/events/kept", UT, None),
                    ("PUT", "/api/site/cap", OP, {"limit_w": 1_000}),
                    ("PUT", "/api/site/cap-schedule", OP, {"windows": windows}),
                    ("PUT", "/api/sessions/77", OP, {"requested_wh": 1_000})):
                async with http.request(method, path, json=body, headers=_auth(token)) as resp:
                    assert resp.status == 503, (method, path, await resp.text())
                    assert (await resp.json())["error"] == "store_unavailable"
                    assert resp.headers.get("Retry-After")
        after = (controller.limits.operator_cap, controller.limits.cap_schedule,
                 controller.limits.events(), controller.state.session_by_id(77).requested_wh)
        assert after == before


async def test_limits_and_ids_are_restored_at_start(tmp_path, clock):
    db = tmp_path / "p.sqlite"
    async with control_server(_site(), db, clock) as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.post("/api/demand-response/events", headers=_auth(UT),
                                 json=_event(T0 + HOUR, T0 + 2 * HOUR)) as resp:
                assert (await resp.json())["id"] == "dr-1"
            async with http.put("/api/site/cap", json={"limit_w": 30_000},
                                headers=_auth(OP)) as resp:
                assert resp.status == 200
            windows = [{"start": format_ocpp_time(T0 + 3 * HOUR),
                        "end": format_ocpp_time(T0 + 4 * HOUR), "limit_w": 20_000}]
            async with http.put("/api/site/cap-schedule", json={"windows": windows},
                                headers=_auth(OP)) as resp:
                assert resp.status == 200
    async with control_server(_site(), db, clock) as server:
        limits = server.controller.limits
        assert [e.event_id for e in limits.events()] == ["dr-1"]
        assert limits.operator_cap.limit_w == 30_000
        assert [(w.start, w.end, w.limit_w) for w in limits.cap_schedule] == [
            (T0 + 3 * HOUR, T0 + 4 * HOUR, 20_000)]
        root_w, _ = limits.effective_root_limit_w([T0 + HOUR], [T0 + HOUR + timedelta(minutes=1)])
        assert root_w[0] == 5_000                                   # in force at its time
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.post("/api/demand-response/events", headers=_auth(UT),
                                 json=_event(T0 + HOUR, T0 + 2 * HOUR)) as resp:
                assert (await resp.json())["id"] == "dr-2"           # the sequence goes on


async def test_open_sessions_needs_and_measurements_are_restored(tmp_path, clock):
    db = str(tmp_path / "p.sqlite")
    store = await SqliteStore.open(db)

    def sample(tid, connector_id, at, received_at, measurand, value, phase=""):
        return SampleRow("CP1", connector_id, tid, tid, db_time(at), measurand, phase, "",
                         "Sample.Periodic", "Outlet", "Raw", str(value), float(value),
                         "MeterValues", db_time(received_at))

    def seed(tx):
        ids = [tx.insert_session(station_id="CP1", connector_id=c, id_tag="TAG",
                                 start_time=T0 - HOUR, meter_start_wh=1_000.0,
                                 reservation_id=None, state="open", at=T0 - HOUR)
               for c in (1, 2)]
        closed = tx.insert_session(station_id="CP1", connector_id=2, id_tag="TAG",
                                   start_time=T0 - 3 * HOUR, meter_start_wh=0.0,
                                   reservation_id=None, state="stopped", at=T0 - 3 * HOUR)
        ob.set_need(tx, ids[0], requested_wh=40_000.0, departure=T0 + 5 * HOUR, at=T0)
        ob.set_need(tx, closed, requested_wh=1.0, departure=None, at=T0)
        tx.insert_samples([
            sample(ids[0], 1, T0 - timedelta(minutes=2), T0 - timedelta(minutes=1),
                   "Energy.Active.Import.Register", 6_000),
            sample(ids[0], 1, T0 - timedelta(minutes=2), T0 - timedelta(minutes=1),
                   "Power.Active.Import", 11_000),
            # a station clock an hour ahead: aged by when we received it, not its stamp
            sample(ids[1], 2, T0 + HOUR, T0 - timedelta(minutes=3),
                   "Energy.Active.Import.Register", 3_000),
            *[sample(ids[1], 2, T0 + HOUR, T0 - timedelta(minutes=3), "Current.Import", a, p)
              for a, p in ((16, "L1"), (16, "L2"), (16, "L3"))]])
        return ids
    ids = await store.run(seed)
    await store.close()

    async with control_server(_site(), db, clock) as server:
        state = server.controller.state
        assert sorted(s.transaction_id for s in state.sessions.values()) == ids
        first, second = state.session_by_id(ids[0]), state.session_by_id(ids[1])
        assert (first.requested_wh, first.departure) == (40_000.0, T0 + 5 * HOUR)
        assert first.energy_wh == 5_000.0 and second.energy_wh == 2_000.0
        assert second.requested_wh == _site().session_defaults.energy_wh
        ref1, ref2 = first.ref, second.ref
        assert state.measurements[ref1].power_w == 11_000.0
        assert state.measurements[ref1].at == T0 - timedelta(minutes=2)
        assert state.measurements[ref2].at == T0 - timedelta(minutes=3)   # never in the future
        assert state.measurements[ref2].power_w == pytest.approx(48 * 230.0)
        loaded = await server.app[STORE].run(ob.load)
        assert set(loaded.needs) == {ids[0]}                    # the closed session's is pruned
        snapshot = server.controller.snapshot()
        assert sorted(s["session_id"] for s in snapshot["sessions"]) == ids


async def test_start_committed_before_a_crash_and_resent_after_is_known(tmp_path):
    """The station's StartTransaction was committed, the server died, the station re-sends it:
    the ledger answers it as a duplicate (same transaction, nothing published), and the
    controller still plans the session, because it was rebuilt from the store."""
    from smartcharge.clock import SystemClock
    from tests.conftest import TestStation, WsConnection, make_site, station_auth_header

    site, db = make_site(), tmp_path / "p.sqlite"
    started_at = datetime.now(UTC).replace(microsecond=0)

    async def start_on(server, boot):
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{server.ws_url}/CP1", protocols=("ocpp1.6",),
                                       headers=station_auth_header("CP1"), heartbeat=None)
            station = TestStation("CP1", WsConnection(ws))
            task = asyncio.ensure_future(station.start())
            try:
                if boot:   # only once: a BootNotification would close the open session
                    assert (await station.boot()).status == "Accepted"
                return await station.start_tx(1, 1_000, started_at)
            finally:
                await ws.close()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async with control_server(site, db, SystemClock()) as server:
        first = await start_on(server, boot=True)
        assert server.controller.state.session_by_id(first.transaction_id) is not None
    async with control_server(site, db, SystemClock()) as server:
        again = await start_on(server, boot=False)
        assert again.transaction_id == first.transaction_id           # a duplicate
        session = server.controller.state.session_by_id(first.transaction_id)
        assert session is not None and session.meter_start_wh == 1_000
        snapshot = server.controller.snapshot()
        assert [s["session_id"] for s in snapshot["sessions"]] == [first.transaction_id]


async def test_a_session_that_stops_while_its_need_is_committed_answers_404(tmp_path, clock):
    import threading

    from tests.site_e2e import wait_until
    async with control_server(_site(), tmp_path / "p.sqlite", clock) as server:
        store, controller = server.app[STORE], server.controller
        controller.on_event(ev.SessionStarted("CP1", 1, 77, "TAG", 0.0, T0))
        started, release = threading.Event(), threading.Event()

        def hold(tx) -> None:   # keeps the writer thread busy, so the need waits in its queue
            started.set()
            release.wait(10)
        busy = asyncio.ensure_future(store.run(hold))
        await wait_until(started.is_set, 5, "the writer busy")
        async with aiohttp.ClientSession(server.http_url) as http:
            put = asyncio.ensure_future(http.put("/api/sessions/77", json={"requested_wh": 1},
                                                 headers=_auth(OP)))
            await wait_until(lambda: store._queue.qsize() > 0, 5, "the need queued for commit")
            controller.on_event(ev.SessionStopped("CP1", 1, 77, T0, None, "Local"))
            release.set()
            async with await put as resp:
                assert resp.status == 404, await resp.text()
        await busy


async def test_restored_energy_follows_the_billing_rules_after_an_offline_start(tmp_path, clock):
    """meterStart 0 after an offline start and a register far above it: the restored session
    has delivered what its registers moved since its first reading (the ledger's rule), not
    the whole register (its need would look met and the car would get 0 W) nor nothing."""
    db = str(tmp_path / "p.sqlite")
    store = await SqliteStore.open(db)

    def seed(tx):
        tid = tx.insert_session(station_id="CP1", connector_id=1, id_tag="TAG",
                                start_time=T0 - HOUR, meter_start_wh=0.0,
                                reservation_id=None, state="open", at=T0 - HOUR)
        tx.insert_samples([SampleRow(
            "CP1", 1, tid, tid, db_time(T0 - HOUR + timedelta(minutes=m)),
            "Energy.Active.Import.Register", "", "Wh", context, "Outlet", "Raw", str(wh),
            float(wh), "MeterValues", db_time(T0 - HOUR + timedelta(minutes=m)))
            for m, wh, context in ((0, 4_500_000, "Transaction.Begin"),
                                   (30, 4_503_000, "Sample.Periodic"),
                                   (50, 4_506_000, "Sample.Periodic"))])
        return tid
    tid = await store.run(seed)
    await store.close()

    async with control_server(_site(), db, clock) as server:
        session = server.controller.state.session_by_id(tid)
        assert session.energy_wh == 6_000.0


async def test_a_departure_alone_is_restored_without_making_the_default_need_told(tmp_path,
                                                                                   clock):
    """A driver who gives only a departure has told no need: after a restart the session keeps
    the site's default need as a default (a silent driver's car may top up past it), not as
    an energy the driver asked for."""
    db = str(tmp_path / "p.sqlite")
    store = await SqliteStore.open(db)
    tid = await store.run(lambda tx: tx.insert_session(
        station_id="CP1", connector_id=1, id_tag="TAG", start_time=T0 - HOUR,
        meter_start_wh=1_000.0, reservation_id=None, state="open", at=T0 - HOUR))
    await store.close()
    departure = T0 + 6 * HOUR
    async with control_server(_site(), db, clock) as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.put(f"/api/sessions/{tid}",
                                json={"departure": format_ocpp_time(departure)},
                                headers=_auth(OP)) as resp:
                assert resp.status == 200
        assert not server.controller.state.session_by_id(tid).need_told
        assert (await server.app[STORE].run(ob.load)).needs[tid].requested_wh is None
    async with control_server(_site(), db, clock) as server:
        session = server.controller.state.session_by_id(tid)
        assert session.departure == departure
        assert not session.need_told
        assert session.requested_wh == _site().session_defaults.energy_wh
