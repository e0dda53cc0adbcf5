"""Nobody without the right token: every route of the OpenAPI document × every role × no token,
against the whole service (central system, site controller, dashboard) on a real socket."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from smartcharge.api.auth import AUTH, TOKEN_GUESSING
from smartcharge.api.openapi import openapi_document
from smartcharge.app import create_app
from smartcharge.auth_throttle import AuthThrottle, ThrottleSettings
from smartcharge.clock import ManualClock, SystemClock
from smartcharge.credentials import hash_secret
from smartcharge.site.setup import CONTROLLER
from tests.conftest import make_site

FAST = {"n": 2 ** 10, "r": 8, "p": 1}
TOKENS = {"reader": "reader-token-1", "operator": "operator-token-1",
          "utility": "utility-token-1", "admin": "admin-token-1"}
READ = {"reader", "operator", "admin"}
OPERATE = {"operator", "admin"}
DR_READ = {"reader", "operator", "utility", "admin"}
DR_WRITE = {"operator", "utility", "admin"}
PATH_VALUES = {"station_id": "CP1", "transaction_id": "1", "event_id": "dr-none"}


def expected_roles(method: str, path: str) -> set[str] | None:
    """Who may call a route (None: public). Written out here, apart from the code, on purpose:
    this is the promise docs/api.md makes."""
    if path in ("/api/openapi.json", "/api/health"):   # no data: the document, the store's state
        return None
    if path.startswith("/api/demand-response"):
        return DR_READ if method == "GET" else DR_WRITE
    if re.fullmatch(r"/api/stations/\{station_id\}/[a-z-]+", path):
        return OPERATE          # station commands, even the GET ones (they call the station)
    if method == "GET":
        return READ
    return OPERATE              # caps, cap schedule, session needs


def documented_routes() -> list[tuple[str, str]]:
    return sorted((method.upper(), path) for path, item in openapi_document()["paths"].items()
                  for method in item if method in ("get", "post", "put", "delete"))


def tokened_site(**tokens):
    fields = {f"{role}_tokens": frozenset({token}) for role, token in TOKENS.items()}
    fields.update(tokens)
    return make_site(**fields)


async def serve(site, tmp_path, **options):
    app = create_app(site, db_path=str(tmp_path / "auth.sqlite"), **options)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    return server


async def status_of(http, server, method, path, token=None) -> int:
    url = server.make_url(path.format(**PATH_VALUES))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {} if method in ("POST", "PUT") else None
    async with http.request(method, url, json=body, headers=headers) as response:
        if response.status in (401, 403):
            answer = await response.json()
            assert set(answer) == {"error", "detail"}, answer
            if response.status == 401:
                assert response.headers["WWW-Authenticate"] == "Bearer"
        return response.status     # the stream's body is never read: leaving closes it


@pytest.fixture(scope="module")
def hashed_admin():
    return hash_secret(TOKENS["admin"], **FAST)


@pytest.fixture
async def matrix_server(tmp_path, hashed_admin):
    # the admin token is stored hashed: hashed and plaintext tokens both take part
    server = await serve(tokened_site(admin_tokens=frozenset({hashed_admin})), tmp_path)
    # the matrix sends many wrong tokens on purpose
    server.app[AUTH].throttle = AuthThrottle(SystemClock(), ThrottleSettings(max_failures=10_000))
    async with aiohttp.ClientSession() as http:
        yield server, http
    await server.close()


async def test_every_documented_route_for_every_role(matrix_server):
    server, http = matrix_server
    routes = documented_routes()
    assert len(routes) >= 25
    wrong = []
    for method, path in routes:
        allowed = expected_roles(method, path)
        for role, token in [(None, None), ("nobody", "not-a-token"), *TOKENS.items()]:
            got = await status_of(http, server, method, path, token)
            if allowed is None:
                ok = got not in (401, 403)
            elif role in (None, "nobody"):
                ok = got == 401
            elif role in allowed:
                ok = got not in (401, 403)
            else:
                ok = got == 403
            if not ok:
                wrong.append((method, path, role, got))
    assert wrong == []


async def test_a_403_says_which_roles_may_call_and_which_one_came(matrix_server):
    """docs/api.md: a token of another role is 403 and the detail says so - in words a client
    can show ("an utility token" was the wording for a utility's)."""
    server, http = matrix_server
    async with http.get(server.make_url("/api/sessions"),
                        headers={"Authorization": f"Bearer {TOKENS['utility']}"}) as response:
        assert response.status == 403
        detail = (await response.json())["detail"]
    assert detail == "this route needs an operator or reader token; yours is a utility token"


async def test_no_token_configured_and_no_flag_refuses_everything(tmp_path, monkeypatch):
    for role in TOKENS:
        monkeypatch.delenv(f"SMARTCHARGE_{role.upper()}_TOKENS", raising=False)
    server = await serve(make_site(), tmp_path)
    server.app[AUTH].throttle = AuthThrottle(SystemClock(), ThrottleSettings(max_failures=10_000))
    try:
        async with aiohttp.ClientSession() as http:
            for method, path in documented_routes():
                if expected_roles(method, path) is None:
                    continue
                for token in (None, "anything", TOKENS["admin"]):
                    assert await status_of(http, server, method, path, token) == 401, \
                        (method, path, token)
    finally:
        await server.close()


async def test_insecure_open_api_flag_opens_every_route_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="smartcharge.api")
    server = await serve(make_site(), tmp_path, insecure_open_api=True)
    try:
        assert any("insecure-open-api" in r.getMessage() for r in caplog.records)
        async with aiohttp.ClientSession() as http:
            for method, path in documented_routes():
                assert await status_of(http, server, method, path) not in (401, 403), path
    finally:
        await server.close()


