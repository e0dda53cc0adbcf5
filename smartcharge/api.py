"""REST API under /api: stations, sessions (JSON and CSV), meter values, and the OpenAPI document.

Remote control of stations lives in `api_commands.py`, who may call what in `api_auth.py`.
Every error is JSON `{"error": <short code>, "detail": <what is wrong>}` (`api_errors.py`); a
client never sees a stack trace.
"""

from __future__ import annotations

import csv
import io
import functools
import json
import re
from datetime import datetime
from importlib import resources
from typing import Any

from aiohttp import web

from smartcharge import api_commands
from smartcharge.api_auth import PUBLIC, READ, mask_id_tag, route, setup_auth
from smartcharge.api_errors import json_errors
from smartcharge.appkeys import REGISTRY, SITE, STORE
from smartcharge.clock import parse_ocpp_time
from smartcharge.store import SessionRow, db_time

def _time_param(request: web.Request, name: str) -> datetime | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return parse_ocpp_time(text)
    except ValueError:
        raise web.HTTPUnprocessableEntity(
            text=f"query parameter {name!r} must be an RFC 3339 time with a zone, e.g. "
                 f"2026-01-01T12:00:00Z; got {text!r}") from None


def session_json(row: SessionRow, request: web.Request) -> dict[str, Any]:
    return {
        "transaction_id": row.transaction_id, "station_id": row.station_id,
        "connector_id": row.connector_id, "id_tag": mask_id_tag(row.id_tag, request),
        "state": row.state,
        "start_time": row.start_time, "stop_time": row.stop_time,
        "meter_start_wh": row.meter_start_wh, "meter_stop_wh": row.meter_stop_wh,
        "energy_wh": row.energy_wh, "energy_method": row.energy_method,
        "stop_reason": row.stop_reason, "closed_by": row.closed_by,
        "flags": [flag for flag in row.flags.split(",") if flag],
        "station_transaction_id": row.station_tx_id,
    }


async def list_stations(request: web.Request) -> web.Response:
    return web.json_response(await _stations(request.app))


async def get_station(request: web.Request) -> web.Response:
    station_id = request.match_info["station_id"]
    for station in await _stations(request.app):
        if station["station_id"] == station_id:
            return web.json_response(station)
    raise web.HTTPNotFound(text=f"unknown station {station_id!r}")


async def _stations(app: web.Application) -> list[dict[str, Any]]:
    site, registry = app[SITE], app[REGISTRY]
    rows, statuses = await app[STORE].read(lambda tx: (tx.stations(), tx.connector_statuses()))
    stored = {row["station_id"]: row for row in rows}
    ids = [s.station_id for s in site.stations] + sorted(set(stored) - {
        s.station_id for s in site.stations})
    result = []
    for station_id in ids:
        row = stored.get(station_id, {})
        link = registry.get(station_id)
        result.append({
            "station_id": station_id,
            "declared": site.station(station_id) is not None,
            "online": link is not None,
            "boot_status": row.get("boot_status"),
            "vendor": row.get("vendor"), "model": row.get("model"),
            "firmware_version": row.get("firmware_version"),
            "last_seen": db_time(link.last_seen) if link and link.last_seen
            else row.get("last_seen"),
            "firmware_status": row.get("firmware_status"),
            "diagnostics_status": row.get("diagnostics_status"),
            "connectors": [{"connector_id": s["connector_id"], "status": s["status"],
                            "error_code": s["error_code"], "timestamp": s["timestamp"]}
                           for s in statuses if s["station_id"] == station_id],
        })
    return result


def _session_query(request: web.Request, default_limit: int = 1000):
    """The sessions filter of the query string: (station, since, until, limit), checked."""
    station = request.query.get("station")
    since, until = _time_param(request, "since"), _time_param(request, "until")
    try:
        limit = int(request.query.get("limit", str(default_limit)))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 100_000:
        raise web.HTTPUnprocessableEntity(text="limit must be an integer 1..100000")
    return station, since, until, limit


async def list_sessions(request: web.Request) -> web.Response:
    station, since, until, limit = _session_query(request)
    rows = await request.app[STORE].read(lambda tx: tx.sessions(station, since, until, limit))
    return web.json_response([session_json(row, request) for row in rows])


