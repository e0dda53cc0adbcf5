"""The background work's CPU per turn of the event loop is bounded by one shared budget
(smartcharge/turn_share.py), and safety work is never held by it. Counted against a fake CPU
clock (each step costs what the test says), turns counted by a callback that runs once per turn
of the loop - never timed."""

from __future__ import annotations

import asyncio

import pytest

from smartcharge.turn_share import TurnShare


class FakeCpu:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Turns:
    """Once per turn of the loop (re-scheduled by itself): the fake CPU spent since the last
    turn, by lane - what each turn of the loop carried."""

    def __init__(self, cpu: FakeCpu) -> None:
        self.cpu = cpu
        self.per_turn: list[float] = []
        self._last = 0.0
        self._running = True
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.per_turn.append(self.cpu.now - self._last)
        self._last = self.cpu.now
        if self._running:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._running = False


async def _cancelled(tasks: list) -> None:
    """The test's background sources stopped (each cancelled and awaited)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _steps(cpu: FakeCpu, n: int, cost_s: float, log: list | None = None,
                 name: str = "") -> int:
    for i in range(n):
        cpu.now += cost_s              # the step's work
        if log is not None:
            log.append((name, i))
        await asyncio.sleep(0)         # gives the loop back: the next step is a new one
    return n


async def test_the_background_cpu_of_a_turn_is_bounded_by_the_share():
    """40 sources of 25 steps of 1 ms each: without the share every turn ran one step of each
    (40 ms); with it no turn carries more than the share and one step's overrun."""
    cpu = FakeCpu()
    share = TurnShare(share_s=0.004, safety_s=0.004, clock=cpu)
    turns = Turns(cpu)
    results = await asyncio.gather(*(share.run(_steps(cpu, 25, 0.001)) for _ in range(40)))
    turns.stop()
    assert results == [25] * 40
    assert share.steps == 40 * 26   # each step, and each coroutine's last resumption
    assert max(turns.per_turn) <= 0.004 + 0.001 + 1e-9, max(turns.per_turn)
    # and the work goes on at about the share's pace: 1 s of work in 4 ms turns
    busy = [t for t in turns.per_turn if t > 0]
    assert len(busy) <= 1.0 / 0.004 * 1.2 + 5, len(busy)


async def test_the_bound_holds_when_cheap_steps_make_the_mean_cost_low():
    """Many cheap steps (20 us) and dear ones (1 ms) in the same lane: the share wakes waiters
    by the mean cost, too many for the dear ones - a waiter woken finds the turn spent and
    waits again, first in line: no turn carries more than the share and one step."""
    cpu = FakeCpu()
    share = TurnShare(share_s=0.004, safety_s=0.004, clock=cpu)
    turns = Turns(cpu)
    await asyncio.gather(*(share.run(_steps(cpu, 40, 0.00002)) for _ in range(30)),
                         *(share.run(_steps(cpu, 10, 0.001)) for _ in range(30)))
    turns.stop()
    assert max(turns.per_turn) <= 0.004 + 0.001 + 1e-9, max(turns.per_turn)


async def test_without_the_share_every_source_puts_its_step_into_each_turn():
    """The same sources run as plain tasks: the baseline the bound above is read against."""
    cpu = FakeCpu()
    turns = Turns(cpu)
    await asyncio.gather(*(_steps(cpu, 25, 0.001) for _ in range(40)))
    turns.stop()
    assert max(turns.per_turn) >= 0.040 - 1e-9


async def _guard_pass(cpu: FakeCpu, share: TurnShare, turns: Turns, at: list) -> None:
    """20 pieces of 1 ms, giving the loop back only when the share says its lane is spent
    (as the guard's pass does between its chunks)."""
    for _ in range(20):
        cpu.now += 0.001
        at.append(len(turns.per_turn))
        if share.should_yield():
            await asyncio.sleep(0)


