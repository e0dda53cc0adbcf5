"""The site controller's REST routes over real HTTP: roles, bodies, DR lifecycle, SSE."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from smartcharge import events as ev
from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from tests.site_e2e import control_server

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OP, UT, RD = "op-secret", "utility-secret", "reader-secret"


def _site():
    return Site(name="api", circuits=(Circuit("grid", None, limit_w=50_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                operator_tokens=frozenset({OP}), utility_tokens=frozenset({UT}),
                reader_tokens=frozenset({RD}))


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(tmp_path):
    clock = AcceleratedClock(T0, speed=1.0)
    async with control_server(_site(), tmp_path / "api.sqlite", clock) as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            yield server, http, clock


def stated(body: dict) -> dict:
    """A write's answer without `applied` (what the stations held when it was made, and how
    long that took: site/applied.py) - what a GET answers."""
    return {k: v for k, v in body.items() if k != "applied"}


def _event(clock, **overrides):
    body = {"id": "dr-1", "start": format_ocpp_time(clock.now() + timedelta(hours=1)),
            "end": format_ocpp_time(clock.now() + timedelta(hours=2)), "limit_w": 20_000}
    body.update(overrides)
    return body


async def test_roles_401_and_403(api):
    server, http, clock = api
    async with http.post("/api/demand-response/events", json=_event(clock)) as resp:
        assert resp.status == 401
        body = await resp.json()
        assert body["error"] == "unauthorized" and "Bearer" in body["detail"]
    async with http.post("/api/demand-response/events", json=_event(clock),
                         headers=_auth("wrong")) as resp:
        assert resp.status == 401
    # a utility may not set the operator's cap or a session's need
    async with http.put("/api/site/cap", json={"limit_w": 1000}, headers=_auth(UT)) as resp:
        assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    async with http.put("/api/sessions/1", json={"requested_wh": 1}, headers=_auth(UT)) as resp:
        assert resp.status == 403
    async with http.put("/api/site/cap", json={"limit_w": 40_000}, headers=_auth(OP)) as resp:
        assert resp.status == 200 and (await resp.json())["limit_w"] == 40_000
    assert server.controller.limits.operator_cap.limit_w == 40_000


async def test_dr_event_lifecycle(api):
    server, http, clock = api
    # one body, posted again below: built again, its times (whole seconds of a real-time
    # clock) differ when a second passed meanwhile - another event (409 in CI, under load)
    event = _event(clock)
    async with http.post("/api/demand-response/events", json=event,
                         headers=_auth(UT)) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        assert created["state"] == "scheduled" and created["limit_w"] == 20_000
    # the same event again (a retry whose 2xx was lost): the same answer; another one: 409
    async with http.post("/api/demand-response/events", json=event,
                         headers=_auth(UT)) as resp:
        assert resp.status == 201 and stated(await resp.json()) == stated(created)
    async with http.post("/api/demand-response/events", json={**event, "limit_w": 10_000},
                         headers=_auth(UT)) as resp:
        assert resp.status == 409
    async with http.get("/api/demand-response/events", headers=_auth(UT)) as resp:
        assert [e["id"] for e in await resp.json()] == ["dr-1"]
    update = _event(clock, start=format_ocpp_time(clock.now()), limit_w=None, reduction_w=5_000,
                    priority=2)
    async with http.put("/api/demand-response/events/dr-1", json=update,
                        headers=_auth(UT)) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["state"] == "active"
    # starts now: in force at once
    snap = server.controller.snapshot()
    assert snap["effective_limit_w"] == 45_000 and snap["limit_binding"]["id"] == "dr-1"
    async with http.delete("/api/demand-response/events/dr-1", headers=_auth(UT)) as resp:
        assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
    assert server.controller.snapshot()["effective_limit_w"] == 50_000
    async with http.get("/api/demand-response/events/nope", headers=_auth(RD)) as resp:
        assert resp.status == 404 and "nope" in (await resp.json())["detail"]


@pytest.mark.parametrize("body, field", [
    ({"limit_w": 1, "start": "yesterday"}, "start"),
    ({"limit_w": -1}, "limit_w"),
    ({"limit_w": 1, "reduction_w": 1}, "exactly one"),
    ({"limit_w": None}, "exactly one"),
    ({"limit_w": 1, "priority": "high"}, "priority"),
    ({"limit_w": 1, "id": ""}, "id"),
])
async def test_bad_event_bodies_get_422_naming_the_field(api, body, field):
    _, http, clock = api
    payload = _event(clock)
    payload.update(body)
    async with http.post("/api/demand-response/events", json=payload,
                         headers=_auth(UT)) as resp:
        assert resp.status == 422
        answer = await resp.json()
        assert answer["error"] == "invalid_body" and field in answer["detail"]


async def test_not_json_is_400(api):
    _, http, _ = api
    async with http.post("/api/demand-response/events", data=b"{nope",
                         headers=_auth(UT)) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"


async def test_cap_schedule_and_session_need(api):
    server, http, clock = api
    windows = [{"start": format_ocpp_time(clock.now()),
                "end": format_ocpp_time(clock.now() + timedelta(hours=1)), "limit_w": 30_000}]
    async with http.put("/api/site/cap-schedule", json={"windows": windows},
                        headers=_auth(OP)) as resp:
        assert resp.status == 200 and (await resp.json())["windows"][0]["limit_w"] == 30_000
    async with http.put("/api/site/cap-schedule", json={"windows": [{"start": "x"}]},
                        headers=_auth(OP)) as resp:
        assert resp.status == 422 and "windows[0]" in (await resp.json())["detail"]
    assert server.controller.snapshot()["effective_limit_w"] == 30_000
    async with http.put("/api/sessions/77", json={"requested_wh": 5_000},
                        headers=_auth(OP)) as resp:
        assert resp.status == 404
    server.controller.on_event(ev.SessionStarted("CP1", 1, 77, "TAG", 0.0, clock.now()))
    departure = format_ocpp_time(clock.now() + timedelta(hours=3))
    async with http.put("/api/sessions/77", json={"requested_wh": 5_000, "departure": departure},
                        headers=_auth(OP)) as resp:
        assert resp.status == 200, await resp.text()
        session = await resp.json()
        assert session["requested_wh"] == 5_000 and session["departure"] == departure
    async with http.put("/api/sessions/77", json={}, headers=_auth(OP)) as resp:
        assert resp.status == 422


async def test_site_snapshot_and_stream(api):
    server, http, clock = api
    async with http.get("/api/site", headers=_auth(RD)) as resp:
        snap = await resp.json()
    for key in ("time", "effective_limit_w", "site_load_w", "limit_binding", "history",
                "connectors", "sessions", "stations", "dr_events", "stats"):
        assert key in snap
    async with http.get("/api/site/stream", headers=_auth(RD)) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await _read_event(resp)
        assert first["effective_limit_w"] == 50_000
        async with http.put("/api/site/cap", json={"limit_w": 10_000},
                            headers=_auth(OP)) as put:
            assert put.status == 200
        for _ in range(20):
            event = await _read_event(resp)
            if event["effective_limit_w"] == 10_000:
                break
        assert event["limit_binding"]["source"] == "operator"


async def _read_event(resp) -> dict:
    name = None
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().strip()
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and name == "snapshot":
            return json.loads(line.split(":", 1)[1])


async def test_no_tokens_configured_means_closed_unless_the_flag_opens_it(tmp_path,
                                                                          monkeypatch):
    for role in ("READER", "OPERATOR", "UTILITY", "ADMIN"):
        monkeypatch.delenv(f"SMARTCHARGE_{role}_TOKENS", raising=False)
    site = Site(name="open", circuits=(Circuit("grid", None, limit_w=50_000),), stations=())
    clock = AcceleratedClock(T0, speed=1.0)
    async with control_server(site, tmp_path / "closed.sqlite", clock) as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.put("/api/site/cap", json={"limit_w": 1_000}) as resp:
                assert resp.status == 401
            async with http.get("/api/site") as resp:
                assert resp.status == 401
    async with control_server(site, tmp_path / "open.sqlite", clock,
                              insecure_open_api=True) as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            async with http.put("/api/site/cap", json={"limit_w": 1_000}) as resp:
                assert resp.status == 200


def test_openapi_fragment_documents_every_route():
    from pathlib import Path

    from aiohttp import web

    from smartcharge import api
    from smartcharge.api.auth import setup_auth
    from smartcharge.appkeys import SITE
    from smartcharge.clock import SystemClock
    doc = json.loads((Path(api.__file__).parent / "openapi_site.json").read_text())
    app = web.Application()
    app[SITE] = _site()
    setup_auth(app, app[SITE], SystemClock())
    api.add_site_routes(app)
    for route in app.router.routes():
        if route.method == "HEAD":     # aiohttp adds HEAD to every GET
            continue
        path = route.resource.canonical
        assert path in doc["paths"], path
        assert route.method.lower() in doc["paths"][path], (route.method, path)


async def test_energy_wh_read_and_put_back_does_not_become_the_need(api):
    """A session's `energy_wh` is what it has been delivered (GET, the snapshot, the PUT's own
    answer); PUT took `energy_wh` as the need. Reading a session and putting back what was read
    set the need to what the car already had: it was stopped. Now a 422 that names
    `requested_wh`, and the need is unchanged."""
    server, http, clock = api
    server.controller.on_event(ev.SessionStarted("CP1", 1, 78, "TAG", 1_000.0, clock.now()))
    async with http.put("/api/sessions/78", json={"requested_wh": 30_000},
                        headers=_auth(OP)) as resp:
        assert resp.status == 200, await resp.text()
        read = await resp.json()
    assert "energy_wh" in read
    async with http.put("/api/sessions/78", json={"energy_wh": read["energy_wh"]},
                        headers=_auth(OP)) as resp:
        assert resp.status == 422, await resp.text()
        body = await resp.json()
        assert body["error"] == "invalid_body" and "requested_wh" in body["detail"]
    async with http.put("/api/sessions/78", json={"requested_wh": 20_000, "energy_wh": 5},
                        headers=_auth(OP)) as resp:
        assert resp.status == 422
    assert server.controller.state.session_by_id(78).requested_wh == 30_000


@pytest.mark.parametrize("since, named", [
    ("2080-01-01T00:00:00Z", "cap-schedule"),      # later: a window, not this cap
    ("yesterday", "since"), ("2026-01-01T11:00:00", "since"), (12, "since")])
async def test_a_cap_since_later_or_not_a_time_is_refused_not_taken_now(api, since, named):
    """PUT /api/site/cap is in force from now; `since` is there so a client may PUT back what
    it read. A `since` in the future was ignored - the cap meant for later limited the cars at
    once - and one that is no time passed. Now a 422 naming what to use; nothing changes."""
    server, http, clock = api
    async with http.put("/api/site/cap", json={"limit_w": 40_000}, headers=_auth(OP)) as resp:
        assert resp.status == 200
        read = await resp.json()
    async with http.put("/api/site/cap", json={"limit_w": 5_000, "since": since},
                        headers=_auth(OP)) as resp:
        assert resp.status == 422, await resp.text()
        assert named in (await resp.json())["detail"]
    async with http.get("/api/site/cap", headers=_auth(OP)) as resp:
        assert await resp.json() == stated(read)
    # what was read goes back as it is
    async with http.put("/api/site/cap", json=read, headers=_auth(OP)) as resp:
        assert resp.status == 200 and (await resp.json())["limit_w"] == 40_000


@pytest.mark.parametrize("change, named", [
    ({"state": "cancelled"}, "DELETE"),           # a cancel by PUT was ignored: still in force
    ({"id": "dr-other"}, "id")])                  # another id than the URL's was ignored
async def test_a_dr_put_that_says_what_it_cannot_do_is_refused(api, change, named):
    server, http, clock = api
    async with http.post("/api/demand-response/events", json=_event(clock),
                         headers=_auth(UT)) as resp:
        assert resp.status == 201
        read = await resp.json()
    async with http.put("/api/demand-response/events/dr-1", json={**read, **change},
                        headers=_auth(UT)) as resp:
        assert resp.status == 422, await resp.text()
        assert named in (await resp.json())["detail"]
    async with http.put("/api/demand-response/events/dr-1", json=read,
                        headers=_auth(UT)) as resp:
        # read back: as it was
        assert resp.status == 200 and stated(await resp.json()) == stated(read)
    assert not server.controller.limits.events()[0].cancelled


async def test_cap_of_minus_zero_is_zero(api):
    """JSON's -0.0 is a cap of 0 W: stored, answered and logged as 0, never as "-0" (s31-api
    found it echoed as -0.0 and the guard logging "limit -0")."""
    server, http, _clock = api
    async with http.put("/api/site/cap", data='{"limit_w": -0.0}', headers={
            **_auth(OP), "Content-Type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
        assert '"limit_w": -0' not in await resp.text()
    async with http.get("/api/site/cap", headers=_auth(RD)) as resp:
        text = await resp.text()
    assert '"limit_w": 0' in text and '"limit_w": -0' not in text, text


async def test_a_put_on_a_cancelled_event_is_409_as_the_openapi_document_says(api):
    """api-site.md: a cancellation is final - a PUT under its id is 409 (so is one on an
    `openadr:` event). The OpenAPI document listed 200/400/404/422/503 for the PUT, no 409
    (session 36's docs check against a running serve): a client generated from it had no
    case for the answer it gets."""
    from smartcharge.api.openapi import openapi_document
    server, http, clock = api
    async with http.post("/api/demand-response/events", json=_event(clock),
                         headers=_auth(UT)) as resp:
        assert resp.status == 201, await resp.text()
    async with http.delete("/api/demand-response/events/dr-1", headers=_auth(UT)) as resp:
        assert resp.status == 200
    async with http.put("/api/demand-response/events/dr-1", json=_event(clock),
                        headers=_auth(UT)) as resp:
        assert resp.status == 409 and (await resp.json())["error"] == "conflict"
    put = openapi_document()["paths"]["/api/demand-response/events/{event_id}"]["put"]
    assert "409" in put["responses"]