CSV_COLUMNS = ("transaction_id", "station_id", "connector_id", "id_tag", "start_time",
               "stop_time", "meter_start_wh", "meter_stop_wh", "energy_wh", "energy_kwh",
               "state", "stop_reason", "closed_by", "flags")
CSV_BATCH_ROWS = 500      # rows per read: the export never holds the whole table in memory


async def sessions_csv(request: web.Request) -> web.StreamResponse:
    # a billing export must not be cut short by the JSON list's page size
    station, since, until, limit = _session_query(request, default_limit=100_000)
    store = request.app[STORE]
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="sessions.csv"'})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(csv_lines([CSV_COLUMNS]))
    after, left = None, limit
    while left > 0:
        batch = min(CSV_BATCH_ROWS, left)
        rows = await store.read(lambda tx: tx.sessions(station, since, until, batch, after))
        if not rows:
            break
        await response.write(csv_lines(csv_row(row, request) for row in rows))
        after, left = rows[-1].transaction_id, left - len(rows)
        if len(rows) < batch:
            break
    await response.write_eof()
    return response


def csv_row(row: SessionRow, request: web.Request) -> list[Any]:
    data = session_json(row, request)
    data["energy_kwh"] = None if row.energy_wh is None else f"{row.energy_wh / 1000:.3f}"
    data["flags"] = " ".join(data["flags"])
    return ["" if data[c] is None else data[c] for c in CSV_COLUMNS]


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text cell a spreadsheet would evaluate (it starts with = + - @, a tab or a carriage
    return: OWASP "CSV injection") gets a leading apostrophe, so it is shown, not run. Our own
    numbers (a negative energy) stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS) \
            and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_lines(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([neutralise(value) for value in row])
    return out.getvalue().encode("utf-8")


def _transaction_id(request: web.Request) -> int:
    try:
        return int(request.match_info["transaction_id"])
    except ValueError:
        raise web.HTTPNotFound(text="transaction ids are integers") from None


async def get_session(request: web.Request) -> web.Response:
    transaction_id = _transaction_id(request)
    row = await request.app[STORE].read(lambda tx: tx.session(transaction_id))
    if row is None:
        raise web.HTTPNotFound(text=f"no session {transaction_id}")
    return web.json_response(session_json(row, request))


async def session_meter_values(request: web.Request) -> web.Response:
    transaction_id = _transaction_id(request)
    row, samples = await request.app[STORE].read(
        lambda tx: (tx.session(transaction_id), tx.samples(transaction_id)))
    if row is None:
        raise web.HTTPNotFound(text=f"no session {transaction_id}")
    return web.json_response([{
        "timestamp": s["timestamp"], "measurand": s["measurand"], "phase": s["phase"] or None,
        "unit": s["unit"] or None, "context": s["context"], "location": s["location"],
        "format": s["format"], "value": s["value_text"], "value_si": s["value_si"],
        "source": s["source"]} for s in samples])


@functools.cache
def openapi_document() -> dict:
    """The whole API's OpenAPI document: the central system's `openapi.json` with the site
    controller's routes (`site/openapi_site.json`, kept beside the routes it describes) merged in."""
    package = resources.files("smartcharge")
    document = json.loads(package.joinpath("openapi.json").read_text(encoding="utf-8"))
    site = json.loads(package.joinpath("site/openapi_site.json").read_text(encoding="utf-8"))
    for path, operations in site["paths"].items():
        document["paths"].setdefault(path, {}).update(operations)
    for section, entries in site.get("components", {}).items():
        document.setdefault("components", {}).setdefault(section, {}).update(entries)
    return document


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def add_routes(app: web.Application, *, open_api: bool = False) -> None:
    """The API's error middleware (outermost), its auth middleware, and the central system's
    routes. `open_api` is `--insecure-open-api`: no token checked at all."""
    app.middlewares.append(json_errors)
    setup_auth(app, app[SITE], open_api=open_api)
    route(app, "GET", "/api/openapi.json", openapi, PUBLIC)
    route(app, "GET", "/api/stations", list_stations, READ)
    route(app, "GET", "/api/stations/{station_id}", get_station, READ)
    route(app, "GET", "/api/sessions", list_sessions, READ)
    route(app, "GET", "/api/sessions.csv", sessions_csv, READ)
    route(app, "GET", "/api/sessions/{transaction_id}", get_session, READ)
    route(app, "GET", "/api/sessions/{transaction_id}/meter-values", session_meter_values, READ)
    api_commands.add_routes(app)
