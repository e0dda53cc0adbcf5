"""Steps the real-`serve` idle-share judges share (tests/test_outside_s35_cap_answer.py,
tests/test_outside_s36_held_idle.py, tests/test_outside_s36_held_idle_201.py): a station that
withholds its idle share's decrease, a car that says it is full until the power it frees is
handed on, and the check once we are SIGKILLed - what the stations' own profiles let them
draw, summed, from minutes to hours on. Bare 1.6 stations are tests/test_outside_s32_kills.py's
`Bare16`; the 2.0.1 ones tests/ocpp201_station.py's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from smartcharge.sim.profiles import parse_profile
from tests.hang_budget import hang_budget_s
from tests.test_outside_s32_kills import CLOCK, Bare16

SOON_H = 0.2   # 12 min: inside the plans' common end (at most 30 min on)
# what a killed server's stations are checked at: the next minutes, inside the plans' common
# end, past it, and once every plan and idle share has ended (their fail-safe defaults)
HOURS_ON = (0.05, SOON_H, 0.5, 2, 6)
# `settle_s` of the site files of the tests that wait for a car to be taken for full: the
# server takes a SuspendedEV for a full car only once the car had its settle time under its
# plan (closed_loop.offered_minimum), so the default 5 s was 5 s of each such test's wait.
# Nothing these tests check reads the settle time (their stations send no meter values for
# the guard to judge); 2 s, as tests/test_site_restart.py's `Rig`
FULL_CAR_SETTLE_S = 2.0
# how often the car says it again while the server has not taken it (real time, not a hang
# budget: each saying is a new chance, the whole wait is bounded by `hang_budget_s`). Half the
# settle time: taken within ~1 s of the settle time's end, at a message every 0.5 s (every
# 0.25 s was 4 a second at the server for nothing)
_SAY_AGAIN_S = FULL_CAR_SETTLE_S / 2


class WithholdsIdleShare(Bare16):
    """Takes its fail-safe defaults (stack level 0) but, while `hang_defaults`, withholds
    every idle share (a TxDefaultProfile above stack level 0) and keeps the one it took before:
    `idle_share_answer` None leaves it unanswered (a hung firmware), "Rejected" refuses it (a
    firmware whose stack level 1 is full or locked)."""

    idle_share_answer: str | None = None

    @on(Action.set_charging_profile)
    async def set_profile(self, connector_id, cs_charging_profiles, **_):
        profile = parse_profile(connector_id, cs_charging_profiles, CLOCK.now())
        if self.hang_defaults and profile.purpose == "TxDefaultProfile" \
                and profile.stack_level > 0:
            self.hung += 1
            if self.idle_share_answer is None:
                await asyncio.Event().wait()
            return call_result.SetChargingProfile(status=self.idle_share_answer)
        self.store.install(profile, None)
        return call_result.SetChargingProfile(status="Accepted")


async def said_full_until(say: Callable[[str], Awaitable], handed_on: Callable[[], bool],
                          what: str) -> None:
    """The car stops by itself: its station says Charging, then SuspendedEV (`say(state)`),
    again and again until `handed_on()` (the power it freed given to another connector). The
    server takes it for a full car only once it had its settle time under its plan
    (closed_loop.offered_minimum) and ignores it before; taken, saying it again changes
    nothing (`declined_at` holds until `declined_retry_s`). So it is said every
    `_SAY_AGAIN_S`, and `handed_on()` watched beside the saying, not after it: where the
    server is SIGKILLed as the power is handed on (the restart tests' second case), a saying
    in flight then is never answered - it waited out the station's call timeout (60 s) and
    failed the test (7 of 96 copies under load when the saying and the watching took turns).
    The saying also stops at `done` before each message: Python 3.11's `asyncio.wait_for`
    (in the `ocpp` library's calls) can swallow a cancellation that meets an answer, and a
    copy whose wait ran out then went on saying for good."""
    done = False

    async def saying() -> None:
        while not done:
            await say("Charging")
            if done:
                return
            await say("SuspendedEV")
            await asyncio.sleep(_SAY_AGAIN_S)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + hang_budget_s(30)
    sayer = asyncio.create_task(saying())
    try:
        while not handed_on():
            if sayer.done():
                sayer.result()   # its error: the station's link failed before the hand-on
            assert loop.time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)
    finally:
        done = True
        sayer.cancel()
        await asyncio.gather(sayer, return_exceptions=True)


def killed_and_held_under(server, draws_w: Sequence[Callable[[float], float]], limit_w: float,
                          note=None) -> None:
    """We are SIGKILLed (`server`: tests/test_kill_points.py's `Server`): what each station's
    own profiles let it draw `hours` from now (`draws_w`), summed, stays under `limit_w` at
    every one of HOURS_ON."""
    server.process.kill()
    server.process.wait(timeout=10)
    for hours in HOURS_ON:
        held_w = [draw(hours) for draw in draws_w]
        assert sum(held_w) <= limit_w + 1, (hours, held_w, note)
