"""Time: one clock object everybody asks, so tests and the demo can run the site in fast time.

All times are timezone-aware UTC datetimes. `SystemClock` is wall time; `AcceleratedClock` runs
`speed` simulated seconds per real second from a chosen start, and its `sleep()` sleeps the
matching shorter real time. Code that waits for simulated time must use `clock.sleep()`.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    @property
    def speed(self) -> float: ...


class SystemClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class AcceleratedClock:
    """Simulated time: `speed` simulated seconds pass per real (monotonic) second.

    Every sleep is held as its site moment, so a change of speed re-times the sleeps already
    begun: each still ends at the site moment it asked for, not at the old pace's."""

    def __init__(self, start: datetime, speed: float = 60.0) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._origin = start.astimezone(UTC)
        self._site_s_at_real_start = 0.0
        self._real_start = time.monotonic()
        self.speed = float(speed)
        # a sleeper's future -> [its site moment in seconds from the origin, its timer, loop]
        self._sleepers: dict[asyncio.Future, list] = {}

    def _site_s(self) -> float:
        return self._site_s_at_real_start + (time.monotonic() - self._real_start) * self.speed

    def now(self) -> datetime:
        return self._origin + timedelta(seconds=self._site_s())

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        woken = loop.create_future()
        seconds = max(seconds, 0.0)
        timer = loop.call_later(seconds / self.speed, _wake, woken)
        self._sleepers[woken] = [self._site_s() + seconds, timer, loop]
        try:
            await woken
        finally:
            self._sleepers.pop(woken)[1].cancel()

    def pending_sleeps(self) -> int:
        return len(self._sleepers)

    def set_speed(self, speed: float) -> None:
        """From now on `speed`: time goes on from where it is, and every sleep begun still ends
        at its site moment (the demo sets up at real pace, then runs the day fast; a test
        hurries to a moment, then watches it slowly)."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        site_s = self._site_s()
        self._site_s_at_real_start, self._real_start, self.speed = site_s, time.monotonic(), float(speed)
        for woken, sleeper in self._sleepers.items():
            moment_s, timer, loop = sleeper
            timer.cancel()
            sleeper[1] = loop.call_later(max(moment_s - site_s, 0.0) / self.speed, _wake, woken)


def _wake(woken: asyncio.Future) -> None:
    if not woken.done():
        woken.set_result(None)


class ManualClock:
    """Time that moves only when a test moves it (`set`, `advance`); nothing may sleep on it."""

    speed = 1.0

    def __init__(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("moment must be timezone-aware")
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def set(self, moment: datetime) -> None:
        self.moment = moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("nothing under a ManualClock may wait on site time")


class OffsetClock:
    """Another clock, `offset_s` ahead (negative: behind): a station whose clock is not quite
    right (the simulator's `StationSpec.clock_offset_s`). Sleeping is the base clock's."""

    def __init__(self, base: Clock, offset_s: float) -> None:
        self.base = base
        self.offset = timedelta(seconds=offset_s)

    @property
    def speed(self) -> float:
        return self.base.speed

    def now(self) -> datetime:
        return self.base.now() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)


def utc_now_whole_second(clock: Clock) -> datetime:
    return clock.now().replace(microsecond=0)


LAST_MOMENT = datetime.max.replace(tzinfo=UTC)


def later(moment: datetime, seconds: float) -> datetime:
    """`moment` + `seconds`, or the last moment a datetime holds: a station whose clock says
    9999-12-31 is valid OCPP, and a default stay after it must not end the calendar."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return LAST_MOMENT


def format_ocpp_time(moment: datetime) -> str:
    """Whole-second UTC with a Z, e.g. 2026-01-01T12:00:00Z: some stations fail on fractions."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time we send must be timezone-aware")
    moment = moment.astimezone(UTC)
    # %Y does not pad years before 1000 ("1-01-01"), which no RFC 3339 reader takes
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%SZ")


# the times a plan, a profile and a fail-safe schedule can reach: with every margin added, and
# a schedule's startPeriod (seconds from now) within OCPP's 32-bit integers (68 years). Every
# way a limit comes in (the REST API, OpenADR 2.0b and 3) holds its times to them.
TIMES_FROM = datetime(1970, 1, 1, tzinfo=UTC)
TIMES_UNTIL = datetime(2090, 1, 1, tzinfo=UTC)


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_ocpp_time(text: str) -> datetime:
    """Strict RFC 3339 date-time with a zone, returned in UTC. Raises ValueError otherwise.

    OCPP's JSON schemas say `format: date-time`, which the `ocpp` library does not enforce, so
    "yesterday" or a naive local time must be caught here, at the edge.
    """
    if not isinstance(text, str) or not _RFC3339.match(text):
        raise ValueError(f"not an RFC 3339 date-time with a time zone: {text!r}")
    normalised = text.replace("z", "Z").replace("t", "T").replace(" ", "T")
    if normalised.endswith("Z"):
        normalised = normalised[:-1] + "+00:00"
    # fromisoformat handles up to 6 fractional digits; stations sometimes send more.
    match = re.match(r"^(.*\.\d{6})\d+(.*)$", normalised)
    if match:
        normalised = match.group(1) + match.group(2)
    # RFC 3339 allows a leap second (:60), datetime does not: it reads as the last instant of
    # its minute, so a station on such a clock is neither refused nor put out of order
    leap = re.match(r"^(.{16}):60(\.\d+)?(.*)$", normalised)
    if leap:
        normalised = leap.group(1) + ":59.999999" + leap.group(3)
    try:
        return datetime.fromisoformat(normalised).astimezone(UTC)
    except OverflowError:   # 0001-01-01T00:00+14:00 is in year 0 in UTC: no datetime
        raise ValueError(f"out of the calendar in UTC: {text!r}") from None