async def test_plaintext_tokens_work_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="smartcharge.api")
    server = await serve(tokened_site(), tmp_path)
    try:
        assert any("plaintext" in r.getMessage() and "hash-secret" in r.getMessage()
                   for r in caplog.records)
        async with aiohttp.ClientSession() as http:
            assert await status_of(http, server, "GET", "/api/stations",
                                   TOKENS["reader"]) == 200
    finally:
        await server.close()


async def test_unknown_api_paths_need_a_token_before_they_say_404(matrix_server):
    server, http = matrix_server
    assert await status_of(http, server, "GET", "/api/nothing-here") == 401
    assert await status_of(http, server, "GET", "/api/nothing-here", TOKENS["reader"]) == 404
    # the dashboard page itself is public: it holds no data, it asks for a token
    assert await status_of(http, server, "GET", "/") == 200


async def test_a_route_without_an_access_rule_is_refused_to_everyone(tmp_path):
    from smartcharge.api.auth import route

    site = tokened_site()
    app = create_app(site, db_path=str(tmp_path / "rule.sqlite"), smart_charging=False)

    async def secret(request):
        raise AssertionError("must not run")
    route(app, "GET", "/api/forgotten", secret, ())
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            assert await status_of(http, server, "GET", "/api/forgotten") == 401
            assert await status_of(http, server, "GET", "/api/forgotten", TOKENS["admin"]) == 403
    finally:
        await server.close()


async def test_id_tags_are_masked_for_readers_and_whole_for_operators(tmp_path, t0):
    from tests.conftest import Harness

    server = await serve(tokened_site(), tmp_path)
    http = aiohttp.ClientSession()
    harness = Harness(server, http)
    try:
        station = await harness.station("CP1")
        tx_id = (await station.start_tx(1, 10_000, t0)).transaction_id

        async def seen_by(role: str) -> set[str]:
            headers = {"Authorization": f"Bearer {TOKENS[role]}"}
            tags = set()
            async with http.get(server.make_url("/api/sessions"), headers=headers) as resp:
                tags |= {s["id_tag"] for s in await resp.json()}
            async with http.get(server.make_url(f"/api/sessions/{tx_id}"),
                                headers=headers) as resp:
                tags.add((await resp.json())["id_tag"])
            async with http.get(server.make_url("/api/sessions.csv"), headers=headers) as resp:
                tags |= {line.split(",")[3] for line in (await resp.text()).splitlines()[1:]}
            await harness.wait_for(lambda: server.app[CONTROLLER].state.sessions, 5)
            async with http.get(server.make_url("/api/site"), headers=headers) as resp:
                tags |= {s["id_tag"] for s in (await resp.json())["sessions"]}
            async with http.get(server.make_url("/api/site/stream"), headers=headers) as resp:
                while not (line := await resp.content.readline()).startswith(b"data: "):
                    pass
                tags |= {s["id_tag"] for s in json.loads(line[6:])["sessions"]}
            return tags

        assert await seen_by("reader") == {"DRIV****"}
        assert await seen_by("operator") == {"DRIVER-1"}
        assert await seen_by("admin") == {"DRIVER-1"}
    finally:
        await harness.close()
        await http.close()
        await server.close()


