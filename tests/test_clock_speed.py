"""An accelerated clock whose speed changes: a sleep already begun ends at its site moment.

The demo runs its set-up at real pace and the day at --speed; the sleeps begun during the
set-up (a station's heartbeat, the controller's next slot edge) must not keep the old pace, or
a 300 s heartbeat begun at 1x would wake 300 real seconds later, 20 site hours into a 240x day.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.clock import AcceleratedClock

T0 = datetime(2026, 6, 1, 15, tzinfo=UTC)


async def test_a_sleep_begun_at_real_pace_ends_at_its_site_moment_once_the_clock_hurries():
    clock = AcceleratedClock(T0, 1.0)
    sleeper = asyncio.create_task(clock.sleep(3600.0))
    await asyncio.sleep(0)        # the sleep has begun at 1x
    clock.set_speed(1e6)          # an hour of site time is now 3.6 ms
    await asyncio.wait_for(sleeper, timeout=5.0)
    assert clock.now() >= T0 + timedelta(seconds=3600)


async def test_a_sleep_ends_no_sooner_than_its_site_moment_when_the_clock_slows():
    clock = AcceleratedClock(T0, 1e6)
    sleeper = asyncio.create_task(clock.sleep(600.0))
    await asyncio.sleep(0)
    clock.set_speed(1e4)          # 600 site s: 0.6 ms at the old pace, 60 ms at the new
    begun = clock.now()
    await asyncio.wait_for(sleeper, timeout=5.0)
    assert clock.now() >= begun - timedelta(seconds=1) and clock.now() >= T0 + timedelta(seconds=600)


async def test_a_cancelled_sleep_is_forgotten():
    clock = AcceleratedClock(T0, 1.0)
    sleeper = asyncio.create_task(clock.sleep(3600.0))
    await asyncio.sleep(0)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    clock.set_speed(1e6)          # nothing left to wake
    assert clock.pending_sleeps() == 0


def test_time_goes_on_from_where_it_is_when_the_speed_changes():
    clock = AcceleratedClock(T0, 1e3)
    before = clock.now()
    clock.set_speed(1.0)
    assert clock.now() >= before
