"""A turn of the serving loop takes no new work once it has spent its CPU bound (s36-stall,
issue 10: "the event loop is never blocked for more than 20 ms"): the site's lanes
(`turn_share.TurnShare`) and the stations' inbound frames (`turns.TurnBudget` with `cpu_s`)
ask the turn's clock (`turn_cpu.py`, stamped by `serving_loop.ServingLoop` as each turn
begins) before each step, beside their own counts. Counted on a fake CPU clock that the work
itself moves, turn by turn of a real serving loop - not timed."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from smartcharge.ocpp.central import CentralSystemBase
from smartcharge.serving_loop import ServingLoop
from smartcharge.turn_share import BACKGROUND, SAFETY, URGENT, TurnShare
from smartcharge.turns import TurnBudget


class FakeCpu:
    """The loop thread's CPU clock, moved by the work itself."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class SpendAtTurnEdge:
    """Stands in for the serving loop's young collection at a turn's edge: `edge_s` of CPU
    before the turn's poll, counted in the turn (its clock is stamped before it)."""

    def __init__(self, cpu: FakeCpu, edge_s: float) -> None:
        self.cpu, self.edge_s = cpu, edge_s

    def at_turn_edge(self) -> None:
        self.cpu.now_s += self.edge_s


def serving_loop_on(cpu: FakeCpu) -> tuple[ServingLoop, list[float]]:
    """A serving loop whose turns are stamped on `cpu`, and the CPU of each of its turns."""
    loop = ServingLoop(young_every_s=None)
    loop.cpu_clock = cpu
    loop._turn_began_cpu_s = cpu()
    per_turn: list[float] = []
    run_once = loop._run_once

    def measured() -> None:
        began = cpu()
        run_once()
        per_turn.append(cpu() - began)
    loop._run_once = measured
    return loop, per_turn


def lane_source(cpu: FakeCpu, steps: int, step_s: float, done: list):
    async def source() -> None:
        for _ in range(steps):
            cpu.now_s += step_s
            await asyncio.sleep(0)
        done.append(True)
    return source()


def test_the_lanes_take_only_their_first_step_in_a_turn_already_spent():
    """9 ms of every turn spent before the lanes run (at the turn's edge): once the turn is at
    its 10 ms, each lane takes only its first step of the turn, not its 4 ms share - at most
    10 ms + the step that crosses them + the other two lanes' first steps (13 ms), not
    9 + 3 x (4 + 1) = 24 ms; every source done."""
    cpu = FakeCpu()
    loop, per_turn = serving_loop_on(cpu)
    loop.young_collections = SpendAtTurnEdge(cpu, 0.009)
    share = TurnShare(clock=cpu)
    done: list = []

    async def main() -> None:
        await asyncio.gather(*(share.run(lane_source(cpu, 20, 0.001, done), lane=lane)
                               for lane in (SAFETY, URGENT, BACKGROUND) for _ in range(3)))
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert len(done) == 9
    assert max(per_turn) <= 0.010 + 0.001 + 2 * 0.001 + 1e-9, max(per_turn)


def test_frames_and_lanes_together_stop_at_the_turns_cpu_bound_and_keep_their_order():
    """200 frames of 0.5 ms through an inbound budget of 32 a turn and 10 ms (the first 2
    always), beside three saturated lanes of 1 ms steps: no turn over 10 ms + the step that
    crosses it + the floors (15 ms); the frames in order, every source done. Without the turn's
    bound: 32 frames (16 ms) and the lanes' 12-15 ms in one turn."""
    cpu = FakeCpu()
    loop, per_turn = serving_loop_on(cpu)
    share = TurnShare(clock=cpu)
    budget = TurnBudget(per_turn=32, cpu_s=0.010, min_per_turn=2)
    handled: list[int] = []
    done: list = []

    async def frame(index: int) -> None:
        await budget.admit()
        cpu.now_s += 0.0005
        handled.append(index)

    async def main() -> None:
        await asyncio.gather(*(frame(index) for index in range(200)),
                             *(share.run(lane_source(cpu, 20, 0.001, done), lane=lane)
                               for lane in (SAFETY, URGENT, BACKGROUND) for _ in range(2)))
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert handled == list(range(200))
    assert len(done) == 6
    assert max(per_turn) <= 0.010 + 0.001 + 2 * 0.0005 + 3 * 0.001 + 1e-9, max(per_turn)
    assert budget.held > 0 and share.held_by_turn > 0


def test_on_any_other_loop_the_budgets_count_pieces_only():
    """asyncio's own loop has no turn clock: `cpu_s` changes nothing there (the tests' loops,
    uvloop)."""
    budget = TurnBudget(per_turn=4, cpu_s=0.0, min_per_turn=0)
    share = TurnShare(turn_cpu_s=0.0)

    async def main() -> None:
        await asyncio.gather(*(budget.admit() for _ in range(4)))
        assert budget.deferred == 0 and budget.held == 0
        assert await share.run(asyncio.sleep(0, "ran")) == "ran"
        assert share.deferred == 0 and share.held_by_turn == 0
    asyncio.run(main())


class FramesOnly(CentralSystemBase):
    """The server's inbound path alone (`CentralSystemBase.route_message`: the frame's kind,
    the inbound budget), each frame's handling standing for 0.5 ms of CPU; the turn it ran in
    recorded. No connection, no library: what decides when a frame goes in is what is tested."""

    def __init__(self, budget: TurnBudget, cpu: FakeCpu, loop: ServingLoop) -> None:
        self._ctx = SimpleNamespace(inbound=budget)
        self.cpu, self.loop = cpu, loop
        self.routed: list[tuple[str, int]] = []

    async def _route(self, raw_msg: str) -> None:
        self.cpu.now_s += 0.0005
        self.routed.append((raw_msg, self.loop.turn_number))


def test_an_answer_to_our_call_is_not_held_past_a_spent_turn_a_stations_own_call_is():
    """s37-stall: every turn has spent 12 ms before any frame (over the 10 ms bound), one frame
    a turn goes in whatever it spent. The station's own CALLs (MeterValues) go in one a turn,
    in order; its answers to our calls (a CALLRESULT, a CALLERROR), read after them, are not
    held by the spent turns: in with the first batch let in, ahead of the CALLs still held. On
    the turn's bound without this (s36's B) the answers waited behind every CALL."""
    cpu = FakeCpu()
    loop, _ = serving_loop_on(cpu)
    loop.young_collections = SpendAtTurnEdge(cpu, 0.012)
    budget = TurnBudget(per_turn=32, cpu_s=0.010, min_per_turn=1)
    station = FramesOnly(budget, cpu, loop)
    calls = [json.dumps([2, f"mv-{n}", "MeterValues", {"connectorId": 1, "meterValue": []}])
             for n in range(4)]
    answers = [json.dumps([3, "ours-1", {"status": "Accepted"}]),
               json.dumps([4, "ours-2", "NotSupported", "", {}])]

    async def main() -> None:
        await asyncio.gather(*(station.route_message(raw) for raw in calls + answers))
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    # the answers overtake the CALLs held, in the turn the second CALL goes in
    assert [raw for raw, _ in station.routed] == [calls[0], calls[1], *answers, calls[2],
                                                 calls[3]]
    turn_of = dict(station.routed)
    call_turns = [turn_of[raw] for raw in calls]
    assert call_turns == sorted(set(call_turns)), call_turns   # one CALL a turn, in order
    assert [turn_of[raw] for raw in answers] == [call_turns[1]] * 2
    assert budget.held_by_kind.keys() == {"MeterValues"}
    assert budget.held_by_kind["MeterValues"][0] == 3   # the second, third and fourth CALL
