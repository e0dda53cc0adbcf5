"""No increase waits the settle time in the round after the decreases it relies on: every raise -
a plan's, an idle share's, a fail-safe default's - is held by its own schedule (edges.held; the
idle share's in `tests/test_dispatch_held_raises.py`) and goes out once they are acknowledged -
also when the station's work is compared again because another holder (a set-up, a probe) took
its lock while it waited. Waiting here as well held an idle share's or a default's raise back
twice. One round driven directly: a dispatcher of just what a round reads, a clock that jumps
when slept on."""

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from smartcharge.site.dispatch_round import DispatchRound
from smartcharge.site.station_control import StationControl

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SETTLE_S = 45.0
IDLE_RAISE = ("idle", 2, 7_000.0, None)


class JumpingClock:
    def __init__(self):
        self.t = T0

    def now(self):
        return self.t

    async def sleep(self, seconds):
        await asyncio.sleep(0)
        self.t += timedelta(seconds=seconds)


def _sent_after_acknowledged(first_items, compared_again, *, other_holder: bool):
    """(kind, site time) of every increase item sent; the decreases were acknowledged at T0."""
    async def main():
        clock, sent = JumpingClock(), []
        plan = SimpleNamespace(connectors={}, extra={"limits_version": 0})
        dispatcher = SimpleNamespace(
            clock=clock, settings=SimpleNamespace(settle_s=SETTLE_S), _wake=asyncio.Event(),
            view=SimpleNamespace(limits=SimpleNamespace(version=0)), publish=lambda e: None,
            _sending=asyncio.Semaphore(64), _latest=plan, holds_added=0,
            _work=lambda control, plan_, cplans: ([], list(compared_again)))

        async def run_items(control, items, *, decrease, superseded=None):
            sent.extend((item[0], clock.now()) for item in items)
            return True

        dispatcher._run_items = run_items
        round_ = DispatchRound(dispatcher, plan, asyncio.Event())
        gate = asyncio.get_running_loop().create_future()
        gate.set_result(([], T0))
        round_.gates = SimpleNamespace(waiter=lambda sid: gate)
        control = StationControl("CP1")
        holds = control.lock.holds
        if other_holder:
            async with control.lock:
                pass
        await round_._increase(control, list(first_items), holds)
        return sent
    return asyncio.run(main())


def test_a_plans_raise_goes_out_once_the_decreases_are_acknowledged():
    sent = _sent_after_acknowledged([("plan", object())], [], other_holder=False)
    assert [kind for kind, _ in sent] == ["plan"] and sent[0][1] == T0


def test_an_idle_raise_goes_out_once_the_decreases_are_acknowledged():
    sent = _sent_after_acknowledged([IDLE_RAISE], [], other_holder=False)
    assert sent == [("idle", T0)]


def test_a_defaults_raise_goes_out_once_the_decreases_are_acknowledged():
    sent = _sent_after_acknowledged([("defaults", {1: []})], [], other_holder=False)
    assert sent == [("defaults", T0)]


def test_an_idle_raise_found_when_compared_again_goes_out_at_once():
    """Compared as a plan's raise at first, compared again after another holder of the lock:
    an idle share's raise came up, and it is held by its own schedule too."""
    sent = _sent_after_acknowledged([("plan", object())], [IDLE_RAISE], other_holder=True)
    assert sent == [("idle", T0)]
