"""A limit in another unit than the API's is refused, not read as watts: a field the route does
not know (`"unit": "kW"` beside `limit_w`, `limit_kw`, a `circuit_id` on a posted event) is a
422 naming it, and nothing changes. Before, `{"limit_w": 40, "unit": "kW"}` made a 40 W DR event
(the site shut down) and `{"limit_w": 40000, "circuit_id": "feeder-1"}` limited the whole grid
connection. What a GET answers (`state`, `since`, ...) may come back in a PUT unchanged.
Real HTTP against the app, real SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from tests.site_e2e import control_server

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OP = "op-secret"
AUTH = {"Authorization": f"Bearer {OP}"}


@pytest.fixture
async def api(tmp_path):
    site = Site(name="fields", circuits=(Circuit("grid", None, limit_w=50_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                operator_tokens=frozenset({OP}))
    async with control_server(site, tmp_path / "f.sqlite", AcceleratedClock(T0, speed=1.0)) \
            as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            yield server, http


def _window(**extra) -> dict:
    return {"start": format_ocpp_time(T0 + timedelta(hours=1)),
            "end": format_ocpp_time(T0 + timedelta(hours=2)), **extra}


async def _call(http, method, path, body):
    async with http.request(method, path, json=body, headers=AUTH) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "/api/demand-response/events", _window(limit_w=40, unit="kW"), "unit"),
    ("POST", "/api/demand-response/events", _window(limit_w=40_000, limit_kw=40), "limit_kw"),
    ("POST", "/api/demand-response/events", _window(limit_w=5_000, circuit_id="feeder-1"),
     "circuit_id"),
    ("PUT", "/api/site/cap", {"limit_w": 40, "unit": "kW"}, "unit"),
    ("PUT", "/api/site/cap-schedule", {"windows": [_window(limit_w=4, unit="kW")]},
     "windows[0].unit"),
    ("PUT", "/api/site/cap-schedule", {"windows": [], "timezone": "Europe/Berlin"}, "timezone"),
])
async def test_an_unknown_field_is_refused_naming_it(api, method, path, body, field):
    server, http = api
    status, answer = await _call(http, method, path, body)
    assert status == 422, answer
    assert answer["error"] == "invalid_body" and answer["detail"].startswith(field), answer
    limits = server.controller.limits
    assert limits.events_json(T0) == [] and limits.operator_cap is None
    assert limits.cap_schedule == []


async def test_a_session_need_in_kwh_is_refused(api):
    server, http = api
    status, answer = await _call(http, "PUT", "/api/sessions/1",
                                 {"requested_wh": 20, "unit": "kWh"})
    assert status == 422 and answer["detail"].startswith("unit"), answer


async def test_what_a_get_answers_may_be_put_back(api):
    server, http = api
    status, created = await _call(http, "POST", "/api/demand-response/events",
                                  _window(id="u-1", limit_w=20_000))
    assert status == 201, created
    status, updated = await _call(http, "PUT", "/api/demand-response/events/u-1",
                                  {**created, "limit_w": 15_000})
    assert status == 200 and updated["limit_w"] == 15_000, updated
    status, cap = await _call(http, "PUT", "/api/site/cap", {"limit_w": 30_000})
    assert status == 200
    status, cap = await _call(http, "PUT", "/api/site/cap", {**cap, "limit_w": 25_000})
    assert status == 200 and cap["limit_w"] == 25_000, cap


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "/api/demand-response/events",
     {"start": "2026-01-01T13:00:00Z", "end": "9999-12-31T23:59:59Z", "limit_w": 5}, "end"),
    ("POST", "/api/demand-response/events",
     {"start": "0001-01-01T00:00:00Z", "end": "2026-01-01T13:00:00Z", "limit_w": 5}, "start"),
    ("PUT", "/api/site/cap-schedule", {"windows": [
        {"start": "2026-01-01T13:00:00Z", "end": "9999-12-31T23:59:59Z", "limit_w": 5}]},
     "windows[0].end"),
    ("POST", "/api/demand-response/events",
     {"start": "2026-01-01T13:00:00Z", "end": "2999-12-31T23:59:59Z", "limit_w": 5}, "end"),
])
async def test_a_time_no_plan_can_reach_is_refused(api, method, path, body, field):
    """A DR event until 9999-12-31 was taken (201) and every dispatch after it failed with an
    OverflowError (a second after its end is no date): no profile went out at all, and a car
    drew 11 kW through a 5 W event (found on a real `smartcharge serve`). Times are taken
    between 1970 and 2089 (a fail-safe period's startPeriod, seconds from now, stays within
    OCPP's 32-bit integers: one until 2999 went out as 30 707 143 693)."""
    server, http = api
    status, answer = await _call(http, method, path, body)
    assert status == 422, answer
    assert answer["detail"].startswith(field), answer
    limits = server.controller.limits
    assert limits.events_json(T0) == [] and limits.cap_schedule == []
