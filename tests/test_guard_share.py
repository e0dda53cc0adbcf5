"""The guard's passes are never held by the site's background work (s25-budget): they run in the
safety lane of the controller's per-turn share (turn_share.py), which wakes them first with a
share of their own, however much dispatch, set-up and re-plan work is queued. Counted in turns
of the event loop against a fake CPU clock (the background sources cost what the test says);
never timed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from smartcharge.site.controller import SiteController
from smartcharge.turn_share import TurnShare
from tests.test_guard import _big_site, every_connector_drawing_1_kw
from tests.test_turn_share import FakeCpu, Turns, _steps

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STATIONS = 600


def _over_site_controller() -> SiteController:
    """600 connectors drawing 1 kW each under a 22 kW grid: over by 578 kW."""
    return every_connector_drawing_1_kw(_big_site(STATIONS))


async def _turns_to_pass(*, guard_as_background: bool) -> int:
    """Turns of the loop from asking for a guard pass to the overload acted on, with 50
    background sources of 2 ms steps queued on the controller's share (12 turns' worth each
    turn: the lane is saturated)."""
    cpu = FakeCpu()
    controller = _over_site_controller()
    if controller._guard_task is not None:   # the samples' own pass: done, forgotten
        await controller._guard_task
    controller.guard._over, controller.guard.overloads_seen = {}, 0
    controller._reasons.clear()
    share = controller.share = TurnShare(share_s=0.004, safety_s=0.004, clock=cpu)
    hogs = [asyncio.ensure_future(share.run(_steps(cpu, 1000, 0.002))) for _ in range(50)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert share._waiting[0], "the background lane is saturated"
    turns = Turns(cpu)
    asked = len(turns.per_turn)
    if guard_as_background:   # the contrast: the same pass queued with the rest
        await share.run(controller.guard.check_async(controller.clock.now()))
    else:
        controller._guard(throttle=False)   # as a sample or the sampler asks for one
        assert controller._guard_task.get_coro().share is share
        await controller._guard_task
    took = len(turns.per_turn) - asked
    turns.stop()
    assert controller.guard.overloads_seen == 1
    assert "guard:grid" in controller._reasons
    for hog in hogs:
        hog.cancel()
    await asyncio.gather(*hogs, return_exceptions=True)
    return took


async def test_a_guard_pass_goes_first_however_much_background_work_waits():
    took = await _turns_to_pass(guard_as_background=False)
    queued = await _turns_to_pass(guard_as_background=True)
    # in its own lane: the next turn or so; queued behind the background: one turn per two
    # of the 50 sources' steps ahead of it
    assert took <= 3, took
    assert queued >= 20, queued
