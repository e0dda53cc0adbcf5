"""Station identities are checked on the endpoint before anything is stored or logged.

The OCPP security whitepaper's identity: at most 48 characters; we take visible ASCII without
':' (it would split the Basic auth user) and '/' (it would split the URL). Anything else is
refused before the WebSocket upgrade, with nothing written to the store and the raw identity
never copied into a log line (no forged log lines, no terminal escapes).
"""

from __future__ import annotations

import logging

import aiohttp
import pytest

from smartcharge.appkeys import REGISTRY
from smartcharge.ocpp.identity import is_valid_identity, loggable_identity
from tests.conftest import make_site

OPEN_SITE = make_site(accept_unknown_stations=True)


@pytest.mark.parametrize("site", [OPEN_SITE])
@pytest.mark.parametrize("path, why", [
    ("/ocpp/CP%0A1%20INFO%20forged", "newline: a forged log line"),
    ("/ocpp/CP%1B%5B31m", "escape sequence"),
    ("/ocpp/CP%3A1", "':' splits the Basic auth user"),
    ("/ocpp/" + "A" * 49, "longer than 48"),
    ("/ocpp/CP%C3%A91", "not ASCII"),
    ("/ocpp/CP%201", "space"),
    ("/ocpp/CP%7F", "DEL"),
    ("/ocpp/CP%00", "NUL"),
    ("/ocpp/CP%2F1", "an encoded '/'"),
])
async def test_malformed_identity_refused_before_upgrade_nothing_stored(harness, caplog, path,
                                                                        why):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        ws = await harness.http.ws_connect(harness.url(path), protocols=("ocpp1.6",))
        harness.sockets.append(ws)
    assert refused.value.status in (400, 404), why
    assert await harness.store.run(lambda tx: tx.stations()) == []
    assert harness.app[REGISTRY].online_ids() == set()
    for record in caplog.records:
        text = record.getMessage()
        assert "\n" not in text and "\x1b" not in text and "\x7f" not in text, text
        if record.name.startswith("smartcharge"):   # aiohttp's access log shows the raw URL
            assert "A" * 49 not in text


@pytest.mark.parametrize("site", [OPEN_SITE])
async def test_longest_allowed_identity_still_connects(harness):
    identity = "Z" * 48
    station = await harness.station(identity, boot=False, password=None)
    assert (await station.boot()).status == "Pending"
    assert identity in harness.app[REGISTRY].online_ids()


def test_identity_rule():
    assert is_valid_identity("CP-001_a.b*#@+|=~!$%&'()[]{}<>?,;\"\\^`")
    for bad in ("", "a/b", "a:b", "a b", "a\tb", "é", "\x00", "\x7f", "x" * 49):
        assert not is_valid_identity(bad), repr(bad)


def test_loggable_identity_is_escaped_and_truncated():
    shown = loggable_identity("CP\n1\x1b[31m" + "y" * 100)
    assert "\n" not in shown and "\x1b" not in shown
    assert len(shown) < 100 and "109 characters" in shown


@pytest.mark.parametrize("site", [OPEN_SITE])
async def test_a_request_that_is_no_websocket_upgrade_stores_nothing(harness):
    """A plain GET on the OCPP endpoint (no upgrade: a scanner, a browser) is refused before
    anything is written: with unknown stations accepted, every such request with a new
    identity added a row to the stations table (and a known station's "last seen" moved)."""
    for identity, status in (("SCAN-1", 400), ("SCAN-2", 400), ("CP1", 401)):  # CP1: password
        async with harness.http.get(harness.url(f"/ocpp/{identity}")) as response:
            assert response.status == status, identity
    assert await harness.store.run(lambda tx: tx.stations()) == []
