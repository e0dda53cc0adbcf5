"""A utility's client that retries a DR POST without an event id (its network dropped the
answer, or the server died after the commit) must not create a second event: a second `dr-N`
limiting the site would stay in force after the utility cancels the one it knows of.

The client sends an `Idempotency-Key` header (IETF httpapi draft): the same key with the same
body answers the event it made (201, the same id), across a restart too; the same key with
another body is refused (422), nothing created. Real HTTP, real SQLite files."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp

from smartcharge import store_obligations as ob
from smartcharge.appkeys import STORE
from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from sim_fixtures import OPERATOR_TOKEN
from tests.site_e2e import control_server

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
UT = "utility-secret"
HOUR = timedelta(hours=1)


def _site():
    return Site(name="keys", circuits=(Circuit("grid", None, limit_w=50_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                utility_tokens=frozenset({UT}))


def _headers(key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {UT}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def _body(limit_w: float = 5_000) -> dict:
    return {"start": format_ocpp_time(T0 + HOUR), "end": format_ocpp_time(T0 + 2 * HOUR),
            "limit_w": limit_w}


async def _post(http, body, key):
    async with http.post("/api/demand-response/events", json=body,
                         headers=_headers(key)) as resp:
        return resp.status, await resp.json()


async def _stored_ids(server) -> list[str]:
    return [e.event_id for e in (await server.app[STORE].run(ob.load)).events]


async def test_a_retried_post_with_the_same_key_makes_one_event_across_a_restart(tmp_path):
    path = tmp_path / "k.sqlite"
    clock = AcceleratedClock(T0, speed=1.0)
    async with control_server(_site(), path, clock) as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            status, first = await _post(http, _body(), "7c1e-retry-1")
            assert status == 201, first
            status, again = await _post(http, _body(), "7c1e-retry-1")
            assert status == 201, again
            assert again["id"] == first["id"]
            # retries racing each other (a client that timed out twice) make one event too
            answers = await asyncio.gather(*(_post(http, _body(), "7c1e-retry-2")
                                             for _ in range(3)))
            assert {status for status, _ in answers} == {201}
            assert len({body["id"] for _, body in answers}) == 1
            assert len(await _stored_ids(server)) == 2
    async with control_server(_site(), path, clock) as server:   # the server restarted
        async with aiohttp.ClientSession(server.http_url) as http:
            status, after = await _post(http, _body(), "7c1e-retry-1")
            assert status == 201 and after["id"] == first["id"], after
            # without a key each POST is a new event, as documented
            status, other = await _post(http, _body(), None)
            assert status == 201 and other["id"] not in (first["id"],)
            assert len(await _stored_ids(server)) == 3


async def test_the_same_key_with_another_body_is_refused(tmp_path):
    clock = AcceleratedClock(T0, speed=1.0)
    async with control_server(_site(), tmp_path / "k.sqlite", clock) as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            status, first = await _post(http, _body(), "key-A")
            assert status == 201
            # the same request written otherwise (another client library's retry) is the same
            reworded = {"limit_w": 5_000.0, "end": _body()["end"].replace("Z", "+00:00"),
                        "start": _body()["start"]}
            status, again = await _post(http, reworded, "key-A")
            assert (status, again["id"]) == (201, first["id"]), again
            status, refused = await _post(http, _body(limit_w=4_000), "key-A")
            assert status == 422, refused
            assert refused["error"] == "idempotency_key_reused", refused
            assert "key-A" in refused["detail"]
            assert await _stored_ids(server) == [first["id"]]
            for bad in ("", " " * 3, "x" * 256):
                status, answer = await _post(http, _body(), bad)
                assert status == 400 and "Idempotency-Key" in answer["detail"], (bad, answer)
            assert await _stored_ids(server) == [first["id"]]


async def test_a_retry_after_a_sigkill_before_the_answer_makes_no_second_event(tmp_path):
    """The server dies with the event committed and its 201 not sent (`kill_point.py`): the
    client's retry with its Idempotency-Key gets that event, and there is one."""
    from tests.test_kill_points import Server

    server = Server(tmp_path)
    body = {"start": format_ocpp_time(datetime.now(UTC) + HOUR),
            "end": format_ocpp_time(datetime.now(UTC) + 2 * HOUR), "limit_w": 7_000}

    async def post() -> tuple[int, dict] | None:
        async with aiohttp.ClientSession() as http:
            try:
                async with http.post(f"http://127.0.0.1:{server.port}/api/demand-response/"
                                     "events", json=body, headers={
                                         "Authorization": f"Bearer {OPERATOR_TOKEN}",
                                         "Idempotency-Key": "utility-7f3a"}) as resp:
                    return resp.status, await resp.json()
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
                return None
    try:
        server.start("response:post_event")
        await server.wait_listening()
        assert await post() is None
        assert server.killed_at_its_point()
        server.start()
        await server.wait_listening()
        status, created = await post()
        assert status == 201, created
        status, listed = await server.api("GET", "/api/demand-response/events")
        assert [e["id"] for e in listed] == [created["id"]], listed
    finally:
        server.stop()


async def test_a_cancelled_event_stays_cancelled(tmp_path):
    """A cancellation is final, as a VTN's is: the original POST retried late (after the
    DELETE) answers the event as it is - cancelled - instead of reviving it; another body
    under its id, or a PUT, is a 409 (a new event takes a new id)."""
    clock = AcceleratedClock(T0, speed=1.0)
    body = {"id": "u-9", **_body()}
    async with control_server(_site(), tmp_path / "c.sqlite", clock) as server:
        async with aiohttp.ClientSession(server.http_url) as http:
            assert (await _post(http, body, None))[0] == 201
            async with http.delete("/api/demand-response/events/u-9",
                                   headers=_headers()) as resp:
                assert resp.status == 200
            status, again = await _post(http, body, None)
            assert (status, again["state"]) == (201, "cancelled"), again
            status, other = await _post(http, {**body, "limit_w": 3_000}, None)
            assert status == 409 and "cancelled" in other["detail"], other
            async with http.put("/api/demand-response/events/u-9", json=_body(3_000),
                                headers=_headers()) as resp:
                assert resp.status == 409, await resp.text()
            assert server.controller.limits.event("u-9").cancelled
            [stored] = (await server.app[STORE].run(ob.load)).events
            assert stored.cancelled
