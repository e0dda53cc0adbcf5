"""Bursts are handled a batch per turn of the event loop (issue 10): inbound frames through the
server's `TurnBudget` (turns.py), the store's callers resumed a batch per turn after a group
commit. Counted in turns of the loop (a callback that re-schedules itself each turn), not
timed."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import pytest
from aiohttp.test_utils import TestServer

from smartcharge.events import StationDisconnected
from smartcharge.app import create_app
from smartcharge.appkeys import REGISTRY
from smartcharge.ocpp.server import INBOUND
from smartcharge.store import SqliteStore
from smartcharge.turns import TurnBudget
from tests.conftest import HEARTBEAT_FRAME, serve_harness
from tests.test_ocpp_errors import BOOT


class TurnCounter:
    """The number of the loop's current turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def test_a_burst_is_let_in_a_batch_per_turn_in_order():
    budget = TurnBudget(per_turn=4)
    turns = TurnCounter()
    let_in: list[tuple[int, int]] = []

    async def caller(index: int) -> None:
        await budget.admit()
        let_in.append((index, turns.turn))

    await asyncio.gather(*(caller(index) for index in range(18)))   # all in one turn
    turns.stop()
    per_turn = Counter(turn for _, turn in let_in)
    assert max(per_turn.values()) == 4 and len(per_turn) == 5     # 4+4+4+4+2
    assert [index for index, _ in let_in] == list(range(18))       # first come, first in
    assert (budget.admitted, budget.deferred, budget.most_in_turn) == (18, 14, 4)


async def test_a_caller_that_gives_up_takes_no_place():
    budget = TurnBudget(per_turn=1)
    first, gives_up, waits = (asyncio.ensure_future(budget.admit()) for _ in range(3))
    await asyncio.sleep(0)     # the first let in, the other two queued behind it
    assert first.done() and not gives_up.done()
    gives_up.cancel()
    turns = TurnCounter()
    await waits                # let in by the next batch, not held up by the cancelled one
    turns.stop()
    assert gives_up.cancelled() and turns.turn <= 3


async def test_a_group_commit_resumes_its_callers_a_batch_per_turn(tmp_path, monkeypatch):
    monkeypatch.setattr(SqliteStore, "ANSWERS_PER_TURN", 4)
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    release = threading.Event()
    try:
        turns = TurnCounter()
        resumed: list[int] = []

        async def caller(index: int) -> int:
            result = await store.run(lambda tx: release.wait(10) and index)
            resumed.append(turns.turn)
            return result

        tasks = [asyncio.ensure_future(caller(index)) for index in range(21)]
        await asyncio.sleep(0)    # every caller has queued its work (the first holds the writer)
        release.set()             # the other 20 go in one group
        assert await asyncio.gather(*tasks) == list(range(21))
        turns.stop()
        per_turn = Counter(resumed)
        assert max(per_turn.values()) <= 4
        assert len(per_turn) >= 6   # the first alone, the group of 20 in at least 5 turns
    finally:
        release.set()
        await store.close()


async def test_stations_frames_go_through_the_servers_budget(harness):
    budget = harness.app[INBOUND]
    budget.per_turn = 1
    sockets = [await harness.booted_raw_socket(BOOT, f"CP{n}") for n in (1, 2, 3)]
    before = budget.admitted
    for index, ws in enumerate(sockets):   # all sent before any answer is read
        await ws.send_str(json.dumps([2, f"hb-{index}", *HEARTBEAT_FRAME[2:]]))
    answers = [json.loads((await ws.receive(timeout=5)).data) for ws in sockets]
    assert [answer[:2] for answer in answers] == [[3, f"hb-{index}"] for index in range(3)]
    assert budget.admitted - before == 3 and budget.most_in_turn == 1


async def test_a_stations_handshake_goes_through_the_budget_too(harness):
    """A boot storm's handshakes (thousands accepted in one turn) share the frames' budget."""
    budget = harness.app[INBOUND]
    before = budget.admitted
    ws = await harness.open_ws("CP1")      # upgraded: the endpoint has run past its admission
    assert budget.admitted == before + 1
    await harness.assert_still_up(await harness.booted_raw_socket(BOOT, "CP2"))
    assert not ws.closed


