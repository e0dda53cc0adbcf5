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
from smartcharge.auth_throttle import AuthThrottle, ThrottleSettings
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
    # another address is not affected, not even for that identity
    assert (await _status(clocked, "CP1", PASSWORD, http=clocked.other))[0] == 101
    await clocked.wait_for(lambda: "CP1" in clocked.app[REGISTRY].online_ids())
    clocked.clock.advance(LIMITS.backoff_s + 1)
    assert (await _status(clocked, password=PASSWORD))[0] == 101


async def test_one_bad_station_behind_a_nat_does_not_lock_out_its_neighbours(clocked):
    """Stations behind one NAT share an address: CP1's wrong password, retried for as long as
    it likes, makes CP1 wait, never CP2 or CP3 (per address and identity)."""
    for _ in range(LIMITS.max_failures):
        assert (await _status(clocked, "CP1"))[0] == 401
    for _ in range(10 * LIMITS.max_failures):   # it keeps retrying while it waits
        assert (await _status(clocked, "CP1"))[0] == 429
    clocked.clock.advance(LIMITS.backoff_s + 1)   # and again after its back-off
    for _ in range(LIMITS.max_failures):
        assert (await _status(clocked, "CP1"))[0] == 401
    assert (await _status(clocked, "CP2", PASSWORD))[0] == 101
    assert (await _status(clocked, "CP3", PASSWORD))[0] == 101
    await clocked.wait_for(lambda: {"CP2", "CP3"} <= set(clocked.app[REGISTRY].online_ids()))


def test_an_address_guessing_many_identities_reaches_its_ceiling():
    """One identity's back-off does not stop a guesser trying every identity from one address:
    a ceiling per address, far above one station's, does (and another address is free)."""
    clock = ManualClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
    throttle = AuthThrottle(clock, LIMITS)
    assert LIMITS.address_max_failures >= 5 * LIMITS.max_failures
    blocked = 0
    for n in range(LIMITS.address_max_failures):
        identity = f"CP{n // (LIMITS.max_failures - 1)}"   # never one identity's limit
        assert throttle.retry_after_s("10.0.0.1", identity) is None
        blocked += throttle.failed("10.0.0.1", identity)
    assert blocked == 1
    assert throttle.retry_after_s("10.0.0.1", "CP-never-tried") is not None
    assert throttle.retry_after_s("10.0.0.2", "CP0") is None
    clock.advance(LIMITS.backoff_s + 1)
    assert throttle.retry_after_s("10.0.0.1", "CP-never-tried") is None


async def test_failures_spread_wider_than_the_window_are_not_throttled(clocked):
    for _ in range(3 * LIMITS.max_failures):
        assert (await _status(clocked))[0] == 401
        clocked.clock.advance(LIMITS.window_s / (LIMITS.max_failures - 1) + 0.1)
    assert (await _status(clocked, password=PASSWORD))[0] == 101
