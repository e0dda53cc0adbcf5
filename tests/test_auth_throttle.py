"""Guessing station passwords: after too many failed Basic auths one address is told to wait.

A manual clock drives the window and the back-off, so nothing sleeps. A second client binds to
127.0.0.2 (all of 127/8 is loopback on Linux) to be "another address".
"""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from smartcharge.app import create_app
from smartcharge.appkeys import REGISTRY
from smartcharge.clock import ManualClock
from smartcharge.auth_throttle import ThrottleSettings
from tests.conftest import PASSWORD, Harness, make_site

LIMITS = ThrottleSettings()



@pytest.fixture
async def clocked(tmp_path):
    clock = ManualClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
    app = create_app(make_site(), db_path=str(tmp_path / "t.sqlite"), clock=clock,
                     smart_charging=False)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    session = aiohttp.ClientSession()
    other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    harness = Harness(server, session)
    harness.clock = clock
    harness.other = other
    try:
        yield harness
    finally:
        await harness.close()
        await other.close()
        await session.close()
        await server.close()


async def _status(harness, station_id="CP1", password="wrong-password-0000", http=None):
    import base64
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    try:
        ws = await (http or harness.http).ws_connect(
            harness.url(f"/ocpp/{station_id}"), protocols=("ocpp1.6",),
            headers={"Authorization": f"Basic {token}"})
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status, refused.headers
    harness.sockets.append(ws)
    return 101, {}


async def test_failures_from_one_address_get_429_then_back_off_ends(clocked):
    for _ in range(LIMITS.max_failures):
        assert (await _status(clocked))[0] == 401
    status, headers = await _status(clocked, password=PASSWORD)   # even the right one waits
    assert status == 429
    assert 0 < int(headers["Retry-After"]) <= LIMITS.backoff_s
    assert (await _status(clocked, "CP2", PASSWORD))[0] == 429   # per address, not identity
    # another address is not affected
    assert (await _status(clocked, "CP2", PASSWORD, http=clocked.other))[0] == 101
    await clocked.wait_for(lambda: "CP2" in clocked.app[REGISTRY].online_ids())
    clocked.clock.advance(LIMITS.backoff_s + 1)
    assert (await _status(clocked, password=PASSWORD))[0] == 101


async def test_failures_spread_wider_than_the_window_are_not_throttled(clocked):
    for _ in range(3 * LIMITS.max_failures):
        assert (await _status(clocked))[0] == 401
        clocked.clock.advance(LIMITS.window_s / (LIMITS.max_failures - 1) + 0.1)
    assert (await _status(clocked, password=PASSWORD))[0] == 101
