"""Each station's WebSocket ping falls due `server.ping_interval_s` after its own connection or
frame, not on a whole second shared with every station's whose frame came in that second
(s35-stall). aiohttp rounds a connection's timers longer than its `timeout_ceil_threshold`
(5 s by default) up to a whole second of the loop's clock; at 5 000 stations 800-1 700 pings
fell due together and were sent in one turn of the loop. The app sets the threshold
(`app.TIMEOUT_CEIL_THRESHOLD_S`) so nothing is rounded. Read from the loop's scheduled timers:
no timing."""

from __future__ import annotations

import asyncio
import math

from aiohttp import web

from smartcharge.appkeys import SITE
from tests.test_ocpp_errors import BOOT


def _ping_timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    """The server side's ping timers (the test stations' own sockets send none)."""
    return [handle for handle in loop._scheduled
            if not handle.cancelled()
            and getattr(handle._callback, "__func__", None) is web.WebSocketResponse._send_heartbeat]


async def test_each_stations_ping_falls_due_its_interval_after_its_own_connection(harness):
    loop = asyncio.get_running_loop()
    interval_s = harness.app[SITE].server.ping_interval_s
    assert interval_s > 5   # over aiohttp's default threshold: rounded up on main
    before_s = loop.time()
    for n in (1, 2, 3):
        await harness.booted_raw_socket(BOOT, f"CP{n}")
    after_s = loop.time()
    timers = _ping_timers(loop)
    assert len(timers) == 3
    for handle in timers:
        # due its interval after a moment of the connection's life, not a whole second later
        assert before_s + interval_s <= handle.when() <= after_s + interval_s
        assert handle.when() != math.ceil(handle.when()), handle.when()
