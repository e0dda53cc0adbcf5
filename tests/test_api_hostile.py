"""Hostile input on every write route and the read routes' parameters: bad JSON, wrong types,
numbers no float holds, NaN, times without a zone or out of the calendar, ids no store holds.
Each gets a 4xx with the API's one error body ({"error", "detail"}), never a 500, and nothing
is stored or changed by it."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import API_TOKEN

NOW = datetime.now(UTC).replace(microsecond=0)
T1 = (NOW + timedelta(hours=1)).isoformat()
T2 = (NOW + timedelta(hours=2)).isoformat()
OUT_OF_CALENDAR = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
NOT_TIMES = ("2026-01-01T00:00:00", "tomorrow", 12, [], {}, "2026-02-30T00:00:00Z",
             *OUT_OF_CALENDAR)
NOT_WATTS = (-1, "5", True, [], {}, 10 ** 400, -(10 ** 400))   # 10**400: no float holds it
DEEP = "[" * 50_000 + "]" * 50_000          # past the JSON parser's recursion limit
# past Python's int-from-text limit (4 300 digits): the parser raises a plain ValueError
LONG_INT = '{"limit_w": 1' + "0" * 5_000 + ', "requested_wh": 1' + "0" * 5_000 + "}"
HUGE_IDS = ("9223372036854775808", "99999999999999999999999")   # past SQLite's 64 bits


def cases():
    """(method, path, JSON body or raw text, query) -> must be a 4xx."""
    for value in NOT_WATTS:
        yield "PUT", "/api/site/cap", {"limit_w": value}, None
        yield "PUT", "/api/site/cap-schedule", {"windows": [
            {"start": T1, "end": T2, "limit_w": value}]}, None
        yield "POST", "/api/demand-response/events", {"start": T1, "end": T2,
                                                      "limit_w": value}, None
        yield "POST", "/api/demand-response/events", {"start": T1, "end": T2,
                                                      "reduction_w": value}, None
        yield "PUT", "/api/sessions/1", {"requested_wh": value}, None
    for priority in (10 ** 30, -(10 ** 30), 1.5, "1", True):
        yield "POST", "/api/demand-response/events", {"start": T1, "end": T2, "limit_w": 1000,
                                                      "priority": priority}, None
    for time in NOT_TIMES:
        yield "PUT", "/api/site/cap-schedule", {"windows": [
            {"start": time, "end": T2, "limit_w": 1}]}, None
        yield "POST", "/api/demand-response/events", {"start": T1, "end": time,
                                                      "limit_w": 1000}, None
        yield "PUT", "/api/sessions/1", {"departure": time}, None
    for time in OUT_OF_CALENDAR:
        yield "GET", "/api/sessions", None, {"since": time}
        yield "GET", "/api/sessions.csv", None, {"until": time}
    for raw in ("", "{", "[1, 2]", '"text"', '{"limit_w": NaN}', '{"limit_w": Infinity}',
                DEEP, '{"limit_w": ' + DEEP + "}", LONG_INT):
        yield "PUT", "/api/site/cap", raw, None
        yield "PUT", "/api/site/cap-schedule", raw, None
        yield "POST", "/api/demand-response/events", raw, None
        yield "PUT", "/api/sessions/1", raw, None
        yield "POST", "/api/stations/CP1/reset", raw, None
    for ident in HUGE_IDS:
        yield "GET", f"/api/sessions/{ident}", None, None
        yield "GET", f"/api/sessions/{ident}/meter-values", None, None
        yield "PUT", f"/api/sessions/{ident}", {"requested_wh": 1000}, None
    yield "PUT", "/api/site/cap", "x" * (3 * 1024 * 1024), None       # past the body limit


async def test_hostile_input_gets_a_4xx_with_a_clear_message_and_changes_nothing(api):
    server, http = api
    wrong = []
    for method, path, body, query in cases():
        data = body if isinstance(body, str) else None
        async with http.request(method, server.make_url(path), params=query, data=data,
                                json=None if isinstance(body, str) else body,
                                headers={"Content-Type": "application/json"}) as response:
            answer = await response.json(content_type=None)
            if not (400 <= response.status < 500 and set(answer) >= {"error", "detail"}
                    and answer["detail"]):
                wrong.append((method, path, str(body)[:60], query, response.status, answer))
    assert wrong == []
    for path, nothing in (("/api/site/cap", {"limit_w": None, "since": None}),
                          ("/api/site/cap-schedule", {"windows": []}),
                          ("/api/demand-response/events", [])):
        async with http.get(server.make_url(path)) as response:
            assert await response.json() == nothing, path


async def test_times_far_out_are_refused_and_the_range_written_back_as_rfc_3339(api):
    """A DR event from year 1 to 9999 was taken here (this app does not dispatch) and, on a
    site that does, made every dispatch fail (a second after 9999-12-31 is no date:
    tests/test_site_api_fields.py): refused now. The edges of the range taken are written
    back as times any RFC 3339 reader takes (strftime wrote "1-01-01")."""
    server, http = api
    async with http.post(server.make_url("/api/demand-response/events"), json={
            "start": "0001-01-01T00:00:00Z", "end": "9999-12-31T23:59:59Z",
            "limit_w": 50_000}) as response:
        assert response.status == 422
    async with http.post(server.make_url("/api/demand-response/events"), json={
            "start": "1970-01-01T00:00:00Z", "end": "2089-12-31T23:59:59Z",
            "limit_w": 50_000}) as response:
        assert response.status == 201
        event = await response.json()
    assert (event["start"], event["end"]) == ("1970-01-01T00:00:00Z", "2089-12-31T23:59:59Z")


@pytest.mark.parametrize("head", [
    f"GET /api/stations?{'x' * 9000} HTTP/1.1\r\n",                    # request line > 8 KB
    f"GET /api/stations HTTP/1.1\r\nX-Long: {'x' * 9000}\r\n",         # a header > 8 KB
], ids=["request-line", "header"])
async def test_what_http_cannot_read_is_a_plain_400_before_any_route(api, head, caplog):
    """Documented in docs/api.md: aiohttp's parser answers a request it cannot read before the
    app sees it (no middleware runs: its body is plain text, not the API's JSON) - a 400 with
    no internals, and the connection is closed. Nothing reaches auth or a handler. It is the
    client's fault: one WARNING line, not an ERROR with a traceback (aiohttp's own: anyone
    could fill the log and page the operator with it)."""
    server, _ = api
    caplog.set_level(logging.WARNING)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write((head + f"Host: x\r\nAuthorization: Bearer {API_TOKEN}\r\n\r\n").encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)   # until the server closes
    finally:
        writer.close()
    status_line, _, rest = answer.decode("latin-1").partition("\r\n")
    assert status_line.split()[1] == "400", status_line
    assert "Traceback" not in rest and "smartcharge" not in rest
    logged = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert logged and all(r.levelno == logging.WARNING and r.exc_info is None
                          and "x" * 300 not in r.getMessage() for r in logged), [
        (r.levelname, r.getMessage()[:300]) for r in logged]