async def test_a_store_caller_resumes_the_turn_after_its_outcome_is_settled(tmp_path,
                                                                           monkeypatch):
    """Every turn between a group's commit and its callers resuming is a turn of every other
    ready callback (dispatch, the guard, other stations) that a MeterValues' answer waits
    through (issue 10's tail): the store's answer reaches its caller in one hop, not through
    a shield's two."""
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    settled: list[int] = []
    settle = TurnBudget.settle

    def settle_seen(self, outcomes):
        settled.append(turns.turn)
        return settle(self, outcomes)

    monkeypatch.setattr(TurnBudget, "settle", settle_seen)
    try:
        turns = TurnCounter()
        resumed: list[int] = []
        for index in range(3):
            assert await store.run(lambda tx: index) == index
            resumed.append(turns.turn)
        turns.stop()
        assert [after - before for before, after in zip(settled, resumed)] == [1, 1, 1]
    finally:
        await store.close()


async def test_a_store_caller_that_gives_up_does_not_undo_its_work(tmp_path):
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))
    release = threading.Event()
    try:
        await store.run(lambda tx: tx._db.execute("CREATE TABLE t (x INTEGER)"))
        holder = asyncio.ensure_future(store.run(lambda tx: release.wait(10)))
        gives_up = asyncio.ensure_future(
            store.run(lambda tx: tx._db.execute("INSERT INTO t VALUES (7)")))
        await asyncio.sleep(0)        # both queued; the writer is held by the first
        gives_up.cancel()
        release.set()
        await holder
        assert gives_up.cancelled()
        rows = await store.run(lambda tx: tx._db.execute("SELECT x FROM t").fetchall())
        assert rows == [(7,)]         # committed all the same
    finally:
        release.set()
        await store.close()



class ServedAsServe(TestServer):
    """The app served as `serve` serves it (cli.py's AppRunner): aiohttp's handler cancellation
    off, so a lost socket does not cancel its handler (the test server turns it on)."""

    async def _make_runner(self, **kwargs):
        kwargs["handler_cancellation"] = False
        return await super()._make_runner(**kwargs)


@pytest.fixture
async def as_serve(site, tmp_path):
    app = create_app(site, db_path=str(tmp_path / "smartcharge.sqlite"), smart_charging=False)
    async for h in serve_harness(app, ServedAsServe):
        yield h



async def test_connections_ending_at_once_end_a_batch_per_turn(as_serve):
    """A network cut ends thousands of connections at once: each end's work (the link closed,
    the registry, the disconnect's event and its subscribers) went into the turn its socket
    closed in - 256 a turn (the poll's bound), 40-60 ms turns at 5 000 stations (s38-stall).
    Ends go through the frames' budget now, a batch per turn, in order."""
    harness = as_serve
    budget = harness.app[INBOUND]
    sockets = [await harness.booted_raw_socket(BOOT, f"CP{n}") for n in (1, 2, 3)]
    budget.per_turn = 0   # held until all three have ended, then let in one a turn
    waiting = budget.deferred
    for ws in sockets:
        await ws.close()
    await harness.wait_for(lambda: budget.deferred == waiting + 3)
    assert not any(isinstance(e, StationDisconnected) for e in harness.events)
    assert all(harness.app[REGISTRY].get(f"CP{n}") is not None for n in (1, 2, 3))
    budget.per_turn, budget.most_in_turn = 1, 0
    await harness.wait_for(lambda: sum(isinstance(e, StationDisconnected)
                                       for e in harness.events) == 3)
    assert budget.most_in_turn == 1
    assert [(e.station_id, e.reason) for e in harness.events
            if isinstance(e, StationDisconnected)] == [("CP1", "closed"), ("CP2", "closed"),
                                                       ("CP3", "closed")]
    assert all(harness.app[REGISTRY].get(f"CP{n}") is None for n in (1, 2, 3))


async def test_a_connection_whose_end_is_cancelled_while_waiting_is_still_ended(harness):
    """The handler cancelled while its connection's end waits for the budget (the test
    server's handler cancellation as the socket is lost; aiohttp's shutdown): the end's work
    is done all the same - out of the registry, the disconnect published."""
    budget = harness.app[INBOUND]
    ws = await harness.booted_raw_socket(BOOT, "CP1")
    budget.per_turn = 0   # nothing is let in any more: only the cancellation ends the wait
    await ws.close()
    await harness.wait_for(lambda: any(isinstance(e, StationDisconnected)
                                       for e in harness.events))
    assert [(e.station_id, e.reason) for e in harness.events
            if isinstance(e, StationDisconnected)] == [("CP1", "closed")]
    assert harness.app[REGISTRY].get("CP1") is None
