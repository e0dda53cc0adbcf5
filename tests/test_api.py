"""The REST API against a real server with connected test stations."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from smartcharge.app import create_app
from smartcharge.appkeys import REGISTRY, SITE

COMMANDS = [
    ("POST", "remote-start", {"id_tag": "DRIVER-1", "connector_id": 1},
     "RemoteStartTransaction", {"id_tag": "DRIVER-1", "connector_id": 1}, {"status": "Accepted"}),
    ("POST", "remote-stop", {"transaction_id": 42}, "RemoteStopTransaction",
     {"transaction_id": 42}, {"status": "Accepted"}),
    ("POST", "change-availability", {"connector_id": 0, "type": "Inoperative"},
     "ChangeAvailability", {"connector_id": 0, "type": "Inoperative"}, {"status": "Scheduled"}),
    ("POST", "reset", {"type": "Soft"}, "Reset", {"type": "Soft"}, {"status": "Accepted"}),
    ("POST", "unlock-connector", {"connector_id": 2}, "UnlockConnector", {"connector_id": 2},
     {"status": "Unlocked"}),
    ("POST", "trigger-message", {"requested_message": "StatusNotification", "connector_id": 1},
     "TriggerMessage", {"requested_message": "StatusNotification", "connector_id": 1},
     {"status": "Accepted"}),
    ("GET", "configuration?key=HeartbeatInterval&key=Nope", None, "GetConfiguration",
     {"key": ["HeartbeatInterval", "Nope"]},
     {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
      "unknownKey": ["Nope"]}),
    ("POST", "change-configuration", {"key": "HeartbeatInterval", "value": "60"},
     "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"},
     {"status": "Accepted"}),
    ("POST", "clear-charging-profile", {"connector_id": 1, "charging_profile_purpose":
                                        "TxProfile"},
     "ClearChargingProfile", {"connector_id": 1, "charging_profile_purpose": "TxProfile"},
     {"status": "Unknown"}),
    ("GET", "composite-schedule?connector_id=1&duration_s=3600&charging_rate_unit=A", None,
     "GetCompositeSchedule", {"connector_id": 1, "duration": 3600, "charging_rate_unit": "A"},
     {"status": "Accepted", "connectorId": 1, "scheduleStart": "2026-01-01T12:00:00Z",
      "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
          {"startPeriod": 0, "limit": 16.0}]}}),
]


@pytest.mark.parametrize("method, route, body, action, received, answer", COMMANDS,
                         ids=[c[1].split("?")[0] for c in COMMANDS])
async def test_remote_command_round_trip(harness, method, route, body, action, received,
                                         answer):
    station = await harness.station("CP1")
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    response = await harness.api.request(method, harness.url(f"/api/stations/CP1/{route}"),
                                          json=body)
    assert response.status == 200, await response.text()
    result = await response.json()
    assert result == {"station_id": "CP1", "action": action, "answer": answer}
    assert station.received == [(action, received)]


async def test_unknown_station_404_offline_409_timeout_504(harness):
    response = await harness.api.post(harness.url("/api/stations/NOPE/reset"),
                                       json={"type": "Soft"})
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
    response = await harness.api.post(harness.url("/api/stations/CP2/reset"),
                                       json={"type": "Soft"})
    assert response.status == 409
    body = await response.json()
    assert body["error"] == "conflict" and "offline" in body["detail"]
    station = await harness.station("CP3")
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP3") is not None)
    station.hold.clear()                       # the station sits on its answer
    response = await harness.api.post(harness.url("/api/stations/CP3/reset?timeout_s=0.3"),
                                       json={"type": "Hard"})
    assert response.status == 504
    assert (await response.json())["error"] == "station_timeout"
    station.hold.set()


@pytest.mark.parametrize("route, body, words", [
    ("reset", {"type": "Gentle"}, "Hard, Soft"),
    ("reset", {}, "type is required"),
    ("reset", [1, 2], "JSON object"),
    ("remote-start", {"id_tag": "X" * 21}, "at most 20"),
    ("remote-stop", {"transaction_id": "7"}, "integer"),
    ("unlock-connector", {"connector_id": 0}, ">= 1"),
    ("change-availability", {"connector_id": 1, "type": "Operative", "extra": 1}, "unknown"),
    ("composite-schedule?connector_id=1", None, "duration_s"),
    # OCPP's integer is 32 bits: a strict station would refuse it; we do, before sending
    ("unlock-connector", {"connector_id": 2 ** 31}, "32-bit"),
    ("remote-stop", {"transaction_id": 2 ** 40}, "32-bit"),
    ("composite-schedule?connector_id=1&duration_s=99999999999", None, "32-bit"),
])
async def test_bad_bodies_get_422_with_a_message(harness, route, body, words):
    await harness.station("CP1")
    method = "GET" if route.startswith("composite") else "POST"
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = await harness.api.request(method, harness.url(f"/api/stations/CP1/{route}"),
                                          **kwargs)
    assert response.status == 422
    payload = await response.json()
    assert payload["error"] == "invalid_body" and words in payload["detail"]


@pytest.mark.parametrize("timeout_s", ["0", "301", "soon"])
async def test_a_bad_timeout_s_is_422_whether_the_station_is_online_or_not(harness, timeout_s):
    """docs/api.md: `?timeout_s=` more than 0 and at most 300, else 422 - as a bad body is,
    before anything else is looked at. An offline station's command answered 409 "offline"
    instead (session 36's docs check): one wrong query, two statuses by the station's state."""
    await harness.station("CP1")             # CP2 stays offline
    for station_id in ("CP1", "CP2"):
        response = await harness.api.post(
            harness.url(f"/api/stations/{station_id}/reset?timeout_s={timeout_s}"),
            json={"type": "Soft"})
        assert response.status == 422, (station_id, await response.text())
        assert "timeout_s" in (await response.json())["detail"]


@pytest.mark.parametrize("body", ["not json", '{"type": "Soft"', "[" * 50_000 + "]" * 50_000],
                         ids=["text", "cut-short", "nested-too-deep"])
async def test_a_body_that_is_no_json_gets_400_as_on_every_route(harness, body):
    """docs/api.md: a body that is not JSON is 400 `bad_request` - as the site routes answer it
    (api/site_common.py); the station commands answered 422 `invalid_body`, so one fault had
    two statuses in one API. A JSON value that is no object stays 422 (it is JSON, wrong shape)."""
    await harness.station("CP1")
    response = await harness.api.post(harness.url("/api/stations/CP1/reset"), data=body)
    assert response.status == 400, await response.text()
    payload = await response.json()
    assert payload["error"] == "bad_request" and "JSON" in payload["detail"]


async def test_station_callerror_is_502_with_its_code(harness):
    ws = await harness.open_ws("CP1")
    await harness.raw_call(ws, [2, "b", "BootNotification",
                                {"chargePointVendor": "V", "chargePointModel": "M"}])
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    import asyncio
    import json
    request = asyncio.ensure_future(harness.api.post(
        harness.url("/api/stations/CP1/reset"), json={"type": "Hard"}))
    frame = json.loads((await ws.receive(timeout=5)).data)
    await ws.send_str(json.dumps([4, frame[1], "NotSupported", "no resets here", {}]))
    response = await request
    assert response.status == 502
    assert (await response.json())["code"] == "NotSupported"


async def test_stations_sessions_csv_and_meter_values(harness, t0):
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 10_000, t0)).transaction_id
    await station.meter(1, tx_id, t0 + timedelta(minutes=5), 10_700,
                        extra=[{"value": "8.2", "measurand": "Power.Active.Import",
                                "unit": "kW"}])
    await station.stop_tx(tx_id, 11_500, t0 + timedelta(minutes=10))
    other = await harness.station("CP2")
    await other.start_tx(2, 0, t0 + timedelta(hours=1))

    stations = await (await harness.api.get(harness.url("/api/stations"))).json()
    by_id = {s["station_id"]: s for s in stations}
    assert by_id["CP1"]["online"] and by_id["CP1"]["boot_status"] == "Accepted"
    assert not by_id["CP3"]["online"] and by_id["CP3"]["declared"]
    assert (await harness.api.get(harness.url("/api/stations/CP9"))).status == 404

    sessions = await (await harness.api.get(harness.url("/api/sessions?station=CP1"))).json()
    assert [(s["transaction_id"], s["energy_wh"], s["state"]) for s in sessions] == [
        (tx_id, 1_500, "stopped")]
    since = (t0 + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = await (await harness.api.get(harness.url(f"/api/sessions?since={since}"))).json()
    assert [s["station_id"] for s in later] == ["CP2"]
    bad = await harness.api.get(harness.url("/api/sessions?since=noon"))
    assert bad.status == 422 and "since" in (await bad.json())["detail"]

    text = await (await harness.api.get(harness.url("/api/sessions.csv?station=CP1"))).text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["energy_wh"] == "1500.0" and rows[0]["energy_kwh"] == "1.500"

    values = await (await harness.api.get(
        harness.url(f"/api/sessions/{tx_id}/meter-values"))).json()
    power = [v for v in values if v["measurand"] == "Power.Active.Import"]
    assert power[0]["value_si"] == 8_200 and power[0]["unit"] == "kW"
    assert (await harness.api.get(harness.url("/api/sessions/999/meter-values"))).status == 404
    single = await (await harness.api.get(harness.url(f"/api/sessions/{tx_id}"))).json()
    assert single["meter_stop_wh"] == 11_500


async def test_openapi_document_describes_every_route(harness):
    document = await (await harness.api.get(harness.url("/api/openapi.json"))).json()
    assert document["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method in ("get", "post", "put", "delete")}
    routes = set()
    # The harness runs the central system alone; the document covers the whole service.
    whole_service = create_app(harness.app[SITE], db_path=":memory:")
    for resource in whole_service.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path.startswith("/api"):
            for route in resource:
                if route.method != "HEAD":
                    routes.add((route.method, path))
    assert routes == documented
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


@pytest.mark.parametrize("site", [__import__("tests.conftest", fromlist=["make_site"]).make_site(
    operator_tokens=frozenset({"op-token"}), utility_tokens=frozenset({"ut-token"}))])
async def test_station_control_needs_an_operator_token(harness):
    await harness.station("CP1")
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    url = harness.url("/api/stations/CP1/reset")
    cases = [({}, 401), ({"Authorization": "Bearer wrong"}, 401),
             ({"Authorization": "Bearer ut-token"}, 403), ({"Authorization": "Bearer op-token"},
                                                          200)]
    for headers, status in cases:
        response = await harness.http.post(url, json={"type": "Soft"}, headers=headers)
        assert response.status == status, (headers, await response.text())
        if status == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
    # reads need a token too: sessions carry id tags (personal data, and a credential)
    assert (await harness.http.get(harness.url("/api/sessions"))).status == 401
    assert (await harness.http.get(harness.url("/api/sessions"), headers={
        "Authorization": "Bearer ut-token"})).status == 403


async def test_sessions_csv_neutralises_formulas_and_streams_every_row(harness, t0):
    """A cell a spreadsheet would run as a formula gets a leading quote (OWASP CSV injection);
    numbers stay numbers. The export streams in batches: more rows than one batch, chunked."""
    station = await harness.station("CP1")
    hostile = ['=cmd|"/c calc"!A1', "+1+2", "-2+3", "@SUM(A1)", "\tTAB"]
    for n, tag in enumerate(hostile):
        await station.start_tx(1 + n % 2, 1000 * n, t0 + timedelta(minutes=n), id_tag=tag)

    def many(tx):
        for n in range(1_234):
            tx.insert_session(station_id="CP2", connector_id=1, id_tag=hostile[n % 5],
                              start_time=t0, meter_start_wh=0.0, reservation_id=None,
                              state="open", at=t0)
    await harness.store.run(many)
    response = await harness.api.get(harness.url("/api/sessions.csv"))
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert response.headers.get("Transfer-Encoding") == "chunked"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(rows) == 1_234 + len(hostile)
    assert len({r["transaction_id"] for r in rows}) == len(rows)
    assert {r["id_tag"] for r in rows} == {"'" + tag for tag in hostile}
    for row in rows:
        for value in row.values():
            assert not value[:1] in ("=", "+", "-", "@", "\t"), row
    assert rows[0]["meter_start_wh"] == "0.0"


def test_neutralise_keeps_numbers_and_quotes_formulas():
    from smartcharge.api.sessions import neutralise
    assert [neutralise(v) for v in (-5.0, "-5.0", "-1e3", "=1+1", "-1+1", "@x", "CP1", None)] \
        == [-5.0, "-5.0", "-1e3", "'=1+1", "'-1+1", "'@x", "CP1", None]
