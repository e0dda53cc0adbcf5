"""Session 31's outside judge of the REST API and the OCPP edge (helper s31-api): a real
server, real WebSockets, real `ocpp` messages, real SQLite. What held is in the report and in
docs/promises.md; a test here for each promise that broke."""

from __future__ import annotations

import pytest


_UNREAD_FILTERS = [
    ("?after=3", "after", "csv-after"),      # the list pages with it; the CSV does not
    ("?statoin=CP1", "statoin", "station-misspelt"),
    ("?sinse=2026-01-01T00:00:00Z", "sinse", "since-misspelt"),
    ("?since=2026-01-01T00:00:00Z&since=2027-01-01T00:00:00Z", "since", "since-twice"),
    ("?limit=5&limit=6", "limit", "limit-twice"),
]


@pytest.mark.parametrize("path, query, name", [
    pytest.param(path, query, name, id=f"{path}-{case}")
    for path in ("/api/sessions.csv", "/api/sessions")
    for query, name, case in _UNREAD_FILTERS
    if not (path == "/api/sessions" and name == "after")   # the list takes `after`
])
async def test_a_billing_filter_the_export_would_not_read_is_refused(api, path, query, name):
    """A filter the sessions routes do not read was dropped without a word: `?statoin=CP1`
    exported every station's sessions, `?sinse=` every session ever, and a client paging the
    CSV with the list's `after` got page one again and again (each session billed on every
    page); a parameter given twice was read as its first. A billing export answers what was
    asked or says why not: a 422 naming the parameter."""
    server, http = api
    async with http.get(f"http://127.0.0.1:{server.port}{path}{query}") as response:
        body = await response.json(content_type=None)
        assert response.status == 422, (response.status, body)
    assert body["error"] == "invalid_body" and repr(name) in body["detail"], body


FILTERS = "station=CP1&since=2026-01-01T00:00:00Z&until=2027-01-01T00:00:00Z&limit=5"


@pytest.mark.parametrize("path", [f"/api/sessions.csv?{FILTERS}",
                                  f"/api/sessions?{FILTERS}&after=0"])
async def test_the_billing_filters_they_read_are_still_taken(api, path):
    server, http = api
    async with http.get(f"http://127.0.0.1:{server.port}{path}") as response:
        assert response.status == 200, await response.text()


@pytest.mark.parametrize("route, name", [
    ("composite-schedule?connector_id=1&connector_id=2&duration_s=60", "connector_id"),
    ("composite-schedule?connector_id=1&duration_s=60&timout_s=5", "timout_s"),
    ("configuration?keys=HeartbeatInterval", "keys"),      # read as no key: every key
    ("reset?timeout_s=1&timeout_s=200", "timeout_s"),
], ids=["connector-twice", "timeout-misspelt", "key-misspelt", "timeout-twice"])
async def test_a_command_parameter_the_route_does_not_read_is_refused(harness, route, name):
    """The same for the remote commands: a parameter given twice was read as its first (the
    composite schedule of connector 1 answered for `connector_id=1&connector_id=2`), one the
    route does not take was dropped (`?keys=` read every key). Refused before anything is
    sent: a 422 naming it (`key`, a list, may be repeated)."""
    await harness.station("CP1")
    method = "GET" if route.startswith(("composite", "configuration")) else "POST"
    kwargs = {} if method == "GET" else {"json": {"type": "Soft"}}
    async with harness.api.request(method, harness.url(f"/api/stations/CP1/{route}"),
                                   **kwargs) as response:
        body = await response.json(content_type=None)
        assert response.status == 422, (response.status, body)
    assert body["error"] == "invalid_body" and repr(name) in body["detail"], body


async def test_a_list_parameter_may_still_be_repeated(harness):
    await harness.station("CP1")
    async with harness.api.get(harness.url("/api/stations/CP1/configuration?key=A&key=B"
                                           "&timeout_s=5")) as response:
        assert response.status == 200, await response.text()