async def test_safety_work_is_never_held_by_background_work():
    """The background lane saturated far beyond its share: a safety pass of 20 pieces of 1 ms
    still runs 4 pieces every turn (its own share) and takes as many turns as with nothing
    else running."""
    alone = []
    cpu = FakeCpu()
    share = TurnShare(share_s=0.004, safety_s=0.004, clock=cpu)
    turns = Turns(cpu)
    await share.run(_guard_pass(cpu, share, turns, alone), safety=True)
    turns.stop()

    cpu = FakeCpu()
    share = TurnShare(share_s=0.004, safety_s=0.004, clock=cpu)
    background = [asyncio.ensure_future(share.run(_steps(cpu, 200, 0.002)))
                  for _ in range(50)]
    for _ in range(20):
        await asyncio.sleep(0)   # the background lane is saturated and queued
    assert share.deferred > 0 and share._waiting[0]
    turns = Turns(cpu)
    busy = []
    await share.run(_guard_pass(cpu, share, turns, busy), safety=True)
    turns.stop()
    assert alone[-1] - alone[0] == 20 // 4 - 1, alone
    assert busy[-1] - busy[0] <= 20 // 4, busy
    # the background went on meanwhile, within its own share
    assert all(not task.done() for task in background)
    await _cancelled(background)


async def test_a_safety_step_dearer_than_its_share_still_goes_once_a_turn():
    """A guard step of 10 ms against a 4 ms share: one per turn, never none."""
    cpu = FakeCpu()
    share = TurnShare(share_s=0.004, safety_s=0.004, clock=cpu)
    turns = Turns(cpu)
    background = [asyncio.ensure_future(share.run(_steps(cpu, 100, 0.003)))
                  for _ in range(20)]
    at: list[int] = []

    async def guard_pass() -> None:
        for _ in range(10):
            cpu.now += 0.010
            at.append(len(turns.per_turn))
            await asyncio.sleep(0)

    await share.run(guard_pass(), safety=True)
    assert at[-1] - at[0] <= 2 * 9 + 2, at
    await _cancelled(background)


async def test_a_waiting_coroutine_cancelled_gets_its_cancellation_at_once():
    cpu = FakeCpu()
    share = TurnShare(share_s=0.001, safety_s=0.001, clock=cpu)
    cleaned, started = [], []

    async def source() -> None:
        started.append(True)
        try:
            while True:
                cpu.now += 0.002
                await asyncio.sleep(0)
        finally:
            cleaned.append(True)

    tasks = [asyncio.ensure_future(share.run(source())) for _ in range(5)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(started) == 5 and share._waiting[0]   # begun, and waiting for their turns
    for task in tasks:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(d, asyncio.CancelledError) for d in done)
    assert cleaned == [True] * 5
    assert not any(share._waiting)


async def test_a_coroutine_run_inside_another_step_is_charged_once():
    cpu = FakeCpu()
    share = TurnShare(share_s=1.0, safety_s=1.0, clock=cpu)

    async def outer() -> int:
        return await share.run(_steps(cpu, 3, 0.001))

    assert await share.run(outer()) == 3
    assert share.steps == 4   # the outer's resumptions only: the inner's are its own
    assert share.most_in_turn_s[0] == pytest.approx(0.001)   # not twice in one turn


async def test_an_error_of_the_source_comes_out_as_is():
    share = TurnShare()

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("its own")

    with pytest.raises(ValueError, match="its own"):
        await share.run(failing())


async def test_urgent_work_is_not_queued_behind_background_work():
    """A re-plan for a lowered limit and its round (the URGENT lane) go through a saturated
    background lane as fast as alone; a task whose lane is a function changes lane between
    its steps (the controller's: urgent while an urgent re-plan waits or runs)."""
    from smartcharge.turn_share import BACKGROUND, URGENT
    cpu = FakeCpu()
    share = TurnShare(share_s=0.004, safety_s=0.004, clock=cpu)
    background = [asyncio.ensure_future(share.run(_steps(cpu, 200, 0.002)))
                  for _ in range(50)]
    for _ in range(20):
        await asyncio.sleep(0)
    turns = Turns(cpu)
    urgent_at: list = []
    await share.run(_guard_pass(cpu, share, turns, urgent_at), lane=URGENT)
    assert urgent_at[-1] - urgent_at[0] <= 20 // 4, urgent_at
    which = [BACKGROUND]
    trigger = asyncio.Event()
    at: list = []

    async def controller_task() -> None:   # waits for a trigger outside the share
        at.append(None)
        await trigger.wait()
        await _guard_pass(cpu, share, turns, at)

    switching = asyncio.ensure_future(share.run(controller_task(), lane=lambda: which[0]))
    while not at:   # begun (its first step queued with the background), now waiting
        await asyncio.sleep(0)
    at.clear()
    which[0] = URGENT   # an urgent trigger came: the task's next steps go ahead of the queue
    trigger.set()
    set_at = len(turns.per_turn)
    await switching
    turns.stop()
    assert at[-1] - set_at <= 20 // 4 + 2, (set_at, at)
    await _cancelled(background)