def test_the_openapi_document_states_who_may_call_each_operation():
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    role_of_scheme = {name: name.removesuffix("Token") for name in schemes}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "delete"):
                continue
            roles = {role_of_scheme[name] for entry in operation["security"] for name in entry}
            assert roles == (expected_roles(method.upper(), path) or set()), (method, path)


async def test_guessing_tokens_from_one_address_is_slowed_down(matrix_server):
    """After 10 failed tokens in a minute an address gets 429 for every request, right token or
    not (or the answer would tell the guesser it found one); a minute later it may try again."""
    server, http = matrix_server
    clock = ManualClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
    server.app[AUTH].throttle = AuthThrottle(clock, TOKEN_GUESSING)
    for n in range(10):
        assert await status_of(http, server, "GET", "/api/stations", f"guess-{n}") == 401
    async with http.get(server.make_url("/api/stations"),
                        headers={"Authorization": f"Bearer {TOKENS['reader']}"}) as resp:
        assert resp.status == 429 and (await resp.json())["error"] == "too_many_requests"
        assert int(resp.headers["Retry-After"]) > 0
    clock.advance(61)
    assert await status_of(http, server, "GET", "/api/stations", TOKENS["reader"]) == 200


# --- every route the app serves, read from its router (not from the document) ----------------
PUBLIC_ROUTES = {("GET", "/"), ("HEAD", "/"), ("GET", "/static/{name}"),
                 ("HEAD", "/static/{name}"), ("GET", "/api/openapi.json"),
                 ("GET", "/api/health")}
ROUTE_VALUES = {**PATH_VALUES, "name": "dashboard.js", "program": "gac"}


async def test_every_route_of_the_router_is_guarded_or_named_public(tmp_path):
    """A route added anywhere (API, OCPP endpoint, OpenADR callback, dashboard) without a guard
    fails here: under /api it must have an access rule and be in the OpenAPI document (so the
    role matrix above covers it); elsewhere it must refuse a caller without credentials."""
    from dataclasses import replace

    from smartcharge.model import OpenAdrProgram

    program = OpenAdrProgram(program="gac", version="3", vtn_url="http://127.0.0.1:9",
                             ven_name="depot", bearer_token="vtn-token",
                             callback_url="http://127.0.0.1:9")
    site = replace(tokened_site(), openadr=(program,))
    # not started: its VEN would only try to reach a VTN that is not there
    app = create_app(site, db_path=str(tmp_path / "routes.sqlite"))
    routes = sorted({(route.method, route.resource.canonical)
                     for route in app.router.routes() if route.resource is not None})
    assert ("POST", "/openadr/{program}/notifications") in routes
    documented = set(documented_routes())
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    server.app[AUTH].throttle = AuthThrottle(SystemClock(), ThrottleSettings(max_failures=10_000))
    wrong = []
    try:
        async with aiohttp.ClientSession() as http:
            for method, path in routes:
                if (method, path) in PUBLIC_ROUTES:
                    continue
                if path.startswith("/api/"):
                    if not app[AUTH].policy.get((method, path)):
                        wrong.append((method, path, "no access rule"))
                    if (method, path) not in documented:
                        wrong.append((method, path, "not in the OpenAPI document"))
                url = server.make_url(path.format(**ROUTE_VALUES))
                for headers in ({}, {"Authorization": "Bearer not-a-token"},
                                {"Authorization": "Basic Q1AxOndyb25n"}):   # CP1:wrong
                    async with http.request(method, url, headers=headers) as response:
                        if response.status not in (401, 403):
                            wrong.append((method, path, headers, response.status))
    finally:
        await server.close()
    assert wrong == []


@pytest.mark.parametrize("path", ["/API/stations", "//api/stations", "/api//stations",
                                  "/api/stations/", "/%61pi/stations", "/api/./stations",
                                  "/static/../api/stations", "/api/sessions.csv/"])
async def test_spellings_of_an_api_path_never_skip_the_token(matrix_server, path):
    server, http = matrix_server
    url = server.make_url("/").with_path(path, encoded=True)
    async with http.get(url) as response:
        body = await response.read()
        assert response.status in (401, 404), (path, response.status)
        assert b"DRIVER" not in body and b"station_id" not in body
