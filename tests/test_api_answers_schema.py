"""Every answer of the API's reading routes, on a site with a 1.6 and a 2.0.1 station's
sessions (stopped and open), is valid against the OpenAPI document's schema for that route
and status: the document is what clients are generated from. Session 36's docs check found
`Session.closed_by` and `MeterValue.source` naming only 1.6's messages, so every 2.0.1
session's answer was outside the document."""

from __future__ import annotations

from datetime import timedelta

from jsonschema import Draft202012Validator

from smartcharge.api.openapi import openapi_document
from tests.v201_billing import tx_event
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)


def _problems(route: str, status: int, body) -> list[str]:
    document = openapi_document()
    operation = document["paths"][route]["get"]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    return [f"{route} {'/'.join(map(str, error.absolute_path))}: {error.message[:120]}"
            for error in validator.iter_errors(body)]


async def test_every_reading_routes_answer_is_valid_against_the_openapi_document(
        controlled, t0):
    harness = controlled
    cp1 = await harness.station("CP1")                   # 1.6
    stopped = await cp1.start_tx(1, 1000, t0)
    await cp1.meter(1, stopped.transaction_id, t0 + 5 * MIN, 2000)
    await cp1.stop_tx(stopped.transaction_id, 3000, t0 + 10 * MIN)
    await cp1.start_tx(1, 3000, t0 + 11 * MIN)         # open
    cp2 = await station201(harness, "CP2")
    await cp2.send(tx_event("Started", "tx-1", 0, t0, register_wh=500))
    await cp2.send(tx_event("Ended", "tx-1", 1, t0 + 9 * MIN, register_wh=1500))
    await cp2.send(tx_event("Started", "tx-2", 0, t0 + 10 * MIN, register_wh=1500))
    async with harness.api.get(harness.url("/api/sessions")) as got:
        sessions = await got.json()
    assert len(sessions) == 4 and {s["closed_by"] for s in sessions} == {
        "StopTransaction", "TransactionEvent", None}
    routes = {"/api/stations": "/api/stations", "/api/stations/{station_id}":
              "/api/stations/CP2", "/api/sessions": "/api/sessions", "/api/site": "/api/site",
              "/api/site/cap": "/api/site/cap", "/api/site/cap-schedule":
              "/api/site/cap-schedule", "/api/demand-response/events":
              "/api/demand-response/events", "/api/health": "/api/health"}
    asked = [*routes.items()] + [
        (route, f"/api/sessions/{s['transaction_id']}{tail}") for s in sessions
        for route, tail in (("/api/sessions/{transaction_id}", ""),
                            ("/api/sessions/{transaction_id}/meter-values", "/meter-values"))]
    problems = []
    for route, path in asked:
        async with harness.api.get(harness.url(path)) as got:
            assert got.status == 200, (path, await got.text())
            problems += _problems(route, got.status, await got.json())
    assert problems == []
